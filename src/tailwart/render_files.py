"""Writing what ``inv render`` and ``inv env-example`` generate."""

from __future__ import annotations

from pathlib import Path

from .errors import OperationError
from .files import write_atomic
from .settings import Settings


def write_rendered(settings: Settings, root: Path) -> list[str]:
    """Write every rendered file under ``root``; return one line per file saying what happened."""
    from .edge.render import rendered_files

    lines = []
    for rel, content in rendered_files(settings).items():
        changed = write_atomic(root / rel, content)
        lines.append(f"{'wrote' if changed else 'unchanged'} {rel}")
    return lines


def write_env_example(root: Path, check: bool = False) -> str:
    """Write ``.env.example`` from the contract, or with ``check`` fail when it drifted."""
    from .settings.example import env_example

    path = root / ".env.example"
    text = env_example()
    if check:
        current = path.read_text() if path.exists() else ""
        if current != text:
            raise OperationError(".env.example differs from the declaration; run: inv env-example")
        return ".env.example is up to date"
    return f"{'wrote' if write_atomic(path, text) else 'unchanged'} .env.example"
