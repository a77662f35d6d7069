"""``inv backup``: dump Postgres, then mirror the bucket, then write the manifest, then restic.

Order is the consistency argument: blobs are immutable and content-addressed, so
blobs listed after the dump finished cover every blob the dump references (unless a
purge deleted one in between: reported as vanished). A dry run prints the plan and
writes nothing: no repository, no staging directory, no restic cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..settings import Settings, SettingsError
from . import blobs as blob_store
from . import manifest as mf
from . import pgdump
from .repository import (
    Repository,
    keep_policy,
    prepare_staging,
    repository,
    staging_dir,
    staging_problem,
)
from .restic import Restic, human_bytes
from .settings_snapshot import tailwart_settings_snapshot

Progress = Callable[[str], None]
HOST = "tailwart"
TAG = "tailwart"


def tags_for(settings: Settings) -> list[str]:
    return [TAG, f"db:{settings['STALWART_DB_NAME']}"]


@dataclass(frozen=True)
class Sources:
    settings: Settings
    repo: Repository
    pg: pgdump.PgSource
    bucket: blob_store.Bucket
    staging: Path

    @classmethod
    def from_settings(cls, settings: Settings, to: str = "") -> Sources:
        repo = repository(settings, to)
        pg = pgdump.PgSource.from_settings(settings)
        pgdump.refuse_loopback(pg)
        problem = staging_problem(settings)
        if problem:
            raise SettingsError(settings.source, [problem])
        return cls(
            settings, repo, pg, blob_store.Bucket.from_settings(settings), staging_dir(settings)
        )


def plan_text(src: Sources, restic: Restic, progress: Progress) -> str:
    """What a backup would do, found by reading only (the --dry-run output)."""
    lines = [f"repository  {src.repo.location}"]
    exists = restic.exists()
    lines.append(
        "            opens with BACKUP_PASSWORD"
        if exists
        else "            would be created (restic init)"
    )
    size = pgdump.database_size(src.pg)
    tables = pgdump.user_tables(src.pg)
    lines.append(
        f"postgres    pg_dump {pgdump.where(src.pg)} over SCRAM: {len(tables)} tables, "
        f"{human_bytes(size)} on disk"
    )
    client = src.bucket.client()
    count = total = 0
    for obj in blob_store.listing(client, src.bucket):
        count += 1
        total += obj.size
    lines.append(f"garage      copy {src.bucket.where}: {count} objects, {human_bytes(total)}")
    snap = tailwart_settings_snapshot(src.settings, dry_run=True)
    lines.append(f"settings    snapshot: {snap['detail']}")
    lines.append(f"staging     {src.staging}")
    lines.append("dry run: nothing was written")
    return "\n".join(lines) + "\n"


def _snapshot_line(snap: dict[str, Any]) -> str:
    if snap["status"] == "taken":
        return f"{snap['count']} objects of schema {snap['schema']} from {snap['url']}"
    return str(snap["detail"])


@dataclass(frozen=True)
class BackupResult:
    snapshot: str
    summary: dict[str, Any]
    manifest: mf.Manifest
    mirrored: blob_store.Mirrored
    seconds: float
    created_repository: bool
    pruned: str = ""

    def render(self) -> str:
        s = self.summary
        m = self.manifest.data
        pg = m["postgres"]

        def size(key: str) -> str:
            return human_bytes(float(s.get(key, 0)))

        lines = []
        if self.created_repository:
            lines.append("repository created (restic init)")
        lines += [
            f"snapshot {self.snapshot} in {self.seconds:.1f}s",
            f"  postgres: {len(m['postgres']['tables'])} tables, {m['postgres']['rows']} rows, "
            f"dump {human_bytes(pg['dump_bytes'])} (sha256 {pg['dump_sha256'][:12]})",
            f"  blobs: {m['blobs']['count']} objects, {human_bytes(m['blobs']['bytes'])}; "
            f"fetched {self.mirrored.fetched} ({human_bytes(self.mirrored.fetched_bytes)}), "
            f"unchanged {self.mirrored.kept}, dropped {self.mirrored.removed}",
        ]
        if self.mirrored.vanished:
            lines.append(
                f"  warning: {len(self.mirrored.vanished)} blob(s) vanished between listing and "
                "copy (a purge ran during the backup): " + ", ".join(self.mirrored.vanished[:5])
            )
        lines += [
            f"  settings snapshot: {_snapshot_line(m['settings_snapshot'])}",
            f"  restic: files new {s.get('files_new', 0)}, changed {s.get('files_changed', 0)}, "
            f"unmodified {s.get('files_unmodified', 0)}; added {size('data_added')} "
            f"({size('data_added_packed')} packed) of {size('total_bytes_processed')} processed",
        ]
        if self.pruned:
            lines.append(f"  retention: {self.pruned}")
        return "\n".join(lines) + "\n"


def run_backup(
    settings: Settings,
    *,
    to: str = "",
    dry_run: bool = False,
    prune: bool = False,
    progress: Progress,
) -> str:
    """Back up the mailbox (or print the plan); return the text for stdout."""
    src = Sources.from_settings(settings, to)
    restic = Restic(src.repo, no_cache=dry_run)
    if dry_run:
        return plan_text(src, restic, progress)
    return take(src, restic, prune, progress).render()


def take(src: Sources, restic: Restic, prune: bool, progress: Progress) -> BackupResult:
    start = time.monotonic()
    created = False
    pgdump.connect(src.pg).close()  # a refused login stops here, before anything is written
    if not restic.exists():
        progress(f"restic: creating the repository at {src.repo.location}")
        restic.init()
        created = True
    root = prepare_staging(src.settings) / "snapshot"
    root.mkdir(exist_ok=True)
    for stale in root.glob("*.tmp"):
        stale.unlink()
    # 1. the database (its settings objects included under v0.16)
    dump_file = root / mf.DUMP_DIR / f"{src.pg.dbname}.pgdump"
    dumped = pgdump.dump(src.pg, dump_file, progress)
    dump_sha = blob_store.sha256_file(dump_file)
    # 2. the blobs, listed after the dump finished
    mirrored = blob_store.mirror(
        src.bucket, root / mf.BLOB_DIR, src.staging / "state.json", progress
    )
    # 3. the settings snapshot hook, and the manifest
    listing = mf.listing_text(mirrored.blobs)
    (root / mf.LISTING).write_text(listing)
    manifest = mf.build(
        versions={
            "tailwart": __version__,
            "restic": restic.version(),
            "pg_dump": dumped.pg_dump_version,
            "postgres_server": dumped.server_version,
            "stalwart_image": src.settings["STALWART_IMAGE"],
        },
        source={
            "db": pgdump.where(src.pg).split("@", 1)[1],
            "bucket": src.bucket.name,
            "s3_endpoint": src.bucket.endpoint,
        },
        dump=dump_file,
        dump_sha256=dump_sha,
        tables=dumped.tables,
        blobs=mirrored.blobs,
        vanished=mirrored.vanished,
        listing_sha256=mf.sha256_text(listing),
        settings_snapshot=tailwart_settings_snapshot(src.settings),
    )
    (root / mf.MANIFEST).write_text(manifest.to_json())
    # 4. into restic
    progress(f"restic: backing up {root}")
    summary = restic.backup(root, tags_for(src.settings), HOST, progress)
    pruned = ""
    if prune:
        keep = keep_policy(src.settings)
        progress(f"restic: forget --prune {' '.join(keep)}")
        outcome = restic.forget_prune(keep, [TAG])
        pruned = _forget_words(outcome.stdout, keep)
    return BackupResult(
        str(summary.get("snapshot_id", "")),
        summary,
        manifest,
        mirrored,
        time.monotonic() - start,
        created,
        pruned,
    )


def _forget_words(stdout: str, keep: list[str]) -> str:
    import json

    kept = removed = 0
    for line in stdout.splitlines():
        try:
            groups = json.loads(line)
        except ValueError:
            continue
        if isinstance(groups, list):
            for group in groups:
                if isinstance(group, dict):
                    kept += len(group.get("keep") or [])
                    removed += len(group.get("remove") or [])
    return f"kept {kept} snapshot(s), removed {removed} ({' '.join(keep)}), pruned"
