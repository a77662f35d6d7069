"""The real compose loader: ``docker compose config`` of the Compose v2 CLI.

``scripts/setup/50-mailbox.sh`` builds the compose plugin (``LOADER_VERSION``) from
its Go module into ``$TAILWART_CACHE/tools/compose-<version>/docker-compose``, outside
the work tree. Run standalone, that binary loads, interpolates, validates (against
the compose-spec schema it embeds) and normalises the file exactly as ``docker
compose up`` would, without needing a Docker engine. The normalised document holds
interpolated secrets: it stays in memory and is never printed.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from ..paths import cache_dir
from ..settings import Settings
from ..settings.derived import compose_environment
from .compose import COMPOSE_FILE

LOADER_VERSION = "v2.40.3"
LOADER_ENV = "TAILWART_COMPOSE_LOADER"


class LoaderError(Exception):
    """The loader rejected the compose file (message: its first error line)."""


def loader_path() -> Path:
    """Where the setup step installs the loader (``$TAILWART_COMPOSE_LOADER`` overrides)."""
    override = os.environ.get(LOADER_ENV)
    if override:
        return Path(override)
    return cache_dir("tools", f"compose-{LOADER_VERSION}") / "docker-compose"


def available() -> Path | None:
    """The loader binary if it is installed and executable."""
    path = loader_path()
    return path if path.is_file() and os.access(path, os.X_OK) else None


def loader_environment(settings: Settings) -> dict[str, str]:
    """A clean environment: the compose variables only (no stray COMPOSE_* of the caller)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/nonexistent"),
    }
    env.update(compose_environment(settings))
    return env


def load(
    settings: Settings, root: Path, binary: Path | None = None, compose_file: str = COMPOSE_FILE
) -> dict[str, Any]:
    """The normalised compose document; LoaderError with the loader's message on rejection."""
    binary = binary or available()
    if binary is None:
        raise LoaderError(f"compose loader not installed at {loader_path()}")
    result = subprocess.run(
        [
            str(binary),
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
    return data


def _message(text: str) -> str:
    rows = [row.strip() for row in text.strip().splitlines() if row.strip()]
    return rows[-1] if rows else "docker compose config failed without a message"


def load_if_available(settings: Settings, root: Path) -> dict[str, Any] | None:
    """The normalised document, or None when the loader is missing or rejects the file
    (``compose_rules`` then reports why)."""
    if available() is None or not (root / COMPOSE_FILE).exists():
        return None
    try:
        return load(settings, root)
    except (LoaderError, subprocess.SubprocessError, OSError, ValueError):
        return None


def version(binary: Path) -> str:
    """``docker-compose version --short`` of the loader binary."""
    out = subprocess.run(
        [str(binary), "version", "--short"], capture_output=True, text=True, check=False, timeout=30
    )
    return out.stdout.strip()
