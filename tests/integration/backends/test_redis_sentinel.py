"""Redis through real sentinels (``redis-server --sentinel``): inv bootstrap and the doctor
find the master the sentinels name, before and after a failover in the middle of the run.

The oracles are the Redis servers' own answers (ROLE, the marker key read directly, the
sentinels asked with plain commands), never tailwart's code.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tailwart.backends.redis_store import MARKER_KEY, MARKER_PREFIX
from tailwart.doctor import runner
from tailwart.doctor.registry import DoctorContext, DoctorOptions, registry
from tailwart.findings import Finding
from tailwart.settings import from_mapping
from tests.support.backend_env import backend_values, garage_key, inv
from tests.support.backend_servers import (
    GarageServer,
    PostgresServer,
    RedisServer,
    SentinelSet,
)
from tests.support.testkit import need_tool, write_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def sentinels() -> Iterator[SentinelSet]:
    world = SentinelSet.start(need_tool("redis-server"))
    yield world
    world.close()


@pytest.fixture
def env_values(
    sentinels: SentinelSet,
    pg_server: PostgresServer,
    redis_server: RedisServer,
    garage_ready: GarageServer,
    names: dict[str, str],
) -> dict[str, str]:
    """.env values whose Redis is the sentinels' master (no single-Redis keys)."""
    values = backend_values(pg_server, redis_server, garage_ready, 0, names, garage_key())
    for single in ("STALWART_REDIS_HOST", "STALWART_REDIS_PORT", "STALWART_REDIS_DB"):
        del values[single]
    ports = sentinels.sentinel_ports
    values["STALWART_REDIS_SENTINELS"] = ",".join(f"127.0.0.1:{p}" for p in ports)
    values["STALWART_REDIS_MASTER"] = sentinels.master_name
    values["STALWART_REDIS_PASSWORD"] = sentinels.password
    values["STALWART_REDIS_SENTINEL_PASSWORD"] = sentinels.sentinel_password
    return values


def doctor(values: dict[str, str]) -> dict[str, Finding]:
    ctx = DoctorContext(from_mapping(values), DoctorOptions(timeout=5))
    checks = [c for c in registry(ctx, ("backends",)) if c.id.startswith("backends.redis.")]
    return {f.id.removeprefix("backends.redis."): f for f in runner.run(ctx, checks)}


def test_bootstrap_and_doctor_follow_a_failover(
    tmp_path: Path, sentinels: SentinelSet, pg_server: PostgresServer, env_values: dict[str, str]
) -> None:
    values = env_values
    env = write_env(tmp_path / ".env", values)
    admin = {"PG_ADMIN_PASSWORD": pg_server.admin_password}
    old = sentinels.named(sentinels.sentinel_ports[0])
    assert old is not None and sentinels.role(old) == "master"

    first = inv("bootstrap", "--env-file", str(env), env_extra=admin)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"redis     create  DB 0 on master 'mymaster' at 127.0.0.1:{old} marker" in first.stdout
    assert str(sentinels.data_client(old).get(MARKER_KEY)).startswith(MARKER_PREFIX)
    for secret in (sentinels.password, sentinels.sentinel_password):
        assert secret not in first.stdout + first.stderr

    before = doctor(values)
    assert {k: f.status.value for k, f in before.items()} == {
        "auth": "ok",
        "db": "ok",
        "sentinels": "ok",
        "master": "ok",
    }, before
    assert f"all name 127.0.0.1:{old} as master 'mymaster'" in before["sentinels"].message
    assert f"master 'mymaster' is 127.0.0.1:{old}: answers as master, 1 replica" in (
        before["master"].message
    )

    new = sentinels.failover()  # SENTINEL FAILOVER; waits until every sentinel agrees
    assert new != old and sentinels.role(new) == "master" and sentinels.role(old) == "slave"

    again = inv("bootstrap", "--env-file", str(env), env_extra=admin)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"redis     keep    DB 0 on master 'mymaster' at 127.0.0.1:{new}: carries" in (
        again.stdout
    )
    assert "nothing to change" in again.stdout

    after = doctor(values)
    assert all(f.status.value == "ok" for f in after.values()), after
    assert f"all name 127.0.0.1:{new} as master" in after["sentinels"].message
    assert f"master 'mymaster' is 127.0.0.1:{new}:" in after["master"].message

    # a sentinel stops: the doctor names it; a majority still answers
    gone = sentinels.sentinel_ports[2]
    sentinels.stop(gone)
    found = doctor(values)
    assert found["sentinels"].status.value == "warning", found["sentinels"]
    assert f"sentinel 127.0.0.1:{gone} is down" in found["sentinels"].message
    assert "2 of 3 up" in found["sentinels"].message
    assert found["master"].status.value == "ok"


def test_a_wrong_sentinel_password_is_named(env_values: dict[str, str]) -> None:
    values = dict(env_values)
    values["STALWART_REDIS_SENTINEL_PASSWORD"] = "wrong-" + secrets.token_hex(8)
    found = doctor(values)
    assert found["sentinels"].status.value == "error"
    assert "refuses the password" in found["sentinels"].message
    assert values["STALWART_REDIS_SENTINEL_PASSWORD"] not in found["sentinels"].message
