"""``inv backup --schedule``: a systemd service + timer (or a cron line) running the backup
with retention (``restic forget --prune`` with BACKUP_KEEP_*) every night
(``tailwart.schedule`` does the rendering and the install)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import UsageError
from ..schedule import Job, Schedule, schedule_for

JOB = Job(
    name="backup",
    task="backup",
    args=("--prune",),
    templates="tailwart.backup",
    on_calendar="*-*-* 03:30:00",
    cron_time="30 3 * * *",
)


def backup_schedule(
    root: Path, env_file: str, to: str = "", python: str = sys.executable
) -> Schedule:
    """The nightly backup for ``env_file`` run from the checkout ``root``; every problem
    at once. ``to`` is refused: the scheduled backup writes to BACKUP_REPOSITORY."""
    if to:
        raise UsageError(
            "--to: the scheduled backup writes to BACKUP_REPOSITORY; set it in the env file "
            "instead of passing --to with --schedule"
        )
    return schedule_for(JOB, root, env_file, python)
