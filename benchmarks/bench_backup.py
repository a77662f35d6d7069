"""Backup benchmark: tailwart's restic backup and restore vs the naive way, same run.

Real servers, as in the tests: Postgres 15 (SCRAM on a 198.18/15 veth address) and the
Garage binary. A mailbox-shaped data set (key/value rows with bytea, FTS rows, blobs of
2 KiB - 128 KiB with a 1 MiB attachment every 50th message) of about ``--mb`` MiB.

- naive backup: ``pg_dump -Fc`` to a file + a full copy of the bucket (8 threads), every
  time; naive restore: ``pg_restore`` + uploading every blob.
- tailwart: ``inv backup`` (dump, mirror, manifest, restic) and ``inv restore`` (which also
  reads every blob back to verify it).
- second run: after 1% new messages; bytes = what the run added to its destination.

Run: ``python3 benchmarks/bench_backup.py [--mb 200]`` (root: it adds a veth pair), or
``nox -s bench -- backup``. Writes benchmarks/results/backup.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(1, str(ROOT))  # the tests' helpers: tests.support

from tailwart.backends.garage import GarageAdmin  # noqa: E402
from tailwart.backup.create import run_backup  # noqa: E402
from tailwart.backup.restore import run_restore  # noqa: E402
from tailwart.paths import cache_path  # noqa: E402
from tailwart.settings import load  # noqa: E402
from tests.support.backend_servers import (  # noqa: E402
    GarageServer,
    PostgresServer,
    RedisServer,
    VethAddress,
    garage_binary,
)
from tests.support.backup_world import SCHEMA, Side, World, login, s3  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "backup.md"


def quiet(_: str) -> None:
    pass


def populate(world: World, target_bytes: int, start: int, rng: random.Random) -> int:
    """Messages until ``target_bytes`` of blobs; returns the next message number."""
    client = s3(world.garage, world.source.key)
    n, total = start, 0
    rows_m, rows_b, rows_s = [], [], []
    jobs = []
    while total < target_bytes:
        size = 1 << 20 if n % 50 == 49 else rng.randint(2048, 128 * 1024)
        body = f"Subject: message {n}\r\n\r\n".encode() + rng.randbytes(size)
        key = hashlib.sha256(body).hexdigest()
        jobs.append((key, body))
        k = n.to_bytes(8, "big")
        rows_m.append((k, rng.randbytes(200)))
        rows_b.append((k, key))
        rows_s.append((n, " ".join(rng.choice(WORDS) for _ in range(60))))
        total += len(body)
        n += 1
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda j: client.put_object(Bucket=world.source.bucket, Key=j[0], Body=j[1]), jobs
            )
        )
    with login(world.pg, world.source.role, world.source.password, world.source.db) as conn:
        if start == 0:
            conn.execute(SCHEMA)
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO m VALUES (%s, %s)", rows_m)
            cur.executemany("INSERT INTO i VALUES (%s)", [(b"idx" + k,) for k, _ in rows_m])
            cur.executemany("INSERT INTO b VALUES (%s, %s)", rows_b)
            cur.executemany("INSERT INTO s_email (id, body) VALUES (%s, %s)", rows_s)
    return n


WORDS = [
    "mail",
    "invoice",
    "meeting",
    "hello",
    "report",
    "schedule",
    "travel",
    "photo",
    "family",
    "project",
    "budget",
]


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def naive_backup(world: World, dest: Path) -> int:
    """pg_dump -Fc + a full bucket copy into ``dest`` (a new directory each run)."""
    dest.mkdir(parents=True)
    src = world.source
    env = {**os.environ, "PGPASSWORD": src.password}
    subprocess.run(
        [
            "pg_dump",
            "-h",
            world.pg.tcp_host,
            "-p",
            str(world.pg.port),
            "-U",
            src.role,
            "-d",
            src.db,
            "-Fc",
            "-f",
            str(dest / "db.dump"),
        ],
        env=env,
        check=True,
    )
    client = s3(world.garage, src.key)
    (dest / "blobs").mkdir()
    keys = [
        o["Key"]
        for p in client.get_paginator("list_objects_v2").paginate(Bucket=src.bucket)
        for o in p.get("Contents", [])
    ]

    def get(key: str) -> None:
        body = client.get_object(Bucket=src.bucket, Key=key)["Body"].read()
        (dest / "blobs" / key).write_bytes(body)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(get, keys))
    return tree_bytes(dest)


def naive_restore(world: World, dump_dir: Path, side: Side) -> None:
    env = {**os.environ, "PGPASSWORD": side.password}
    subprocess.run(
        [
            "pg_restore",
            "-h",
            world.pg.tcp_host,
            "-p",
            str(world.pg.port),
            "-U",
            side.role,
            "-d",
            side.db,
            "--no-owner",
            "--no-privileges",
            "--single-transaction",
            str(dump_dir / "db.dump"),
        ],
        env=env,
        check=True,
    )
    client = s3(world.garage, side.key)

    def put(path: Path) -> None:
        client.put_object(Bucket=side.bucket, Key=path.name, Body=path.read_bytes())

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, sorted((dump_dir / "blobs").iterdir())))


def timed(fn):  # type: ignore[no-untyped-def]
    start = time.monotonic()
    result = fn()
    return time.monotonic() - start, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=int(os.environ.get("TAILWART_BENCH_MB", "200")))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    cache = cache_path()
    garage_bin = garage_binary(cache)
    restic_bin = cache / "tools" / "restic-v0.18.1" / "restic"
    if not garage_bin.exists() or not restic_bin.exists() or os.geteuid() != 0:
        print("bench_backup: needs root, garage and restic (scripts/setup-machine.sh)")
        return 1
    load_before = os.getloadavg()[0]
    veth = VethAddress.create()
    base = Path(tempfile.mkdtemp(prefix="tailwart-bench-backup-"))
    servers: list[object] = []
    try:
        pg = PostgresServer.start(veth.address)
        servers.append(pg)
        redis = RedisServer.start(shutil.which("redis-server") or "redis-server")
        servers.append(redis)
        garage = GarageServer.start(garage_bin)
        servers.append(garage)
        api = GarageAdmin(garage.admin_url, garage.admin_token)
        node = api.get("GetClusterStatus")["nodes"][0]["id"]
        layout = api.post(
            "UpdateClusterLayout",
            {"roles": [{"id": node, "zone": "dc1", "capacity": 10**11, "tags": []}]},
        )
        api.post("ApplyClusterLayout", {"version": layout["version"] + 1})
        world = World(
            pg, redis, garage, base, Side.fresh(pg, garage, "src"), Side.fresh(pg, garage, "dst")
        )
        rng = random.Random(13)
        print(f"bench_backup: populating about {args.mb} MiB", flush=True)
        n = populate(world, args.mb << 20, 0, rng)
        settings = load(world.env())
        rows = []

        t_naive1, b_naive1 = timed(lambda: naive_backup(world, base / "naive1"))
        t_tw1, _ = timed(lambda: run_backup(settings, progress=quiet))
        b_tw1 = tree_bytes(world.repo)
        rows.append(("first backup", t_naive1, b_naive1, t_tw1, b_tw1))
        print(f"  first: naive {t_naive1:.1f}s, tailwart {t_tw1:.1f}s", flush=True)

        populate(world, (args.mb << 20) // 100, n, rng)  # 1% new mail
        t_naive2, b_naive2 = timed(lambda: naive_backup(world, base / "naive2"))
        t_tw2, _ = timed(lambda: run_backup(settings, progress=quiet))
        b_tw2 = tree_bytes(world.repo) - b_tw1
        rows.append(("second backup (+1% mail)", t_naive2, b_naive2, t_tw2, b_tw2))
        print(f"  second: naive {t_naive2:.1f}s, tailwart {t_tw2:.1f}s", flush=True)

        spare = Side.fresh(pg, garage, "naive")
        t_naive_r, _ = timed(lambda: naive_restore(world, base / "naive2", spare))
        t_tw_r, _ = timed(lambda: run_restore(settings, str(world.target_env()), progress=quiet))
        rows.append(("restore", t_naive_r, 0, t_tw_r, 0))
        print(f"  restore: naive {t_naive_r:.1f}s, tailwart {t_tw_r:.1f}s", flush=True)
        data_mib = tree_bytes(base / "naive2" / "blobs") / (1 << 20)
    finally:
        for server in reversed(servers):
            server.close()  # type: ignore[attr-defined]
        veth.delete()
        shutil.rmtree(base, ignore_errors=True)

    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Backup benchmark: tailwart (restic) vs pg_dump + a full bucket copy",
        "",
        f"- machine: {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; restic 0.18.1, PostgreSQL 15, Garage 2.1.0 "
        "(debug build)",
        f"- data: {n} messages, {data_mib:.0f} MiB of blobs after the second round "
        "(2-128 KiB, 1 MiB every 50th), rows in key/value, index, blob-link and FTS tables",
        "- naive: `pg_dump -Fc` + copying every object (8 threads) into a new directory, each "
        "run; restore = `pg_restore` + uploading every object (8 threads)",
        "- tailwart: `run_backup` (SCRAM dump from one snapshot, mirror, manifest, restic "
        "backup into a local repository); restore = `run_restore` including its verification "
        "(every table checksummed, every blob read back)",
        f"- one run each, same servers, interleaved; load average (1 min) before/after: "
        f"{load_before:.2f} / {os.getloadavg()[0]:.2f}",
        f"- run: {now}, `python benchmarks/bench_backup.py --mb {args.mb}` "
        "(or `nox -s bench -- backup`)",
        "",
        "| run | naive (s) | naive bytes written | tailwart (s) | tailwart bytes added | "
        "time ratio | bytes ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, tn, bn, tt, bt in rows:
        bytes_ratio = f"{bt / bn:.3f}" if bn else "-"
        lines.append(
            f"| {label} | {tn:.1f} | "
            + (
                f"{bn / (1 << 20):.1f} MiB | {tt:.1f} | {bt / (1 << 20):.1f} MiB"
                if bn
                else f"- | {tt:.1f} | -"
            )
            + f" | {tt / tn:.2f}× | {bytes_ratio} |"
        )
    lines += [
        "",
        "time ratio = tailwart / naive (lower is better); bytes ratio = bytes tailwart's "
        "repository grew by / bytes the naive copy wrote (lower is better). The naive copy "
        "is neither encrypted nor deduplicated and keeps no history; tailwart's is all "
        "three, and its restore proves itself.",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-(len(rows) + 4) :]))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
