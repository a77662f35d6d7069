"""The real compose loader: ``docker compose config``, the operator's own first.

``inv check`` and ``inv up`` load compose/docker-compose.yml the way ``docker compose
up`` will: the loader interpolates, validates (against the compose-spec schema it
embeds) and normalises the file, without needing a Docker engine. Which loader:

1. ``$TAILWART_COMPOSE_LOADER`` when set (a compose binary; tests point it elsewhere);
2. the operator's own ``docker compose`` from PATH (what ``inv up`` will run);
3. the compose binary ``scripts/setup/50-mailbox.sh`` builds into the tool cache
   (``LOADER_VERSION``; CI and hosts without Docker);
4. none: ``compose_rules`` then interpolates the raw YAML itself and says so.

The normalised document holds interpolated secrets: it stays in memory and is never
printed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..paths import cache_path
from ..settings import Settings
from ..settings.derived import compose_environment
from . import COMPOSE_FILE

LOADER_VERSION = "v2.40.3"
LOADER_ENV = "TAILWART_COMPOSE_LOADER"
#: environment the docker CLI needs to find its compose plugin (nothing else passes)
_CLI_ENV = ("DOCKER_CONFIG",)


class LoaderError(Exception):
    """The loader rejected the compose file (message: its first error line)."""


@dataclass(frozen=True)
class Loader:
    """A compose CLI that can run ``config``: its argv prefix and what to call it."""

    argv: tuple[str, ...]
    #: for findings: "docker compose 2.40.3 from PATH", "tailwart's built loader v2.40.3"
    name: str


@dataclass(frozen=True)
class Loaded:
    """What loading the compose file gave: the document, or why there is none."""

    #: the loader used; None when no loader was found (the raw-YAML fallback applies)
    loader: Loader | None
    document: dict[str, Any] | None = None
    #: the loader's rejection of the file (the operator's input is wrong)
    rejected: str = ""
    #: the loader itself failed to run (timeout, crash): not the file's fault
    failed: str = ""


def cached_loader_path() -> Path:
    """Where the setup step installs the built loader (not created)."""
    return cache_path("tools", f"compose-{LOADER_VERSION}", "docker-compose")


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def loader_environment(settings: Settings | None = None) -> dict[str, str]:
    """A clean environment: the compose variables only (no stray COMPOSE_* of the caller)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/nonexistent"),
    }
    env.update({k: os.environ[k] for k in _CLI_ENV if os.environ.get(k)})
    if settings is not None:
        env.update(compose_environment(settings))
    return env


def _version(argv: list[str]) -> str | None:
    """``<argv> version --short``, or None when it does not run."""
    try:
        out = subprocess.run(
            [*argv, "version", "--short"],
            capture_output=True,
            text=True,
            env=loader_environment(),
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    version = out.stdout.strip()
    return version if out.returncode == 0 and version else None


def operator_compose() -> Loader | None:
    """``docker compose`` from PATH when the Compose v2 plugin answers."""
    docker = shutil.which("docker")
    if docker is None:
        return None
    version = _version([docker, "compose"])
    if version is None or not version.lstrip("v").startswith("2."):
        return None
    return Loader((docker, "compose"), f"docker compose {version} from PATH (the operator's own)")


def find() -> Loader | None:
    """The loader to use, in the order of the module docstring; None: no loader."""
    override = os.environ.get(LOADER_ENV)
    if override:
        path = Path(override)
        return Loader((str(path),), f"{path} (${LOADER_ENV})") if _executable(path) else None
    operator = operator_compose()
    if operator is not None:
        return operator
    cached = cached_loader_path()
    if _executable(cached):
        return Loader((str(cached),), f"tailwart's built loader {LOADER_VERSION} (tool cache)")
    return None


def load(
    settings: Settings,
    root: Path,
    binary: Path | Loader | None = None,
    compose_file: str = COMPOSE_FILE,
) -> dict[str, Any]:
    """The normalised compose document, values as the containers get them (``$`` unescaped);
    LoaderError with the loader's message on rejection."""
    loader = Loader((str(binary),), str(binary)) if isinstance(binary, Path) else binary
    loader = loader or find()
    if loader is None:
        raise LoaderError(
            f"no compose loader: neither `docker compose` on PATH nor {cached_loader_path()}"
        )
    result = subprocess.run(
        [
            *loader.argv,
            "-f",
            str(root / compose_file),
            "-p",
            settings["COMPOSE_PROJECT"],
            "config",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        env=loader_environment(settings),
        cwd=root,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise LoaderError(_message(result.stderr or result.stdout))
    data = json.loads(result.stdout)
    if not isinstance(data, dict):
        raise LoaderError("docker compose config printed no document")
    unescaped: dict[str, Any] = _unescape(data)
    return unescaped


def _unescape(node: Any) -> Any:
    """``config`` prints every ``$`` of a value as ``$$`` (its re-loadable form): give back
    the values the containers get."""
    if isinstance(node, str):
        return node.replace("$$", "$")
    if isinstance(node, list):
        return [_unescape(item) for item in node]
    if isinstance(node, dict):
        return {key: _unescape(value) for key, value in node.items()}
    return node


def _message(text: str) -> str:
    rows = [row.strip() for row in text.strip().splitlines() if row.strip()]
    return rows[-1] if rows else "docker compose config failed without a message"


def try_load(settings: Settings, root: Path) -> Loaded:
    """Load with the loader ``find`` picks; never raises (``compose_rules`` reports)."""
    loader = find()
    if loader is None or not (root / COMPOSE_FILE).exists():
        return Loaded(loader)
    try:
        return Loaded(loader, load(settings, root, loader))
    except LoaderError as exc:
        return Loaded(loader, rejected=str(exc))
    except (subprocess.SubprocessError, OSError, ValueError) as exc:
        return Loaded(loader, failed=f"{type(exc).__name__}: {exc}")


def version(binary: Path) -> str:
    """``docker-compose version --short`` of a loader binary."""
    return _version([str(binary)]) or ""
