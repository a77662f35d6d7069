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


def repo_root() -> Path:
    """The checkout tailwart runs from (where tasks.py lives), else the working directory."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "tasks.py").exists() and (parent / "pyproject.toml").exists():
            return parent
    return Path.cwd()
