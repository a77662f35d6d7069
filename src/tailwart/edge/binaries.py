"""The caddy-l4 binary a deploy ships: built per host OS/arch, or one the operator gives."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError

if TYPE_CHECKING:
    from .build import Pins


@dataclass(frozen=True)
class LocalBinary:
    path: Path
    sha256: str
    size: int
    version: str = ""


BinaryProvider = Callable[[str, str], LocalBinary]


def built_binary_provider(
    verbose: bool = False, pins: Pins | None = None, out_dir: Path | None = None
) -> BinaryProvider:
    """Build (or reuse from build-caddy's cache) caddy-l4 for the host's OS/arch."""
    cache: dict[tuple[str, str], LocalBinary] = {}
    lock = threading.Lock()

    def provide(goos: str, goarch: str) -> LocalBinary:
        with lock:
            if (goos, goarch) not in cache:
                from .build import ensure_caddy

                built = ensure_caddy(goos, goarch, verbose=verbose, pins=pins, out_dir=out_dir)
                path = Path(built.path)
                cache[goos, goarch] = LocalBinary(
                    path, built.sha256, path.stat().st_size, str(built.version)
                )
            return cache[goos, goarch]

    return provide


def fixed_binary_provider(path: Path) -> BinaryProvider:
    """Deploy one given binary to every host (the operator vouches for its OS/arch)."""
    if not path.is_file():
        raise UsageError(f"--binary {path}: no such file")
    from .build import file_sha256

    binary = LocalBinary(path, file_sha256(path), path.stat().st_size, "")

    def provide(goos: str, goarch: str) -> LocalBinary:
        return binary

    return provide
