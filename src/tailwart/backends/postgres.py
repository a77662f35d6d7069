"""Postgres for Stalwart: one LOGIN role and one database owned by it.

Bootstrap connects as the admin role over TCP; the admin password comes from
``PG_ADMIN_PASSWORD`` in the process environment or a prompt, never from a file.
The stalwart role's password is compared against the stored SCRAM verifier
(no login, so a ``trust`` rule cannot make a wrong password look right).
"""

from __future__ import annotations

import getpass
import ipaddress
import os
import sys
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..settings import Settings
from . import scram
from .plan import Action, BackendError, Step

if TYPE_CHECKING:
    import psycopg

NAME = "postgres"
ADMIN_PASSWORD_ENV = "PG_ADMIN_PASSWORD"


@dataclass(frozen=True)
class PgTarget:
    host: str
    port: int
    dbname: str
    role: str
    password: str

    @classmethod
    def from_settings(cls, settings: Settings) -> PgTarget:
        return cls(
            settings["STALWART_DB_HOST"],
            settings.port("STALWART_DB_PORT"),
            settings["STALWART_DB_NAME"],
            settings["STALWART_DB_USER"],
            settings["STALWART_DB_PASSWORD"],
        )


def is_loopback(host: str) -> bool:
    """``host`` is a socket path or resolves to loopback, where Postgres containers
    ``trust`` any password: a login there proves nothing."""
    import socket

    if host.startswith("/") or host.rstrip(".").lower() == "localhost":
        return True
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return any(is_local_address(str(info[4][0])) for info in infos)


def plain_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``text`` as an address, an IPv4-mapped IPv6 one (``::ffff:a.b.c.d``) as its IPv4
    address and a scope id dropped: one spelling per address, for comparing and judging."""
    address = ipaddress.ip_address(text.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_local_address(text: str) -> bool:
    """A loopback or unspecified address (both reach this host), in any spelling."""
    address = plain_address(text)
    return address.is_loopback or address.is_unspecified


def admin_password(user: str, environ: dict[str, str] | None = None) -> str:
    """``PG_ADMIN_PASSWORD`` from the environment, else a prompt on a terminal."""
    env = os.environ if environ is None else environ
    value = env.get(ADMIN_PASSWORD_ENV, "")
    if value:
        return value
    if not sys.stdin.isatty():
        raise UsageError(
            f"the Postgres admin role {user!r} needs a password: set {ADMIN_PASSWORD_ENV} in the "
            "environment (never in .env) or run inv bootstrap in a terminal to be prompted"
        )
    return getpass.getpass(f"password of Postgres admin role {user!r}: ")


def connect(
    host: str,
    port: int,
    user: str,
    password: str,
    dbname: str = "postgres",
    timeout: float = 10,
    **extra: Any,
) -> psycopg.Connection[Any]:
    """A TCP connection (autocommit); errors become BackendError without the password."""
    import psycopg

    try:
        return psycopg.connect(
            host=host,
            port=port,
            user=user,
            password=password,
            dbname=dbname,
            connect_timeout=max(1, int(timeout)),
            autocommit=True,
            application_name="tailwart",
            **extra,
        )
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise BackendError(
            f"postgres: cannot log in as {user!r} at {host}:{port}: {reason}"
        ) from None


class PostgresBootstrap:
    """Inspect and create the stalwart role and database through an admin connection."""

    def __init__(
        self, target: PgTarget, admin_user: str, admin_pw: str, fix_password: bool = False
    ) -> None:
        self.target = target
        self.admin_user = admin_user
        self.fix_password = fix_password
        self.conn = connect(target.host, target.port, admin_user, admin_pw)

    def close(self) -> None:
        self.conn.close()

    def _one(self, query: str, *params: object) -> tuple[Any, ...] | None:
        return self.conn.execute(query, params).fetchone()

    def _stored_password(self) -> tuple[bool, str | None]:
        """(readable, rolpassword); pg_authid is readable by superusers only."""
        import psycopg

        try:
            row = self._one(
                "SELECT rolpassword FROM pg_authid WHERE rolname = %s", self.target.role
            )
        except psycopg.errors.InsufficientPrivilege:
            return False, None
        return True, (row[0] if row else None)

    def _execute(self, statement: Any) -> None:
        import psycopg

        try:
            self.conn.execute(statement)
        except psycopg.Error as exc:
            raise BackendError(f"postgres: {exc.diag.message_primary or exc}") from None

    def steps(self) -> list[Step]:
        from psycopg import sql

        t = self.target
        role_id, db_id = sql.Identifier(t.role), sql.Identifier(t.dbname)
        out: list[Step] = []
        dangerous = self._dangerous_identity()
        if dangerous:
            return [dangerous]
        row = self._one("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", t.role)
        if row is None:
            stmt = sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                role_id, sql.Literal(scram.verifier(t.password))
            )
            out.append(
                Step(
                    NAME,
                    Action.CREATE,
                    f"role {t.role!r}",
                    "LOGIN, password from STALWART_DB_PASSWORD (sent as a SCRAM verifier)",
                    run=partial(self._execute, stmt),
                )
            )
        else:
            if not row[0]:
                stmt = sql.SQL("ALTER ROLE {} LOGIN").format(role_id)
                out.append(
                    Step(
                        NAME,
                        Action.CHANGE,
                        f"role {t.role!r}",
                        "grant LOGIN",
                        run=partial(self._execute, stmt),
                    )
                )
            out.append(self._password_step(role_id))
        owner = self._one(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", t.dbname
        )
        if owner is None:
            stmt = sql.SQL("CREATE DATABASE {} OWNER {}").format(db_id, role_id)
            out.append(
                Step(
                    NAME,
                    Action.CREATE,
                    f"database {t.dbname!r}",
                    f"owned by {t.role!r}",
                    run=partial(self._execute, stmt),
                )
            )
        elif owner[0] != t.role:
            out.append(
                Step(
                    NAME,
                    Action.REFUSE,
                    f"database {t.dbname!r}",
                    f"is owned by {owner[0]!r}",
                    advice=f"if it is Stalwart's: ALTER DATABASE {t.dbname} OWNER TO {t.role}; "
                    "otherwise choose another STALWART_DB_NAME",
                )
            )
        else:
            out.append(Step(NAME, Action.KEEP, f"database {t.dbname!r}", f"owned by {t.role!r}"))
        return out

    def _dangerous_identity(self) -> Step | None:
        """A refusal (exit 2) when Stalwart's role could administer the server.

        Refused: the admin role tailwart connects as; a role with SUPERUSER,
        CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS (Stalwart needs none: it owns
        one database); a member of a role that is a superuser or has CREATEROLE (SET
        ROLE would reach it) or of pg_execute_server_program / pg_read_server_files /
        pg_write_server_files. Nothing else is planned for the role then, so
        --fix-password can never rewrite such a role's password.
        """
        t = self.target
        problems: list[str] = []
        if t.role == self.admin_user:
            problems.append("is PG_ADMIN_USER, the admin role bootstrap connects as")
        row = self._one(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls "
            "FROM pg_roles WHERE rolname = %s",
            t.role,
        )
        if row is not None:
            names = ("SUPERUSER", "CREATEROLE", "CREATEDB", "REPLICATION", "BYPASSRLS")
            held = [name for name, on in zip(names, row, strict=True) if on]
            if held:
                problems.append(f"has {', '.join(held)}")
            via = self.conn.execute(
                "SELECT r.rolname FROM pg_roles r WHERE r.rolname <> %s AND "
                "(r.rolsuper OR r.rolcreaterole OR r.rolname IN ("
                "'pg_execute_server_program', 'pg_read_server_files', 'pg_write_server_files'"
                ")) AND pg_has_role(%s, r.oid, 'MEMBER') ORDER BY 1",
                (t.role, t.role),
            ).fetchall()
            if via:
                problems.append(f"is a member of {', '.join(repr(r[0]) for r in via)}")
        if not problems:
            return None
        return Step(
            NAME,
            Action.REFUSE,
            f"role {t.role!r} (STALWART_DB_USER)",
            "; ".join(problems),
            advice="give Stalwart its own plain login role (e.g. STALWART_DB_USER=stalwart); "
            "tailwart never changes a role that can administer the server",
            bad_input=True,
        )

    def _password_step(self, role_id: Any) -> Step:
        from psycopg import sql

        t = self.target
        what = f"role {t.role!r} password"
        readable, stored = self._stored_password()
        if not readable:
            return Step(
                NAME,
                Action.KEEP,
                what,
                f"not compared ({self.admin_user!r} cannot read pg_authid); "
                "inv doctor proves it over SCRAM",
            )
        verdict = scram.matches(stored, t.password, t.role)
        if verdict is True:
            return Step(NAME, Action.KEEP, what, "matches STALWART_DB_PASSWORD")
        if verdict is None:
            return Step(
                NAME,
                Action.KEEP,
                what,
                "stored in a format tailwart cannot compare; inv doctor proves it over SCRAM",
            )
        stmt = sql.SQL("ALTER ROLE {} PASSWORD {}").format(
            role_id, sql.Literal(scram.verifier(t.password))
        )
        if self.fix_password:
            return Step(
                NAME,
                Action.CHANGE,
                what,
                "differs from STALWART_DB_PASSWORD: ALTER ROLE … PASSWORD",
                run=partial(self._execute, stmt),
            )
        return Step(
            NAME,
            Action.REFUSE,
            what,
            "differs from STALWART_DB_PASSWORD (drifted)",
            advice="rerun with --fix-password to ALTER ROLE (never re-initialise the "
            "volume), or put the current password in .env",
        )
