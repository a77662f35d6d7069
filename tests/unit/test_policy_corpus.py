"""The merge engine over a corpus of realistic hand-written policies (tests/policy_corpus/).

For every file and the committed acl-snippet.hujson: every comment survives in
order, the result parses, the old text is untouched around the insertions, the
layout follows the file, the snippet's rules are in, and a second merge changes
nothing.

"Untouched around the insertions" is judged here, not by the engine: difflib's
opcodes of the merged text against the original must be insertions only, and
every insertion must sit at an entry boundary of the original (between two
entries of an array or object, or after its last one), found by the small
tokenizer below: never inside a string, a comment, a number or a key/value pair.
"""

from __future__ import annotations

import difflib
import itertools
import re
from pathlib import Path

import pytest

from tailwart.policy.evaluate import validate
from tailwart.policy.hujson import comment_tokens, parse
from tailwart.policy.merge import INLINE_MARK, LINE_MARK, is_insertion_of, merge

ROOT = Path(__file__).resolve().parents[2]
CORPUS = sorted((ROOT / "tests" / "policy_corpus").glob("*.hujson"))
SNIPPET = (ROOT / "acl-snippet.hujson").read_text()

#: corpus files with rules broader than the snippet's: the deny tests those rules defeat
#: are left out (by source → address), and the merge warns about the rule
BROAD = {
    "01-tailscale-default.hujson": 5,
    "16-allow-all-json.hujson": 5,
    "17-broad-rules.hujson": 2,
}


def read(path: Path) -> str:
    return path.read_bytes().decode()


_TOKEN = re.compile(
    r"""(?P<skip>[ \t\r\n]+|//[^\n]*|/\*.*?\*/)"""
    r"""|(?P<string>"(?:[^"\\]|\\.)*")"""
    r"""|(?P<punct>[][{}:,])"""
    r"""|(?P<literal>[^][{}:,"\s/]+)""",
    re.S,
)


def tokens(text: str) -> list[tuple[int, int, str, str]]:
    """(start, end, kind, text) of every HuJSON token; whitespace and comments as "skip"."""
    out, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        assert match, f"cannot tokenize at {pos}: {text[pos : pos + 20]!r}"
        kind = match.lastgroup or ""
        out.append((match.start(), match.end(), kind, match.group()))
        pos = match.end()
    return out


def entry_boundaries(text: str) -> set[int]:
    """Offsets between two tokens, after a ``[``, ``{``, ``,`` or a value and before a
    ``]``, ``}``, ``,`` or an entry's start: where a whole entry can go. Never inside a
    string, a comment, a number or a key/value pair, never outside the top-level value."""
    toks = tokens(text)
    significant = [t for t in toks if t[2] != "skip"]
    out = set()
    for n, (prev, nxt) in enumerate(itertools.pairwise(significant)):
        if ":" in (prev[3], nxt[3]):
            continue  # between a key and its value
        if prev[3] not in "[{," and nxt[3] not in "]},":
            continue  # between a value and what is not a separator
        following = significant[n + 2] if n + 2 < len(significant) else None
        if following is not None and following[3] == ":" and prev[3] not in "{,":
            continue  # before a key that follows no separator
        gap = [t for t in toks if prev[1] <= t[0] and t[1] <= nxt[0]]  # whitespace, comments
        out.add(prev[1])
        for start, end, _, piece in gap:
            out.add(end)
            if not piece.startswith(("//", "/*")):  # inside whitespace, not inside a comment
                out.update(range(start, end))
    return out


def only_insertions(before: str, after: str) -> list[str]:
    """difflib's opcodes of ``after`` against ``before`` other than insertions, as text."""
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    return [
        f"{op} of {before[i1:i2]!r} at line {before.count(chr(10), 0, i1) + 1}"
        for op, i1, i2, _, _ in matcher.get_opcodes()
        if op not in ("equal", "insert")
    ]


def insertions_at_entry_boundaries(before: str, after: str) -> list[str]:
    """``after`` as ``before`` plus whole entries inserted at entry boundaries: what is not.

    A diff is not unique (an inserted entry ending in ``]}`` may be aligned with the
    original's ``]}``), so this searches for any way to read ``after`` as ``before`` with
    chunks inserted only at entry boundaries of ``before``, each chunk whole tokens of
    ``after`` opening no bracket it does not close. [] when there is one.
    """
    problems = only_insertions(before, after)
    if problems:
        return problems
    boundaries = entry_boundaries(before)
    starts = sorted({start for start, _, _, _ in tokens(after)} | {len(after)})
    depth_after = {}  # token start → bracket depth change of that token
    for start, _, kind, text in tokens(after):
        depth_after[start] = (1 if text in "[{" else -1 if text in "]}" else 0) * (kind == "punct")
    seen: set[tuple[int, int]] = set()
    stack = [(0, 0)]
    best = (0, 0)
    while stack:
        i, j = stack.pop()
        if (i, j) in seen:
            continue
        seen.add((i, j))
        best = max(best, (i, j))
        if i == len(before) and j == len(after):
            return []
        if i in boundaries and j in depth_after:  # a chunk of whole tokens may go here
            depth = 0
            for k in starts[starts.index(j) :]:
                if (
                    k > j
                    and depth == 0
                    and (k == len(after) or i == len(before) or after[k] == before[i])
                ):
                    stack.append((i, k))
                if k == len(after):
                    break
                depth += depth_after[k]
                if depth < 0:
                    break
        if i < len(before) and j < len(after) and before[i] == after[j]:
            stack.append((i + 1, j + 1))
    i, j = best
    line = before.count("\n", 0, i) + 1
    return [
        f"line {line}: {after[j : j + 60]!r} is not a whole entry inserted at an entry boundary"
    ]


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_merge_keeps_every_comment_and_byte(path: Path) -> None:
    before = read(path)
    result = merge(before, SNIPPET, path.name)
    after = result.after

    assert result.changed
    # every comment survives, in order; the only new comments are tailwart's marks
    new_comments = comment_tokens(after)
    assert [c for c in new_comments if c not in (LINE_MARK, INLINE_MARK)] == comment_tokens(before)
    assert LINE_MARK in new_comments or INLINE_MARK in new_comments
    # nothing outside the inserted entries changed
    assert insertions_at_entry_boundaries(before, after) == []
    # the result is HuJSON that parses, with the same line endings
    merged = parse(after, path.name).value
    if "\r\n" in before:
        assert after.count("\n") == after.count("\r\n")
    # a second merge changes nothing
    again = merge(after, SNIPPET, path.name)
    assert not again.changed
    assert again.after == after
    assert again.additions == []

    # the snippet's tags and rules are in the policy now
    snippet = parse(SNIPPET, "snippet").value
    for tag, owners in snippet["tagOwners"].items():
        assert set(owners) <= set(merged["tagOwners"][tag])
    denies = 0
    for test in snippet["tests"]:
        [kept] = [
            t
            for t in merged["tests"]
            if (t["src"], t.get("accept")) == (test["src"], test["accept"])
        ]
        assert set(kept.get("deny", [])) <= set(test["deny"])
        denies += len(test["deny"]) - len(kept.get("deny", []))
    assert denies == BROAD.get(path.name, 0)
    assert bool(result.warnings) == (path.name in BROAD)
    report = validate(merged)
    assert report.problems == []
    assert report.failures == [], report.failures


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_inserted_lines_follow_the_file_indentation(path: Path) -> None:
    before = read(path)
    after = merge(before, SNIPPET, path.name).after
    old_lines = set(before.replace("\r\n", "\n").split("\n"))
    added = [line for line in after.replace("\r\n", "\n").split("\n") if line not in old_lines]
    uses_tabs = "\n\t" in before
    for line in added:
        lead = line[: len(line) - len(line.lstrip(" \t"))]
        if uses_tabs:
            assert " " not in lead, repr(line)
        else:
            assert "\t" not in lead, repr(line)


def test_grants_only_policy_gets_grants() -> None:
    path = ROOT / "tests" / "policy_corpus" / "03-grants-four-spaces.hujson"
    result = merge(read(path), SNIPPET, path.name)
    merged = parse(result.after, "x").value
    assert "acls" not in merged
    assert {
        "src": ["tag:reverse-proxy"],
        "dst": ["tag:stalwart"],
        "ip": ["25", "465", "587", "143", "993", "8080"],
    } in merged["grants"]
    assert any("grants" in note for note in result.notes)


#: tampering a subsequence test lets through: (what is done to the merged 12-gitops text)
TAMPERED = {
    "text inserted inside an existing string": ('"tag:k8s:443,6443"', '"tag:k8s:443,6443,22"'),
    "text inserted inside a comment": ("// mail: owned by", "// mail: (not) owned by"),
    "a value inserted between a key and its value": ('"tests": [', '"tests": [] || ['),
    "half an entry inserted": ('"legacy-vpn": "100.88.0.1",', '"legacy-vpn": "100.88.0.1", "x": ['),
    "a key inserted without its value": ('"hosts": {', '"hosts": {"x": '),
}


@pytest.mark.parametrize("how", TAMPERED)
def test_insertions_off_entry_boundaries_are_caught(how: str) -> None:
    path = ROOT / "tests" / "policy_corpus" / "12-gitops-company.hujson"
    before = read(path)
    after = merge(before, SNIPPET, path.name).after
    assert insertions_at_entry_boundaries(before, after) == []
    old, new = TAMPERED[how]
    assert after.count(old) == 1, old
    tampered = after.replace(old, new)
    assert is_insertion_of(before, tampered), "a subsequence test lets this through"
    assert insertions_at_entry_boundaries(before, tampered) != [], how


def test_changed_or_removed_text_is_caught() -> None:
    before = '{\n\t"groups": {"group:a": ["x@y"]}, // people\n}\n'
    assert only_insertions(before, before.replace("people", "persons")) != []
    assert only_insertions(before, before.replace(" // people", "")) != []
    good = before.replace("}, //", ', "group:b": []}, //')
    assert insertions_at_entry_boundaries(before, good) == []
