"""Backends at scale, the pure parts: the keys' validation (hostile values, every problem
at once), Stalwart's memory store for one Redis and for Sentinel, and the Garage layout
plan read from what the admin API answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tailwart.backends.garage import (
    LayoutPlan,
    WantedNode,
    measured_replication,
    plan_layout,
    wanted_nodes,
)
from tailwart.backends.redis_store import RedisTarget
from tailwart.settings import SettingsError, from_mapping, validate
from tailwart.settings.example import example_values
from tailwart.settings.kinds import HostPort
from tailwart.stalwart import desired as d
from tailwart.stalwart.versions import CURRENT
from tests.support.testkit import inv, write_env
from tests.unit.test_stalwart_model import _check_object, full_schema

A, B, C = (
    "563e1ac825ee3323" + "0" * 48,
    "86f0f26ae4afbd59" + "1" * 48,
    "a2b9d3f2e5c1b478" + "2" * 48,
)
SENTINELS = "redis1.tail1234.ts.net:26379,[fd7a:115c:a1e0::2]:26380"


def sentinel_values(**more: str) -> dict[str, str]:
    values = example_values()
    del values["STALWART_REDIS_HOST"]
    values.update(STALWART_REDIS_SENTINELS=SENTINELS, STALWART_REDIS_MASTER="mymaster")
    values.update(more)
    return values


def problems(values: dict[str, str]) -> dict[str, str]:
    _, found = validate(((k, v, None) for k, v in values.items()), "<test>")
    return {p.key: p.message for p in found if p.level == "error"}


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("563e1ac8", "entry 1 is not node-id@zone"),
        ("563e1ac8@", "the zone must be"),
        ("563E1AC8@dc1", "8 to 64 lower-case hex digits"),
        ("563e1ac@dc1", "8 to 64 lower-case hex digits"),
        ("563e1ac8@dc1,563e1ac8@dc2", "names node 563e1ac8 twice"),
        ("563e1ac8@dc1,563e1ac8ff@dc2", "entry 1's id is a prefix of entry 2's"),
        ("563e1ac8@dc 1", "the zone must be"),
        ("563e1ac8@-dc1", "the zone must be"),
        ("563e1ac8@dc1;rm -rf /", "the zone must be"),
        ("563e1ac8@dc1,,86f0f26a@dc2", "entry 2 is not node-id@zone"),
        ("563e1ac8@dc1\n86f0f26a@dc2", "control character"),
        ("563e1ac8@dc\u200b1", "invisible format character"),
        (",".join(f"{n:08x}@dc{n}" for n in range(65)), "more than 64 nodes"),
        ("a" * 65 + "@dc1", "8 to 64 lower-case hex digits"),
    ],
)
def test_garage_nodes_refuses_hostile_values_naming_the_key(value: str, said: str) -> None:
    values = {**example_values(), "GARAGE_NODES": value, "GARAGE_REPLICATION": "1"}
    values.update(GARAGE_ADMIN_URL="http://garage.tail1234.ts.net:3903")
    values.update(GARAGE_ADMIN_TOKEN="a0b1c2d3e4f5a6b7c8d9")
    found = problems(values)
    assert set(found) == {"GARAGE_NODES"}, found
    assert said in found["GARAGE_NODES"]
    assert "\n" not in found["GARAGE_NODES"] and "\u200b" not in found["GARAGE_NODES"]


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("redis1.tail1234.ts.net", "must be host:port"),
        ("redis1:26379,redis1:26379", "names redis1:26379 twice"),
        ("redis1:0", "port must be between 1 and 65535"),
        ("redis1:26379,", "entry 2 is empty"),
        ("fd7a::2:26379", "needs brackets"),
        ("[fd7a::zz]:26379", "not an IPv6 address"),
        ("redis1:26379 ,redis2:26379", "entry 1 port must be a whole number"),
        ("-oProxyCommand=x:1", "host label '-oProxyCommand=x' is not a DNS label"),
        ("redis://redis1:26379", "an IPv6 address needs brackets"),
        (",".join(f"r{n}:26379" for n in range(65)), "more than 64 addresses"),
    ],
)
def test_sentinels_refuse_hostile_values_naming_the_key(value: str, said: str) -> None:
    found = problems(sentinel_values(STALWART_REDIS_SENTINELS=value))
    assert set(found) == {"STALWART_REDIS_SENTINELS"}, found
    assert said in found["STALWART_REDIS_SENTINELS"]


def test_every_scale_problem_is_reported_at_once() -> None:
    values = sentinel_values(
        STALWART_REDIS_HOST="redis.tail1234.ts.net",
        STALWART_REDIS_PORT="6380",
        STALWART_REDIS_DB="3",
        GARAGE_NODES="563e1ac8@dc1,86f0f26a@dc2",
        GARAGE_REPLICATION="3",
    )
    del values["STALWART_REDIS_MASTER"]
    with pytest.raises(SettingsError) as caught:
        from_mapping(values)
    said = {p.key: p.message for p in caught.value.problems}
    assert set(said) == {
        "STALWART_REDIS_HOST",
        "STALWART_REDIS_PORT",
        "STALWART_REDIS_DB",
        "STALWART_REDIS_MASTER",
        "GARAGE_NODES",
        "GARAGE_ADMIN_URL",
        "GARAGE_ADMIN_TOKEN",
    }
    assert caught.value.exit_code == 2
    assert "always uses DB 0" in said["STALWART_REDIS_DB"]
    assert "fewer than GARAGE_REPLICATION (3)" in said["GARAGE_NODES"]


def test_sentinel_keys_need_each_other_and_replication_stays_in_range() -> None:
    alone = example_values()
    alone.update(STALWART_REDIS_MASTER="mymaster", STALWART_REDIS_SENTINEL_PASSWORD="a0b1c2d3e4")
    assert set(problems(alone)) == {"STALWART_REDIS_MASTER", "STALWART_REDIS_SENTINEL_PASSWORD"}
    neither = example_values()
    del neither["STALWART_REDIS_HOST"]
    assert "is missing" in problems(neither)["STALWART_REDIS_HOST"]
    assert problems(sentinel_values()) == {}
    assert problems(sentinel_values(STALWART_REDIS_DB="0")) == {}
    for factor in ("0", "8", "99999"):
        assert (
            "between 1 and 7"
            in problems({**example_values(), "GARAGE_REPLICATION": factor})["GARAGE_REPLICATION"]
        )


def test_sentinel_target_uses_db_0_and_every_sentinel() -> None:
    target = RedisTarget.from_settings(from_mapping(sentinel_values()))
    assert target.db == 0 and target.master == "mymaster"
    assert target.sentinels == (
        HostPort("redis1.tail1234.ts.net", 26379),
        HostPort("fd7a:115c:a1e0::2", 26380),
    )
    single = RedisTarget.from_settings(from_mapping(example_values()))
    assert (single.host, single.port, single.db, single.sentinels) == (
        "redis.tail1234.ts.net",
        6379,
        3,
        (),
    )


# ------------------------------------------------------------------ rendering


def memory(values: dict[str, str]) -> dict[str, Any]:
    (item,) = [
        i
        for i in d.desired_state(from_mapping(values))
        if isinstance(i, d.Desired) and i.type == CURRENT.memory_store
    ]
    return dict(item.fields)


def test_one_redis_renders_exactly_as_before() -> None:
    values = example_values()
    password = values["STALWART_REDIS_PASSWORD"]
    assert memory(values) == {
        "@type": "Redis",
        "url": f"redis://:{quote(password, safe='')}@redis.tail1234.ts.net:6379/3",
    }


def test_sentinel_renders_the_redis_sentinel_store_with_secrets_by_name() -> None:
    values = sentinel_values(STALWART_REDIS_SENTINEL_PASSWORD="s3nt1nel-pass-0a1b")
    fields = memory(values)
    assert fields == {
        "@type": "RedisSentinel",
        "urls": {
            "redis://redis1.tail1234.ts.net:26379": True,
            "redis://[fd7a:115c:a1e0::2]:26380": True,
        },
        "serviceName": "mymaster",
        "authUsername": None,
        "authSecret": {"@type": "EnvironmentVariable", "variableName": "STALWART_REDIS_PASSWORD"},
        "sentinelUsername": None,
        "sentinelSecret": {
            "@type": "EnvironmentVariable",
            "variableName": "STALWART_REDIS_SENTINEL_PASSWORD",
        },
    }
    text = json.dumps(fields)
    assert values["STALWART_REDIS_PASSWORD"] not in text and "s3nt1nel" not in text
    # every field and variant is one upstream's schema declares for x:InMemoryStore
    _check_object(full_schema(), CURRENT.memory_store, fields, "memory store")
    no_password = memory(sentinel_values())
    assert no_password["sentinelSecret"] == {"@type": "None"}
    _check_object(full_schema(), CURRENT.memory_store, no_password, "memory store")


# ------------------------------------------------------------------ Garage layout


def node(node_id: str, up: bool = True, free: int | None = 5 * 10**9) -> dict[str, Any]:
    part = None if free is None else {"available": free, "total": 2 * free}
    return {"id": node_id, "isUp": up, "draining": False, "dataPartition": part}


def layout(*roles: tuple[str, str], version: int = 1, staged: bool = False) -> dict[str, Any]:
    return {
        "version": version if roles else 0,
        "roles": [
            {"id": i, "zone": z, "capacity": 10**9, "tags": [], "storedPartitions": 256}
            for i, z in roles
        ],
        "stagedRoleChanges": [{"id": A, "remove": True}] if staged else [],
        "parameters": {"zoneRedundancy": "maximum"},
        "partitionSize": 1,
    }


WANTED = wanted_nodes(f"{A[:16]}@dc1,{B[:16]}@dc2,{C[:16]}@dc3")
STATUS: dict[str, Any] = {"layoutVersion": 0, "nodes": [node(A), node(B), node(C, free=None)]}


def test_a_fresh_cluster_gets_every_node_in_its_zone() -> None:
    plan = plan_layout(WANTED, STATUS, layout(), capacity=777)
    assert plan.problems == () and plan.kept == 0
    assert plan.roles == (
        {"id": A, "zone": "dc1", "capacity": 5 * 10**9, "tags": []},
        {"id": B, "zone": "dc2", "capacity": 5 * 10**9, "tags": []},
        {"id": C, "zone": "dc3", "capacity": 777, "tags": []},  # no disk figure: the default
    )
    assert plan.changes[0] == f"assign {A[:16]} to zone dc1 ({5 * 10**9} bytes)"


def test_an_applied_layout_is_kept_and_a_zone_change_keeps_capacity() -> None:
    same = layout((A, "dc1"), (B, "dc2"), (C, "dc3"))
    assert plan_layout(WANTED, STATUS, same) == LayoutPlan(kept=3)
    moved = layout((A, "dc1"), (B, "dc9"), (C, "dc3"))
    plan = plan_layout(WANTED, STATUS, moved)
    assert plan.roles == ({"id": B, "zone": "dc2", "capacity": 10**9, "tags": []},)
    assert plan.changes == (f"move {B[:16]} from zone dc9 to dc2",)


@pytest.mark.parametrize(
    ("wanted", "status", "current", "said"),
    [
        (WANTED, {"nodes": [node(A), node(B)]}, layout(), f"node {C[:16]} (GARAGE_NODES) is not"),
        (WANTED, {"nodes": [*STATUS["nodes"][:2], node(C, up=False)]}, layout(), "is down"),
        (
            WANTED[:2],
            STATUS,
            layout((A, "dc1"), (B, "dc2"), (C, "dc3")),
            f"node {C[:16]} holds a role in the layout (zone dc3) but GARAGE_NODES leaves it out",
        ),
        (WANTED, STATUS, layout(staged=True), "layout changes are staged already"),
        (
            (WantedNode("5", "dc1"),),
            {"nodes": [node("5" + "a" * 63), node("5" + "b" * 63)]},
            layout(),
            "matches 2 nodes",
        ),
        (WANTED, {"nodes": "garbage"}, layout(), "malformed"),
    ],
)
def test_the_layout_is_refused_when_unsafe(
    wanted: tuple[WantedNode, ...], status: Any, current: Any, said: str
) -> None:
    plan = plan_layout(wanted, status, current)
    assert any(said in problem for problem in plan.problems), plan.problems


def test_replication_is_read_from_the_partitions_the_nodes_store() -> None:
    three = layout((A, "dc1"), (B, "dc2"), (C, "dc3"))
    assert measured_replication(three) == 3
    two = layout((A, "dc1"), (B, "dc2"), (C, "dc3"))
    for role, stored in zip(two["roles"], (200, 170, 142), strict=True):
        role["storedPartitions"] = stored
    assert measured_replication(two) == 2
    assert measured_replication(layout()) is None  # no layout applied: unknown
    odd = layout((A, "dc1"))
    odd["roles"][0]["storedPartitions"] = 255
    assert measured_replication(odd) is None
    odd["roles"][0]["storedPartitions"] = True
    assert measured_replication(odd) is None
    assert measured_replication("not a layout") is None


def test_bootstrap_refuses_a_bad_env_with_exit_2_naming_every_key(tmp_path: Path) -> None:
    """The operator's view: `inv bootstrap` stops before contacting anything."""
    values = sentinel_values(STALWART_REDIS_DB="5", GARAGE_NODES="563e1ac8@dc1,XYZ@dc2")
    env = write_env(tmp_path / ".env", values)
    result = inv("bootstrap", "--env-file", str(env), "--dry-run")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "STALWART_REDIS_DB" in result.stderr and "GARAGE_NODES" in result.stderr
    assert "nothing was changed" in result.stderr and "Traceback" not in result.stderr
    assert values["STALWART_REDIS_PASSWORD"] not in result.stdout + result.stderr


def test_the_doctor_names_down_garage_nodes_and_escapes_what_they_report(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """backends.garage.nodes over admin API answers (stubbed here; the three-node
    integration test stops a real node): what a node reports is untrusted."""
    from tailwart.doctor import backends
    from tailwart.doctor.registry import DoctorContext

    roles = layout((A, "dc1"), (B, "dc2"), (C, "dc3"))
    evil = {**node(C, up=False), "hostname": "\x1b[31mg3", "addr": "10.0.0.3:3901"}
    evil["lastSeenSecsAgo"] = 42
    stranger = node("f" * 64, up=False)  # known, but holds no role: not a member
    status = {"nodes": [node(A), node(B), evil, stranger]}
    monkeypatch.setattr(backends, "_garage_status", lambda ctx: (status, roles))
    values = {**example_values(), "GARAGE_ADMIN_URL": "http://garage.tail1234.ts.net:3903"}
    values["GARAGE_ADMIN_TOKEN"] = "a0b1c2d3e4f5a6b7c8d9"
    one = backends.garage_nodes(DoctorContext(from_mapping(values)))
    assert one.status.value == "error"  # no GARAGE_NODES: one replica, a node down loses data
    escaped = "\\x1b[31mg3"  # the escape shown, never sent to the terminal
    assert one.message == (
        f"1 of 3 Garage node(s) down: {C[:16]} ({escaped}, 10.0.0.3:3901) last seen 42 s ago"
    )
    values["GARAGE_NODES"] = f"{A[:16]}@dc1,{B[:16]}@dc2,{C[:16]}@dc3"
    three = backends.garage_nodes(DoctorContext(from_mapping(values)))
    assert three.status.value == "warning" and "a quorum of copies remains" in three.message
    status["nodes"][1] = node(B, up=False)
    two_down = backends.garage_nodes(DoctorContext(from_mapping(values)))
    assert two_down.status.value == "error" and "2 of 3 Garage node(s) down" in two_down.message
