"""The README and docs/ against what they describe: each kind of claim that can drift.

Oracles are the real things: invoke's own loader for the tasks and their flags, nox's
registry for the sessions, the contract for `.env` keys, the file tree for paths,
``caddy/pins.toml`` for versions. The generated reference pages are checked by
``inv docs --check`` (tests/unit/test_reference_docs.py) and the site by ``nox -s docs``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
GENERATED = {DOCS / "reference" / "tasks.md", DOCS / "reference" / "env.md"}

#: variables the docs name that are environment variables of a run, not `.env` keys
NOT_ENV_KEYS = {
    "PG_ADMIN_PASSWORD",
    "TS_AUTHKEY",
    "TS_EXTRA_ARGS",
    "TS_NO_LOGS_NO_SUPPORT",
    "MAILPORT",
}
ENV_PREFIXES = (
    "MAIL_",
    "EDGE_",
    "MAILBOX_",
    "STALWART_",
    "PG_",
    "GARAGE_",
    "ACME_",
    "TS_",
    "HEADSCALE_",
    "DKIM_",
    "DNS_",
    "OUTBOUND_",
    "BACKUP_",
    "COMPOSE_",
)


def _text(page: Path) -> str:
    return page.read_text()


def _code_spans(text: str) -> Iterator[str]:
    """Inline code spans and the lines of fenced blocks."""
    fence = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
            continue
        if fence:
            yield line
        else:
            yield from re.findall(r"`([^`]+)`", line)


def _commands(text: str, program: str) -> Iterator[list[str]]:
    """Each ``program ...`` command in code, as words, up to a comment or a pipe."""
    for span in _code_spans(text):
        for match in re.finditer(rf"(?:^|[\s;(&])({program} [^#|;)]*)", span):
            words = match.group(1).split()
            if len(words) > 1:
                yield words


@cache
def _tasks() -> dict[str, set[str]]:
    """Task name → every flag spelling invoke accepts for it (the real loader)."""
    from invoke.collection import Collection
    from invoke.loader import FilesystemLoader

    module, _ = FilesystemLoader(start=str(ROOT)).load("tasks")
    tasks = Collection.from_module(module)
    out: dict[str, set[str]] = {}
    for name, aliases in tasks.task_names.items():
        flags: set[str] = set()
        for arg in tasks[name].get_arguments():
            for spelled in arg.names:
                dashed = spelled.replace("_", "-")
                flags.add(("-" if len(dashed) == 1 else "--") + dashed)
                if arg.kind is bool and len(dashed) > 1:
                    flags.add("--no-" + dashed)
        for each in (name, *aliases):
            out[each] = flags
    return out


def test_the_readme_is_the_front_door() -> None:
    lines = _text(ROOT / "README.md").splitlines()
    assert len(lines) < 150, f"README.md has {len(lines)} lines; the book belongs in docs/"
    text = "\n".join(lines)
    # the two commands, as the repository promises
    assert "nox -s demo" in text and re.search(r"^nox\s+#", text, re.MULTILINE)


def _slug(heading: str) -> str:
    """The anchor Python-Markdown's toc extension gives a heading (its default slugify)."""
    text = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading(page: Path) -> None:
    problems = []
    for target in re.findall(r"\]\(([^)\s]+)\)", _text(page)):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # web links; same-page anchors are mkdocs's (nox -s docs)
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve()
        if not dest.exists():
            problems.append(f"{target}: no such file")
            continue
        if anchor and dest.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", _text(dest), re.MULTILINE)
            if anchor not in {_slug(h) for h in headings}:
                problems.append(f"{target}: no such heading")
    assert not problems, problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_inv_command_names_a_task_and_its_flags(page: Path) -> None:
    tasks = _tasks()
    problems = []
    for words in _commands(_text(page), "inv"):
        name = words[1]
        if name.startswith("-"):
            if name not in ("--list", "--help", "-l", "-h"):
                problems.append(" ".join(words))
            continue
        if name not in tasks:
            problems.append(f"{' '.join(words)}: no task {name!r}")
            continue
        for word in words[2:]:
            flag = word.split("=", 1)[0].strip("[]…,.")
            if flag.startswith("-") and flag not in tasks[name]:
                problems.append(f"{' '.join(words)}: {name} has no flag {flag}")
    assert not problems, problems


def test_every_task_is_in_the_docs() -> None:
    """A task nobody documents is a task nobody finds: each is named in a guide or
    the getting-started page, not only in the generated reference."""
    prose = "\n".join(_text(p) for p in PAGES if p not in GENERATED)
    missing = [t for t in _tasks() if not re.search(rf"\binv {re.escape(t)}\b", prose)]
    assert not missing, f"tasks no guide mentions: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_nox_command_names_a_session(page: Path) -> None:
    sessions = set(re.findall(r"^def (\w+)\(session", _text(ROOT / "noxfile.py"), re.M))
    problems = []
    for words in _commands(_text(page), "nox"):
        if words[1] != "-s" or len(words) < 3:
            continue
        if words[2] not in sessions:
            problems.append(f"{' '.join(words)}: no session {words[2]!r}")
        # nox takes the session's own arguments only after `--`
        after = words[3:]
        own = [w for w in after if w.startswith("-") and w != "--"]
        if own and (not after or after[0] != "--"):
            problems.append(f"{' '.join(words)}: the session's flags need a `--` before them")
    assert not problems, problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_env_key_named_is_declared(page: Path) -> None:
    from tailwart.settings.contract import DERIVED, KEYS, RECOVERY_DERIVED, SIDECAR_DERIVED

    known = {k.name for k in KEYS} | {*DERIVED, *SIDECAR_DERIVED, *RECOVERY_DERIVED}
    known |= NOT_ENV_KEYS
    named = set()
    for span in _code_spans(_text(page)):
        named |= {
            m
            for m in re.findall(r"\b([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)\b", span)
            if m.startswith(ENV_PREFIXES)
        }
    assert not sorted(named - known), f"not .env keys: {sorted(named - known)}"


#: paths the docs name that are generated or ignored, so absent from a checkout
GENERATED_PATHS = {"caddy/caddy.json", "caddy/jmap.caddy", "config/config.json", "caddy/bin/"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_path_named_exists(page: Path) -> None:
    problems = []
    pattern = r"(?<![\w/.~-])((?:src|tests|scripts|compose|caddy|config|benchmarks|docs)/[\w./-]*)"
    for span in _code_spans(_text(page)):
        for path in re.findall(pattern, span):
            path = path.rstrip(".,:")
            if path in GENERATED_PATHS or "*" in path:
                continue
            if not (ROOT / path).exists():
                problems.append(path)
    assert not problems, f"no such path in the checkout: {sorted(set(problems))}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_named_exists(page: Path) -> None:
    import importlib.util

    problems = []
    for span in _code_spans(_text(page)):
        for name in re.findall(r"\btailwart(?:\.[a-z_]+)+", span):
            parts = name.split(".")
            # `tailwart.x.y` may name a module or a name inside one
            if not any(
                importlib.util.find_spec(".".join(parts[:n])) for n in (len(parts), len(parts) - 1)
            ):
                problems.append(name)
    assert not problems, f"no such module: {sorted(set(problems))}"


def test_versions_named_match_the_pins() -> None:
    pins = tomllib.loads(_text(ROOT / "caddy" / "pins.toml"))
    from tailwart.settings.contract import KEYS

    image = next(k.default for k in KEYS if k.name == "STALWART_IMAGE")
    assert image is not None
    stalwart = image.rsplit(":", 1)[1]
    problems = []
    for page in PAGES:
        text = _text(page)
        for found in re.findall(r"caddy-l4 (v\d+\.\d+\.\d+)", text):
            if found != pins["caddy_l4"]:
                problems.append(f"{page.name}: caddy-l4 {found}")
        for found in re.findall(r"\bcaddy (v2\.\d+\.\d+)", text):
            if found != pins["caddy"]:
                problems.append(f"{page.name}: caddy {found}")
        for found in re.findall(r"Stalwart (v0\.16\.\d+)", text):
            if found != stalwart:
                problems.append(f"{page.name}: Stalwart {found}")
    assert not problems, problems


def test_the_layout_table_is_the_enforced_layering() -> None:
    from tests.unit.test_layout import LAYERS

    table = _text(DOCS / "development" / "layout.md").split("| part (lowest first) |", 1)[1]
    rows = [r for r in table.split("\n\n", 1)[0].splitlines() if r.startswith("| `")]
    listed = [name for row in rows for name in re.findall(r"`(\w+)`", row.split(" | ")[0])]
    assert listed == [part for part in LAYERS if part != "tailwart"]


#: dotted words the docs name that share a check group's first word but are no ids
NOT_CHECK_IDS = {"dns.extra_records"}  # headscale's configuration key


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_check_id_named_exists(page: Path) -> None:
    """Ids the docs name (`tls-files.expiry`, `dns.spf`, `tls-files.*`) are ids the two
    registries declare."""
    from tailwart.checks.registry import all_rules
    from tailwart.doctor.registry import all_checks

    ids = {r.id for r in all_rules()} | {c.id for c in all_checks()}
    groups = {i.split(".", 1)[0] for i in ids}
    problems = []
    for span in _code_spans(_text(page)):
        for found in re.findall(r"^([a-z][a-z_-]*\.[a-z0-9.*_-]+)$", span.strip()):
            if found.split(".", 1)[0] not in groups or found in NOT_CHECK_IDS:
                continue
            if found.rsplit(".", 1)[1] in ("test", "org", "net", "com", "md", "py", "json"):
                continue  # a host or a file name
            prefix = found.removesuffix("*")
            if not any(i == found or (found.endswith("*") and i.startswith(prefix)) for i in ids):
                problems.append(found)
    assert not problems, f"no such check id: {problems}"
