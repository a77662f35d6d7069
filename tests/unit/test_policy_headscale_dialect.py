"""The snippet in headscale's dialect: no autogroup:admin owners, no Tailscale-only fields."""

from __future__ import annotations

from pathlib import Path

from tailwart.policy.headscale_api import adapt_snippet
from tailwart.policy.hujson import parse
from tailwart.policy.merge import merge

ROOT = Path(__file__).resolve().parents[2]


def test_committed_snippet_adapted_for_headscale() -> None:
    snippet = parse((ROOT / "acl-snippet.hujson").read_text(), "snippet").value
    adapted, notes = adapt_snippet(snippet)
    assert adapted["tagOwners"]["tag:stalwart"] == ["tag:stalwart"]
    assert adapted["tagOwners"]["tag:reverse-proxy"] == []
    assert adapted["acls"] == snippet["acls"]
    assert adapted["tests"] == snippet["tests"]
    assert notes == [
        "headscale has no autogroup:admin: dropped from the snippet's tagOwners (add your admin "
        "user 'name@' or a group as owner in the headscale policy)"
    ]


def test_tailscale_only_fields_are_left_out_with_a_note() -> None:
    adapted, notes = adapt_snippet({"postures": {"posture:x": []}, "hosts": {"a": "1.2.3.4"}})
    assert adapted == {"hosts": {"a": "1.2.3.4"}}
    assert notes == ["headscale does not support 'postures': left out of the merge"]


def test_headscale_owners_are_kept_when_merging() -> None:
    policy = '{\n\t"tagOwners": {\n\t\t"tag:stalwart": ["group:admins"],\n\t},\n}\n'
    adapted, _ = adapt_snippet({"tagOwners": {"tag:stalwart": ["autogroup:admin", "tag:stalwart"]}})
    from tailwart.policy.hujson import Style, render

    after = merge(policy, render(adapted, Style(), "")).after
    assert '"tag:stalwart": ["group:admins", /* tailwart */ "tag:stalwart"],' in after
    assert "autogroup:admin" not in after
