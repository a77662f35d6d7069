"""inv bootstrap against real Postgres (SCRAM over 198.18/15), Redis and a fresh Garage node."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from tailwart.backends.bootstrap import bootstrap
from tailwart.backends.garage import GarageAdmin
from tailwart.backends.redis_store import MARKER_KEY
from tailwart.settings import from_mapping
from tests.support.backend_env import backend_values, garage_key, inv
from tests.support.backend_servers import GarageServer, PostgresServer, RedisServer
from tests.support.doc_samples import check_sample
from tests.support.testkit import write_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def admin_env(pg: PostgresServer) -> dict[str, str]:
    return {"PG_ADMIN_PASSWORD": pg.admin_password}


def role_state(pg: PostgresServer, role: str, db: str) -> tuple[bool, str | None]:
    with pg.admin() as conn:
        has_role = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        owner = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (db,)
        ).fetchone()
    return has_role is not None, owner[0] if owner else None


def scram_login(pg: PostgresServer, role: str, password: str, db: str) -> str:
    import psycopg

    with psycopg.connect(
        host=pg.tcp_host,
        port=pg.port,
        user=role,
        password=password,
        dbname=db,
        require_auth="scram-sha-256",
    ) as conn:
        row = conn.execute("SELECT current_user").fetchone()
    assert row is not None
    return str(row[0])


def s3_roundtrip(garage: GarageServer, bucket: str, key: tuple[str, str]) -> bytes:
    client = garage.s3_client(key)
    client.put_object(Bucket=bucket, Key="hello", Body=b"stalwart")
    body: bytes = client.get_object(Bucket=bucket, Key="hello")["Body"].read()
    client.delete_object(Bucket=bucket, Key="hello")
    return body


def plan_lines(out: str) -> list[str]:
    return [
        line
        for line in out.splitlines()
        if line.split()[:1] in (["postgres"], ["redis"], ["garage"])
    ]


def test_bootstrap_creates_everything_then_a_second_run_changes_nothing(
    tmp_path: Path,
    pg_server: PostgresServer,
    redis_server: RedisServer,
    garage_fresh: GarageServer,
    redis_db: int,
    names: dict[str, str],
) -> None:
    key = garage_key()
    values = backend_values(pg_server, redis_server, garage_fresh, redis_db, names, key)
    env = write_env(tmp_path / ".env", values)
    secret_values = [
        values[k]
        for k in (
            "STALWART_DB_PASSWORD",
            "STALWART_REDIS_PASSWORD",
            "STALWART_S3_SECRET_KEY",
            "GARAGE_ADMIN_TOKEN",
        )
    ]
    secret_values.append(pg_server.admin_password)

    # dry run: the whole plan, nothing changed
    dry = inv(
        "bootstrap",
        "--env-file",
        str(env),
        "--dry-run",
        "--init-layout",
        env_extra=admin_env(pg_server),
    )
    assert dry.returncode == 0, dry.stderr
    assert "dry run: 7 change(s) planned; nothing was changed" in dry.stdout
    assert role_state(pg_server, names["role"], names["db"]) == (False, None)
    assert redis_server.client(redis_db).dbsize() == 0
    api = GarageAdmin(garage_fresh.admin_url, garage_fresh.admin_token)
    assert api.get("GetClusterLayout")["version"] == 0

    # --check: the same plan, exit 1 on drift, nothing changed (the one plan vocabulary)
    check = inv(
        "bootstrap",
        "--env-file",
        str(env),
        "--check",
        "--init-layout",
        env_extra=admin_env(pg_server),
    )
    assert check.returncode == 1, check.stdout + check.stderr
    assert "bootstrap --check: 7 change(s) would be made; nothing was changed" in check.stderr
    assert role_state(pg_server, names["role"], names["db"]) == (False, None)

    # no layout and no --init-layout: refused, nothing applied anywhere
    refused = inv("bootstrap", "--env-file", str(env), env_extra=admin_env(pg_server))
    assert refused.returncode == 1
    assert "garage    refuse  cluster layout: no layout is applied yet" in refused.stdout
    assert "--init-layout" in refused.stdout
    assert "nothing was changed" in refused.stderr
    assert role_state(pg_server, names["role"], names["db"]) == (False, None)

    first = inv(
        "bootstrap", "--env-file", str(env), "--init-layout", env_extra=admin_env(pg_server)
    )
    assert first.returncode == 0, first.stdout + first.stderr
    lines = plan_lines(first.stdout)
    assert [line.split()[:2] for line in lines] == [
        ["postgres", "create"],
        ["postgres", "create"],
        ["redis", "create"],
        ["garage", "create"],
        ["garage", "create"],
        ["garage", "create"],
        ["garage", "create"],
    ]
    assert "done: 7 change(s) applied" in first.stdout

    # the real state: SCRAM login over the network, owner, marker, S3 read+write
    assert (
        scram_login(pg_server, names["role"], values["STALWART_DB_PASSWORD"], names["db"])
        == names["role"]
    )
    assert role_state(pg_server, names["role"], names["db"]) == (True, names["role"])
    assert str(redis_server.client(redis_db).get(MARKER_KEY)).startswith("tailwart/stalwart")
    assert s3_roundtrip(garage_fresh, names["bucket"], key) == b"stalwart"
    layout = api.get("GetClusterLayout")
    assert layout["version"] == 1 and len(layout["roles"]) == 1

    second = inv(
        "bootstrap", "--env-file", str(env), "--init-layout", env_extra=admin_env(pg_server)
    )
    assert second.returncode == 0, second.stdout + second.stderr
    assert {line.split()[1] for line in plan_lines(second.stdout)} == {"keep"}
    assert "nothing to change: Postgres, Redis and Garage already match .env" in second.stdout
    assert "applying" not in second.stdout
    check_sample("bootstrap-again", second.stdout)  # docs/guides/backends.md
    clean = inv(
        "bootstrap", "--env-file", str(env), "--check", "--json", env_extra=admin_env(pg_server)
    )
    assert clean.returncode == 0, clean.stdout + clean.stderr
    document = json.loads(clean.stdout)
    assert document["changes"] == [] and len(document["steps"]) == 7
    assert api.get("GetClusterLayout")["version"] == 1
    assert len(api.get("ListKeys")) == 1
    api.close()

    for run in (dry, refused, first, second):
        for value in secret_values:
            assert value not in run.stdout + run.stderr


@pytest.fixture
def ready(
    tmp_path: Path,
    pg_server: PostgresServer,
    redis_server: RedisServer,
    garage_ready: GarageServer,
    redis_db: int,
    names: dict[str, str],
) -> tuple[Path, dict[str, str]]:
    """A .env whose backends were bootstrapped once (shared Garage node with a layout)."""
    values = backend_values(pg_server, redis_server, garage_ready, redis_db, names, garage_key())
    env = write_env(tmp_path / ".env", values)
    plan = bootstrap(from_mapping(values), environ=admin_env(pg_server), say=lambda _: None)
    assert len(plan.changes) == 6 and not plan.refusals  # all but the layout
    return env, values


def test_drifted_password_is_reported_then_fixed_with_fix_password(
    ready: tuple[Path, dict[str, str]],
    pg_server: PostgresServer,
) -> None:
    env, values = ready
    role = values["STALWART_DB_USER"]
    with pg_server.admin() as conn:  # someone re-created the volume with another password
        conn.execute(f"ALTER ROLE \"{role}\" PASSWORD '{secrets.token_hex(8)}'")

    doctor = inv("doctor", "--env-file", str(env), "--only", "backends")
    assert doctor.returncode == 1
    assert "STALWART_DB_PASSWORD is rejected over SCRAM" in doctor.stdout

    report = inv("bootstrap", "--env-file", str(env), env_extra=admin_env(pg_server))
    assert report.returncode == 1
    assert f"postgres  refuse  role '{role}' password: differs from STALWART_DB_PASSWORD" in (
        report.stdout
    )
    assert "--fix-password" in report.stdout

    fixed = inv(
        "bootstrap", "--env-file", str(env), "--fix-password", env_extra=admin_env(pg_server)
    )
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert f"postgres  change  role '{role}' password" in fixed.stdout
    assert "done: 1 change(s) applied" in fixed.stdout
    assert scram_login(pg_server, role, values["STALWART_DB_PASSWORD"], values["STALWART_DB_NAME"])


def test_foreign_redis_db_is_refused_naming_its_keys_and_nothing_is_applied(
    tmp_path: Path,
    pg_server: PostgresServer,
    redis_server: RedisServer,
    garage_ready: GarageServer,
    redis_db: int,
    names: dict[str, str],
) -> None:
    other_app = redis_server.client(redis_db)
    other_app.set("session:42", "x")
    other_app.rpush("queue:jobs", "a")
    values = backend_values(pg_server, redis_server, garage_ready, redis_db, names, garage_key())
    env = write_env(tmp_path / ".env", values)
    run = inv("bootstrap", "--env-file", str(env), env_extra=admin_env(pg_server))
    assert run.returncode == 1
    assert (
        f"redis     refuse  DB {redis_db}: another app uses it: 2 key(s) without tailwart's "
        "marker: queue:jobs, session:42"
    ) in run.stdout
    assert "choose a free STALWART_REDIS_DB" in run.stdout
    assert role_state(pg_server, names["role"], names["db"]) == (False, None)
    assert other_app.get(MARKER_KEY) is None


def test_database_owned_by_another_role_is_refused(
    tmp_path: Path,
    pg_server: PostgresServer,
    redis_server: RedisServer,
    garage_ready: GarageServer,
    redis_db: int,
    names: dict[str, str],
) -> None:
    with pg_server.admin() as conn:
        conn.execute(f'CREATE DATABASE "{names["db"]}"')  # owned by postgres
    values = backend_values(pg_server, redis_server, garage_ready, redis_db, names, garage_key())
    env = write_env(tmp_path / ".env", values)
    run = inv("bootstrap", "--env-file", str(env), env_extra=admin_env(pg_server))
    assert run.returncode == 1
    assert f"database '{names['db']}': is owned by 'postgres'" in run.stdout
    assert role_state(pg_server, names["role"], names["db"]) == (False, "postgres")


def test_garage_key_with_another_secret_is_refused(
    ready: tuple[Path, dict[str, str]],
    tmp_path: Path,
    pg_server: PostgresServer,
) -> None:
    env, values = ready
    values = {**values, "STALWART_S3_SECRET_KEY": secrets.token_hex(32)}
    env = write_env(tmp_path / "other.env", values)
    run = inv("bootstrap", "--env-file", str(env), env_extra=admin_env(pg_server))
    assert run.returncode == 1
    assert "exists with another secret than STALWART_S3_SECRET_KEY" in run.stdout
    assert values["STALWART_S3_SECRET_KEY"] not in run.stdout + run.stderr


def test_missing_admin_password_and_bad_key_format_are_usage_errors(
    tmp_path: Path,
    pg_server: PostgresServer,
    redis_server: RedisServer,
    garage_ready: GarageServer,
    redis_db: int,
    names: dict[str, str],
) -> None:
    values = backend_values(pg_server, redis_server, garage_ready, redis_db, names, garage_key())
    env = write_env(tmp_path / ".env", values)
    run = inv("bootstrap", "--env-file", str(env))  # no PG_ADMIN_PASSWORD, no terminal
    assert run.returncode == 2
    assert "PG_ADMIN_PASSWORD" in run.stderr

    bad = write_env(tmp_path / "bad.env", {**values, "STALWART_S3_ACCESS_KEY": "stalwart"})
    run = inv("bootstrap", "--env-file", str(bad), env_extra=admin_env(pg_server))
    assert run.returncode == 2
    assert "STALWART_S3_ACCESS_KEY must be GK followed by 24 hex digits" in run.stderr
    assert role_state(pg_server, names["role"], names["db"]) == (False, None)
