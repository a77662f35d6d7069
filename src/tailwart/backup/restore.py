"""``inv restore``: a snapshot into the backends a second env file names, then proof.

Guards: the target env must not name the live mailbox's database or bucket (refused
even with --force unless --overwrite-live); a target that is not empty is refused
unless --force. The restore ends with a verification against the manifest: row count
and checksum of every table, and every blob read back with its size and sha256.
"""

from __future__ import annotations

import re
import shutil
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import TailwartError, UsageError
from ..flags import printable
from ..settings import Problem, Settings, SettingsError
from . import blobs as blob_store
from . import manifest as mf
from . import pgdump
from .create import TAG
from .errors import BackupError
from .repository import Repository, prepare_staging, repository
from .restic import Restic, human_bytes
from .snapshot import Picked, check_restored, read_manifest

Progress = Callable[[str], None]
SNAPSHOT_ID = re.compile(r"latest|[0-9a-f]{8,64}", re.ASCII)
#: the keys a restore target env file must hold
TARGET_KEYS = (
    "STALWART_DB_HOST",
    "STALWART_DB_PORT",
    "STALWART_DB_NAME",
    "STALWART_DB_USER",
    "STALWART_DB_PASSWORD",
    "STALWART_S3_HOST",
    "STALWART_S3_PORT",
    "STALWART_S3_REGION",
    "STALWART_S3_BUCKET",
    "STALWART_S3_ACCESS_KEY",
    "STALWART_S3_SECRET_KEY",
)


def load_target(path: str, strict: bool = False) -> Settings:
    """The target env file, read like --env-file (size cap, file type, UTF-8, mode warning;
    its secrets masked from now on) and judged on the keys a restore uses."""
    from ..env_file import load_settings

    return load_settings(
        path, strict, flag="--target-env", only=frozenset(TARGET_KEYS), require=TARGET_KEYS
    )


def _addresses(host: str) -> set[str]:
    """Every address ``host`` stands for, each in one spelling (IPv4-mapped as IPv4)."""
    from ..backends.postgres import plain_address

    try:
        found = {str(info[4][0]) for info in socket.getaddrinfo(host, None)} | {host}
    except OSError:
        found = {host}
    out = set()
    for text in found:
        try:
            out.add(str(plain_address(text)))
        except ValueError:
            out.add(text.rstrip(".").lower())
    return out


def same_database(a: Settings, b: Settings) -> bool:
    """By address: the fallback when the live database cannot be asked what it is."""
    return (
        a["STALWART_DB_NAME"] == b["STALWART_DB_NAME"]
        and a["STALWART_DB_PORT"] == b["STALWART_DB_PORT"]
        and bool(_addresses(a["STALWART_DB_HOST"]) & _addresses(b["STALWART_DB_HOST"]))
    )


def same_bucket(a: Settings, b: Settings) -> bool:
    """By address: the fallback when the live bucket is empty or cannot be read."""
    return (
        a["STALWART_S3_BUCKET"] == b["STALWART_S3_BUCKET"]
        and a["STALWART_S3_PORT"] == b["STALWART_S3_PORT"]
        and bool(_addresses(a["STALWART_S3_HOST"]) & _addresses(b["STALWART_S3_HOST"]))
    )


def _same_database_server(live: Settings, target: Settings, progress: Progress) -> bool:
    """The two env files name one database: same cluster (system identifier) and same
    database oid, asked of the servers; by address when the live one cannot be asked."""
    try:
        theirs = pgdump.identity(pgdump.PgSource.from_settings(live))
    except TailwartError as exc:
        progress(
            f"note: the live database could not be asked what it is ({exc}); compared by address"
        )
        return same_database(live, target)
    return pgdump.identity(pgdump.PgSource.from_settings(target)) == theirs


def _same_bucket_server(live: Settings, target: Settings, progress: Progress) -> bool:
    """The two env files name one bucket: equal, non-empty fingerprints (``blobs.fingerprint``);
    by address when the live bucket is empty or cannot be read."""
    try:
        theirs = blob_store.fingerprint(blob_store.Bucket.from_settings(live))
    except TailwartError as exc:
        progress(f"note: the live bucket could not be listed ({exc}); compared by address")
        return same_bucket(live, target)
    if not theirs:
        return same_bucket(live, target)
    return blob_store.fingerprint(blob_store.Bucket.from_settings(target)) == theirs


def live_guard(
    live: Settings, target: Settings, overwrite_live: bool, progress: Progress | None = None
) -> None:
    """Refuse a target that IS the live database or bucket (even with --force)."""
    say = progress or (lambda _: None)
    problems = []
    if _same_database_server(live, target, say):
        problems.append(
            Problem(
                "STALWART_DB_NAME",
                f"the target database {target['STALWART_DB_NAME']!r} at "
                f"{target['STALWART_DB_HOST']}:{target['STALWART_DB_PORT']} is the live mailbox's "
                f"({live.source}): the same server and database",
            )
        )
    if _same_bucket_server(live, target, say):
        problems.append(
            Problem(
                "STALWART_S3_BUCKET",
                f"the target bucket {target['STALWART_S3_BUCKET']!r} at "
                f"{target['STALWART_S3_HOST']}:{target['STALWART_S3_PORT']} is the live mailbox's",
            )
        )
    if problems and not overwrite_live:
        raise SettingsError(
            f"{target.source}: refusing to restore over the live mailbox (--force does not "
            "lift this; stop Stalwart and pass --overwrite-live if you mean it)",
            problems,
        )


def pick_snapshot(restic: Restic, wanted: str) -> dict[str, Any]:
    snaps = sorted(restic.snapshots([TAG]), key=lambda s: str(s.get("time", "")))
    if not snaps:
        raise BackupError(f"no tailwart snapshot in {restic.repo.location}: run inv backup first")
    if wanted == "latest":
        return snaps[-1]
    found = [s for s in snaps if str(s.get("id", "")).startswith(wanted)]
    if len(found) != 1:
        raise UsageError(
            f"--snapshot {wanted!r} matches {len(found)} tailwart snapshots; "
            "list them with: restic snapshots --tag tailwart"
        )
    return found[0]


@dataclass(frozen=True)
class TargetState:
    tables: list[str]
    bucket_empty: bool

    @property
    def empty(self) -> bool:
        return not self.tables and self.bucket_empty

    def describe(self) -> str:
        db = f"{len(self.tables)} tables" if self.tables else "empty"
        bucket = "empty" if self.bucket_empty else "not empty"
        return f"database {db}, bucket {bucket}"


def run_restore(
    live: Settings,
    target_env: str,
    *,
    snapshot: str = "latest",
    dry_run: bool = False,
    force: bool = False,
    overwrite_live: bool = False,
    from_repo: str = "",
    strict: bool = False,
    progress: Progress,
) -> str:
    """Restore a snapshot into the target env's backends and verify it; return the report."""
    if not SNAPSHOT_ID.fullmatch(snapshot):
        raise UsageError(f"--snapshot {snapshot!r}: expected 'latest' or a snapshot id (hex)")
    if not target_env:
        raise UsageError("--target-env: required: the env file naming the backends to restore into")
    repo, target = _inputs(live, from_repo, target_env, strict)
    pg = pgdump.PgSource.from_settings(target)
    pgdump.refuse_loopback(pg, "STALWART_DB_HOST (--target-env)")
    live_guard(live, target, overwrite_live, progress)
    bucket = blob_store.Bucket.from_settings(target)
    restic = Restic(repo, no_cache=dry_run)
    picked = Picked.of(pick_snapshot(restic, snapshot))
    manifest, _ = read_manifest(restic, picked)
    state = TargetState(pgdump.user_tables(pg), blob_store.is_empty(bucket))
    m = manifest.data
    head = [
        f"snapshot  {picked.id[:8]} of {picked.time} ({printable(m['source']['db'], 120)}, "
        f"bucket {printable(m['source']['bucket'], 80)})",
        f"holds     {len(m['postgres']['tables'])} tables, {m['postgres']['rows']} rows; "
        f"{m['blobs']['count']} blobs, {human_bytes(m['blobs']['bytes'])}",
        f"target    {pgdump.where(pg)}, {bucket.where}: {state.describe()}",
    ]
    if not state.empty and not force:
        raise UsageError(
            "\n".join(head)
            + "\nrefusing: the target is not empty (restore into a fresh database and an empty "
            "bucket, or pass --force to drop the dump's objects and overwrite); nothing was changed"
        )
    if dry_run:
        return "\n".join([*head, "dry run: nothing was written"]) + "\n"
    work = Path(tempfile.mkdtemp(prefix="tailwart-restore-", dir=_work_parent(live)))
    try:
        progress(f"restic: restoring snapshot {picked.id[:8]} into {work}")
        restic.restore(picked.id, picked.path, work, progress)
        expected = check_restored(work, manifest, picked.id)
        pgdump.restore(pg, work / manifest.dump_path, progress, clean=not state.empty)
        blob_store.upload(bucket, work / mf.BLOB_DIR, expected, progress)
        report = verify(manifest, expected, pg, bucket, progress)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return "\n".join([*head, *report]) + "\n"


def _inputs(
    live: Settings, from_repo: str, target_env: str, strict: bool
) -> tuple[Repository, Settings]:
    """The repository (.env) and the target (--target-env): every problem of both at once."""
    problems: list[Problem] = []
    repo: Repository | None = None
    target: Settings | None = None
    try:
        repo = repository(live, from_repo)
    except SettingsError as exc:
        problems += exc.problems
    try:
        target = load_target(target_env, strict)
    except SettingsError as exc:
        problems += [
            Problem(f"{p.key} (--target-env)", p.message, p.level, p.line) for p in exc.problems
        ]
    if problems or repo is None or target is None:
        raise SettingsError(f"{live.source} and {target_env}", problems)
    return repo, target


def _work_parent(live: Settings) -> str:
    """Where the snapshot is restored to first: the private staging directory."""
    return str(prepare_staging(live))


def verify(
    manifest: mf.Manifest,
    expected: dict[str, tuple[int, str]],
    pg: pgdump.PgSource,
    bucket: blob_store.Bucket,
    progress: Progress,
) -> list[str]:
    """Compare the target with the manifest; raise BackupError listing every difference."""
    want = manifest.tables
    have = pgdump.target_facts(pg, progress)
    bad_tables = [
        f"{name}: {have.get(name, {}).get('rows', 'missing')} rows (manifest {facts['rows']})"
        if have.get(name, {}).get("rows") != facts["rows"]
        else f"{name}: checksum differs"
        for name, facts in sorted(want.items())
        if have.get(name) != facts
    ]
    blobs = blob_store.verify(bucket, expected, progress)
    rows = sum(int(f["rows"]) for f in want.values())
    lines = [
        f"verified  {len(want) - len(bad_tables)}/{len(want)} tables match the manifest "
        f"(row count and checksum; {rows} rows)",
        f"verified  {blobs.present}/{len(expected)} blobs present with matching size and sha256",
    ]
    problems = bad_tables + [f"blob {k!r} missing" for k in blobs.missing[:20]]
    problems += [f"blob {k!r} differs" for k in blobs.mismatched[:20]]
    if problems:
        raise BackupError(
            "\n".join([*lines, "restore verification FAILED:", *(f"  {p}" for p in problems)])
        )
    if blobs.extra:
        lines.append(
            f"note      the bucket also holds {len(blobs.extra)} objects not in the snapshot"
        )
    lines.append("restore verified")
    return lines
