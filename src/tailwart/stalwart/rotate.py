"""``inv rotate-management``: a new management password, on the server and in .env.

Order, so that a failure at any step leaves a working pair (server, .env):
1. the new password is generated and written beside .env (``.env.rotating``, 0600);
2. the server's password changes (the login changes its own: ``x:AccountPassword``);
3. the new password must work and the old one must not;
4. ``.env.rotating`` replaces .env (one rename).
A failure before 2 removes the staged file; after 2 it names the staged file, which
holds the only working password. The password is never printed.
"""

from __future__ import annotations

import io
import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..errors import OperationError, UsageError
from ..files import write_atomic
from ..settings import Settings
from .jmap import Client, LoginRefused, Transport
from .management import login
from .provision import client_for

KEY = "STALWART_MANAGEMENT_PASSWORD"
#: Stalwart's per-account password object (the caller's own)
ACCOUNT_PASSWORD = "x:AccountPassword"


def replaced_text(text: str, value: str) -> str:
    """``text`` with the one ``STALWART_MANAGEMENT_PASSWORD=`` binding set to ``value``."""
    from dotenv.parser import parse_stream

    bindings = [b for b in parse_stream(io.StringIO(text)) if b.key == KEY]
    if len(bindings) != 1:
        raise UsageError(
            f"{KEY}: the .env holds it {len(bindings)} times; expected exactly one line"
        )
    original = bindings[0].original.string
    prefix = "export " if original.lstrip().startswith("export ") else ""
    newline = "\n" if original.endswith("\n") else ""
    return text.replace(original, f"{prefix}{KEY}={value}{newline}", 1)


def _refuse_unsafe_env(path: Path) -> os.stat_result:
    try:
        info = path.lstat()
    except OSError as exc:
        raise UsageError(f"--env-file {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"--env-file {path}: not a regular file; rotation rewrites it")
    if info.st_mode & 0o077:
        raise UsageError(
            f"--env-file {path}: readable by others (mode {stat.S_IMODE(info.st_mode):o}); "
            f"chmod 600 {path} first: it is about to hold a new password"
        )
    return info


def _accepted(client: Client) -> bool:
    """Does the server accept the client's login (an ``x:`` read)?"""
    try:
        client.call(f"{client.model.domain}/get", {"ids": None})
    except LoginRefused:
        return False
    return True


def rotate(
    settings: Settings,
    env_file: Path,
    out: Callable[[str], None],
    transport: Callable[[str], Transport | None] = lambda _password: None,
) -> None:
    """Change the management password on the server, then in ``env_file``."""
    info = _refuse_unsafe_env(env_file)
    text = env_file.read_text()
    new = secrets.token_hex(24)
    staged_text = replaced_text(text, new)
    old = settings[KEY]
    name = login(settings)[0]

    def client(password: str) -> Client:
        values = dict(settings.values)
        values[KEY] = password
        return client_for(replace(settings, values=values), transport(password))

    current = client(old)
    model = current.check_schema()
    staged = env_file.with_name(env_file.name + ".rotating")
    write_atomic(staged, staged_text, mode=0o600)
    out(f"staged the new password in {staged} (mode 600)")
    try:
        current.set(
            ACCOUNT_PASSWORD,
            update={current.model.singleton_id: {"currentSecret": old, "secret": new}},
        )
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    out(f"the server changed the password of {name}")

    def works(password: str) -> bool:
        # the schema is known: x: calls only (seen live: GET /api/schema refused the new
        # password at first)
        made = client(password)
        made.model = model
        return _accepted(made)

    if not works(new):
        raise OperationError(
            f"the new password of {name} does not work; the server holds it, and so does "
            f"{staged}: move it over {env_file} (mv {staged} {env_file}), then inv recover"
        )
    if works(old):
        raise OperationError(
            f"the old password of {name} still works after the change; {staged} holds the "
            f"new one: move it over {env_file}, then inv recover"
        )
    out("verified: the new password works, the old one is refused")
    try:
        os.chmod(staged, stat.S_IMODE(info.st_mode))
        os.replace(staged, env_file)
    except OSError as exc:
        raise OperationError(
            f"cannot replace {env_file}: {exc.strerror or exc}; {staged} holds the only "
            f"working password: move it over {env_file}"
        ) from None
    out(f"{env_file}: {KEY} replaced (the only line changed)")
