"""Doctor group backends against real Postgres (trust on loopback!), Redis and Garage."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tailwart.backends.bootstrap import bootstrap
from tailwart.backends.garage import GarageAdmin
from tailwart.doctor import runner
from tailwart.doctor.registry import DoctorContext, DoctorOptions, registry
from tailwart.findings import Finding, Status
from tailwart.settings import from_mapping
from tests.support.backend_env import backend_values, garage_key
from tests.support.backend_servers import GarageServer, PostgresServer, RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def base(
    pg_server: PostgresServer, redis_server: RedisServer, garage_ready: GarageServer
) -> Iterator[dict[str, str]]:
    """.env values of backends bootstrapped once for this module."""
    tag = secrets.token_hex(4)
    names = {"role": f"doc_{tag}", "db": f"doc_{tag}", "bucket": f"doc-{tag}"}
    values = backend_values(pg_server, redis_server, garage_ready, 30, names, garage_key())
    redis_server.client(30).flushdb()
    bootstrap(
        from_mapping(values),
        environ={"PG_ADMIN_PASSWORD": pg_server.admin_password},
        say=lambda _: None,
    )
    yield values


def doctor(values: dict[str, str]) -> dict[str, Finding]:
    ctx = DoctorContext(from_mapping(values), DoctorOptions(timeout=5))
    return {
        f.id.removeprefix("backends."): f for f in runner.run(ctx, registry(ctx, ("backends",)))
    }


def statuses(found: dict[str, Finding]) -> dict[str, str]:
    return {k: f.status.value for k, f in found.items()}


def test_everything_passes_after_bootstrap(base: dict[str, str]) -> None:
    found = doctor(base)
    assert statuses(found) == {
        "postgres.login": "ok",
        "postgres.trust": "ok",
        "postgres.database": "ok",
        "postgres.primary": "ok",
        "redis.auth": "ok",
        "redis.db": "ok",
        "garage.probe": "ok",
        "garage.region": "ok",
        "garage.disk": found["garage.disk"].status.value,
        "garage.nodes": "ok",
    }
    assert "logged in over TCP with SCRAM-SHA-256" in found["postgres.login"].message
    assert "a wrong password is refused" in found["postgres.trust"].message
    assert "PUT, GET and DELETE" in found["garage.probe"].message
    # the stable address reaches a server that is not in recovery (Postgres' own answer)
    assert "reaches the primary" in found["postgres.primary"].message
    assert "all 1 Garage node(s) of the layout are up" in found["garage.nodes"].message


def test_wrong_password_caught_over_scram_that_loopback_would_have_accepted(
    base: dict[str, str],
    pg_server: PostgresServer,
) -> None:
    import psycopg

    wrong = secrets.token_hex(12)
    # over loopback the server is trust: the wrong password "works"
    with psycopg.connect(
        host="127.0.0.1",
        port=pg_server.port,
        user=base["STALWART_DB_USER"],
        password=wrong,
        dbname="postgres",
    ) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)

    found = doctor({**base, "STALWART_DB_PASSWORD": wrong})
    assert found["postgres.login"].status is Status.ERROR
    assert "STALWART_DB_PASSWORD is rejected over SCRAM" in found["postgres.login"].message
    assert "--fix-password" in found["postgres.login"].advice
    assert found["postgres.database"].status is Status.ERROR
    assert found["postgres.trust"].status is Status.OK
    assert all(wrong not in f.message + f.advice for f in found.values())


def test_loopback_trust_is_flagged_and_never_counts_as_proof(
    base: dict[str, str],
    pg_server: PostgresServer,
) -> None:
    found = doctor({**base, "STALWART_DB_HOST": "127.0.0.1"})
    assert found["postgres.trust"].status is Status.ERROR
    assert "a WRONG password was accepted" in found["postgres.trust"].message
    assert found["postgres.login"].status is Status.ERROR
    assert "did not ask for SCRAM-SHA-256" in found["postgres.login"].message


def test_database_missing_or_owned_by_another_role(
    base: dict[str, str],
    pg_server: PostgresServer,
) -> None:
    missing = doctor({**base, "STALWART_DB_NAME": "nope_" + secrets.token_hex(3)})
    assert missing["postgres.database"].status is Status.ERROR
    assert "does not exist" in missing["postgres.database"].message
    assert missing["postgres.database"].advice == "run inv bootstrap"

    other = "other_" + secrets.token_hex(3)
    with pg_server.admin() as conn:
        conn.execute(f'CREATE DATABASE "{other}"')
    found = doctor({**base, "STALWART_DB_NAME": other})
    assert found["postgres.database"].status is Status.ERROR
    assert f"is owned by 'postgres', not '{base['STALWART_DB_USER']}'" in (
        found["postgres.database"].message
    )


def test_redis_wrong_password_foreign_and_unclaimed_db(
    base: dict[str, str],
    redis_server: RedisServer,
) -> None:
    found = doctor({**base, "STALWART_REDIS_PASSWORD": secrets.token_hex(8)})
    assert found["redis.auth"].status is Status.ERROR
    assert "STALWART_REDIS_PASSWORD is rejected" in found["redis.auth"].message

    foreign = redis_server.client(29)
    foreign.flushdb()
    foreign.set("celery-task-meta-1", "x")
    found = doctor({**base, "STALWART_REDIS_DB": "29"})
    assert found["redis.auth"].status is Status.OK
    assert found["redis.db"].status is Status.ERROR
    assert "DB 29 is used by another app: celery-task-meta-1" in found["redis.db"].message

    foreign.flushdb()
    found = doctor({**base, "STALWART_REDIS_DB": "29"})
    assert found["redis.db"].status is Status.WARNING
    assert "run inv bootstrap to claim it" in found["redis.db"].advice

    found = doctor({**base, "STALWART_REDIS_DB": "40"})  # the server has 32
    assert found["redis.auth"].status is Status.ERROR
    assert "DB 40 does not exist" in found["redis.auth"].message


def test_garage_wrong_secret_read_only_grant_missing_bucket_and_region(
    base: dict[str, str],
    garage_ready: GarageServer,
) -> None:
    found = doctor({**base, "STALWART_S3_SECRET_KEY": secrets.token_hex(32)})
    assert found["garage.probe"].status is Status.ERROR
    assert found["garage.probe"].message.startswith(
        f"bucket '{base['STALWART_S3_BUCKET']}': PUT failed"
    )

    # boto3 follows Garage's region hint on its own; Stalwart does not: compare explicitly
    found = doctor({**base, "STALWART_S3_REGION": "eu-west-9"})
    assert found["garage.region"].status is Status.ERROR
    assert found["garage.region"].message == (
        "Garage's region is 'garage', STALWART_S3_REGION is 'eu-west-9'"
    )
    assert "s3_region" in found["garage.region"].advice

    found = doctor({**base, "STALWART_S3_BUCKET": "missing-" + secrets.token_hex(3)})
    assert found["garage.probe"].status is Status.ERROR
    assert "NoSuchBucket" in found["garage.probe"].message

    # a key that may read but not write: PUT is refused
    api = GarageAdmin(garage_ready.admin_url, garage_ready.admin_token)
    reader, reader_secret = garage_key()
    api.post("ImportKey", {"accessKeyId": reader, "secretAccessKey": reader_secret})
    bucket = api.bucket(base["STALWART_S3_BUCKET"])
    assert bucket is not None
    api.post(
        "AllowBucketKey",
        {
            "bucketId": bucket["id"],
            "accessKeyId": reader,
            "permissions": {"read": True, "write": False, "owner": False},
        },
    )
    api.close()
    found = doctor(
        {**base, "STALWART_S3_ACCESS_KEY": reader, "STALWART_S3_SECRET_KEY": reader_secret}
    )
    assert found["garage.probe"].status is Status.ERROR
    assert "PUT failed: AccessDenied" in found["garage.probe"].message
    assert "read+write grant" in found["garage.probe"].advice
    assert found["garage.region"].status is Status.OK


def test_the_garage_disk_is_judged_as_the_filesystem_says(
    base: dict[str, str], garage_ready: GarageServer
) -> None:
    """The fullest data disk in percent, as statvfs of Garage's data directory says (the
    oracle: the filesystem, not Garage's answer), and a limit under it warns."""
    import os

    stat = os.statvfs(garage_ready.base / "data")
    expected = 100 * (1 - stat.f_bavail / stat.f_blocks)
    found = doctor(base)["garage.disk"]
    assert found.value is not None and abs(found.value - expected) < 1.0, (found, expected)
    assert found.limit == 85 and found.unit == "percent"
    assert found.status is (Status.WARNING if expected > 85 else Status.OK)
    low = int(expected) - 1
    tight = doctor({**base, "DOCTOR_LIMITS": f"disk-percent={max(low, 0)}"})["garage.disk"]
    assert tight.status is Status.WARNING and "DOCTOR_LIMITS disk-percent" in tight.message
    # without the admin token the check is not run (the doctor reads no admin API)
    assert "garage.disk" not in doctor({**base, "GARAGE_ADMIN_TOKEN": ""})
