"""Where backups go and what opens them: BACKUP_* keys (or ``--to``) as one value.

The password and the S3 secret reach restic only through its environment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..paths import cache_path
from ..settings import BY_NAME, Problem, Settings, SettingsError

KEEP_KEYS = ("BACKUP_KEEP_DAILY", "BACKUP_KEEP_WEEKLY", "BACKUP_KEEP_MONTHLY")


@dataclass(frozen=True)
class Repository:
    location: str
    password: str
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_region: str = "garage"

    @property
    def is_s3(self) -> bool:
        return self.location.startswith("s3:")

    @property
    def local_path(self) -> Path | None:
        return None if self.is_s3 else Path(self.location)

    def environment(self) -> dict[str, str]:
        """Variables restic reads: repository, password and S3 credentials (never argv)."""
        env = {"RESTIC_REPOSITORY": self.location, "RESTIC_PASSWORD": self.password}
        if self.is_s3:
            env["AWS_ACCESS_KEY_ID"] = self.s3_access_key
            env["AWS_SECRET_ACCESS_KEY"] = self.s3_secret_key
            env["AWS_DEFAULT_REGION"] = self.s3_region
        return env

    def options(self) -> list[str]:
        """restic ``-o`` options (not secret): path-style addressing and region for S3."""
        if not self.is_s3:
            return []
        return ["-o", "s3.bucket-lookup=path", "-o", f"s3.region={self.s3_region}"]


def repository(settings: Settings, to: str = "") -> Repository:
    """The repository of ``settings`` (or ``to``); every missing or bad key named (exit 2)."""
    problems: list[Problem] = []
    location = to or settings["BACKUP_REPOSITORY"]
    if to:
        wrong = BY_NAME["BACKUP_REPOSITORY"].kind.check(to)
        if wrong:
            problems.append(Problem("--to", f"{to!r} {wrong}"))
    elif not location:
        problems.append(
            Problem("BACKUP_REPOSITORY", "is required for backups; expected a path or s3: URL")
        )
    if not settings["BACKUP_PASSWORD"]:
        problems.append(Problem("BACKUP_PASSWORD", "is required for backups; expected secret"))
    if location.startswith("s3:"):
        for name in ("BACKUP_S3_ACCESS_KEY", "BACKUP_S3_SECRET_KEY"):
            if not settings[name]:
                problems.append(Problem(name, "is required for an s3: repository"))
    if problems:
        raise SettingsError(settings.source, problems)
    return Repository(
        location,
        settings["BACKUP_PASSWORD"],
        settings["BACKUP_S3_ACCESS_KEY"],
        settings["BACKUP_S3_SECRET_KEY"],
        settings["BACKUP_S3_REGION"] or "garage",
    )


def keep_policy(settings: Settings) -> list[str]:
    """``restic forget`` flags from BACKUP_KEEP_* (0 = that rule is off)."""
    out: list[str] = []
    for name in KEEP_KEYS:
        count = settings.integer(name) if settings[name] else 0
        if count:
            out += [f"--keep-{name.rsplit('_', 1)[1].lower()}", str(count)]
    return out


def staging_dir(settings: Settings) -> Path:
    """The local mirror restic reads from, one per mailbox (not created here)."""
    base = Path(settings["BACKUP_STAGING_DIR"]) if settings["BACKUP_STAGING_DIR"] else None
    name = "{}@{}+{}".format(
        settings["STALWART_DB_NAME"], settings["STALWART_DB_HOST"], settings["STALWART_S3_BUCKET"]
    )
    return (base or cache_path("backup")) / re.sub(r"[^A-Za-z0-9_.@+-]", "_", name)
