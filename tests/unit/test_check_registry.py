"""``inv check`` rules are declared like ``inv doctor``'s checks (issue 22): one GROUP and
one RULES tuple per module, one rule per finding id, and two listings for the docs.

The expected ids are written out here (what ``inv check`` and ``inv doctor`` report
today), never read from the registry under test.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from tailwart.checks import MODULES, CheckContext
from tailwart.checks.registry import Rule, all_rules, declared, rules, run_rules
from tailwart.checks.run import collect, context_for
from tailwart.doctor.registry import GROUPS, DoctorContext, all_checks, registry
from tailwart.findings import Finding, Status
from tailwart.settings import from_mapping

CHECK_IDS = {
    "contract": [
        "env.macros-declared",
        "env.macros-passed",
        "env.example",
        "env.compose-declared",
        "env.stalwart-set",
        "env.redis-url-safe",
    ],
    "proxy": ["proxy.edge", "proxy.admin", "proxy.trust", "proxy.jmap"],
    "stalwart": ["stalwart.config"],
    "compose": [
        "compose.file",
        "compose.yaml",
        "compose.loader",
        "compose.services",
        "compose.stalwart-ports",
        "compose.stalwart-networks",
        "compose.network-mode",
        "compose.sidecar-boilerplate",
        "compose.sidecar-health",
        "compose.sidecar-oauth",
        "compose.env-passed",
        "compose.stalwart-health",
        "compose.volumes",
        "compose.tls-files",
        "compose.image-pinned",
        "compose.sidecar-image",
    ],
    "tls-files": [
        "tls-files.mode",
        "tls-files.cert-file",
        "tls-files.key-file",
        "tls-files.cert-file-access",
        "tls-files.key-file-access",
        "tls-files.key-match",
        "tls-files.expiry",
        "tls-files.names",
        "tls-files.chain",
        "tls-files.issuer",
    ],
    "hygiene": ["hygiene.git", "hygiene.ignored", "hygiene.tracked"],
    "policy": [
        "policy.snippet",
        "policy.tags",
        "policy.ports",
        "policy.members",
        "policy.ports-unused",
    ],
}
MODULE_GROUPS = {
    "envcontract": "contract",
    "proxy": "proxy",
    "stalwart_keys": "stalwart",
    "compose_rules": "compose",
    "tls_files": "tls-files",
    "hygiene": "hygiene",
    "policy": "policy",
}


def test_all_rules_lists_every_check_id_with_its_group_in_report_order() -> None:
    rules = all_rules()
    expected: list[tuple[str, str]] = []
    for module, group in MODULE_GROUPS.items():
        expected += [(rid, group) for rid in CHECK_IDS[group]]
        expected += [(f"{module}.input", group), (f"{module}.crashed", group)]
    assert [(r.id, r.group) for r in rules] == expected
    assert tuple(MODULE_GROUPS) == MODULES
    for rule in rules:
        assert rule.title and "\n" not in rule.title and len(rule.title) <= 80, rule.id


def test_every_module_declares_one_group_and_its_rules() -> None:
    for name, group in MODULE_GROUPS.items():
        module = importlib.import_module(f"tailwart.checks.{name}")
        assert group == module.GROUP
        assert not hasattr(module, "G"), f"{name}: one group constant, GROUP"
        assert [r.id for r in module.RULES] == CHECK_IDS[group]
        assert {r.group for r in module.RULES} == {group}


def test_every_finding_of_a_run_is_declared_and_in_declared_order(
    example_values: dict[str, str], tmp_path: Path
) -> None:
    root = Path(__file__).resolve().parents[2]
    declared = [r.id for r in all_rules()]
    for where in (root, tmp_path):  # the work tree, and an empty directory (gates fail)
        found = [f.id for f in collect(context_for(from_mapping(example_values), where))]
        assert set(found) <= set(declared), set(found) - set(declared)
        positions = [declared.index(i) for i in found]
        assert positions == sorted(positions), found


def _rule(rid: str, status: Status | None, gate: bool = False) -> Rule:
    def judge(ctx: CheckContext) -> Finding | None:
        return None if status is None else Finding(rid, status, rid)

    return Rule(rid, "g", rid, judge, gate)


def test_run_rules_skips_what_does_not_apply_and_stops_at_a_failed_gate(
    example_values: dict[str, str], tmp_path: Path
) -> None:
    ctx = CheckContext(from_mapping(example_values), tmp_path)
    rules = [
        _rule("a", Status.OK, gate=True),
        _rule("b", None),
        _rule("c", Status.WARNING),
        Rule("d", "g", "declared, judged by the module's own run"),
        _rule("e", Status.ERROR, gate=True),
        _rule("f", Status.OK),
    ]
    assert [f.id for f in run_rules(ctx, rules)] == ["a", "c", "e"]
    assert [f.id for f in run_rules(ctx, [_rule("x", None, gate=True), _rule("y", Status.OK)])] == [
        "y"
    ]


def test_all_checks_lists_every_doctor_check_with_its_group(
    example_values: dict[str, str],
) -> None:
    """The default .env's checks (their ids are pinned in test_doctor_runner), and those
    only an optional feature turns on: Redis Sentinel's (STALWART_REDIS_SENTINELS), the
    Garage disks and nodes (GARAGE_ADMIN_TOKEN) and replication (GARAGE_NODES), a second
    mailbox node and the cluster's leases (MAILBOX_NODES), the edge
    hosts' limits (EDGE_HOSTS), in the edge
    group; Stalwart's metrics (after management); a backup repository's snapshot age."""
    checks = all_checks()
    default = [c.id for c in registry(DoctorContext(from_mapping(example_values)))]
    redis = default.index("backends.redis.db") + 1
    garage = default.index("backends.garage.region") + 1
    node = default.index("mailbox.stalwart") + 1
    edge = default.index("edge.imaps") + 1
    cut = default.index("management.internet") + 1
    metrics = ["metrics", "queue", "queue-age", "failed", "deferred", "auth", "store"]
    assert [c.id for c in checks] == [
        *default[:redis],
        "backends.redis.sentinels",
        "backends.redis.master",
        *default[redis:garage],
        "backends.garage.disk",
        "backends.garage.nodes",
        "backends.garage.replication",
        *default[garage:node],
        "mailbox.stalwart-2",
        "mailbox.cluster",
        *default[node:edge],
        "edge.limits",
        *default[edge:cut],
        *(f"stalwart.{name}" for name in metrics),
        *default[cut:],
        "backup.snapshot.age",
    ]
    assert {"outbound.port25", "management.internet", "edge.smtp"} <= {c.id for c in checks}
    assert len(checks) == 55
    for check in checks:
        assert check.group in GROUPS and check.id.startswith(check.group + ".")
        assert check.title and "\n" not in check.title


def test_rules_takes_id_and_title_from_each_function() -> None:
    def some_thing(ctx: CheckContext) -> Finding | None:
        """What it judges, on one line.

        More detail that is not the title."""
        return None

    def gate_it(ctx: CheckContext) -> Finding | None:
        """A gate."""
        return None

    made = rules("grp", some_thing, gate_it, prefix="pre", gates=(gate_it,))
    assert [(r.id, r.group, r.title, r.gate) for r in made] == [
        ("pre.some-thing", "grp", "What it judges, on one line.", False),
        ("pre.gate-it", "grp", "A gate.", True),
    ]
    table = declared("g", "\n    a.one   first title\n    a.two  second\n")
    assert [(r.id, r.group, r.title, r.fn) for r in table] == [
        ("a.one", "g", "first title", None),
        ("a.two", "g", "second", None),
    ]


def test_listings_have_unique_ids() -> None:
    for ids in ([r.id for r in all_rules()], [c.id for c in all_checks()]):
        assert len(ids) == len(set(ids))
