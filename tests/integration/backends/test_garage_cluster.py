"""A three-node Garage cluster (replication_factor 3, three zones) laid out by inv bootstrap;
one node stopped: every blob still reads and the doctor names the stopped node.

The oracles are Garage's own answers (its admin API read with plain HTTP, its S3 API
through boto3), never tailwart's code.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tailwart.backends.bootstrap import bootstrap
from tailwart.backends.plan import BackendError
from tailwart.doctor import runner
from tailwart.doctor.registry import DoctorContext, DoctorOptions, registry
from tailwart.findings import Finding
from tailwart.settings import from_mapping
from tests.support.backend_env import backend_values, garage_key, inv
from tests.support.backend_servers import (
    GarageCluster,
    PostgresServer,
    RedisServer,
    garage_binary,
    wait_for,
)
from tests.support.doc_samples import check_sample
from tests.support.testkit import TOOL_CACHE, need, write_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ZONES = ("dc1", "dc2", "dc3")


@pytest.fixture(scope="module")
def cluster() -> Iterator[GarageCluster]:
    binary = garage_binary(TOOL_CACHE)
    need(binary.exists(), f"{binary} is missing (scripts/setup/30-backends.sh builds it)")
    world = GarageCluster.start(binary, count=3, replication=3)
    yield world
    world.close()


def doctor(values: dict[str, str]) -> dict[str, Finding]:
    # generous: on a loaded 2-core machine a debug Garage answers its admin API in seconds
    ctx = DoctorContext(from_mapping(values), DoctorOptions(timeout=30))
    return {
        f.id.removeprefix("backends."): f for f in runner.run(ctx, registry(ctx, ("backends",)))
    }


def test_bootstrap_lays_out_three_zones_then_a_stopped_node_loses_no_blob(
    tmp_path: Path,
    cluster: GarageCluster,
    pg_server: PostgresServer,
    redis_server: RedisServer,
    redis_db: int,
    names: dict[str, str],
) -> None:
    first, second, third = cluster.nodes
    ids = [node.node_id for node in cluster.nodes]
    wanted = ",".join(f"{node[:16]}@{zone}" for node, zone in zip(ids, ZONES, strict=True))
    key = garage_key()
    values = backend_values(pg_server, redis_server, first, redis_db, names, key)
    values["GARAGE_NODES"] = wanted
    env = write_env(tmp_path / ".env", values)
    admin = {"PG_ADMIN_PASSWORD": pg_server.admin_password}

    # the plan shows the layout change; nothing is applied
    dry = inv("bootstrap", "--env-file", str(env), "--dry-run", env_extra=admin)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "garage    create  cluster layout: 3 node(s) in zone(s) dc1, dc2, dc3, " in dry.stdout
    for node, zone in zip(ids, ZONES, strict=True):
        assert f"assign {node[:16]} to zone {zone}" in dry.stdout
    assert first.admin_get("GetClusterLayout")["version"] == 0
    check_sample("garage-cluster-plan", dry.stdout)  # docs/guides/backends.md

    applied = inv("bootstrap", "--env-file", str(env), env_extra=admin)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    layout = first.admin_get("GetClusterLayout")
    assert layout["version"] == 1
    assert {r["id"]: r["zone"] for r in layout["roles"]} == dict(zip(ids, ZONES, strict=True))
    # replication_factor 3 in garage.toml: every one of the 256 partitions on all three
    assert [r["storedPartitions"] for r in layout["roles"]] == [256, 256, 256]
    assert first.admin_get(f"GetBucketInfo?globalAlias={names['bucket']}")["id"]

    said: list[str] = []  # the second run in-process (the CLI ran above): --check passes
    bootstrap(from_mapping(values), check=True, environ=admin, say=said.append)
    again = "\n".join(said)
    assert "garage    keep    cluster layout: version 1: 3 node(s)" in again
    assert "garage    keep    replication: 3 copies of each block" in again
    assert "nothing to change" in again
    assert first.admin_get("GetClusterLayout")["version"] == 1

    blobs = {f"blob-{n}": secrets.token_bytes(1000 + 97 * n) for n in range(12)}
    writer = first.s3_client(key)
    for name, body in blobs.items():
        writer.put_object(Bucket=names["bucket"], Key=name, Body=body)

    third.stop_process()
    for survivor in (first, second):
        reader = survivor.s3_client(key)
        for name, body in blobs.items():
            assert reader.get_object(Bucket=names["bucket"], Key=name)["Body"].read() == body

    def down() -> list[str]:
        return [n["id"] for n in first.admin_get("GetClusterStatus")["nodes"] if not n["isUp"]]

    wait_for(lambda: down() == [ids[2]], "Garage sees the third node down")  # Garage's word
    found = doctor(values)
    nodes = found["garage.nodes"]
    assert nodes.status.value == "warning", nodes
    assert f"1 of 3 Garage node(s) down: {ids[2][:16]}" in nodes.message
    assert ids[0][:16] not in nodes.message and ids[1][:16] not in nodes.message
    assert found["garage.replication"].status.value == "ok"
    assert found["garage.probe"].status.value == "ok"  # two of three copies take a write

    # GARAGE_REPLICATION that garage.toml does not hold: refused, explained, not guessed
    values["GARAGE_REPLICATION"] = "2"
    said.clear()
    with pytest.raises(BackendError, match="1 step"):
        bootstrap(from_mapping(values), environ=admin, say=said.append)
    refused = "\n".join(said)
    assert (
        "garage    refuse  replication: the cluster keeps 3 copies of each block, "
        "GARAGE_REPLICATION says 2"
    ) in refused
    assert "replication_factor" in refused
    assert first.admin_get("GetClusterLayout")["version"] == 1
    mismatch = doctor(values)["garage.replication"]
    assert mismatch.status.value == "error"
    assert "GARAGE_REPLICATION says 2" in mismatch.message
