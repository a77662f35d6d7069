"""``inv acl``: plan (fetch + merge + diff) then apply, for a file, Tailscale or headscale.

Every target prints the unified diff of the merge first; ``--dry-run`` stops
there. Nothing is written when the merge changes nothing, when validation or
the policy's own tests fail, or when another writer keeps racing us.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..files import write_atomic, write_target
from ..masking import hide_credentials
from ..progress import to_stderr
from .errors import PolicyInputError, PolicyOperationError
from .evaluate import Report, validate
from .headscale_api import HeadscaleAPI, adapt_snippet
from .http import check_request_inputs, url_problem
from .hujson import Style, parse, parse_model, plain, render
from .merge import MergeResult, merge
from .tailscale_api import PreconditionFailed, TailscaleAPI, Validation

Emit = Callable[[str], None]
#: 412 answers tolerated (each followed by re-fetch and re-merge) before giving up
CONFLICT_RETRIES = 3
BACKUP_DIR = Path(".tailwart") / "acl-backups"


@dataclass
class Output:
    """Where a run reports: ``out`` (stdout) for the plan and results, ``warn`` (stderr)."""

    out: Emit = print
    warn: Emit = to_stderr


def read_snippet(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyInputError(f"{path}: snippet not found (see --snippet)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyInputError(f"{path}: the snippet cannot be read ({exc})") from None


def report_merge(result: MergeResult, name: str, io: Output) -> None:
    for note in result.notes:
        io.warn(f"note: {note}")
    for conflict in result.conflicts:
        io.warn(f"conflict: {conflict}")
    for warning in result.warnings:
        io.warn(f"WARNING: {warning}")
    if result.changed:
        io.out(result.diff(name).rstrip("\n"))
        io.out(f"{len(result.additions)} addition(s):")
        for addition in result.additions:
            io.out(f"  + {addition}")


# ---------------------------------------------------------------- errors → lines


def find_line(text: str, token: str) -> int | None:
    """The first line where a string equal to ``token`` (or ``token:…``) appears."""
    from json5.model import String, walk

    root = parse_model(text, "policy")
    lines = [
        node.lineno
        for node in walk(root)
        if isinstance(node, String)
        and node.lineno
        and (node.characters == token or node.characters.startswith(token + ":"))
    ]
    return min(lines) if lines else None


def test_lines(
    text: str, index: int | None = None, src: str | None = None, section: str = "tests"
) -> list[tuple[int, dict[str, int]]]:
    """(line of the test, {address: line}) for tests[index] or every test with this src."""
    from json5.model import JSONArray, JSONObject, String

    from .hujson import key_name

    root = parse_model(text, "policy")
    out: list[tuple[int, dict[str, int]]] = []
    if not isinstance(root.value, JSONObject):
        return out
    for key, value in root.value.key_value_pairs:
        if key_name(key) != section or not isinstance(value, JSONArray):
            continue
        for i, test in enumerate(value.values):
            if not isinstance(test, JSONObject) or (index is not None and i != index):
                continue
            entry = plain(test)
            if src is not None and entry.get("src") != src:
                continue
            addresses: dict[str, int] = {}
            for k, v in test.key_value_pairs:
                if key_name(k) in ("accept", "deny") and isinstance(v, JSONArray):
                    for item in v.values:
                        if isinstance(item, String) and item.lineno:
                            addresses.setdefault(item.characters, item.lineno)
            out.append((test.lineno or 0, addresses))
    return out


def explain_validation(text: str, validation: Validation) -> list[str]:
    """The control plane's verdict as lines, each mapped to a line of ``text`` where possible."""
    lines = [f"validation failed: {validation.message or 'tests failed'}"]
    for token in re.findall(r'"([^"\s]+)"', validation.message):
        line = find_line(text, token)
        if line:
            lines.append(f"  line {line}: {token}")
    for user, errors in validation.details:
        candidates = test_lines(text, src=user) if user else []
        for error in errors:
            where = ""
            for _test_line, addresses in candidates:
                hit = next((ln for a, ln in addresses.items() if f'"{a}"' in error), None)
                if hit:
                    where = f"line {hit}: "
                    break
            if not where and candidates:
                where = f"line {candidates[0][0]}: "
            lines.append(f"  {where}test from {user}: {error}" if user else f"  {where}{error}")
    return lines


def explain_report(text: str, report: Report) -> list[str]:
    """A local evaluation (``evaluate.validate``) as lines mapped to ``text``."""
    lines = []
    for problem in report.problems:
        line = find_line(text, problem.token) if problem.token else None
        lines.append(f"  {'line ' + str(line) + ': ' if line else ''}{problem}")
    for failure in report.failures:
        located = test_lines(text, index=failure.index, section=failure.section)
        addresses = located[0][1] if located else {}
        for n, error in enumerate(failure.errors):
            address = failure.addresses[n] if n < len(failure.addresses) else ""
            line = addresses.get(address) or (located[0][0] if located else None)
            lines.append(
                f"  {'line ' + str(line) + ': ' if line else ''}{failure.section}[{failure.index}] "
                f"from {failure.src}: {error}"
            )
    return lines


def locate_headscale_error(text: str, line: str) -> str:
    """A headscale test failure (``SRC -> DST:PORT: expected …``) prefixed with its line."""
    match = re.match(r"(\S+) -> (\S+?)(?: \([a-z]+\))?: ", line)
    if not match:
        return line
    for _, addresses in test_lines(text, src=match.group(1)):
        if match.group(2) in addresses:
            return f"line {addresses[match.group(2)]}: {line}"
    return line


# ---------------------------------------------------------------- --file


def apply_file(
    path: Path,
    snippet: str,
    *,
    check: bool = False,
    dry_run: bool = False,
    io: Output | None = None,
) -> bool:
    """Merge into a policy file (GitOps); True when the file changed (or would change)."""
    io = io or Output()
    try:
        before = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise PolicyInputError(f"{path}: no such policy file") from None
    except UnicodeDecodeError:
        raise PolicyInputError(f"{path}: not UTF-8 text") from None
    except OSError as exc:  # a directory, no permission, a symlink loop
        raise PolicyInputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    result = merge(before, snippet, str(path))
    report_merge(result, path.name, io)
    if not result.changed:
        io.out(f"{path}: already holds the snippet; nothing to change")
        return False
    report = validate(parse(result.after, str(path)).value)
    if not report.ok:
        io.warn(f"{path}: the merged policy does not pass its own checks:")
        for line in explain_report(result.after, report):
            io.warn(line)
    if check:
        raise PolicyOperationError(
            f"{path}: the merge would change the file (inv acl --file {path} applies it)"
        )
    if dry_run:
        io.out(f"dry run: {path} not written")
        return True
    if not report.ok:
        raise PolicyOperationError(f"{path}: not written: the merged policy fails its checks")
    write_atomic(path, result.after.encode("utf-8"))  # a symlink is written through
    target = write_target(path)
    io.out(f"{path}: written" + (f" (through the symlink, to {target})" if target != path else ""))
    return True


# ---------------------------------------------------------------- --tailscale


def backup(root: Path, name: str, text: str, tag: str) -> Path:
    """Save a fetched policy under ``.tailwart/acl-backups`` (mode 0600); its path."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "tailnet"
    tag = re.sub(r"[^A-Za-z0-9]+", "", tag)[:12]
    directory = root / BACKUP_DIR
    path = directory / f"{safe}-{stamp}-{tag}.hujson"
    n = 1
    while path.exists():
        n += 1
        path = directory / f"{safe}-{stamp}-{tag}-{n}.hujson"
    write_atomic(path, text.encode("utf-8"), mode=0o600)
    return path


def _settled(
    result: MergeResult, name: str, where: str, attempt: int, dry_run: bool, io: Output
) -> bool | None:
    """Report a merge (on the first attempt, or when a re-merge changed it); the task's
    answer when nothing is to be written (already held: False, dry run: True), or None
    when the merged policy goes on to be checked and written."""
    if attempt == 0 or result.changed:
        report_merge(result, name, io)
    if not result.changed:
        io.out(f"{where}: the policy already holds the snippet; nothing to send")
        return False
    if dry_run:
        io.out(f"dry run: nothing sent to {where}")
        return True
    return None


def apply_tailscale(
    api: TailscaleAPI, snippet: str, root: Path, *, dry_run: bool = False, io: Output | None = None
) -> bool:
    """GET + merge → (dry run stops) → validate → backup → POST If-Match; retry on 412."""
    io = io or Output()
    where = f"tailnet {api.tailnet!r} at {api.base_url}"
    for attempt in range(CONFLICT_RETRIES + 1):
        fetched = api.get_policy()
        result = merge(fetched.text, snippet, "tailnet policy")
        settled = _settled(result, "tailnet-policy.hujson", where, attempt, dry_run, io)
        if settled is not None:
            return settled
        validation = api.validate(result.after)
        if not validation.ok:
            for line in explain_validation(result.after, validation):
                io.warn(line)
            raise PolicyOperationError(
                f"{where}: the merged policy was rejected by /acl/validate; nothing was written"
            )
        saved = backup(root, f"tailscale-{api.tailnet}", fetched.text, fetched.etag)
        io.out(f"backup of the fetched policy: {saved}")
        try:
            api.post(result.after, fetched.etag)
        except PreconditionFailed:
            if attempt == CONFLICT_RETRIES:
                break
            io.warn(
                f"{where}: the policy changed since it was fetched (412); fetching it "
                "again and re-merging"
            )
            continue
        io.out(f"{where}: policy updated")
        return True
    raise PolicyOperationError(
        f"{where}: the policy kept changing under us (412 {CONFLICT_RETRIES + 1} times); "
        "gave up, nothing was written. Run inv acl --tailscale again."
    )


# ---------------------------------------------------------------- --headscale


def apply_headscale(
    api: HeadscaleAPI, snippet: str, root: Path, *, dry_run: bool = False, io: Output | None = None
) -> bool:
    """GET + merge → (dry run stops) → /policy/check → re-read updatedAt → backup → PUT."""
    io = io or Output()
    where = f"headscale at {api.base_url}"
    adapted, notes = adapt_snippet(parse(snippet, "acl-snippet.hujson").value)
    for note in notes:
        io.warn(f"note: {note}")
    snippet = render(adapted, Style(), "") + "\n"
    for attempt in range(CONFLICT_RETRIES + 1):
        stored = api.get_policy()
        result = merge(stored.text, snippet, "headscale policy")
        settled = _settled(result, "headscale-policy.hujson", where, attempt, dry_run, io)
        if settled is not None:
            return settled
        verdict = api.check(result.after)
        if verdict is None:
            io.warn(f"{where}: no /api/v1/policy/check on this server; headscale checks on write")
        elif verdict:
            first, *rest = verdict.splitlines() or [verdict]
            io.warn(f"headscale policy check failed: {first}")
            for line in rest:
                io.warn("  " + locate_headscale_error(result.after, line))
            raise PolicyOperationError(
                f"{where}: the merged policy fails headscale's policy check; nothing was written"
            )
        else:
            io.out(f"{where}: policy check passed (including its tests)")
        current = api.get_policy()
        if (current.updated_at, current.text) != (stored.updated_at, stored.text):
            if attempt == CONFLICT_RETRIES:
                break
            io.warn(f"{where}: the policy changed since it was fetched; re-merging")
            continue
        digest = hashlib.sha256(stored.text.encode()).hexdigest()
        saved = backup(root, "headscale", stored.text, digest)
        io.out(f"backup of the fetched policy: {saved}")
        written = api.put(result.after)
        io.out(f"{where}: policy updated ({written.updated_at or 'no timestamp'})")
        return True
    raise PolicyOperationError(
        f"{where}: the policy kept changing under us; gave up, nothing was written"
    )


# ---------------------------------------------------------------- the task


def run_acl(
    root: Path,
    *,
    file: str = "",
    check: bool = False,
    tailscale: bool = False,
    headscale: str | bool = "",
    dry_run: bool = False,
    snippet: str = "acl-snippet.hujson",
    env_file: str = ".env",
    strict: bool = False,
    io: Output | None = None,
) -> bool:
    """Validate the flags (all problems at once, exit 2), then run the chosen target."""
    problems = []
    targets = [
        name
        for name, on in (("--file", file), ("--tailscale", tailscale), ("--headscale", headscale))
        if on
    ]
    if len(targets) != 1:
        problems.append(
            "choose exactly one target: --file PATH, --tailscale or --headscale [URL]"
            + (f" (got {' and '.join(targets)})" if targets else "")
        )
    if check and not file:
        problems.append("--check goes with --file (exit 1 when the merge would change the file)")
    if isinstance(headscale, str) and headscale and url_problem(headscale):
        problems.append(f"--headscale: {hide_credentials(url_problem(headscale) or '')}")
    snippet_path = root / snippet
    if not snippet_path.is_file():
        problems.append(f"{snippet_path}: snippet not found (see --snippet)")
    if problems:
        raise PolicyInputError(
            "inv acl: nothing was changed:\n" + "\n".join(f"  {p}" for p in problems)
        )
    snippet_text = read_snippet(snippet_path)
    parse(snippet_text, snippet)  # a broken snippet is reported before any network call
    if file:
        path = Path(file)
        return apply_file(
            path if path.is_absolute() else root / path,
            snippet_text,
            check=check,
            dry_run=dry_run,
            io=io,
        )

    from ..env_file import load_settings

    settings = load_settings(
        str(root / env_file) if not Path(env_file).is_absolute() else env_file, strict
    )
    if tailscale:
        return apply_tailscale(
            TailscaleAPI.from_settings(settings), snippet_text, root, dry_run=dry_run, io=io
        )
    url = headscale if isinstance(headscale, str) and headscale else settings["HEADSCALE_URL"]
    if not url:
        raise PolicyInputError("inv acl --headscale: give the URL or set HEADSCALE_URL in .env")
    if not settings["HEADSCALE_API_KEY"]:
        raise PolicyInputError(
            "inv acl --headscale: HEADSCALE_API_KEY is not set in .env; "
            "create one with `headscale apikeys create`"
        )
    flag = "--headscale" if isinstance(headscale, str) and headscale else "HEADSCALE_URL"
    check_request_inputs(settings, ("HEADSCALE_API_KEY",), (flag, url))
    return apply_headscale(
        HeadscaleAPI(url, settings["HEADSCALE_API_KEY"]), snippet_text, root, dry_run=dry_run, io=io
    )
