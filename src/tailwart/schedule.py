"""A task on a schedule: a systemd service + timer (or a cron line) that run one ``inv``
task every day from the checkout, and the root-only install of those units.

A ``Job`` says which task, when, and where its unit templates live; ``backup.schedule``
and ``doctor.schedule`` each declare one (``inv backup-schedule``, ``inv doctor-schedule``).
"""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .errors import OperationError, UsageError
from .files import write_atomic
from .flags import CONTROL, printable
from .systemd_words import EXEC_PATH_REFUSED, exec_path_problem, systemd_word

UNIT_DIR = "/etc/systemd/system"


@dataclass(frozen=True)
class Job:
    """One scheduled task: ``inv <task> --env-file=… <args>`` at ``on_calendar``."""

    #: the unit and lock name: tailwart-<name>.service/.timer
    name: str
    #: the inv task and the flags after --env-file
    task: str
    args: tuple[str, ...]
    #: the package holding templates/<service>.j2 and <timer>.j2
    templates: str
    on_calendar: str
    #: the same time as a crontab's first five fields
    cron_time: str

    @property
    def service(self) -> str:
        return f"tailwart-{self.name}.service"

    @property
    def timer(self) -> str:
        return f"tailwart-{self.name}.timer"


class ScheduleError(OperationError):
    """systemctl refused to load or enable the units."""


@dataclass(frozen=True)
class Schedule:
    job: Job
    root: Path
    env_file: Path
    python: str = sys.executable

    def units(self) -> dict[str, str]:
        """The service and the timer; every path a systemd word (``systemd_words``)."""
        import jinja2

        env = jinja2.Environment(
            loader=jinja2.PackageLoader(self.job.templates, "templates"),
            keep_trailing_newline=True,
            undefined=jinja2.StrictUndefined,
            autoescape=False,
        )
        values = {
            # WorkingDirectory= takes a bare path (schedule_for refuses what it cannot hold)
            "root": str(self.root).replace("%", "%%"),
            "python": systemd_word(self.python),
            "env_arg": systemd_word(f"--env-file={self.env_file}", exec_line=True),
            "on_calendar": self.job.on_calendar,
            "task": self.job.task,
            # the job's own flags: constants of tailwart, never operator input
            "args": "".join(f" {arg}" for arg in self.job.args),
        }
        names = (self.job.service, self.job.timer)
        return {name: env.get_template(f"{name}.j2").render(**values) for name in names}

    def cron_line(self) -> str:
        job = self.job
        command = (
            f"cd {shlex.quote(str(self.root))} && flock -n /run/lock/tailwart-{job.name}.lock "
            f"{shlex.quote(self.python)} -m invoke {job.task} "
            f"--env-file={shlex.quote(str(self.env_file))}"
            + "".join(f" {shlex.quote(arg)}" for arg in job.args)
        )
        return f"{job.cron_time} {command} >>/var/log/tailwart-{job.name}.log 2>&1"


def _path_problem(path: str) -> str | None:
    """What a unit's WorkingDirectory= or a crontab line cannot hold in ``path``."""
    if CONTROL.search(path):
        return "holds a control character (a newline, a carriage return, a tab...)"
    if any(ch.isspace() for ch in path) or "%" in path:
        return "holds a space or %, which units and cron split"
    refused = sorted({c for c in path if c in EXEC_PATH_REFUSED})
    if refused:
        return f"holds {' '.join(refused)}, which a unit cannot hold"
    return None


def schedule_for(job: Job, root: Path, env_file: str, python: str = sys.executable) -> Schedule:
    """``job`` for ``env_file`` run from the checkout ``root``; every problem at once."""
    problems = []
    problem = _path_problem(env_file)
    if problem:
        problems.append(f"--env-file {printable(env_file)}: {problem}")
    else:
        path = Path(env_file).resolve()
        problem = _path_problem(str(path))
        if problem:
            problems.append(f"--env-file {printable(str(path))}: {problem}")
        elif not path.is_file():
            problems.append(f"--env-file {path}: does not exist; the schedule runs with it")
    for what, value in (("the checkout", str(root)), ("the Python", python)):
        problem = _path_problem(value) or exec_path_problem(value)
        if problem:
            problems.append(f"{what} {printable(value)}: {problem}")
    if problems:
        raise UsageError("\n".join(problems))
    return Schedule(job, root, Path(env_file).resolve(), python)


@dataclass(frozen=True)
class ScheduleFlags:
    """``--install``, ``--unit-dir`` and ``--dry-run`` of the schedule tasks (a flag group)."""

    install: bool = field(default=False, metadata={"help": "write the units and enable the timer"})
    unit_dir: str = field(
        default="",
        metadata={
            "help": "with --install: an existing directory for the units (/etc/systemd/system)"
        },
    )
    dry_run: bool = field(
        default=False,
        metadata={"help": "with --install: say what would be written and enabled; change nothing"},
    )

    def apply(self, sched: Schedule) -> str:
        """The units and the cron line of ``sched``; with --install (or --unit-dir) what
        installing them did (or would do)."""
        if self.install or self.unit_dir:
            return install(sched, self.unit_dir or UNIT_DIR, dry_run=self.dry_run)
        return render(sched)


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


def unit_dir_problem(unit_dir: str, names: tuple[str, ...]) -> str | None:
    """Why ``unit_dir`` cannot take the units: it must be an existing directory, given
    as a normalised absolute path, and not a symlink (to somewhere else)."""
    if CONTROL.search(unit_dir):
        return f"--unit-dir {printable(unit_dir)}: holds a control character"
    if not unit_dir.startswith("/"):
        return f"--unit-dir {unit_dir}: must be an absolute path"
    parts = unit_dir.split("/")[1:]
    if unit_dir != "/" and any(part in ("", ".", "..") for part in parts):
        return (
            f"--unit-dir {unit_dir}: must be a normalised path (no '..', '.', '//' or trailing /)"
        )
    path = Path(unit_dir)
    if path.is_symlink() or path.resolve() != path:
        return (
            f"--unit-dir {unit_dir}: is (or lies under) a symlink to {path.resolve()}; "
            "name the real directory"
        )
    if not path.is_dir():
        return f"--unit-dir {unit_dir}: is not an existing directory"
    for name in names:
        if (path / name).is_symlink():
            return (
                f"--unit-dir {unit_dir}: {name} there is a symlink; remove it (tailwart writes "
                "the unit itself)"
            )
    return None


def install(sched: Schedule, unit_dir: str = UNIT_DIR, dry_run: bool = False) -> str:
    """Write the units into ``unit_dir`` and enable the timer (systemd), else say the cron line.

    The units run as root: every path they execute or read (the checkout, the Python
    and its environment, the env file, the unit directory, and the directories above
    them) must be root's alone, or the install is refused (``owner_problems``).
    """
    problem = unit_dir_problem(unit_dir, (sched.job.service, sched.job.timer))
    problems = [problem] if problem else []
    problems += owner_problems(sched, Path(unit_dir))
    if problems:
        raise UsageError("\n".join(problems))
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
        commands = [
            ["systemctl", "daemon-reload"],
            ["systemctl", "enable", "--now", sched.job.timer],
        ]
        for argv in commands:
            if dry_run:
                lines.append("would run " + " ".join(argv))
                continue
            proc = subprocess.run(argv, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise ScheduleError(
                    f"{' '.join(argv)} failed: {printable(proc.stderr.strip(), 300)}"
                )
            lines.append("ran " + " ".join(argv))
    else:
        lines.append(
            f"systemd is not managing {unit_dir} here: enable the timer there, or add this line "
            f"to root's crontab:\n{sched.cron_line()}"
        )
    if dry_run:
        lines.append("dry run: nothing was written")
    return "\n".join(lines) + "\n"


#: at most this many paths are named in one refusal (the rest are counted)
SHOWN_PATHS = 5


def _not_roots(path: Path, st: os.stat_result) -> str | None:
    """Why a non-root user could change what ``path`` holds; None if only root can."""
    if stat.S_ISLNK(st.st_mode):
        return None  # a link's own mode means nothing; its target is checked separately
    if st.st_uid != 0:
        return f"owned by uid {st.st_uid}"
    if st.st_mode & stat.S_IWGRP and st.st_gid != 0:
        return f"writable by group {st.st_gid}"
    if st.st_mode & stat.S_IWOTH and not (stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX):
        return "writable by everyone"
    return None


def _closure(path: Path) -> list[Path]:
    """``path`` and every directory above it; a symlink's target (and its) too."""
    out: list[Path] = []
    for one in (path, path.resolve()):
        out.append(one)
        out += list(one.parents)
    return list(dict.fromkeys(out))


def _tree(top: Path) -> list[Path]:
    out = [top]
    for base, dirs, files in os.walk(top):
        out += [Path(base, name) for name in dirs + files]
    return out


def owner_problems(sched: Schedule, unit_dir: Path) -> list[str]:
    """Every path a root unit executes or reads that a non-root user could change:
    the checkout and the Python environment (whole trees), the Python binary and the
    env file, the unit directory, and every directory above them."""
    python = Path(sched.python)
    paths = [
        *_tree(sched.root),
        *_tree(Path(sys.prefix)),
        *_closure(sched.root),
        *_closure(Path(sys.prefix)),
        *_closure(python),
        *_closure(Path(os.__file__).parent),  # the standard library (not walked: the OS's)
        *_closure(sched.env_file),
        *_closure(unit_dir),
    ]
    found: dict[Path, str] = {}
    for path in dict.fromkeys(paths):
        try:
            why = _not_roots(path, os.lstat(path))
        except OSError:
            continue
        if why:
            found[path] = why
    if not found:
        return []
    shown = [f"  {printable(str(p))}: {why}" for p, why in list(found.items())[:SHOWN_PATHS]]
    more = len(found) - SHOWN_PATHS
    return [
        "--install: the unit runs as root, but a non-root user can change what it runs or reads:",
        *shown,
        *([f"  ... and {more} more"] if more > 0 else []),
        "  install from a root-owned checkout and environment (chown -R root:root, chmod -R "
        "go-w on them and the env file's directory), or schedule it as that user",
    ]
