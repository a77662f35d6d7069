"""Postgres side of a backup: a SCRAM login, a dump and row facts from ONE snapshot; restore.

The login demands SCRAM from the server (libpq ``require_auth``) and refuses a host
that resolves to loopback, where the shared containers trust any password. The dump
(``pg_dump --snapshot``) and the per-table row counts and checksums are taken from the
same exported snapshot, so the manifest describes exactly what the dump holds.
``pg_dump``/``pg_restore`` get the password in their environment, never in argv.

SCRAM for the pg tools: with libpq >= 16 they get ``require_auth=scram-sha-256`` and
refuse any other method themselves. An older client (Debian 12's is 15) has no such
option, so each tool runs right after a SCRAM-only login of tailwart's own (psycopg's
libpq >= 16) to the very address the tool is then pinned to (``hostaddr``): a server
that asks for a cleartext or md5 password is refused before any tool starts. What that
cannot exclude is an active attacker between the two connections; the tailnet's
WireGuard is what stands there.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backends.postgres import PgTarget
from ..errors import UsageError
from .errors import BackupError

if TYPE_CHECKING:
    import psycopg

Progress = Callable[[str], None]

#: user tables: every ordinary table outside the system schemas
TABLES_SQL = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
ORDER BY 1, 2
"""
#: the lines of pg_dump/pg_restore --verbose worth showing as progress
TABLE_LINE = re.compile(r'(dumping contents of table|processing data for table) "([^"]+)"')
#: an order-independent digest of a table's rows (md5 of the sorted row md5s)
CHECKSUM_SQL = (
    "SELECT count(*), coalesce(md5(string_agg(h, '' ORDER BY h)), '') "
    "FROM (SELECT md5(t::text) AS h FROM {} t) s"
)


#: the database a backup reads or a restore writes: bootstrap's target (host, port, dbname,
#: role, password from STALWART_DB_*)
PgSource = PgTarget


def where(source: PgSource) -> str:
    return f"{source.role}@{source.host}:{source.port}/{source.dbname}"


#: the first libpq with ``require_auth`` (a client that refuses every method but SCRAM)
REQUIRE_AUTH_LIBPQ = 16


def tool_env(source: PgSource) -> dict[str, str]:
    """Environment for pg_dump/pg_restore: the password, and no inherited PG* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGPASSWORD=source.password, PGCONNECT_TIMEOUT="15", PGAPPNAME="tailwart-backup")
    return env


def pinned(source: PgSource) -> str:
    """The one address ``source.host`` is reached at for the whole run (resolved once)."""
    import socket

    try:
        infos = socket.getaddrinfo(source.host, source.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise BackupError(
            f"postgres: cannot resolve {source.host!r} (STALWART_DB_HOST): {exc.strerror}"
        ) from None
    return str(infos[0][4][0])


def tool_major(tool: str) -> int:
    """The major version of ``tool`` (pg_dump, pg_restore), and so of the libpq it carries
    at least (Debian's postgresql-client-N needs libpq5 >= N); 0 when unknown."""
    match = re.search(r"\b(\d+)(?:\.\d+)*\b", tool_version(tool))
    return int(match.group(1)) if match else 0


def tool_args(source: PgSource, hostaddr: str, tool: str) -> list[str]:
    """The connection of pg_dump/pg_restore as one conninfo (``-d``): the pinned address the
    SCRAM probe reached, and, with libpq >= 16, ``require_auth=scram-sha-256`` so the tool
    itself refuses any other method before it sends the password."""
    from psycopg.conninfo import make_conninfo

    extra = {"require_auth": "scram-sha-256"} if tool_major(tool) >= REQUIRE_AUTH_LIBPQ else {}
    conninfo = make_conninfo(
        host=source.host,
        hostaddr=hostaddr,
        port=source.port,
        user=source.role,
        dbname=source.dbname,
        **extra,
    )
    return ["-d", conninfo]


def refuse_loopback(source: PgSource, key: str = "STALWART_DB_HOST") -> None:
    """Loopback is ``trust`` on the shared containers: a login there proves nothing."""
    from ..backends.postgres import is_loopback

    if is_loopback(source.host):
        raise UsageError(
            f"{key}: {source.host!r} is loopback or a socket, where Postgres may trust any "
            "password; back up over the tailnet address with a SCRAM login"
        )


def connect(
    source: PgSource, autocommit: bool = True, timeout: int = 15, hostaddr: str = ""
) -> psycopg.Connection[Any]:
    """A SCRAM-only TCP login (libpq ``require_auth``: the password is never sent to a
    server asking for another method); a refusal names the role and host, never the
    password. ``hostaddr`` pins the address (the one a pg tool then reaches)."""
    import psycopg

    try:
        return psycopg.connect(
            hostaddr=hostaddr or None,  # None: not pinned (psycopg leaves it out)
            host=source.host,
            port=source.port,
            user=source.role,
            password=source.password,
            dbname=source.dbname,
            connect_timeout=timeout,
            autocommit=autocommit,
            application_name="tailwart-backup",
            require_auth="scram-sha-256",
        )
    except psycopg.OperationalError as exc:
        text = str(exc).strip().splitlines()
        reason = text[-1].strip() if text else type(exc).__name__
        for marker in ("FATAL:", "ERROR:"):
            if marker in reason:
                reason = reason.rsplit(marker, 1)[1].strip()
        raise BackupError(
            f"postgres: cannot log in as {where(source)} over SCRAM: {reason}"
        ) from None


def tables(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    return [(str(r[0]), str(r[1])) for r in conn.execute(TABLES_SQL).fetchall()]


def table_facts(conn: psycopg.Connection[Any], progress: Progress) -> dict[str, dict[str, Any]]:
    """{schema.table: {rows, checksum}} for every user table, in the connection's snapshot."""
    from psycopg import sql

    out: dict[str, dict[str, Any]] = {}
    for schema, name in tables(conn):
        query = sql.SQL(CHECKSUM_SQL).format(sql.Identifier(schema, name))
        row = conn.execute(query).fetchone()
        assert row is not None
        out[f"{schema}.{name}"] = {"rows": int(row[0]), "checksum": str(row[1])}
        progress(f"postgres: {schema}.{name}: {row[0]} rows")
    return out


def server_version(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"


def tool_version(tool: str) -> str:
    try:
        out = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False)
    except OSError:
        raise BackupError(
            f"{tool} is missing: install postgresql-client (scripts/setup/60-backup.sh)"
        ) from None
    return out.stdout.strip().rsplit(" ", 1)[-1] if out.stdout else "unknown"


@dataclass(frozen=True)
class Dumped:
    path: Path
    server_version: str
    pg_dump_version: str
    tables: dict[str, dict[str, Any]]


def dump(source: PgSource, out: Path, progress: Progress) -> Dumped:
    """``pg_dump -Fc -Z0`` of the database and its table facts, from one exported snapshot.

    -Z0 leaves compression to restic, so an unchanged table deduplicates between runs.
    """
    import psycopg

    hostaddr = pinned(source)
    conn = connect(source, autocommit=False, hostaddr=hostaddr)
    try:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        row = conn.execute("SELECT pg_export_snapshot()").fetchone()
        assert row is not None
        snapshot = str(row[0])
        version = server_version(conn)
        pg_dump_version = tool_version("pg_dump")
        part = out.with_name(out.name + ".part")
        out.parent.mkdir(parents=True, exist_ok=True)
        progress(f"postgres: pg_dump {source.dbname} (snapshot {snapshot}) → {out.name}")
        argv = [
            "pg_dump",
            *tool_args(source, hostaddr, "pg_dump"),
            "--format=custom",
            "--compress=0",
            "--verbose",
            f"--snapshot={snapshot}",
            f"--file={part}",
        ]
        code, stderr = run_verbose(argv, tool_env(source), progress)
        if code != 0:
            part.unlink(missing_ok=True)
            raise BackupError(f"pg_dump of {where(source)} failed: {_pg_words(stderr)}")
        facts = table_facts(conn, progress)
        conn.rollback()
    except psycopg.Error as exc:
        raise BackupError(f"postgres: {exc.diag.message_primary or exc}") from None
    finally:
        conn.close()
    part.replace(out)
    return Dumped(out, version, pg_dump_version, facts)


def run_verbose(argv: list[str], env: dict[str, str], progress: Progress) -> tuple[int, str]:
    """Run a --verbose pg tool: each table it starts on becomes a progress line."""
    try:
        proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
    except OSError:
        raise BackupError(
            f"{argv[0]} is missing: install postgresql-client (scripts/setup/60-backup.sh)"
        ) from None
    assert proc.stderr is not None
    kept: list[str] = []
    for line in proc.stderr:
        match = TABLE_LINE.search(line)
        if match:
            progress(f"postgres: {argv[0]}: {match.group(1)} {match.group(2)}")
        else:
            kept.append(line)
    return proc.wait(), "".join(kept[-20:])


def _pg_words(stderr: str) -> str:
    """The error lines of a pg tool's stderr (its --verbose chatter left out)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "fatal" in line.lower()]
    return "; ".join((errors or lines)[-3:])[:400] if lines else "no message"


def user_tables(source: PgSource) -> list[str]:
    """Names of the user tables in a database (empty: a fresh database)."""
    conn = connect(source)
    try:
        return [f"{s}.{t}" for s, t in tables(conn)]
    finally:
        conn.close()


def identity(source: PgSource) -> tuple[str, int]:
    """What the database IS, however it is spelled or reached: the cluster's system
    identifier (``pg_control_system()``) and the database's oid in that cluster."""
    import psycopg

    conn = connect(source)
    try:
        row = conn.execute(
            "SELECT (SELECT system_identifier FROM pg_control_system()), "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchone()
    except psycopg.Error as exc:
        raise BackupError(
            f"postgres: cannot read the identity of {where(source)}: "
            f"{exc.diag.message_primary or type(exc).__name__}"
        ) from None
    finally:
        conn.close()
    if row is None or row[0] is None or row[1] is None:
        raise BackupError(f"postgres: {where(source)} did not say what it is")
    return str(row[0]), int(row[1])


def database_size(source: PgSource) -> int:
    conn = connect(source)
    try:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        return int(row[0]) if row else 0
    finally:
        conn.close()


def restore(target: PgSource, dump_file: Path, progress: Progress, clean: bool = False) -> None:
    """``pg_restore`` into the target database as its own role, in one transaction.

    ``clean`` (restore --force onto a non-empty target) drops the dump's objects first.
    """
    progress(f"postgres: pg_restore into {where(target)}")
    hostaddr = pinned(target)
    connect(target, hostaddr=hostaddr).close()  # SCRAM, at the address pg_restore reaches
    extra = ["--clean", "--if-exists"] if clean else []
    argv = [
        "pg_restore",
        *tool_args(target, hostaddr, "pg_restore"),
        "--no-owner",
        "--no-privileges",
        "--exit-on-error",
        "--single-transaction",
        "--verbose",
        *extra,
        str(dump_file),
    ]
    code, stderr = run_verbose(argv, tool_env(target), progress)
    if code != 0:
        raise BackupError(
            f"pg_restore into {where(target)} failed and was rolled back: {_pg_words(stderr)}"
        )


def target_facts(target: PgSource, progress: Progress) -> dict[str, dict[str, Any]]:
    conn = connect(target)
    try:
        return table_facts(conn, progress)
    finally:
        conn.close()
