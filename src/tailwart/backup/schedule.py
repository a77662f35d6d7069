"""``inv backup --schedule``: a systemd service + timer (or a cron line) running the backup
with retention (``restic forget --prune`` with BACKUP_KEEP_*) every night."""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..files import write_atomic
from .errors import BackupError

SERVICE = "tailwart-backup.service"
TIMER = "tailwart-backup.timer"
ON_CALENDAR = "*-*-* 03:30:00"
CRON_TIME = "30 3 * * *"
UNIT_DIR = "/etc/systemd/system"


@dataclass(frozen=True)
class Schedule:
    root: Path
    env_file: Path
    python: str = sys.executable

    def units(self) -> dict[str, str]:
        import jinja2

        env = jinja2.Environment(
            loader=jinja2.PackageLoader("tailwart.backup", "templates"),
            keep_trailing_newline=True,
            undefined=jinja2.StrictUndefined,
            autoescape=False,
        )
        values = {
            "root": str(self.root),
            "env_file": str(self.env_file),
            "python": self.python,
            "on_calendar": ON_CALENDAR,
        }
        return {name: env.get_template(f"{name}.j2").render(**values) for name in (SERVICE, TIMER)}

    def cron_line(self) -> str:
        command = (
            f"cd {shlex.quote(str(self.root))} && flock -n /run/lock/tailwart-backup.lock "
            f"{shlex.quote(self.python)} -m invoke backup "
            f"--env-file={shlex.quote(str(self.env_file))} --prune"
        )
        return f"{CRON_TIME} {command} >>/var/log/tailwart-backup.log 2>&1"


def schedule_for(root: Path, env_file: str, to: str = "") -> Schedule:
    if to:
        raise UsageError(
            "--to: the scheduled backup writes to BACKUP_REPOSITORY; set it in the env file "
            "instead of passing --to with --schedule"
        )
    path = Path(env_file).resolve()
    if not path.is_file():
        raise UsageError(f"--env-file: {path} does not exist; the schedule runs with it")
    if any(c in str(path) + str(root) for c in " \n%"):
        raise UsageError(f"--env-file: {path} holds a space or %, which units and cron split")
    return Schedule(root, path)


def render(sched: Schedule) -> str:
    out = []
    for name, text in sched.units().items():
        out.append(f"# ---- {UNIT_DIR}/{name}\n{text}")
    out.append(
        f"# ---- without systemd: this line in root's crontab (crontab -e)\n{sched.cron_line()}\n"
    )
    return "\n".join(out)


def systemd_running() -> bool:
    return Path("/run/systemd/system").is_dir()


def install(sched: Schedule, unit_dir: str = UNIT_DIR, dry_run: bool = False) -> str:
    """Write the units into ``unit_dir`` and enable the timer (systemd), else say the cron line."""
    lines = []
    directory = Path(unit_dir)
    for name, text in sched.units().items():
        path = directory / name
        if dry_run:
            lines.append(f"would write {path}")
        elif write_atomic(path, text, mode=0o644):
            lines.append(f"wrote {path}")
        else:
            lines.append(f"unchanged {path}")
    if unit_dir == UNIT_DIR and systemd_running():
        commands = [["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", TIMER]]
        for argv in commands:
            if dry_run:
                lines.append("would run " + " ".join(argv))
                continue
            proc = subprocess.run(argv, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise BackupError(f"{' '.join(argv)} failed: {proc.stderr.strip()[:300]}")
            lines.append("ran " + " ".join(argv))
    else:
        lines.append(
            f"systemd is not managing {unit_dir} here: enable the timer there, or add this line "
            f"to root's crontab:\n{sched.cron_line()}"
        )
    if dry_run:
        lines.append("dry run: nothing was written")
    return "\n".join(lines) + "\n"
