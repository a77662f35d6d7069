"""The systemd unit of the edge (caddyserver/dist conventions), rendered from a Jinja2 template.

Every value is written in systemd's own syntax (``tailwart.systemd_words``), never pasted
raw; a root holding a double quote, a single quote or a backslash is refused: systemd
will not run an executable whose path holds them. The executable word is not subject to
``$`` expansion.
"""

from __future__ import annotations

import re

from ..flags import CONTROL
from ..systemd_words import EXEC_PATH_REFUSED, UnitValueError, systemd_comment, systemd_word
from .commands import DEFAULT_ROOT, SERVICE_USER
from .render import RUNTIME_ENV

TEMPLATE = "tailwart-edge.service.j2"
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_RELATIVE_DIR = re.compile(r"[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*")


def root_problem(root: str) -> str | None:
    """Why ``root`` cannot be the edge's root (unit, shell, systemd's rules); None if it can."""
    from ..settings.kinds import Kind

    if CONTROL.search(root):
        return "holds a control character (newline, carriage return, NUL...)"
    if root != root.strip() or any(ch.isspace() for ch in root):
        return "must not hold whitespace"
    refused = sorted({c for c in root if c in EXEC_PATH_REFUSED})
    if refused:
        return f"holds {' '.join(refused)}: systemd refuses such an executable path"
    if ".." in root.split("/") or "//" in root or (len(root) > 1 and root.endswith("/")):
        return "must be a normalised absolute path (no '..', '//' or trailing '/')"
    if root == "/":
        return "must not be / itself"
    return Kind.ABSPATH.check(root)


def render_unit(
    root: str = DEFAULT_ROOT,
    admin_socket: str = "/run/tailwart-edge/admin.sock",
    user: str = SERVICE_USER,
) -> str:
    """The unit text; the admin socket must live under /run/<dir>/ (its RuntimeDirectory)."""
    import jinja2

    parts = admin_socket.split("/")
    if len(parts) < 4 or parts[1] != "run":
        raise UnitValueError(
            f"admin socket {admin_socket!r} must be /run/<dir>/<name> under systemd"
        )
    runtime_dir = "/".join(parts[2:-1])
    if not _RELATIVE_DIR.fullmatch(runtime_dir) or ".." in runtime_dir.split("/"):
        raise UnitValueError(f"admin socket directory {runtime_dir!r}: letters, digits, . _ - only")
    if not _USER.fullmatch(user):
        raise UnitValueError(f"service user {user!r} is not a plain user name")
    if not root.startswith("/"):
        raise UnitValueError(f"root {root!r} must be an absolute path")
    refused = sorted({c for c in root if c in EXEC_PATH_REFUSED})
    if refused:
        raise UnitValueError(
            f"root {root!r} holds {' '.join(refused)}: systemd refuses such an executable path"
        )
    try:
        words = {
            # the executable is not subject to $ expansion (systemd 252 reads "$$" literally)
            "caddy": systemd_word(f"{root}/current/caddy"),
            "config": systemd_word(f"{root}/current/caddy.json", exec_line=True),
            "root_comment": systemd_word(root),
        }
    except UnitValueError as exc:
        raise UnitValueError(f"root {root!r} {exc}") from None
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("tailwart.edge", "templates"),
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    return env.get_template(TEMPLATE).render(
        **words,
        user=user,
        environment=" ".join(
            [
                *(
                    systemd_word(f"{name}=/var/lib/{user}{sub}")
                    for name, sub in (("XDG_DATA_HOME", ""), ("XDG_CONFIG_HOME", "/config"))
                ),
                # the Go runtime settings measured in benchmarks/results/edge.md
                *(systemd_word(f"{name}={value}") for name, value in RUNTIME_ENV.items()),
            ]
        ),
        admin_socket=systemd_comment(admin_socket),
        runtime_dir=runtime_dir,
    )
