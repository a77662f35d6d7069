"""Glue between Invoke tasks and the library: errors → exit codes, settings loading.

Kept light: importing this module must not import fabric, requests or psycopg,
so ``inv --list`` and ``--help`` stay instant.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from .errors import TailwartError
from .settings import Settings

P = ParamSpec("P")
R = TypeVar("R")

#: help text shared by every task's --env-file flag
ENV_FILE_HELP = "path of the .env file (default: .env)"
STRICT_HELP = "treat warnings about the .env file (permissions) as errors"


def exits(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn an expected TailwartError into its message on stderr and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from invoke.exceptions import Exit

        try:
            return fn(*args, **kwargs)
        except TailwartError as exc:
            print(str(exc), file=sys.stderr)
            raise Exit(code=exc.exit_code) from None

    return wrapper


def load_settings(env_file: str, strict: bool = False, example: bool = False) -> Settings:
    """Validated settings of ``env_file`` (or the built-in example); warnings to stderr."""
    if example:
        from .settings.example import example_settings

        return example_settings()
    from .settings import load

    settings = load(Path(env_file), strict=strict)
    for warning in settings.warnings:
        print(str(warning), file=sys.stderr)
    return settings


def repo_root() -> Path:
    """The checkout tailwart runs from (where tasks.py lives)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "tasks.py").exists() and (parent / "pyproject.toml").exists():
            return parent
    return Path.cwd()
