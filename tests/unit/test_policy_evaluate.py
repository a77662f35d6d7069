"""Local policy evaluation: schema, references and the ``tests`` against acls and grants."""

from __future__ import annotations

from typing import Any

from tailwart.policy.evaluate import first_accepting_rule, run_tests, validate

POLICY: dict[str, Any] = {
    "groups": {"group:ops": ["ann@example.com"]},
    "hosts": {"db": "100.64.0.7", "lan": "192.168.1.0/24"},
    "tagOwners": {"tag:edge": ["autogroup:admin"], "tag:mail": ["autogroup:admin"]},
    "acls": [
        {"action": "accept", "src": ["tag:edge"], "dst": ["tag:mail:25,465,1000-1010"]},
        {"action": "accept", "src": ["group:ops"], "dst": ["db:5432", "lan:*"]},
        {"action": "accept", "src": ["tag:mail"], "dst": ["tag:edge:53"], "proto": "udp"},
    ],
    "grants": [{"src": ["autogroup:member"], "dst": ["tag:mail"], "ip": ["tcp:993"]}],
}


def allowed(src: str, dst: str, port: int, proto: str | None = "tcp") -> str | None:
    from tailwart.policy.evaluate import _proto_number

    return first_accepting_rule(POLICY, src, dst, port, _proto_number(proto))


def test_ports_lists_ranges_and_tags() -> None:
    assert allowed("tag:edge", "tag:mail", 465) == "acls[0]"
    assert allowed("tag:edge", "tag:mail", 1005) == "acls[0]"
    assert allowed("tag:edge", "tag:mail", 22) is None
    assert allowed("tag:mail", "tag:edge", 25) is None  # rules are one-way


def test_groups_hosts_and_cidrs() -> None:
    assert allowed("ann@example.com", "db", 5432) == "acls[1]"
    assert allowed("ann@example.com", "100.64.0.7", 5432) == "acls[1]"
    assert allowed("ann@example.com", "192.168.1.20", 8443) == "acls[1]"
    assert allowed("ann@example.com", "192.168.2.20", 8443) is None
    assert allowed("bob@example.com", "db", 5432) is None


def test_protocols_and_grants() -> None:
    assert allowed("tag:mail", "tag:edge", 53, "udp") == "acls[2]"
    assert allowed("tag:mail", "tag:edge", 53, "tcp") is None
    assert allowed("ann@example.com", "tag:mail", 993) == "grants[0]"
    assert allowed("ann@example.com", "tag:mail", 993, "udp") is None
    assert allowed("tag:edge", "tag:mail", 993) is None  # autogroup:member is users only


def test_tests_pass_and_fail_with_messages() -> None:
    policy = {
        **POLICY,
        "tests": [
            {"src": "tag:edge", "accept": ["tag:mail:25"], "deny": ["tag:mail:22"]},
            {"src": "tag:edge", "accept": ["tag:mail:22"], "deny": ["tag:mail:465"]},
        ],
    }
    [failure] = run_tests(policy)
    assert failure.index == 1
    assert failure.errors == (
        'address "tag:mail:22": want: Accept, got: Drop (no rule allows tag:edge to reach it)',
        'address "tag:mail:465": want: Drop, got: Accept (acls[0])',
    )
    assert failure.addresses == ("tag:mail:22", "tag:mail:465")


def test_undeclared_tags_unknown_groups_and_fields() -> None:
    policy = {
        **POLICY,
        "acls": [
            *POLICY["acls"],
            {"action": "accept", "src": ["tag:ghost"], "dst": ["group:nobody:22"], "ports": []},
        ],
        "tests": [{"src": "tag:edge", "accept": ["tag:mail:25"], "expect": []}],
    }
    report = validate(policy)
    assert [str(p) for p in report.problems] == ["tests[0]: unknown field 'expect'"]
    del policy["tests"][0]["expect"]
    report = validate(policy)
    assert [str(p) for p in report.problems] == [
        'acls[3].src: tag "tag:ghost" is not declared in tagOwners',
        'acls[3].dst: group "group:nobody" is not defined in groups',
    ]
    assert validate({"acl": []}).problems[0].message == "unknown field 'acl'"


def test_postures_are_evaluated_from_test_attributes() -> None:
    policy = {
        "postures": {"posture:new": ["node:os IN ['macos', 'linux']", "node:tsVersion >= '1.60'"]},
        "tagOwners": {"tag:x": ["autogroup:admin"]},
        "acls": [
            {
                "action": "accept",
                "src": ["a@b.c"],
                "dst": ["tag:x:443"],
                "srcPosture": ["posture:new"],
            }
        ],
        "tests": [
            {
                "src": "a@b.c",
                "srcPostureAttrs": {"node:os": "linux", "node:tsVersion": "1.90.1"},
                "accept": ["tag:x:443"],
            },
            {
                "src": "a@b.c",
                "srcPostureAttrs": {"node:os": "windows", "node:tsVersion": "1.90"},
                "deny": ["tag:x:443"],
            },
            {"src": "a@b.c", "deny": ["tag:x:443"]},
        ],
    }
    assert validate(policy).ok


def test_ssh_tests_against_ssh_rules() -> None:
    policy = {
        "groups": {"group:sre": ["hana@x.example"]},
        "tagOwners": {"tag:db": ["group:sre"]},
        "ssh": [
            {"action": "check", "src": ["group:sre"], "dst": ["tag:db"], "users": ["postgres"]},
            {
                "action": "accept",
                "src": ["group:sre"],
                "dst": ["tag:db"],
                "users": ["autogroup:nonroot"],
            },
        ],
        "sshTests": [
            {
                "src": "hana@x.example",
                "dst": ["tag:db"],
                "check": ["postgres"],
                "accept": ["ubuntu"],
                "deny": ["root"],
            },
            {"src": "hana@x.example", "dst": ["tag:db"], "accept": ["root"]},
        ],
    }
    report = validate(policy)
    assert [f.index for f in report.failures] == [1]
    assert report.failures[0].errors == ("tag:db as 'root': want: accept, got: deny",)
