"""inv bootstrap refuses a Stalwart role that could administer Postgres (issue 14, finding 6).

Real Debian PostgreSQL (SCRAM over 198.18/15). Oracle: the server's own catalog
(pg_authid) and a SCRAM login with the admin password, read before and after: a
refused run changes no role, no password and no database, and exits 2 naming
STALWART_DB_USER, with the secrets out of the output.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.backend_env import backend_values, garage_key, inv
from tests.support.backend_servers import GarageServer, PostgresServer, RedisServer
from tests.support.testkit import write_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def catalog(pg: PostgresServer) -> list[tuple[object, ...]]:
    """Every role with its attributes and stored password, and every database: the state."""
    with pg.admin() as conn:
        roles = conn.execute(
            "SELECT rolname, rolsuper, rolcreaterole, rolcanlogin, rolpassword FROM pg_authid "
            "ORDER BY 1"
        ).fetchall()
        dbs = conn.execute("SELECT datname, datdba FROM pg_database ORDER BY 1").fetchall()
    return [*roles, *dbs]


@pytest.mark.parametrize(
    ("setup", "says"),
    [
        (None, "is PG_ADMIN_USER"),
        ("CREATE ROLE {r} LOGIN SUPERUSER PASSWORD 'x-old-password'", "has SUPERUSER"),
        ("CREATE ROLE {r} LOGIN CREATEROLE PASSWORD 'x-old-password'", "has CREATEROLE"),
        ("CREATE ROLE {r} LOGIN CREATEDB PASSWORD 'x-old-password'", "has CREATEDB"),
        (
            "CREATE ROLE {r}_boss SUPERUSER; CREATE ROLE {r} LOGIN IN ROLE {r}_boss",
            "is a member of",
        ),
        ("CREATE ROLE {r} LOGIN IN ROLE pg_execute_server_program", "pg_execute_server_program"),
    ],
)
def test_dangerous_stalwart_role_exits_2_and_changes_nothing(
    tmp_path: Path,
    pg_server: PostgresServer,
    redis_server: RedisServer,
    garage_ready: GarageServer,
    redis_db: int,
    names: dict[str, str],
    setup: str | None,
    says: str,
) -> None:
    role = pg_server.admin_user if setup is None else names["role"]
    if setup is not None:
        with pg_server.admin() as conn:
            for statement in setup.format(r=role).split("; "):
                conn.execute(statement)
    values = backend_values(
        pg_server, redis_server, garage_ready, redis_db, {**names, "role": role}, garage_key()
    )
    env = write_env(tmp_path / ".env", values)
    before = catalog(pg_server)
    for extra in ((), ("--fix-password",)):
        done = inv(
            "bootstrap",
            "--env-file",
            str(env),
            *extra,
            env_extra={"PG_ADMIN_PASSWORD": pg_server.admin_password},
        )
        out = done.stdout + done.stderr
        assert done.returncode == 2, out
        assert "STALWART_DB_USER" in out and says in out
        assert "Traceback" not in out and "applying" not in out
        for secret in (values["STALWART_DB_PASSWORD"], pg_server.admin_password):
            assert secret not in out
        assert catalog(pg_server) == before
        assert redis_server.client(redis_db).dbsize() == 0  # no other backend was touched
    # the admin still logs in with its own password over the network (SCRAM)
    import psycopg

    with psycopg.connect(
        host=pg_server.tcp_host,
        port=pg_server.port,
        user=pg_server.admin_user,
        password=pg_server.admin_password,
        dbname="postgres",
        require_auth="scram-sha-256",
    ) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (pg_server.admin_user,)
