"""The docker command lines of the mailbox, and the adapter that runs them.

``Compose`` only builds argument lists (pure; the unit tests assert them exactly).
``Runner`` runs them through an Invoke context with the compose environment added
to the process environment, so secrets never appear on a command line.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from ..masking import LineStream, hide_secrets, secret_values
from ..settings import Settings
from ..settings.derived import compose_environment

if TYPE_CHECKING:
    from .nodes import Node

COMPOSE_FILE = "compose/docker-compose.yml"
SIDECAR = "ts-stalwart"
STALWART = "stalwart"
#: services in start order: the sidecar owns the network namespace
SERVICES: tuple[str, ...] = (SIDECAR, STALWART)
#: how many log lines a failure report shows per container
LOG_TAIL = 30
#: containerboot's default TS_SOCKET (the compose file does not set it)
TS_SOCKET = "/tmp/tailscaled.sock"


@dataclass(frozen=True)
class Compose:
    """``docker compose --env-file <env> -f <file> -p <project> …`` command lines."""

    env_file: str
    project: str
    compose_file: str = COMPOSE_FILE

    @classmethod
    def for_settings(cls, settings: Settings, env_file: str, root: Path) -> Compose:
        """The command builder for ``settings``; the compose file relative to cwd when possible."""
        path = root / COMPOSE_FILE
        try:
            shown = str(path.relative_to(Path.cwd()))
        except ValueError:
            shown = str(path)
        return cls(env_file=env_file, project=settings["COMPOSE_PROJECT"], compose_file=shown)

    def base(self) -> list[str]:
        return [
            "docker",
            "compose",
            "--env-file",
            self.env_file,
            "-f",
            self.compose_file,
            "-p",
            self.project,
        ]

    def up(self, *services: str, force_recreate: bool = False) -> list[str]:
        return [
            *self.base(),
            "up",
            "-d",
            *(["--force-recreate"] if force_recreate else []),
            *services,
        ]

    def down(self, volumes: bool = False) -> list[str]:
        return [*self.base(), "down", *(["--volumes"] if volumes else [])]

    def stop(self, *services: str) -> list[str]:
        return [*self.base(), "stop", *services]

    def restart(self, *services: str) -> list[str]:
        return [*self.base(), "restart", *services]

    def ps(self) -> list[str]:
        return [*self.base(), "ps", "--all", "--format", "json"]

    def logs(
        self, *services: str, follow: bool = False, since: str = "", tail: int | None = None
    ) -> list[str]:
        args = [*self.base(), "logs", "--no-color"]
        if follow:
            args.append("--follow")
        if since:
            args += ["--since", since]
        if tail is not None:
            args += ["--tail", str(tail)]
        return [*args, *services]

    def exec_sidecar(self, *command: str) -> list[str]:
        return [*self.base(), "exec", "-T", SIDECAR, *command]

    def tailscale_status(self) -> list[str]:
        # containerboot's tailscaled listens on TS_SOCKET (default /tmp/tailscaled.sock), not
        # on the CLI's default /var/run/tailscale/tailscaled.sock
        return self.exec_sidecar("tailscale", f"--socket={TS_SOCKET}", "status", "--json")


def inspect(*containers: str) -> list[str]:
    """``docker inspect`` of the given containers (a JSON array on stdout)."""
    return ["docker", "inspect", *containers]


def line(args: Sequence[str]) -> str:
    """The shell form of a command, exactly as it is run and printed."""
    return shlex.join(args)


class Context(Protocol):
    """The part of ``invoke.Context`` the runner uses (MockContext fits too)."""

    def run(self, command: str, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class Outcome:
    """What a command did: exit code and captured output ('' when streamed)."""

    command: str
    exited: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.exited == 0


class RedactingStream(LineStream):
    """A ``LineStream`` that masks ``secrets``: Invoke flushes after every chunk it reads,
    so only whole lines are passed on and a secret split across two chunks is still
    masked. ``close`` writes the rest."""

    def __init__(self, target: TextIO, secrets: Sequence[str]) -> None:
        super().__init__(target, lambda row: hide_secrets(row, secrets))
        self.secrets = secrets


@dataclass
class Runner:
    """Runs docker command lines through an Invoke context with the compose environment.

    Secrets travel only in the environment, and are masked in everything the commands
    print or return (container logs may quote a connection URL).
    """

    c: Context
    env: Mapping[str, str] = field(default_factory=dict)
    #: where ``stream`` shows the command it runs
    show: Callable[[str], None] = print
    secrets: tuple[str, ...] = ()

    @classmethod
    def for_settings(
        cls, c: Context, settings: Settings, show: Callable[[str], None] = print
    ) -> Runner:
        return cls(c, compose_environment(settings), show, secret_values(settings))

    @classmethod
    def for_node(
        cls, c: Context, settings: Settings, node: Node, show: Callable[[str], None] = print
    ) -> Runner:
        """The runner of one mailbox node: its compose environment, and its docker engine as
        DOCKER_HOST (an endpoint holds no secret; '' keeps the caller's engine)."""
        env = compose_environment(settings, node.fqdn, node.role)
        if node.endpoint:
            env["DOCKER_HOST"] = node.endpoint
        return cls(c, env, show, secret_values(settings))

    def capture(self, args: Sequence[str]) -> Outcome:
        """Run quietly and return its output; never raises on a non-zero exit."""
        return self._run(args, hide=True)

    def stream(self, args: Sequence[str], echo: bool = True) -> Outcome:
        """Run with output passed through to the terminal."""
        if echo:
            self.show(f"$ {line(args)}")
        return self._run(args, hide=False)

    def _run(self, args: Sequence[str], hide: bool) -> Outcome:
        command = line(args)
        streams: dict[str, RedactingStream] = {}
        if not hide:
            streams = {
                "out_stream": RedactingStream(sys.stdout, self.secrets),
                "err_stream": RedactingStream(sys.stderr, self.secrets),
            }
        try:
            result = self.c.run(
                command,
                env=dict(self.env),
                hide=hide,
                warn=True,
                pty=False,
                in_stream=False,
                **streams,
            )
        finally:
            for stream in streams.values():
                stream.close()
        exited = getattr(result, "exited", 1)
        return Outcome(
            command,
            0 if exited is None else int(exited),
            hide_secrets(str(getattr(result, "stdout", "") or ""), self.secrets),
            hide_secrets(str(getattr(result, "stderr", "") or ""), self.secrets),
        )
