"""The snippet's deny tests under broad rules, and the rules that open the mailbox to all.

Expected values are written by hand from Tailscale's rule semantics (``*`` is every
device, ``autogroup:member`` every user's device, ``autogroup:tagged`` every tagged
one); the same cases run against a real headscale in
tests/integration/test_policy_evaluate_headscale.py and test_acl_headscale.py.
"""

from __future__ import annotations

from tailwart.policy.broad import broad_reach, holding_denies
from tailwart.policy.merge import merge

SNIPPET = {
    "acls": [{"action": "accept", "src": ["tag:edge"], "dst": ["tag:mail:25,8080"]}],
    "tests": [
        {"src": "tag:edge", "accept": ["tag:mail:25"], "deny": ["tag:mail:22", "tag:db:5432"]},
        {"src": "tag:mail", "deny": ["tag:edge:22"]},
        {"src": "tag:mail", "proto": "udp", "deny": ["tag:db:53"]},
    ],
}


def rule(src: str, dst: str, **more: object) -> dict[str, object]:
    return {"action": "accept", "src": [src], "dst": [dst], **more}


def test_nothing_broad_keeps_every_test() -> None:
    policy = {"acls": [rule("group:ops", "tag:mail:22")]}
    kept, dropped = holding_denies(SNIPPET, policy)
    assert kept == SNIPPET and dropped == []
    assert broad_reach(SNIPPET, policy) == []


def test_allow_all_drops_every_deny_and_entries_left_empty() -> None:
    kept, dropped = holding_denies(SNIPPET, {"ACLs": [rule("*", "*:*")]})  # case-insensitive
    assert kept["tests"] == [{"src": "tag:edge", "accept": ["tag:mail:25"]}]
    assert [(d.src, d.address, d.rule) for d in dropped] == [
        ("tag:edge", "tag:mail:22", "acls[0]"),
        ("tag:edge", "tag:db:5432", "acls[0]"),
        ("tag:mail", "tag:edge:22", "acls[0]"),
        ("tag:mail", "tag:db:53", "acls[0]"),
    ]
    assert SNIPPET["tests"][0]["deny"] == ["tag:mail:22", "tag:db:5432"]  # input untouched
    [reach] = broad_reach(SNIPPET, {"acls": [rule("*", "*:*")]})
    assert reach.rule == "acls[0]"
    assert reach.who == ("every user's device", "every tagged device")
    assert reach.targets == (("tag:mail", ("25", "8080")),)


def test_only_the_denies_a_rule_defeats_go_and_protocols_count() -> None:
    policy = {
        "acls": [rule("autogroup:tagged", "*:22"), rule("tag:mail", "tag:db:53", proto="tcp")],
        "grants": [{"src": ["autogroup:member"], "dst": ["tag:mail"], "ip": ["tcp:8080"]}],
    }
    kept, dropped = holding_denies(SNIPPET, policy)
    assert kept["tests"] == [
        {"src": "tag:edge", "accept": ["tag:mail:25"], "deny": ["tag:db:5432"]},
        {"src": "tag:mail", "proto": "udp", "deny": ["tag:db:53"]},  # the rule is tcp only
    ]
    assert [(d.address, d.rule) for d in dropped] == [
        ("tag:mail:22", "acls[0]"),
        ("tag:edge:22", "acls[0]"),
    ]
    # the tagged → *:22 rule reaches no port the snippet opens; the grant opens 8080 to users
    [reach] = broad_reach(SNIPPET, policy)
    assert (reach.rule, reach.who, reach.targets) == (
        "grants[0]",
        ("every user's device",),
        (("tag:mail", ("8080",)),),
    )


def test_merge_warns_once_per_rule_with_its_line_and_is_idempotent() -> None:
    policy = '{\n  "acls": [\n    {"action": "accept", "src": ["*"], "dst": ["*:*"]},\n  ],\n}\n'
    snippet = (
        '{"tagOwners": {"tag:edge": [], "tag:mail": [], "tag:db": []},'
        ' "acls": [{"action": "accept", "src": ["tag:edge"], "dst": ["tag:mail:25,8080"]}],'
        ' "tests": [{"src": "tag:edge", "accept": ["tag:mail:25"], "deny": ["tag:mail:22"]}]}'
    )
    first = merge(policy, snippet)
    where = 'acls[0] (line 3: {"action": "accept", "src": ["*"], "dst": ["*:*"]})'
    assert first.warnings == [
        f"{where} lets every device in the tailnet reach tag:mail on 25, 8080 (Stalwart's "
        "HTTP: JMAP and the /admin and /api management): not only the sources the snippet "
        "names. Narrow that rule to keep the mailbox private to its edge.",
        f"left out the snippet's deny test(s) tag:edge -> tag:mail:22: {where} already allows them",
    ]
    assert '"deny"' not in first.after
    second = merge(first.after, snippet)
    assert not second.changed
    assert second.warnings[0] == first.warnings[0]
