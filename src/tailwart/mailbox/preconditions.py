"""What must hold before any compose command runs, each failure naming the fix."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

from ..errors import UsageError
from .compose import Runner
from .errors import PreconditionError

#: `docker version`, not `docker info`: as a non-root user Debian's CLI 20.10 answers an
#: unreachable daemon from `info --format` with a template error instead of saying so
DAEMON_CHECK = ["docker", "version", "--format", "{{.Server.Version}}"]
COMPOSE_CHECK = ["docker", "compose", "version", "--short"]
LEGACY_CHECK = ["docker-compose", "version", "--short"]


def require_env_file(env_file: str) -> None:
    """A missing .env is bad input (exit 2), with the command that creates it."""
    if not Path(env_file).is_file():
        quoted = shlex.quote(env_file)  # the advice is a shell command: quote what it names
        plain = env_file and env_file.isprintable() and env_file.strip() == env_file
        shown = env_file if plain else repr(env_file)
        raise UsageError(
            f"{shown}: no such file: the mailbox reads every setting from it → "
            f"`cp .env.example {quoted} && chmod 600 {quoted}`, fill in the required keys, "
            "then `inv check`"
        )


def _last_line(text: str) -> str:
    rows = [row.strip() for row in text.strip().splitlines() if row.strip()]
    return rows[-1] if rows else "no output"


def require_docker(run: Runner) -> str:
    """Docker CLI, a reachable daemon, and the Compose v2 plugin; returns compose's version."""
    if shutil.which("docker") is None:
        raise PreconditionError(
            "docker: command not found → install Docker Engine with its compose plugin "
            "(Debian/Ubuntu: the docker-ce, docker-ce-cli and docker-compose-plugin packages, "
            "see https://docs.docker.com/engine/install/)"
        )
    daemon = run.capture(DAEMON_CHECK)
    if not daemon.ok:
        raise PreconditionError(
            f"the Docker daemon is not reachable ({_last_line(daemon.stderr or daemon.stdout)})"
            " → start it (`sudo systemctl start docker`), or point DOCKER_HOST / `docker context "
            "use` at a running engine, and make sure your user may use its socket"
        )
    compose = run.capture(COMPOSE_CHECK)
    if compose.ok:
        return compose.stdout.strip()
    legacy = run.capture(LEGACY_CHECK) if shutil.which("docker-compose") else None
    if legacy is not None and legacy.ok and legacy.stdout.strip().startswith("1."):
        raise PreconditionError(
            f"only the legacy docker-compose {legacy.stdout.strip()} (v1) is installed; tailwart "
            "needs Compose v2 (`docker compose`: depends_on conditions, network_mode: service:) "
            "→ install the docker-compose-plugin package (or the compose binary as "
            "~/.docker/cli-plugins/docker-compose)"
        )
    raise PreconditionError(
        "`docker compose` is not available (the Compose v2 CLI plugin is missing) → install the "
        "docker-compose-plugin package (or the compose binary as ~/.docker/cli-plugins/"
        "docker-compose)"
    )
