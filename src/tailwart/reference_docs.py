"""The generated parts of ``docs/``: the `.env` keys, the tasks with their flags, and the
ids of ``inv check`` and ``inv doctor``, each read from the code that defines them.

Each part lives between two markers in a page and is rewritten by ``inv docs``;
``inv docs --check`` writes nothing and fails (exit 1) when a part drifted. Nothing
between the markers is ever kept by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import OperationError
from .files import write_atomic
from .render_files import fill

#: page (relative to the checkout) → the generated parts it holds, in page order
PAGES: dict[str, tuple[str, ...]] = {
    "docs/reference/env.md": ("env-keys", "env-derived"),
    "docs/reference/tasks.md": ("task-table", "task-flags"),
    "docs/reference/checks.md": ("check-ids", "doctor-ids"),
}


@dataclass(frozen=True)
class FlagDoc:
    """One flag of a task, as ``inv --help TASK`` shows it."""

    flag: str
    help: str
    default: str


@dataclass(frozen=True)
class TaskDoc:
    """One task of ``inv --list``: its name, the first line of its docstring, its flags."""

    name: str
    summary: str
    flags: tuple[FlagDoc, ...]


def _cell(text: str) -> str:
    """Text for one Markdown table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _flag_of(arg: object) -> FlagDoc:
    names: tuple[str, ...] = getattr(arg, "names", ())
    long = "--" + max(names, key=len).replace("_", "-")
    kind = getattr(arg, "kind", str)
    default = getattr(arg, "default", None)
    if kind is bool:
        shown = ""
        if default is True:
            long = "--[no-]" + long[2:]
            shown = "on"
    elif kind is list:
        long += " VALUE (repeatable)"
        shown = ""
    else:
        long += " " + {int: "N", float: "SECONDS"}.get(kind, "VALUE")
        shown = "" if default in (None, "") else f"`{default}`"
    return FlagDoc(long, _cell(str(getattr(arg, "help", None) or "")), shown)


def task_docs(root: Path) -> list[TaskDoc]:
    """Every task of ``root/tasks.py`` as invoke loads it, sorted by name."""
    from invoke.collection import Collection
    from invoke.loader import FilesystemLoader

    module, _ = FilesystemLoader(start=str(root)).load("tasks")
    tasks = Collection.from_module(module)
    out = []
    for name in sorted(tasks.task_names):
        task = tasks[name]
        doc = (task.__doc__ or task.body.__doc__ or "").strip()
        summary = _cell(doc.split("\n\n", 1)[0])
        flags = tuple(_flag_of(arg) for arg in task.get_arguments())
        out.append(TaskDoc(name, summary, tuple(sorted(flags, key=lambda f: f.flag))))
    return out


def task_table(tasks: Sequence[TaskDoc]) -> str:
    rows = ["| task | what it does |", "| --- | --- |"]
    rows += [f"| `inv {t.name}` | {t.summary} |" for t in tasks]
    return "\n".join(rows) + "\n"


def task_flags(tasks: Sequence[TaskDoc]) -> str:
    out: list[str] = []
    for t in tasks:
        out += [f"### `inv {t.name}`", "", t.summary, ""]
        if not t.flags:
            out += ["No flags.", ""]
            continue
        out += ["| flag | default | what |", "| --- | --- | --- |"]
        out += [f"| `{f.flag}` | {f.default} | {f.help} |" for f in t.flags]
        out.append("")
    return "\n".join(out)


def id_table(rows: Sequence[tuple[str, str, str]]) -> str:
    """``(id, group, what it proves)`` rows as a Markdown table."""
    out = ["| id | group | what it proves |", "| --- | --- | --- |"]
    out += [f"| `{i}` | {g} | {_cell(what)} |" for i, g, what in rows]
    return "\n".join(out) + "\n"


def derived_table() -> str:
    """The values tailwart computes for compose, with what each holds."""
    from .settings.contract import DERIVED, RECOVERY_DERIVED, SIDECAR_DERIVED

    rows = ["| name | holds | passed to |", "| --- | --- | --- |"]
    for names, where in (
        (DERIVED, "the stalwart container"),
        (SIDECAR_DERIVED, "the sidecar block (headscale only)"),
        (RECOVERY_DERIVED, "the compose file only"),
    ):
        rows += [f"| `{name}` | {_cell(what)} | {where} |" for name, what in names.items()]
    return "\n".join(rows) + "\n"


def parts(root: Path) -> dict[str, Callable[[], str]]:
    """Each generated part → the function that makes its text (imported lazily)."""
    from functools import cache

    from .settings.example import markdown_table

    @cache
    def tasks() -> list[TaskDoc]:
        """tasks.py loaded once for both task parts."""
        return task_docs(root)

    def check_ids() -> str:
        from .checks.registry import all_rules

        return id_table([(r.id, r.group, r.title) for r in all_rules()])

    def doctor_ids() -> str:
        from .doctor.registry import all_checks

        return id_table([(c.id, c.group, c.title) for c in all_checks()])

    return {
        "env-keys": markdown_table,
        "env-derived": derived_table,
        "task-table": lambda: task_table(tasks()),
        "task-flags": lambda: task_flags(tasks()),
        "check-ids": check_ids,
        "doctor-ids": doctor_ids,
    }


def write_reference(root: Path, check: bool = False, only: Sequence[str] = ()) -> str:
    """Rewrite the generated parts of every page (or of the parts in ``only``).

    With ``check``, write nothing and fail (exit 1) naming every page that drifted.
    """
    makers = parts(root)
    lines: list[str] = []
    stale: list[str] = []
    for page, names in PAGES.items():
        wanted = [n for n in names if not only or n in only]
        if not wanted:
            continue
        path = root / page
        current = path.read_text() if path.exists() else ""
        text = fill(page, current, {n: makers[n]() for n in wanted})
        if check:
            if text != current:
                stale.append(page)
            continue
        lines.append(f"{'wrote' if write_atomic(path, text) else 'unchanged'} {page}")
    if stale:
        raise OperationError(
            f"{', '.join(stale)} differ(s) from the code; run: inv docs (then commit)"
        )
    return "\n".join(lines) if lines else "up to date: " + ", ".join(PAGES)
