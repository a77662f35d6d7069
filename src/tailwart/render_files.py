"""Writing what ``inv render`` and ``inv env-example`` generate."""

from __future__ import annotations

from pathlib import Path

from .errors import OperationError
from .files import write_atomic
from .settings import Settings


def write_rendered(settings: Settings, root: Path) -> list[str]:
    """Write every rendered file under ``root``; return one line per file saying what happened."""
    from .edge.render import rendered_files
    from .stalwart.datastore import CONFIG_FILE, config_json

    files = {**rendered_files(settings), CONFIG_FILE: config_json(settings)}
    lines = []
    for rel, content in files.items():
        changed = write_atomic(root / rel, content)
        lines.append(f"{'wrote' if changed else 'unchanged'} {rel}")
    return lines


#: the page whose `.env` key table ``inv env-example`` rewrites with ``.env.example``
ENV_PAGE = "docs/reference/env.md"


def write_env_example(root: Path, check: bool = False) -> str:
    """Write ``.env.example`` and the docs' `.env` key table from the contract.

    With ``check``, write nothing and fail (exit 1) when either drifted.
    """
    from .reference_docs import fill
    from .settings.example import env_example, markdown_table

    targets = {root / ".env.example": env_example()}
    page = root / ENV_PAGE
    if page.exists():
        targets[page] = fill(ENV_PAGE, page.read_text(), {"env-keys": markdown_table()})
    if check:
        stale = [p.name for p, text in targets.items() if _current(p) != text]
        if stale:
            raise OperationError(
                f"{', '.join(stale)} differ(s) from the declaration; run: inv env-example"
            )
        return "up to date: " + ", ".join(p.name for p in targets)
    return "\n".join(
        f"{'wrote' if write_atomic(p, t) else 'unchanged'} {p.name}" for p, t in targets.items()
    )


def _current(path: Path) -> str:
    return path.read_text() if path.exists() else ""
