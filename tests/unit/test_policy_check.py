"""``inv check``'s policy findings: the snippet against compose, listeners, caddy.json, .env."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tailwart.checks import CheckContext
from tailwart.checks import policy as policy_check
from tailwart.findings import Finding, Status
from tailwart.settings import from_mapping

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for rel in ("acl-snippet.hujson", "compose/docker-compose.yml"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    return tmp_path


def findings(root: Path, values: dict[str, str], **overrides: str) -> dict[str, Finding]:
    settings = from_mapping({**values, **overrides})
    return {f.id: f for f in policy_check.run(CheckContext(settings, root))}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_the_committed_snippet_matches_the_deployment(
    tree: Path, example_values: dict[str, str]
) -> None:
    found = findings(tree, example_values)
    assert {k: f.status for k, f in found.items()} == {
        "policy.snippet": Status.OK,
        "policy.tags": Status.OK,
        "policy.ports": Status.OK,
        "policy.members": Status.OK,
    }
    assert "its 2 test(s) pass" in found["policy.snippet"].message


def test_a_mail_port_missing_from_the_snippet(tree: Path, example_values: dict[str, str]) -> None:
    edit(tree / "acl-snippet.hujson", "25,465,587,143,993,8080", "25,465,587,143,8080")
    found = findings(tree, example_values)
    assert found["policy.ports"].status is Status.ERROR
    assert "993 (caddy.json imaps)" in found["policy.ports"].message
    # the snippet's own test for :993 fails too
    assert found["policy.snippet"].status is Status.ERROR
    assert 'address "tag:stalwart:993": want: Accept, got: Drop' in found["policy.snippet"].message


def test_backend_port_from_env_must_be_allowed(tree: Path, example_values: dict[str, str]) -> None:
    found = findings(tree, example_values, STALWART_DB_PORT="6432")
    assert found["policy.ports"].status is Status.ERROR
    assert "6432 (STALWART_DB_PORT, from tag:stalwart)" in found["policy.ports"].message


def test_sentinel_ports_must_be_allowed(tree: Path, example_values: dict[str, str]) -> None:
    values = {k: v for k, v in example_values.items() if k != "STALWART_REDIS_HOST"}
    values["STALWART_REDIS_SENTINELS"] = "redis1.tail1234.ts.net:26379,redis2.tail1234.ts.net:26379"
    values["STALWART_REDIS_MASTER"] = "mymaster"
    found = findings(tree, values)
    assert found["policy.ports"].status is Status.ERROR
    message = found["policy.ports"].message
    assert message.count("26379 (STALWART_REDIS_SENTINELS, from tag:stalwart)") == 1
    edit(tree / "acl-snippet.hujson", '"tag:redis:6379"', '"tag:redis:6379,26379"')
    assert findings(tree, values)["policy.ports"].status is Status.OK


def test_advertised_tag_must_match(tree: Path, example_values: dict[str, str]) -> None:
    edit(
        tree / "compose/docker-compose.yml",
        "--advertise-tags=tag:stalwart",
        "--advertise-tags=tag:mail",
    )
    found = findings(tree, example_values)
    assert found["policy.tags"].status is Status.ERROR
    assert "ts-stalwart advertises tag:mail, not in tagOwners" in found["policy.tags"].message


def test_env_tags_must_be_declared(tree: Path, example_values: dict[str, str]) -> None:
    found = findings(tree, example_values, EDGE_TAG="tag:edge")
    assert found["policy.tags"].status is Status.ERROR
    assert "EDGE_TAG=tag:edge is not declared" in found["policy.tags"].message
    assert found["policy.ports"].status is Status.ERROR  # tag:edge reaches nothing


def test_duplicate_key_in_the_snippet(tree: Path, example_values: dict[str, str]) -> None:
    edit(
        tree / "acl-snippet.hujson",
        '"tag:redis": ["autogroup:admin"],',
        '"tag:redis": ["autogroup:admin"],\n\t\t"tag:redis": [],',
    )
    found = findings(tree, example_values)
    assert list(found) == ["policy.snippet"]
    assert found["policy.snippet"].status is Status.ERROR
    assert 'line 17: duplicate key "tag:redis" in tagOwners (first on line 16)' in (
        found["policy.snippet"].message
    )


def test_port_opened_without_a_listener_is_a_warning(
    tree: Path, example_values: dict[str, str]
) -> None:
    edit(tree / "acl-snippet.hujson", "25,465,587,143,993,8080", "25,110,465,587,143,993,8080")
    found = findings(tree, example_values)
    assert found["policy.ports"].status is Status.OK
    assert found["policy.ports-unused"].status is Status.WARNING
    assert (
        "on 110, where Stalwart has no provisioned listener" in found["policy.ports-unused"].message
    )


def test_missing_snippet(tree: Path, example_values: dict[str, str]) -> None:
    (tree / "acl-snippet.hujson").unlink()
    found = findings(tree, example_values)
    assert found["policy.snippet"].status is Status.ERROR
