"""Where tailwart keeps things outside the work tree."""

from __future__ import annotations

import os
from pathlib import Path


def cache_path(*parts: str) -> Path:
    """``$TAILWART_CACHE`` (default ``~/.cache/tailwart``) joined with ``parts``, not created."""
    base = Path(os.environ.get("TAILWART_CACHE") or Path.home() / ".cache" / "tailwart")
    return base.joinpath(*parts)


def cache_dir(*parts: str) -> Path:
    """``cache_path(*parts)``, created."""
    path = cache_path(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
