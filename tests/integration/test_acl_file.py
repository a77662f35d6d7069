"""``inv acl --file PATH`` (a GitOps repo's policy.hujson), run as the operator runs it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tailwart.policy.hujson import comment_tokens
from testkit import inv as run_inv

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


def test_duplicate_key_is_exit_2_naming_the_line(repo: Path) -> None:
    policy = repo / "policy.hujson"
    policy.write_text('{\n  "groups": {},\n  "tagOwners": {},\n  "groups": {}\n}\n')
    done = inv(repo, "--file", "policy.hujson")
    assert done.returncode == 2
    assert 'line 4: duplicate key "groups" in the top-level object (first on line 2)' in done.stderr
    assert policy.read_text().count('"groups"') == 2


def test_policy_failing_its_tests_is_not_written(repo: Path) -> None:
    policy = repo / "policy.hujson"
    allow_all = (CORPUS / "01-tailscale-default.hujson").read_text()
    policy.write_text(allow_all)
    done = inv(repo, "--file", "policy.hujson")
    assert done.returncode == 1
    assert (
        'line 84: tests[0] from tag:reverse-proxy: address "tag:stalwart:22": want: Drop, '
        "got: Accept (acls[0])" in done.stderr
    )
    assert "not written: the merged policy fails its checks" in done.stderr
    assert policy.read_text() == allow_all


def test_bad_flags_are_all_reported_with_exit_2(repo: Path) -> None:
    done = inv(repo, "--check", "--snippet", "nope.hujson")
    assert done.returncode == 2
    assert "choose exactly one target" in done.stderr
    assert "--check goes with --file" in done.stderr
    assert "nope.hujson: snippet not found" in done.stderr

    missing = inv(repo, "--file", "absent.hujson")
    assert missing.returncode == 2
    assert "absent.hujson: no such policy file" in missing.stderr
