"""The sidecar's healthcheck as compose resolves it, run by a real shell (issue 14, finding 1).

Oracles: the real compose loader (`docker compose config`) turns the committed file
into the exact argv Docker would exec, and a real POSIX shell runs that argv with
recording stand-ins for ``wget`` and ``nc`` first on PATH. Whatever a host value
holds, it must arrive at ``nc`` as one whole argument after ``--``, and no shell
syntax in it may run.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from tailwart.checks import compose_loader as loader
from tests.support.mailbox_fakes import ROOT, TOOL_CACHE, client_settings, need

pytestmark = pytest.mark.integration

BINARY = TOOL_CACHE / "tools" / f"compose-{loader.LOADER_VERSION}" / "docker-compose"

HOSTILE_HOSTS = [
    "::1%x 5432;touch PWNED;true",
    "$(touch PWNED)",
    "`touch PWNED`",
    "db' ; touch PWNED ; '",
    "-e/bin/sh",
    "db\ntouch PWNED",
]


def _stubs(tmp_path: Path) -> tuple[Path, Path]:
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    calls.mkdir()
    for name in ("wget", "nc"):
        stub = bin_dir / name
        # one file per call: the argv exactly as exec'd, NUL-separated
        stub.write_text(
            f"#!/bin/sh\nprintf '%s\\0' {name} \"$@\" > {calls}/$(date +%s%N)\nexit 0\n"
        )
        stub.chmod(0o755)
    return bin_dir, calls


def _recorded(calls: Path) -> list[list[str]]:
    return [p.read_text().split("\0")[:-1] for p in sorted(calls.iterdir())]


@pytest.mark.parametrize("host", HOSTILE_HOSTS)
def test_a_host_value_is_one_argument_never_shell_code(tmp_path: Path, host: str) -> None:
    need(BINARY.is_file(), f"compose loader not built at {BINARY} (scripts/setup/50-mailbox.sh)")
    tree = tmp_path / "tree"
    for part in ("compose", "config"):
        shutil.copytree(ROOT / part, tree / part)
    base = client_settings()
    values = {**base.values, "STALWART_DB_HOST": host}
    settings = dataclasses.replace(base, values=values)  # past validation on purpose
    doc = loader.load(settings, tree, BINARY)
    test = doc["services"]["ts-stalwart"]["healthcheck"]["test"]
    assert test[0] == "CMD", test
    # loader.load undoes `config`'s $ -> $$ escape: these are the words the container gets
    argv = list(test[1:])
    assert host in argv  # compose kept the value whole, as its own argument
    work = tmp_path / "work"
    work.mkdir()
    bin_dir, calls = _stubs(tmp_path)
    proc = subprocess.run(
        argv,
        cwd=work,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert not list(work.iterdir())  # nothing ran in the work dir: no PWNED
    assert _recorded(calls) == [
        ["wget", "-qO-", "http://127.0.0.1:9002/healthz"],
        ["nc", "-z", "-w3", "--", host, settings["STALWART_DB_PORT"]],
        ["nc", "-z", "-w3", "--", settings["STALWART_S3_HOST"], settings["STALWART_S3_PORT"]],
    ]


def test_inv_check_and_up_refuse_the_old_shell_string_healthcheck(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    """The CMD-SHELL form the audit exploited, restored by hand, fails ``inv check`` (and so
    ``inv up``, which runs the same checks before any docker command)."""
    from tests.support.testkit import inv, write_env

    tree = tmp_path / "tree"
    for part in ("compose", "config"):
        shutil.copytree(ROOT / part, tree / part)
    (tree / "acl-snippet.hujson").write_text((ROOT / "acl-snippet.hujson").read_text())
    compose = tree / "compose" / "docker-compose.yml"
    text = compose.read_text()
    start = text.index("        - CMD\n        - /bin/sh\n")
    end = text.index("      interval: 10s")
    compose.write_text(
        text[:start]
        + "        - CMD-SHELL\n"
        + "        - wget -qO- http://127.0.0.1:9002/healthz >/dev/null"
        + " && nc -z -w3 ${STALWART_DB_HOST} ${STALWART_DB_PORT}"
        + " && nc -z -w3 ${STALWART_S3_HOST} ${STALWART_S3_PORT}\n"
        + text[end:]
    )
    done = inv("check", "--example", cwd=tree, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr  # the same exit as `inv up` below
    rows = [r for r in done.stdout.splitlines() if "compose.sidecar-health" in r]
    assert rows and rows[0].startswith("ERROR") and "not exec form" in rows[0], done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    env = write_env(tree / ".env", example_values)
    up = inv("up", "--dry-run", "--env-file", str(env), cwd=tree, timeout=120)
    assert up.returncode == 2, up.stdout + up.stderr
    assert "compose.sidecar-health" in up.stdout and "no docker command was run" in up.stderr
