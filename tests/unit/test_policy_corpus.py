"""The merge engine over a corpus of realistic hand-written policies (tests/policy_corpus/).

For every file and the committed acl-snippet.hujson: every comment survives in
order, the result parses, the old text is untouched around the insertions, the
layout follows the file, the snippet's rules are in, and a second merge changes
nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tailwart.policy.evaluate import validate
from tailwart.policy.hujson import comment_tokens, parse
from tailwart.policy.merge import INLINE_MARK, LINE_MARK, is_insertion_of, merge

ROOT = Path(__file__).resolve().parents[2]
CORPUS = sorted((ROOT / "tests" / "policy_corpus").glob("*.hujson"))
SNIPPET = (ROOT / "acl-snippet.hujson").read_text()

#: corpus files whose merged policy must FAIL its own tests (allow-all rules defeat the
#: snippet's deny tests: the tool must say so instead of applying it)
FAILS_ITS_TESTS = {"01-tailscale-default.hujson"}


def read(path: Path) -> str:
    return path.read_bytes().decode()


def test_corpus_is_big_and_varied() -> None:
    texts = {p.name: read(p) for p in CORPUS}
    assert len(texts) >= 12
    joined = "".join(texts.values())
    for feature in (
        '"groups"',
        '"hosts"',
        '"grants"',
        '"ssh"',
        '"postures"',
        '"tests"',
        '"sshTests"',
        '"autoApprovers"',
        '"nodeAttrs"',
        '"ipsets"',
        "/*",
        "//",
    ):
        assert feature in joined, feature
    assert any("\r\n" in t for t in texts.values()), "a CRLF file"
    assert any("\n\t" in t for t in texts.values()), "a tab-indented file"
    assert any('\n  "' in t for t in texts.values()), "a space-indented file"


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
    # nothing outside the inserted text changed
    assert is_insertion_of(before, after)
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
    for test in snippet["tests"]:
        assert test in merged["tests"]
    report = validate(merged)
    assert report.problems == []
    if path.name in FAILS_ITS_TESTS:
        assert report.failures, "the allow-all rule must make the snippet's deny tests fail"
    else:
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
