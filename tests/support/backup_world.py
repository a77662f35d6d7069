"""A mailbox-shaped world for the backup tests: a populated source database and bucket,
an empty target database and bucket, env files naming them, and independent oracles.

The oracles ask the servers directly (SQL over SCRAM, S3 listings and object bytes via
boto3, restic's own CLI), never tailwart's backup code.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.backend_env import backend_values, garage_key
from tests.support.backend_servers import GarageServer, PostgresServer, RedisServer
from tests.support.testkit import TOOL_CACHE, need, write_env

RESTIC = TOOL_CACHE / "tools" / "restic-v0.18.1" / "restic"

#: a data-store-shaped schema: key/value subspaces with bytea, counters, FTS, blob links
SCHEMA = """
CREATE TABLE m (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE i (k bytea PRIMARY KEY);
CREATE TABLE c (k bytea PRIMARY KEY, v bigint NOT NULL DEFAULT 0);
CREATE TABLE b (k bytea PRIMARY KEY, blob_key text NOT NULL);
CREATE TABLE s_email (id bigint PRIMARY KEY, body text, fts tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', coalesce(body, ''))) STORED);
CREATE INDEX s_email_fts ON s_email USING gin (fts);
"""


def restic_needed() -> Path:
    need(RESTIC.exists(), f"{RESTIC} is missing (scripts/setup/60-backup.sh builds it)")
    return RESTIC


def s3(garage: GarageServer, key: tuple[str, str]) -> Any:
    return garage.s3_client(key)


def make_bucket(garage: GarageServer, name: str, key: tuple[str, str]) -> None:
    from tailwart.backends.garage import GarageAdmin

    api = GarageAdmin(garage.admin_url, garage.admin_token)
    try:
        if api.key(key[0]) is None:
            api.post("ImportKey", {"accessKeyId": key[0], "secretAccessKey": key[1], "name": name})
        bucket = api.post("CreateBucket", {"globalAlias": name})
        api.post(
            "AllowBucketKey",
            {
                "bucketId": bucket["id"],
                "accessKeyId": key[0],
                "permissions": {"read": True, "write": True, "owner": True},
            },
        )
    finally:
        api.close()


def make_database(pg: PostgresServer, role: str, db: str, password: str) -> None:
    from psycopg import sql

    with pg.admin() as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db), sql.Identifier(role))
        )


def login(pg: PostgresServer, role: str, password: str, db: str) -> Any:
    import psycopg

    return psycopg.connect(
        host=pg.tcp_host,
        port=pg.port,
        user=role,
        password=password,
        dbname=db,
        autocommit=True,
        require_auth="scram-sha-256",
    )


@dataclass
class Side:
    """One mailbox's backends: a database (role, password) and a bucket (key)."""

    role: str
    db: str
    password: str
    bucket: str
    key: tuple[str, str]

    @classmethod
    def fresh(cls, pg: PostgresServer, garage: GarageServer, label: str) -> Side:
        tag = secrets.token_hex(4)
        side = cls(
            f"{label}_{tag}",
            f"{label}_{tag}",
            secrets.token_hex(16),
            f"{label}-{tag}",
            garage_key(),
        )
        make_database(pg, side.role, side.db, side.password)
        make_bucket(garage, side.bucket, side.key)
        return side

    def values(
        self, pg: PostgresServer, redis: RedisServer, garage: GarageServer, **more: str
    ) -> dict[str, str]:
        names = {"role": self.role, "db": self.db, "bucket": self.bucket}
        out = backend_values(pg, redis, garage, 1, names, self.key)
        out["STALWART_DB_PASSWORD"] = self.password
        out.update(more)
        return out


@dataclass
class World:
    pg: PostgresServer
    redis: RedisServer
    garage: GarageServer
    base: Path
    source: Side
    target: Side
    password: str = field(default_factory=lambda: secrets.token_hex(16))

    @classmethod
    def create(
        cls,
        pg: PostgresServer,
        redis: RedisServer,
        garage: GarageServer,
        base: Path,
        messages: int,
    ) -> World:
        """A source mailbox holding ``messages`` and an empty target, on the given servers."""
        restic_needed()
        world = cls(
            pg, redis, garage, base, Side.fresh(pg, garage, "src"), Side.fresh(pg, garage, "dst")
        )
        world.populate(messages)
        return world

    @property
    def repo(self) -> Path:
        return self.base / "repo"

    @property
    def staging(self) -> Path:
        return self.base / "staging"

    def env(self, **more: str) -> Path:
        backup = {
            "BACKUP_REPOSITORY": str(self.repo),
            "BACKUP_PASSWORD": self.password,
            "BACKUP_STAGING_DIR": str(self.staging),
        }
        values = self.source.values(self.pg, self.redis, self.garage, **{**backup, **more})
        return write_env(self.base / f"source-{secrets.token_hex(3)}.env", values)

    def target_env(self) -> Path:
        values = self.target.values(self.pg, self.redis, self.garage)
        return write_env(self.base / "target.env", values)

    # ------------------------------------------------------------ populating

    def populate(self, messages: int = 40, start: int = 0) -> None:
        """Rows referencing content-addressed blobs, like a data store's."""
        client = s3(self.garage, self.source.key)
        with login(self.pg, self.source.role, self.source.password, self.source.db) as conn:
            if start == 0:
                conn.execute(SCHEMA)
            for n in range(start, start + messages):
                body = f"Subject: message {n}\r\n\r\n".encode() + os.urandom(512 + 97 * n)
                if n % 17 == 3:
                    body += os.urandom(1_300_000)  # a large attachment (multi-chunk GET)
                blob_key = hashlib.sha256(body).hexdigest()
                client.put_object(Bucket=self.source.bucket, Key=blob_key, Body=body)
                k = n.to_bytes(8, "big")
                conn.execute("INSERT INTO m VALUES (%s, %s)", (k, os.urandom(64 + n)))
                conn.execute("INSERT INTO i VALUES (%s)", (b"idx" + k,))
                conn.execute("INSERT INTO b VALUES (%s, %s)", (k, blob_key))
                conn.execute(
                    "INSERT INTO s_email (id, body) VALUES (%s, %s)",
                    (n, f"hello world message {n} ünïcødé"),
                )
            conn.execute(
                "INSERT INTO c VALUES ('\\x01', %s) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
                (start + messages,),
            )
            # a settings-object-shaped row (v0.16 keeps settings in the data store)
            conn.execute(
                "INSERT INTO m VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (b"\xffsettings", json.dumps({"@type": "SystemSettings"}).encode()),
            )


# ------------------------------------------------------------ oracles


def table_rows(pg: PostgresServer, side: Side) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every user table, sorted (read over SCRAM, straight from the server)."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with login(pg, side.role, side.password, side.db) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            ).fetchall()
        ]
        for name in names:
            rows = conn.execute(f'SELECT * FROM public."{name}"').fetchall()
            out[name] = sorted(
                tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows
            )
    return out


def bucket_objects(garage: GarageServer, side: Side) -> dict[str, bytes]:
    client = s3(garage, side.key)
    out: dict[str, bytes] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=side.bucket):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = client.get_object(Bucket=side.bucket, Key=obj["Key"])["Body"].read()
    return out


def restic_cli(
    world: World,
    *args: str,
    password: str | None = None,
    repo: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "RESTIC_REPOSITORY": repo or str(world.repo),
        "RESTIC_PASSWORD": password or world.password,
        "RESTIC_CACHE_DIR": str(world.base / "oracle-cache"),
        **(extra_env or {}),
    }
    return subprocess.run(
        [str(RESTIC), *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def snapshots(world: World, **kw: Any) -> list[dict[str, Any]]:
    proc = restic_cli(world, "snapshots", "--json", **kw)
    assert proc.returncode == 0, proc.stderr
    data: list[dict[str, Any]] = json.loads(proc.stdout)
    return data


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
