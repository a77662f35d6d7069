"""The one error path (issue 14): no task prints a traceback; secrets are masked everywhere.

Driven through the real task runner (``python -m invoke``) on a tiny tasks file whose
tasks are wrapped by ``tailwart.cli.exits`` exactly like tasks.py's, and crash on
purpose: a bug (RuntimeError) carrying a secret from the loaded .env and a bearer
token, and an expected UsageError.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.testkit import ROOT, SRC, write_env

TASKS = """
from invoke import task
from tailwart.cli import exits, load_settings
from tailwart.errors import UsageError


@task
@exits
def crash(c, env_file=".env"):
    s = load_settings(env_file)
    raise RuntimeError(
        "boom with " + s["STALWART_DB_PASSWORD"] + " and Authorization: Bearer tskey-api-zzzz"
        + " via https://user:pa55word@host/x"
    )


@task
@exits
def crash_before_load(c, env_file=".env"):
    raise KeyError(open(env_file).read().split("STALWART_DB_PASSWORD=")[1].split()[0])


@task
@exits
def usage(c):
    raise UsageError("--flag: bad")
"""


def run(tmp_path: Path, *args: str, debug: bool = False) -> subprocess.CompletedProcess[str]:
    (tmp_path / "tasks.py").write_text(TASKS)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(SRC)}
    if debug:
        env["TAILWART_DEBUG"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "invoke", "-r", str(tmp_path), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def env_file(tmp_path: Path, example_values: dict[str, str]) -> tuple[Path, str]:
    secret = "db-Pa55-" + "q" * 24
    return write_env(tmp_path / ".env", {**example_values, "STALWART_DB_PASSWORD": secret}), secret


@pytest.mark.parametrize("name", ["crash", "crash-before-load"])
def test_unexpected_exception_is_one_masked_line_and_exit_1(
    tmp_path: Path, env_file: tuple[Path, str], name: str
) -> None:
    path, secret = env_file
    done = run(tmp_path, name, "--env-file", str(path))
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: unexpected ")
    assert "TAILWART_DEBUG=1 shows the traceback" in lines[0]
    assert "Traceback" not in done.stderr
    for leaked in (secret, "tskey-api-zzzz", "pa55word"):
        assert leaked not in done.stderr


def test_debug_shows_the_traceback_still_masked(tmp_path: Path, env_file: tuple[Path, str]) -> None:
    path, secret = env_file
    done = run(tmp_path, "crash", "--env-file", str(path), debug=True)
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "RuntimeError" in done.stderr
    assert secret not in done.stderr and "pa55word" not in done.stderr


def test_expected_error_keeps_its_exit_code(tmp_path: Path) -> None:
    done = run(tmp_path, "usage")
    assert done.returncode == 2
    assert done.stderr.strip() == "--flag: bad"


def test_masking_shapes() -> None:
    from tailwart.masking import hide_sensitive as mask_all

    text = mask_all(
        "x 'Bearer tskey-api-abc\\n' https://u:pw@h/?api_key=k&b=1 password=hunter22 "
        '"client_secret": "s3" PG_ADMIN_PASSWORD: is missing; OAuth token exchange',
        ["tskey-api-abc\n"],
    )
    for leaked in ("tskey-api-abc", "u:pw", "api_key=k", "hunter22", '"s3"'):
        assert leaked not in text
    # words that merely name a secret stay readable
    assert "PG_ADMIN_PASSWORD: is missing" in text and "OAuth token exchange" in text


def test_a_crashing_check_is_a_masked_finding_never_an_exit(example_values: dict[str, str]) -> None:
    from tailwart.checks import CheckContext, envcontract
    from tailwart.checks.run import collect
    from tailwart.findings import Status
    from tailwart.settings import from_mapping

    settings = from_mapping(example_values)
    secret = settings["STALWART_DB_PASSWORD"]

    def boom(ctx: object) -> list[object]:
        raise RuntimeError(f"parser blew up near {secret}")

    original = envcontract.run
    envcontract.run = boom  # type: ignore[assignment]
    try:
        findings = collect(CheckContext(settings, ROOT), ("envcontract", "no_such_module"))
    finally:
        envcontract.run = original
    crashed = {f.id: f for f in findings}
    assert set(crashed) == {"envcontract.crashed", "no_such_module.crashed"}
    assert all(f.status is Status.ERROR for f in findings)
    assert secret not in crashed["envcontract.crashed"].message
    assert "RuntimeError" in crashed["envcontract.crashed"].message
    # a crash keeps its check's group (the module's own when it imported)
    assert crashed["envcontract.crashed"].group == "contract"
    assert crashed["no_such_module.crashed"].group == "no_such_module"


@pytest.mark.parametrize(
    ("check", "value"),
    [
        ("host", "::1%x 5432;touch pwned"),
        ("host", "a b"),
        ("host", "mail\n"),
        ("ip_or_empty", "fe80::1%eth0"),
        ("ip_or_empty", "1.2.3.4\n"),
    ],
)
def test_flag_hosts_refuse_scope_ids_blanks_and_control_characters(check: str, value: str) -> None:
    from tailwart import flags

    problem = getattr(flags, check)("--flag", value)
    assert problem is not None and problem.startswith("--flag ")


def test_flag_ports_are_ascii_digits_only() -> None:
    from tailwart.flags import port_number

    assert port_number("2525") == 2525
    for bad in ("\u00b2", "\u0663", "0", "65536", "1" * 5000, "25 ", "-1"):
        assert port_number(bad) is None


def test_a_thread_that_dies_prints_one_masked_line(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text(
        TASKS
        + """

@task
@exits
def thread_dies(c):
    import threading
    t = threading.Thread(target=lambda: 1 / 0)
    t.start()
    t.join()
"""
    )
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "-r", str(tmp_path), "thread-dies"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in done.stderr
    assert "unexpected ZeroDivisionError in a background thread" in done.stderr


def test_inv_check_exits_2_on_input_errors_and_1_on_a_crash_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, example_values: dict[str, str]
) -> None:
    """The same errors refuse `inv check` and `inv up` alike (exit 2: the operator's
    input); a check that crashed is tailwart's failure (exit 1), never an exit 2."""
    from tailwart.checks import run
    from tailwart.errors import OperationError, UsageError
    from tailwart.settings import from_mapping

    settings = from_mapping(example_values)
    real = run.collect
    monkeypatch.setattr(run, "collect", lambda ctx: real(ctx, ("no_such_module",)))
    with pytest.raises(OperationError, match="a check crashed") as crash:
        run.run_checks(settings, tmp_path)
    assert crash.value.exit_code == 1
    # compose/ is missing from tmp_path: compose.file is an input error, and it wins
    monkeypatch.setattr(run, "collect", lambda ctx: real(ctx, ("no_such_module", "compose_rules")))
    with pytest.raises(UsageError, match="errors found") as bad:
        run.run_checks(settings, tmp_path)
    assert bad.value.exit_code == 2


def test_every_check_module_names_its_group() -> None:
    """A crash finding takes its module's group (G or GROUP): every module declares one."""
    import importlib

    from tailwart.checks import MODULES

    for name in MODULES:
        module = importlib.import_module(f"tailwart.checks.{name}")
        assert getattr(module, "GROUP", None) or getattr(module, "G", None), name
