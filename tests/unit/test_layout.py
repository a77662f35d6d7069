"""The import direction the README's "Layout" section describes, read from the source
with ``ast`` (every import, also those inside functions and under TYPE_CHECKING)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "tailwart"

#: the parts of src/tailwart, lowest first: each may import only parts listed before it
#: (keep in step with the table of docs/development/layout.md; test_docs_claims checks it)
LAYERS: tuple[str, ...] = (
    "tailwart",  # the package itself: __version__
    "errors",
    "progress",
    "clock",
    "paths",
    "files",
    "findings",
    "plan",
    "greeting",
    "settings",
    "masking",
    "flags",
    "env_file",
    "systemd_words",
    "schedule",  # a task on a timer: the backup's and the doctor's units
    "testing",  # test doubles: below the edge, whose demo runs the stand-in mailbox
    "edge",
    "backends",
    "policy",
    "stalwart",
    "dns",  # inv dns: reads DKIM through the stalwart client
    "render_files",
    "checks",
    "backup",
    "doctor",
    "mailbox",
    "reference_docs",
    "cli",
)


def module_name(path: Path) -> tuple[str, bool]:
    """(dotted name, is a package ``__init__``) of a file under src/."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def all_modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name, is_package = module_name(path)
        found[name] = (path, is_package)
    return found


def imports(name: str, path: Path, is_package: bool, known: set[str]) -> Iterator[str]:
    """Every tailwart module ``name`` imports (``from . import x`` names the module x)."""
    package = name.split(".") if is_package else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            target = ".".join(filter(None, (base, node.module or "")))
            for alias in node.names:
                yield f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def graph() -> dict[str, set[str]]:
    modules = all_modules()
    known = set(modules)
    return {
        name: {t for t in imports(name, path, pkg, known) if t.split(".")[0] == "tailwart"}
        for name, (path, pkg) in modules.items()
    }


def part(module: str) -> str:
    """The LAYERS entry a module belongs to: ``tailwart.doctor.dns`` → ``doctor``."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 and pieces[1] != "__version__" else "tailwart"


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_imports_inside_functions() -> None:
    edges = graph()
    # stack.py imports the checks inside a method, policy/apply.py the env file in a function
    assert "tailwart.checks.run" in edges["tailwart.mailbox.stack"]
    assert "tailwart.env_file" in edges["tailwart.policy.apply"]
    assert set(LAYERS) == {part(m) for m in edges}  # every part of the package is placed


def test_nothing_in_the_library_imports_the_task_glue() -> None:
    """Only tasks.py uses tailwart.cli (exit codes, flag casting); the library raises."""
    users = sorted(m for m, targets in graph().items() if "tailwart.cli" in targets)
    assert users == []


def test_imports_point_down_the_layers() -> None:
    rank = {name: n for n, name in enumerate(LAYERS)}
    upward = sorted(
        f"{module} imports {target}"
        for module, targets in graph().items()
        for target in targets
        if rank[part(target)] > rank[part(module)]
    )
    assert upward == []


def test_no_import_cycles_between_parts_or_modules() -> None:
    edges = graph()
    parts: dict[str, set[str]] = {}
    for module, targets in edges.items():
        parts.setdefault(part(module), set()).update(
            part(t) for t in targets if part(t) != part(module)
        )
    assert cycles(parts) == []
    # between modules (a package's __init__ may re-export its own modules)
    modules = all_modules()
    plain = {m: {t for t in ts if t in modules and not modules[t][1]} for m, ts in edges.items()}
    assert cycles(plain) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
