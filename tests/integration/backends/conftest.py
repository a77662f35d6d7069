"""Fixtures for the backends/doctor tests: real servers, started once per session.

Every server listens on loopback, except Postgres' second address on a veth pair
in 198.18.0.0/15 (SCRAM applies there; loopback is ``trust``, like the pitfall).
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.backend_env import zones
from tests.support.backend_servers import (
    GarageServer,
    KnotServer,
    Pki,
    PostgresServer,
    RedisServer,
    VethAddress,
    garage_binary,
)
from tests.support.backup_world import World
from tests.support.testkit import TOOL_CACHE, need, need_root, need_tool

pytestmark = pytest.mark.integration


# ------------------------------------------------------------------ servers


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    need_root()
    need_tool("postgres")
    need_tool("initdb")
    veth = VethAddress.create()
    try:
        server = PostgresServer.start(veth.address, second_host=veth.second)
        yield server
        server.close()
    finally:
        veth.delete()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer.start(need_tool("redis-server"))
    yield server
    server.close()


def _garage_binary() -> Path:
    binary = garage_binary(TOOL_CACHE)
    need(binary.exists(), f"{binary} is missing (scripts/setup/30-backends.sh builds it)")
    return binary


@pytest.fixture
def garage_fresh() -> Iterator[GarageServer]:
    """A new single Garage node without a layout (bootstrap applies it)."""
    server = GarageServer.start(_garage_binary())
    yield server
    server.close()


@pytest.fixture(scope="session")
def garage_ready() -> Iterator[GarageServer]:
    """A Garage node with a layout, shared by the doctor tests."""
    from tailwart.backends.garage import GarageAdmin

    server = GarageServer.start(_garage_binary())
    api = GarageAdmin(server.admin_url, server.admin_token)
    node = api.get("GetClusterStatus")["nodes"][0]["id"]
    layout = api.post(
        "UpdateClusterLayout",
        {"roles": [{"id": node, "zone": "dc1", "capacity": 10**9, "tags": []}]},
    )
    api.post("ApplyClusterLayout", {"version": layout["version"] + 1})
    api.close()
    yield server
    server.close()


# ------------------------------------------------------------------ DNS


@pytest.fixture(scope="session")
def knot() -> Iterator[KnotServer]:
    server = KnotServer.start(need_tool("knotd"), zones())
    yield server
    server.close()


# ------------------------------------------------------------------ TLS


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.create(tmp_path_factory.mktemp("pki"))


# ------------------------------------------------------------------ settings and helpers

_redis_dbs = itertools.count(1)


@pytest.fixture
def redis_db(redis_server: RedisServer) -> int:
    """A DB index no other test uses (the server has 32)."""
    db = next(_redis_dbs)
    need(db < 32, "out of Redis DB indexes")
    redis_server.client(db).flushdb()
    return db


@pytest.fixture
def world(
    request: pytest.FixtureRequest,
    pg_server: PostgresServer,
    redis_server: RedisServer,
    garage_ready: GarageServer,
    tmp_path: Path,
) -> World:
    """A backup world (backup_world.World): a source mailbox holding the test module's
    ``MESSAGES`` messages, an empty target."""
    messages = int(getattr(request.module, "MESSAGES", 24))
    return World.create(pg_server, redis_server, garage_ready, tmp_path, messages)


@pytest.fixture
def names() -> dict[str, str]:
    tag = secrets.token_hex(4)
    return {"role": f"stalwart_{tag}", "db": f"stalwart_{tag}", "bucket": f"stalwart-{tag}"}
