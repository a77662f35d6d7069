"""``inv acl --file PATH`` (a GitOps repo's policy.hujson), run as the operator runs it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tailwart.policy.hujson import comment_tokens, parse
from tests.support.doc_samples import check_sample
from tests.support.testkit import inv as run_inv

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "policy_corpus"


def inv(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_inv("acl", *args, cwd=cwd, timeout=120)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A GitOps checkout holding policy.hujson, with tailwart's snippet beside it."""
    (tmp_path / "acl-snippet.hujson").write_text((ROOT / "acl-snippet.hujson").read_text())
    policy = tmp_path / "policy.hujson"
    policy.write_bytes((CORPUS / "04-windows-crlf.hujson").read_bytes())
    policy.chmod(0o640)
    return tmp_path


def test_file_is_merged_with_a_diff_and_stays_crlf(repo: Path) -> None:
    policy = repo / "policy.hujson"
    before = policy.read_bytes()
    done = inv(repo, "--file", "policy.hujson")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("--- a/policy.hujson\n+++ b/policy.hujson\n@@ ")
    assert '+\t\t"tag:reverse-proxy": ["autogroup:admin"],\n' in done.stdout
    assert "policy.hujson: written" in done.stdout
    after = policy.read_bytes()
    assert after != before
    assert after.count(b"\n") == after.count(b"\r\n")
    kept = [c for c in comment_tokens(after.decode()) if "tailwart" not in c]
    assert kept == comment_tokens(before.decode())
    assert policy.stat().st_mode & 0o777 == 0o640  # the file's mode is kept
    assert [p.name for p in repo.iterdir() if p.name.startswith(".policy")] == []

    again = inv(repo, "--file", "policy.hujson")
    assert again.returncode == 0
    assert "already holds the snippet; nothing to change" in again.stdout
    assert policy.read_bytes() == after


def test_check_exits_1_when_the_merge_would_change_the_file(repo: Path) -> None:
    policy = repo / "policy.hujson"
    before = policy.read_bytes()
    done = inv(repo, "--file", str(policy), "--check")
    assert done.returncode == 1
    assert "+++ b/policy.hujson" in done.stdout
    assert "the merge would change the file" in done.stderr
    assert policy.read_bytes() == before

    assert inv(repo, "--file", str(policy)).returncode == 0
    clean = inv(repo, "--file", str(policy), "--check")
    assert clean.returncode == 0, clean.stderr


def test_dry_run_writes_nothing(repo: Path) -> None:
    policy = repo / "policy.hujson"
    before = policy.read_bytes()
    done = inv(repo, "--file", "policy.hujson", "--dry-run")
    assert done.returncode == 0
    assert "+++ b/policy.hujson" in done.stdout
    assert "dry run: policy.hujson not written" in done.stdout.replace(str(repo) + "/", "")
    assert policy.read_bytes() == before


def test_the_homelab_diff_the_policy_guide_shows(repo: Path) -> None:
    """docs/guides/policy.md's before/after: a dry run of acl-file on corpus 02."""
    policy = repo / "policy.hujson"
    policy.write_bytes((CORPUS / "02-homelab-two-spaces.hujson").read_bytes())
    done = run_inv("acl-file", "--file", "policy.hujson", "--dry-run", cwd=repo, timeout=120)
    assert done.returncode == 0, done.stderr
    check_sample("acl-diff", done.stdout)


def test_duplicate_key_is_exit_2_naming_the_line(repo: Path) -> None:
    policy = repo / "policy.hujson"
    policy.write_text('{\n  "groups": {},\n  "tagOwners": {},\n  "groups": {}\n}\n')
    done = inv(repo, "--file", "policy.hujson")
    assert done.returncode == 2
    assert 'line 4: duplicate key "groups" in the top-level object (first on line 2)' in done.stderr
    assert policy.read_text().count('"groups"') == 2


#: a policy asserting that the edge never reaches the mailbox's HTTP: the snippet grants it
EDGE_NEVER_ON_8080 = """{
\t"tagOwners": {"tag:reverse-proxy": ["autogroup:admin"], "tag:stalwart": ["autogroup:admin"]},
\t"acls": [{"action": "accept", "src": ["autogroup:member"], "dst": ["tag:stalwart:993"]}],
\t"tests": [
\t\t// the edge must never reach the mailbox's HTTP port
\t\t{"src": "tag:reverse-proxy", "deny": ["tag:stalwart:8080"]},
\t],
}
"""


def test_policy_failing_its_tests_is_not_written(repo: Path) -> None:
    policy = repo / "policy.hujson"
    policy.write_text(EDGE_NEVER_ON_8080)
    done = inv(repo, "--file", "policy.hujson")
    assert done.returncode == 1
    assert (
        'line 6: tests[0] from tag:reverse-proxy: address "tag:stalwart:8080": want: Drop, '
        "got: Accept (acls[1])" in done.stderr
    )
    assert "not written: the merged policy fails its checks" in done.stderr
    assert policy.read_text() == EDGE_NEVER_ON_8080


def test_allow_all_default_is_merged_with_a_loud_warning(repo: Path) -> None:
    """Tailscale's default policy: the grants go in, the deny tests it defeats do not."""
    policy = repo / "policy.hujson"
    policy.write_bytes((CORPUS / "01-tailscale-default.hujson").read_bytes())
    done = inv(repo, "--file", "policy.hujson")
    assert done.returncode == 0, done.stderr
    assert "policy.hujson: written" in done.stdout
    rule = '(line 18: {"action": "accept", "src": ["*"], "dst": ["*:*"]})'
    assert (
        f"WARNING: acls[0] {rule} lets every device in the tailnet reach tag:stalwart on 25, "
        "465, 587, 143, 993, 8080 (Stalwart's HTTP: JMAP and the /admin and /api management)"
    ) in done.stderr
    assert (
        "WARNING: left out the snippet's deny test(s) tag:reverse-proxy -> tag:stalwart:22, "
        "tag:reverse-proxy -> tag:stalwart:9002, tag:reverse-proxy -> tag:postgres:5432, "
        f"tag:stalwart -> tag:garage:3903, tag:stalwart -> tag:reverse-proxy:22: acls[0] {rule} "
        "already allows them"
    ) in done.stderr
    merged = parse(policy.read_text(), "merged").value
    assert [t.get("deny") for t in merged["tests"]] == [None, None]
    assert {
        "action": "accept",
        "src": ["tag:reverse-proxy"],
        "dst": ["tag:stalwart:25,465,587,143,993,8080"],
    } in merged["acls"]

    again = inv(repo, "--file", "policy.hujson")
    assert again.returncode == 0
    assert "already holds the snippet; nothing to change" in again.stdout
    assert "WARNING: acls[0]" in again.stderr  # said again on every run, until narrowed
    check_sample("acl-broad-warning", done.stderr)  # docs/guides/policy.md


def test_broad_rules_keep_the_deny_tests_that_hold(repo: Path) -> None:
    policy = repo / "policy.hujson"
    policy.write_bytes((CORPUS / "17-broad-rules.hujson").read_bytes())
    done = inv(repo, "--file", "policy.hujson")
    assert done.returncode == 0, done.stderr
    assert (
        'WARNING: acls[0] (line 15: {"action": "accept", "src": ["autogroup:member"], "dst": '
        '["*:*"]}) lets every user\'s device in the tailnet reach tag:stalwart on 25, 465, 587, '
        "143, 993, 8080"
    ) in done.stderr
    assert (
        "WARNING: left out the snippet's deny test(s) tag:reverse-proxy -> tag:stalwart:22, "
        'tag:stalwart -> tag:reverse-proxy:22: acls[1] (line 17: {"action": "accept", "src": '
        '["autogroup:tagged"], "dst": ["*:22"]}) already allows them'
    ) in done.stderr
    merged = parse(policy.read_text(), "merged").value
    assert [t.get("deny") for t in merged["tests"][-2:]] == [
        ["tag:stalwart:9002", "tag:postgres:5432"],
        ["tag:garage:3903"],
    ]


def test_bad_flags_are_all_reported_with_exit_2(repo: Path) -> None:
    done = inv(repo, "--check", "--snippet", "nope.hujson")
    assert done.returncode == 2
    assert "choose exactly one target" in done.stderr
    assert "--check goes with --file" in done.stderr
    assert "nope.hujson: snippet not found" in done.stderr

    missing = inv(repo, "--file", "absent.hujson")
    assert missing.returncode == 2
    assert "absent.hujson: no such policy file" in missing.stderr
