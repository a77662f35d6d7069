"""Our HuJSON reader never accepts what headscale's (Go hujson + json v2) rejects (issue 14, #11).

Oracle: the real headscale v0.29.2 binary, ``headscale policy check
--bypass-grpc-and-access-database-directly`` on a throwaway sqlite database: no
server, about 0.1 s per document. Each document is judged by headscale and by
tailwart's parser; tailwart may be stricter, never looser. The regressions from
the audit (BOM, NBSP, U+2028/2029, VT, FF, "ACLs" duplicates, 1,000 levels) go
through ``inv acl --file`` as the operator runs it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tailwart.errors import UsageError
from tailwart.policy.headscale_api import adapt_snippet
from tailwart.policy.hujson import Style, parse, render
from tailwart.policy.merge import merge
from tests.integration.test_acl_headscale import BEFORE, BINARY, VERSION, free_port, write_config
from tests.support.testkit import inv, need

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RULE = '{"action": "accept", "src": ["*"], "dst": ["*:*"]}'

#: name → (document, headscale accepts it: recorded from v0.29.2 and re-checked live below)
DOCUMENTS = {
    "plain": (f'{{"acls": [{RULE}]}}', True),
    "tab-and-crlf": (f'{{\t"acls": [{RULE}],\r\n}}', True),
    "byte-order-mark": (f'\ufeff{{"acls": [{RULE}]}}', False),
    "nbsp-between-tokens": (f'{{\u00a0"acls": [{RULE}]}}', False),
    "line-separator": (f'{{\u2028"acls": [{RULE}]}}', False),
    "paragraph-separator": (f'{{"acls":\u2029[{RULE}]}}', False),
    "vertical-tab": (f'{{\x0b"acls": [{RULE}]}}', False),
    "form-feed": (f'{{"acls": [{RULE}]\x0c}}', False),
    "next-line": (f'{{\x85"acls": [{RULE}]}}', False),
    "zero-width-space": (f'{{\u200b"acls": [{RULE}]}}', False),
    "upper-case-section": (f'{{"ACLs": [{RULE}]}}', True),
    "same-section-twice": (f'{{"acls": [], "ACLs": [{RULE}]}}', False),
    "nbsp-inside-a-string": ('{"groups": {"group:a\u00a0b": []}}', True),
    "nbsp-in-a-comment": (f'{{// a\u00a0b\n"acls": [{RULE}]}}', True),
    "thousand-levels": ('{"groups": {"group:a": ' + "[" * 1000 + "]" * 1000 + "}}", False),
}
#: where tailwart is deliberately stricter than headscale (a comment JSON5 would end early)
#: and a raw U+2028 inside a string (json-five, JSON5, reads it as a line break there)
STRICTER = {
    "u2028-in-a-comment": ('{// x\u2028 "acls": 1\n"acls": []}', True),
    "u2028-inside-a-string": ('{"groups": {"group:\u2028": []}}', True),
}


def headscale_check(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    need(BINARY.is_file(), f"headscale {VERSION} is not built (scripts/setup/40-policy.sh)")
    config = tmp_path / "config.yaml"
    if not config.exists():
        write_config(tmp_path, free_port())
    doc = tmp_path / "doc.hujson"
    doc.write_text(text, encoding="utf-8")
    return subprocess.run(
        [
            str(BINARY),
            "-c",
            str(config),
            "--force",
            "policy",
            "check",
            "--bypass-grpc-and-access-database-directly",
            "-f",
            str(doc),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )


def ours_accepts(text: str) -> bool:
    try:
        parse(text, "doc")
    except UsageError:
        return False
    return True


@pytest.mark.parametrize("name", [*DOCUMENTS, *STRICTER])
def test_never_looser_than_headscale(tmp_path: Path, name: str) -> None:
    text, recorded = {**DOCUMENTS, **STRICTER}[name]
    live = headscale_check(tmp_path, text)
    assert (live.returncode == 0) == recorded, live.stdout + live.stderr
    if name in STRICTER:
        assert not ours_accepts(text)
    else:
        assert ours_accepts(text) == recorded


def test_merge_into_upper_case_sections_adds_no_duplicate_headscale_refuses(
    tmp_path: Path,
) -> None:
    before = BEFORE.replace('"acls"', '"ACLs"').replace('"tagOwners"', '"TagOwners"')
    assert headscale_check(tmp_path, before).returncode == 0
    adapted, _ = adapt_snippet(parse((ROOT / "acl-snippet.hujson").read_text(), "s").value)
    adapted.pop("tests")  # they need live nodes; test_acl_headscale runs them on a server
    snippet = render(adapted, Style(), "") + "\n"
    merged = merge(before, snippet).after
    keys = [k.lower() for k in parse(merged, "merged").value]
    assert len(keys) == len(set(keys)), keys
    live = headscale_check(tmp_path, merged)
    assert live.returncode == 0, live.stdout + live.stderr


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("byte-order-mark", "byte order mark"),
        ("nbsp-between-tokens", "U+00A0"),
        ("line-separator", "U+2028"),
        ("vertical-tab", "U+000B"),
        ("form-feed", "U+000C"),
        ("same-section-twice", "case-insensitively"),
        ("thousand-levels", "nested deeper than"),
    ],
)
def test_inv_acl_file_refuses_what_headscale_refuses(tmp_path: Path, name: str, says: str) -> None:
    (tmp_path / "acl-snippet.hujson").write_text((ROOT / "acl-snippet.hujson").read_text())
    policy = tmp_path / "policy.hujson"
    policy.write_text(DOCUMENTS[name][0], encoding="utf-8")
    before = policy.read_bytes()
    done = inv("acl", "--file", "policy.hujson", cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert says in done.stderr and "policy.hujson" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert policy.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acl-snippet.hujson", "policy.hujson"]
