"""``inv backup --verify``: restic check with a sample of the data read back, the newest
snapshot's manifest readable, and (given scratch targets) a trial restore that proves it."""

from __future__ import annotations

from collections.abc import Callable

from ..settings import Settings
from .repository import repository
from .restic import Restic, human_bytes
from .restore import pick_snapshot, run_restore
from .snapshot import Picked, read_manifest

Progress = Callable[[str], None]
#: share of the repository's packs ``restic check`` reads back and decrypts
READ_DATA_SUBSET = "10%"


def run_verify(
    settings: Settings,
    *,
    to: str = "",
    target_env: str = "",
    read_data_subset: str = READ_DATA_SUBSET,
    dry_run: bool = False,
    strict: bool = False,
    progress: Progress,
) -> str:
    """Check the repository; with ``target_env`` also restore into it (--dry-run: plan only)."""
    repo = repository(settings, to)
    restic = Restic(repo, no_cache=dry_run)
    progress(f"restic: check --read-data-subset={read_data_subset}")
    restic.check(read_data_subset)
    picked = Picked.of(pick_snapshot(restic, "latest"))
    data = read_manifest(restic, picked)[0].data
    lines = [
        f"restic check: no errors; {read_data_subset} of the packs read back and decrypted",
        f"newest snapshot {picked.id[:8]} of {picked.time}: "
        f"{len(data['postgres']['tables'])} tables, {data['postgres']['rows']} rows, "
        f"{data['blobs']['count']} blobs ({human_bytes(data['blobs']['bytes'])})",
    ]
    if target_env:
        progress(f"trial restore into the backends of {target_env}")
        lines += run_restore(
            settings,
            target_env,
            from_repo=to,
            dry_run=dry_run,
            strict=strict,
            progress=progress,
        ).splitlines()
    else:
        lines.append("no trial restore: pass --target-env with scratch backends to prove one")
    return "\n".join(lines) + "\n"
