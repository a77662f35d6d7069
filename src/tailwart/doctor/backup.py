"""Doctor group ``backup``: the newest tailwart snapshot in BACKUP_REPOSITORY is fresh.

Only when BACKUP_REPOSITORY is set: a snapshot older than a day (or none) is a
warning; a repository restic cannot open is an error.
"""

from __future__ import annotations

import datetime as dt

from .. import clock
from ..errors import TailwartError
from ..findings import Finding
from .registry import Check, DoctorContext, error, ok, warning

GROUP = "backup"
MAX_AGE = dt.timedelta(days=1)


def parse_time(value: str) -> dt.datetime:
    """restic's snapshot time (RFC 3339 with nanoseconds) as an aware datetime."""
    head, _, rest = value.partition(".")
    zone = ""
    if rest:
        for sign in ("Z", "+", "-"):
            if sign in rest:
                zone = rest[rest.index(sign) :]
                break
    else:
        head, zone = value[:19], value[19:]
    return dt.datetime.fromisoformat(head + (zone.replace("Z", "+00:00") or "+00:00"))


def snapshot_age(ctx: DoctorContext) -> Finding:
    from ..backup.create import TAG
    from ..backup.repository import repository
    from ..backup.restic import RepositoryMissing, Restic

    try:
        restic = Restic(repository(ctx.settings), timeout=max(30.0, ctx.timeout * 3))
        snaps = restic.snapshots([TAG], latest=1)
    except RepositoryMissing:
        snaps = []
    except TailwartError as exc:
        return error(
            f"cannot list snapshots: {str(exc).splitlines()[0]}",
            "check BACKUP_REPOSITORY and BACKUP_PASSWORD (inv backup --dry-run)",
        )
    if not snaps:
        return warning(
            "no tailwart snapshot in BACKUP_REPOSITORY yet",
            "run inv backup, and schedule it: inv backup --schedule",
        )
    newest = max(parse_time(str(s["time"])) for s in snaps)
    age = clock.now() - newest
    hours = age.total_seconds() / 3600
    if age > MAX_AGE:
        found = warning(
            f"the newest snapshot is {hours:.0f} hours old ({newest:%Y-%m-%d %H:%M} UTC)",
            "is the timer running? systemctl status tailwart-backup.timer; run inv backup",
        )
    else:
        found = ok(f"the newest snapshot is {hours:.1f} hours old")
    return found.measured(round(hours, 1), MAX_AGE.total_seconds() / 3600, "hours old")


def checks(ctx: DoctorContext) -> list[Check]:
    if not ctx.settings["BACKUP_REPOSITORY"]:
        return []
    return [Check("backup.snapshot.age", GROUP, "newest backup snapshot", snapshot_age)]
