"""Preconditions of the mailbox tasks: each failure names what to install or start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from invoke.context import Context
from invoke.runners import Result

from tailwart.checks.compose_loader import LOADER_VERSION
from tailwart.errors import UsageError
from tailwart.mailbox.compose import Runner
from tailwart.mailbox.errors import PreconditionError
from tailwart.mailbox.preconditions import require_docker, require_env_file
from tests.support.mailbox_fakes import (
    COMPOSE_VERSION,
    DAEMON,
    ROOT,
    TOOL_CACHE,
    commands,
    mock,
    need,
    need_tool,
    write_env,
)

LEGACY = "docker-compose version --short"


def stub_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Executables on an otherwise empty PATH (the MockContext answers for them)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in names:
        (bin_dir / name).write_text("#!/bin/sh\nexit 99\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))


def test_docker_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stub_bin(tmp_path, monkeypatch)
    c = mock({})
    with pytest.raises(PreconditionError) as raised:
        require_docker(Runner(c))
    assert raised.value.exit_code == 1
    assert str(raised.value).startswith("docker: command not found → install Docker Engine")
    assert "docker-compose-plugin" in str(raised.value)
    assert commands(c) == []


def test_daemon_unreachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stub_bin(tmp_path, monkeypatch, "docker")
    c = mock(
        {
            DAEMON: Result(
                stderr="Cannot connect to the Docker daemon at "
                "unix:///var/run/docker.sock. Is the docker daemon running?\n",
                exited=1,
            )
        }
    )
    with pytest.raises(
        PreconditionError,
        match=r"the Docker daemon is not reachable \(Cannot "
        r"connect.*\) → start it \(`sudo systemctl start docker`\)",
    ):
        require_docker(Runner(c))
    assert commands(c) == [DAEMON]


def test_daemon_unreachable_for_real(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real docker CLI against a socket nobody serves: the message the operator sees."""
    need_tool("docker")
    socket = tmp_path / "docker.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{socket}")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    with pytest.raises(PreconditionError) as raised:
        require_docker(Runner(Context()))
    assert str(raised.value).startswith(
        f"the Docker daemon is not reachable (Cannot connect to the Docker daemon at "
        f"unix://{socket}. Is the docker daemon running?) → start it"
    )


def test_only_legacy_compose_v1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stub_bin(tmp_path, monkeypatch, "docker", "docker-compose")
    c = mock(
        {
            DAEMON: Result("28.2.2\n"),
            COMPOSE_VERSION: Result(stderr="docker: unknown command: docker compose\n", exited=1),
            LEGACY: Result("1.29.2\n"),
        }
    )
    with pytest.raises(PreconditionError) as raised:
        require_docker(Runner(c))
    assert str(raised.value).startswith(
        "only the legacy docker-compose 1.29.2 (v1) is installed; tailwart needs Compose v2"
    )
    assert "install the docker-compose-plugin package" in str(raised.value)
    assert commands(c) == [DAEMON, COMPOSE_VERSION, LEGACY]


def test_no_compose_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stub_bin(tmp_path, monkeypatch, "docker")
    c = mock({DAEMON: Result("28.2.2\n"), COMPOSE_VERSION: Result(exited=1)})
    with pytest.raises(PreconditionError, match="the Compose v2 CLI plugin is missing"):
        require_docker(Runner(c))


def test_all_present_returns_the_compose_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub_bin(tmp_path, monkeypatch, "docker")
    c = mock({DAEMON: Result("28.2.2\n"), COMPOSE_VERSION: Result("2.40.3\n")})
    assert require_docker(Runner(c)) == "2.40.3"


def test_the_built_compose_binary_works_as_the_docker_cli_plugin(tmp_path: Path) -> None:
    """`docker compose version` through the real CLI, with the binary setup builds as plugin."""
    docker = need_tool("docker")
    binary = TOOL_CACHE / "tools" / f"compose-{LOADER_VERSION}" / "docker-compose"
    need(binary.is_file(), f"compose loader not built at {binary} (scripts/setup/50-mailbox.sh)")
    plugins = tmp_path / "docker-config" / "cli-plugins"
    plugins.mkdir(parents=True)
    (plugins / "docker-compose").symlink_to(binary)
    out = subprocess.run(
        [docker, "compose", "version", "--short"],
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_CONFIG": str(plugins.parent)},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == LOADER_VERSION.removeprefix("v")


def test_env_file_missing(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as raised:
        require_env_file(str(tmp_path / ".env"))
    assert raised.value.exit_code == 2
    assert "no such file" in str(raised.value)
    assert "cp .env.example" in str(raised.value)


@pytest.mark.parametrize("task", ["up", "down", "ps", "logs", "restart"])
def test_every_task_refuses_a_missing_env_file(tmp_path: Path, task: str) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "invoke",
            task,
            "--env-file",
            str(tmp_path / "missing.env"),
            "--dry-run",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2
    assert f"{tmp_path / 'missing.env'}: no such file" in out.stderr
    assert "Traceback" not in out.stderr


def test_up_dry_run_through_invoke_prints_the_compose_command(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    """End to end through tasks.py: all checks pass, the plan is printed, nothing runs."""
    env = write_env(tmp_path / "mail.env", example_values)
    out = subprocess.run(
        [sys.executable, "-m", "invoke", "up", "--env-file", str(env), "--dry-run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PATH": "/usr/bin:/bin"},
    )
    # every check passes on the example values; docker is not even on PATH here, and the
    # dry run never looks for it
    assert out.returncode == 0, out.stdout + out.stderr
    assert (
        f"  docker compose --env-file {env} -f compose/docker-compose.yml -p tailwart-mail up -d"
    ) in out.stdout.splitlines()
