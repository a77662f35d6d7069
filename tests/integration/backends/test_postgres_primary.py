"""backends.postgres.primary against a real primary and a real hot standby of it
(pg_basebackup -R), both reached over SCRAM on the test network: the doctor says which
one the stable address reaches."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tailwart.doctor import runner
from tailwart.doctor.registry import DoctorContext, DoctorOptions, registry
from tailwart.findings import Finding
from tailwart.settings import from_mapping
from tests.support.backend_env import values
from tests.support.backend_servers import (
    PG_BIN,
    PostgresServer,
    free_port,
    port_open,
    stop,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RUN_AS: dict[str, Any] = {"user": "postgres", "group": "postgres", "extra_groups": []}


@pytest.fixture(scope="module")
def stalwart_role(pg_server: PostgresServer) -> dict[str, str]:
    """Stalwart's role and database on the primary (the standby replicates them)."""
    tag = secrets.token_hex(4)
    role, password = f"prim_{tag}", secrets.token_hex(16)
    with pg_server.admin() as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        conn.execute(f"CREATE DATABASE {role} OWNER {role}")
        # pg_basebackup over the socket: replication needs a rule of its own
        hba = conn.execute("SHOW hba_file").fetchone()
        assert hba is not None
        Path(hba[0]).write_text("local replication all trust\n" + Path(hba[0]).read_text())
        conn.execute("SELECT pg_reload_conf()")
    return {"role": role, "password": password}


@pytest.fixture(scope="module")
def standby(pg_server: PostgresServer, stalwart_role: dict[str, str]) -> Iterator[int]:
    """A hot standby streaming from ``pg_server`` on its test-network address; its port."""
    data = pg_server.base / "standby"
    subprocess.run(
        [
            str(PG_BIN / "pg_basebackup"),
            "-h",
            str(pg_server.base),
            "-p",
            str(pg_server.port),
            "-U",
            "postgres",
            "-D",
            str(data),
            "-R",
            "-X",
            "stream",
            "--no-sync",
            "--checkpoint=fast",
        ],
        check=True,
        capture_output=True,
        cwd=pg_server.base,
        **RUN_AS,
    )
    port = free_port()
    log = pg_server.base / "standby.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(PG_BIN / "postgres"),
                "-D",
                str(data),
                "-c",
                f"listen_addresses={pg_server.tcp_host}",
                "-c",
                f"port={port}",
                "-c",
                f"unix_socket_directories={data}",
                "-c",
                "hot_standby=on",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=pg_server.base,
            **RUN_AS,
        )
    try:
        wait_for(lambda: port_open(pg_server.tcp_host, port), "standby", proc=proc, log=log)
        yield port
    finally:
        stop(proc)
        shutil.rmtree(data, ignore_errors=True)


def primary_check(pg: PostgresServer, role: dict[str, str], port: int) -> Finding:
    settings = from_mapping(
        values(
            STALWART_DB_HOST=pg.tcp_host,
            STALWART_DB_PORT=str(port),
            STALWART_DB_NAME=role["role"],
            STALWART_DB_USER=role["role"],
            STALWART_DB_PASSWORD=role["password"],
        )
    )
    ctx = DoctorContext(settings, DoctorOptions(timeout=5))
    (check,) = [c for c in registry(ctx, ("backends",)) if c.id == "backends.postgres.primary"]
    (found,) = runner.run(ctx, [check])
    return found


def in_recovery(pg: PostgresServer, port: int) -> bool:
    """Postgres' own answer, asked as the admin over the socket (the test's oracle)."""
    import psycopg

    with psycopg.connect(host=str(pg.base), port=port, user="postgres", dbname="postgres") as c:
        row = c.execute("SELECT pg_is_in_recovery()").fetchone()
    assert row is not None
    return bool(row[0])


def test_the_doctor_tells_the_primary_from_a_standby(
    pg_server: PostgresServer, stalwart_role: dict[str, str], standby: int
) -> None:
    assert not in_recovery(pg_server, pg_server.port)
    on_primary = primary_check(pg_server, stalwart_role, pg_server.port)
    assert on_primary.status.value == "ok", on_primary
    assert f"reaches the primary ({pg_server.tcp_host}:{pg_server.port}" in on_primary.message

    wait_for(lambda: _logs_in(pg_server, stalwart_role, standby), "standby replays the role")
    on_standby = primary_check(pg_server, stalwart_role, standby)
    assert on_standby.status.value == "error", on_standby
    assert f"reaches a standby ({pg_server.tcp_host}:{standby} is in recovery)" in (
        on_standby.message
    )
    assert "stable address must follow the primary" in on_standby.advice
    assert stalwart_role["password"] not in on_standby.message + on_standby.advice


def _logs_in(pg: PostgresServer, role: dict[str, str], port: int) -> bool:
    import psycopg

    with psycopg.connect(
        host=pg.tcp_host,
        port=port,
        user=role["role"],
        password=role["password"],
        dbname=role["role"],
        require_auth="scram-sha-256",
    ):
        return True
