"""Where backups go and what opens them: BACKUP_* keys (or ``--to``) as one value.

The password and the S3 secret reach restic only through its environment.
"""

from __future__ import annotations

import os
import re
import stat
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


def staging_base(settings: Settings) -> tuple[Path, bool]:
    """The directory that holds the per-mailbox staging directories, and whether the
    operator named it (BACKUP_STAGING_DIR) rather than tailwart (its cache)."""
    given = settings["BACKUP_STAGING_DIR"]
    return (Path(given), True) if given else (cache_path("backup"), False)


def staging_problem(settings: Settings) -> Problem | None:
    """Why the staging directory would leave the dump readable to others; None if it
    would not. Reads only: a missing directory is fine (it is made 0700)."""
    base, given = staging_base(settings)
    for path in (base, staging_dir(settings)):
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        except OSError as exc:
            return Problem("BACKUP_STAGING_DIR", f"{path}: cannot be read ({exc.strerror})")
        if stat.S_ISLNK(st.st_mode) and path != base:
            return Problem("BACKUP_STAGING_DIR", f"{path} is a symlink; remove it")
        st = path.stat()
        if not stat.S_ISDIR(st.st_mode):
            return Problem("BACKUP_STAGING_DIR", f"{path} is not a directory")
        if st.st_uid != os.geteuid():
            return Problem(
                "BACKUP_STAGING_DIR",
                f"{path} is owned by uid {st.st_uid}, not by the user running the backup "
                f"(uid {os.geteuid()}): that user could read or swap the dump; use a "
                "directory of your own",
            )
        if path == base and given and st.st_mode & 0o077:
            return Problem(
                "BACKUP_STAGING_DIR",
                f"{path} has mode {stat.S_IMODE(st.st_mode):04o}: group/others could read the "
                f"dump and the blobs; chmod 700 {path}",
            )
    return None


def prepare_staging(settings: Settings) -> Path:
    """The per-mailbox staging directory, made (0700) if missing: the operator's
    BACKUP_STAGING_DIR is checked (``staging_problem``), tailwart's own directories are
    made private (their mode fixed) whatever an older run left."""
    problem = staging_problem(settings)
    if problem:
        raise SettingsError(settings.source, [problem])
    base, given = staging_base(settings)
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not given:
        base.chmod(0o700)
    leaf = staging_dir(settings)
    leaf.mkdir(mode=0o700, exist_ok=True)
    leaf.chmod(0o700)
    return leaf


def staging_dir(settings: Settings) -> Path:
    """The local mirror restic reads from, one per mailbox (not created here)."""
    name = "{}@{}+{}".format(
        settings["STALWART_DB_NAME"], settings["STALWART_DB_HOST"], settings["STALWART_S3_BUCKET"]
    )
    return staging_base(settings)[0] / re.sub(r"[^A-Za-z0-9_.@+-]", "_", name)
