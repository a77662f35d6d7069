"""The task layer (issue 22): every flag an operator used still works, --env-file and
--strict are declared once, number flags refuse bad input without patching invoke, and
the split tasks (acl-*, backup-*) do what the old mode flags do.

The oracle for the operator surface is the flag table of tasks.py as it was before the
task layer was regrouped (read from invoke's parser of that version), written out here.
"""

from __future__ import annotations

import functools
import importlib.util
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from invoke.collection import Collection
from invoke.context import Context

from tests.support.testkit import ROOT, inv, write_env

#: every task and its flags before the regrouping: "long/short" (no short: long alone)
SURFACE_BEFORE = {
    "acl": "check dry-run env-file file headscale snippet strict tailscale",
    "backup": "dry-run/d env-file/e install/i prune/p schedule/c strict/s target-env/a to/t "
    "unit-dir/u verify/v",
    "bootstrap": "dry-run/d env-file/e fix-password/f init-layout/i strict/s",
    "build-caddy": "arch/a force/f os/o verbose/v",
    "check": "env-file/e example/x json/j strict/s",
    "demo": "",
    "deploy-edge": "accept-new-host-key binary check-greeting dry-run env-file force-unlock "
    "health-timeout host identity keep known-hosts message mode parallel root ssh-config strict",
    "doctor": "ca-file/c edge/d env-file/e json/j only/o port/p strict/s timeout/t",
    "down": "dry-run/d env-file/e strict/s volumes/v yes/y",
    "edge-run": "env-file/e example/x listen-host/l port-offset/p ports/o strict/s "
    "upstream-host/u validate-only/v",
    "edge-status": "accept-new-host-key audit-lines env-file host identity known-hosts root "
    "ssh-config strict",
    "env-example": "check/c",
    "first-start": "env-file/e strict/s timeout/t",
    "logs": "dry-run/d env-file/e follow/f service/r since/i strict/s",
    "migrate-stalwart": "dry-run/d env-file/e strict/s",
    "provision": "check/c dry-run/d env-file/e json/j phase/p restart/r strict/s",
    "ps": "dry-run/d env-file/e strict/s",
    "recover": "env-file/e strict/s timeout/t",
    "render": "env-file/e example/x strict/s",
    "restart": "dry-run/d env-file/e service/r strict/s timeout/t",
    "restore": "dry-run/d env-file/e force/f from-repo/r overwrite-live/o snapshot/n strict/s "
    "target-env/t",
    "rollback-edge": "accept-new-host-key dry-run env-file force-unlock host identity "
    "known-hosts message mode root ssh-config strict to",
    "rotate-management": "env-file/e strict/s",
    "up": "dry-run/d env-file/e strict/s timeout/t",
}

#: the tasks that read no .env: a build, the demo, a generator, a policy file merge
WITHOUT_ENV = {"build-caddy", "demo", "env-example", "acl-file", "docs"}

#: int and float flags (their values are converted while invoke parses the command line)
NUMBER_FLAGS = {
    ("edge-run", "port-offset"): int,
    ("deploy-edge", "keep"): int,
    ("deploy-edge", "parallel"): int,
    ("deploy-edge", "health-timeout"): float,
    ("drain", "health-timeout"): float,
    ("undrain", "health-timeout"): float,
    ("edge-status", "audit-lines"): int,
    ("doctor", "timeout"): float,
    ("up", "timeout"): int,
    ("restart", "timeout"): int,
    ("restart", "drain-grace"): float,
    ("first-start", "timeout"): int,
    ("recover", "timeout"): int,
}


def _load_tasks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tailwart_tasks_layer", ROOT / "tasks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


COLLECTION = Collection.from_module(_load_tasks())


@functools.cache
def _arguments(name: str) -> list[Any]:
    """invoke's Arguments of task ``name`` (asked once: invoke hands each help out once)."""
    return list(COLLECTION[name].get_arguments())


def _surface(name: str) -> dict[str, Any]:
    """{long flag: invoke Argument} of task ``name``."""
    return {arg.names[0]: arg for arg in _arguments(name)}


@pytest.mark.parametrize("name", sorted(SURFACE_BEFORE))
def test_every_flag_and_short_flag_an_operator_used_is_still_there(name: str) -> None:
    now = {"/".join(arg.names) for arg in _arguments(name)}
    assert set(SURFACE_BEFORE[name].split()) <= now  # new flags may join (--check, --json)


def test_the_split_tasks_are_listed_next_to_the_old_ones() -> None:
    new = set(COLLECTION.task_names) - set(SURFACE_BEFORE)
    split = {"acl-file", "acl-tailscale", "acl-headscale", "backup-schedule", "backup-verify"}
    # and tasks that came after the split
    assert new == split | {"docs", "doctor-schedule", "dns", "drain", "undrain"}
    for name in new:
        assert COLLECTION[name].__doc__, name  # the first line is the `inv --list` entry


def test_every_task_that_reads_env_takes_env_file_and_strict_with_one_help() -> None:
    reading = {name for name in COLLECTION.task_names if name not in WITHOUT_ENV}
    assert len(reading) >= 25
    helps = set()
    for name in sorted(COLLECTION.task_names):
        flags = _surface(name)
        has = {"env-file", "strict"} & set(flags)
        assert has == ({"env-file", "strict"} if name in reading else set()), name
        if has:
            assert flags["env-file"].default == ".env" and flags["env-file"].kind is str
            assert flags["strict"].default is False and flags["strict"].kind is bool
            helps.add((flags["env-file"].help, flags["strict"].help))
    assert helps == {
        (
            "path of the .env file (default: .env)",
            "treat warnings about the .env file (permissions) as errors",
        )
    }


def test_tasks_py_declares_env_file_and_strict_nowhere() -> None:
    """The two flags are declared once (tailwart.cli.EnvFlags), not per task."""
    text = (ROOT / "tasks.py").read_text()
    assert "env_file:" not in text and "strict:" not in text
    assert text.count("env: EnvFlags = ENV") == len(COLLECTION.task_names) - len(WITHOUT_ENV)


@pytest.mark.parametrize(("task", "flag"), sorted(NUMBER_FLAGS))
def test_number_flags_keep_their_kind(task: str, flag: str) -> None:
    assert _surface(task)[flag].kind is NUMBER_FLAGS[(task, flag)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["edge-run", "--port-offset", "abc"], "--port-offset 'abc': expected a whole number"),
        (["edge-run", "-p", "1.5"], "--port-offset '1.5': expected a whole number"),
        (["doctor", "--timeout", "soon"], "--timeout 'soon': expected a number"),
        (["deploy-edge", "--parallel", "two"], "--parallel 'two': expected a whole number"),
        (["up", "--timeout=", "--dry-run"], "--timeout '': expected a whole number"),
    ],
)
def test_a_bad_number_exits_2_naming_the_flag(
    tmp_path: Path, args: list[str], message: str
) -> None:
    done = inv(*args, cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip() == message
    assert not list(tmp_path.iterdir())  # refused while parsing: nothing ran


def test_invokes_parser_is_not_patched() -> None:
    """The refusal comes from tailwart's own Task class, not a patched invoke."""
    from invoke.parser.argument import Argument

    import tailwart.cli  # noqa: F401

    assert Argument.set_value.__module__ == "invoke.parser.argument"
    arg = Argument(names=("n",), kind=int)
    with pytest.raises(ValueError):
        arg.set_value("x")


# ---------------------------------------------------------------- flag groups


@dataclass(frozen=True)
class Pair:
    left: str = field(default="l", metadata={"help": "the left one"})
    right: int = field(default=2, metadata={"help": "the right one"})


def test_a_flag_group_becomes_flags_in_place_and_reaches_the_body_whole() -> None:
    from tailwart.cli import operator_task

    seen: list[tuple[Pair, bool, bool]] = []

    def body(c: Context, first: bool = False, pair: Pair = Pair(), last: bool = False) -> None:
        seen.append((pair, first, last))

    made = operator_task(help={"first": "f", "last": "z"})(body)
    args = made.get_arguments()
    # in place: short flags are chosen in the parameters' order (f, l, r, a)
    assert [a.names for a in args] == [
        ("first", "f"),
        ("left", "l"),
        ("right", "r"),
        ("last", "a"),
    ]
    assert [a.help for a in args] == ["f", "the left one", "the right one", "z"]
    assert args[2].kind is int and args[2].default == 2
    made(Context(), first=True, left="x")
    made(Context())
    assert seen == [(Pair("x", 2), True, False), (Pair("l", 2), False, False)]


def test_help_given_at_the_task_wins_over_the_groups() -> None:
    from tailwart.cli import operator_task

    def body(c: Context, pair: Pair = Pair()) -> None:
        return None

    made = operator_task(help={"left": "said here"})(body)
    assert {a.name: a.help for a in made.get_arguments()} == {
        "left": "said here",
        "right": "the right one",
    }


# ---------------------------------------------------------------- the split tasks


def _same_run(tmp_path: Path, old: list[str], new: list[str], check: Callable[[str], bool]) -> None:
    """``old`` (a mode flag) and ``new`` (its own task) print the same, and it is right."""
    first = inv(*old, cwd=tmp_path, timeout=120)
    second = inv(*new, cwd=tmp_path, timeout=120)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert first.stdout == second.stdout
    assert check(first.stdout), first.stdout


def test_backup_schedule_is_backup_dash_dash_schedule(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    env = write_env(
        tmp_path / ".env",
        {**example_values, "BACKUP_REPOSITORY": "/srv/repo", "BACKUP_PASSWORD": "0a1b" * 8},
    )
    _same_run(
        tmp_path,
        ["backup", f"--env-file={env}", "--schedule"],
        ["backup-schedule", f"--env-file={env}"],
        lambda out: "OnCalendar=*-*-* 03:30:00" in out and f"--env-file={env} --prune" in out,
    )
    units = tmp_path / "units"
    units.mkdir()
    _same_run(
        tmp_path,
        ["backup", f"--env-file={env}", f"--unit-dir={units}", "--dry-run"],
        ["backup-schedule", f"--env-file={env}", "--install", f"--unit-dir={units}", "-d"],
        lambda out: "would write" in out,
    )
    assert not list(units.iterdir())


def test_backup_verify_refuses_what_backup_verify_refuses(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    """Without a repository both stop at the same bad input (exit 2, the key named)."""
    env = write_env(tmp_path / ".env", example_values)
    old = inv("backup", f"--env-file={env}", "--verify", cwd=tmp_path)
    new = inv("backup-verify", f"--env-file={env}", cwd=tmp_path)
    assert old.returncode == new.returncode == 2
    assert old.stderr == new.stderr and "BACKUP_REPOSITORY" in new.stderr


POLICY = '{\n\t"acls": [\n\t\t{"action": "accept", "src": ["*"], "dst": ["*:*"]},\n\t],\n}\n'


def test_acl_file_is_acl_dash_dash_file(tmp_path: Path) -> None:
    (tmp_path / "acl-snippet.hujson").write_text((ROOT / "acl-snippet.hujson").read_text())
    policy = tmp_path / "policy.hujson"
    policy.write_text(POLICY)
    old = inv("acl", "--file", str(policy), "--check", cwd=tmp_path)
    new = inv("acl-file", "--file", str(policy), "--check", cwd=tmp_path)
    assert old.returncode == new.returncode == 1  # the merge would change the file
    assert old.stdout == new.stdout and "+" in new.stdout
    assert policy.read_text() == POLICY
    done = inv("acl-file", "--file", str(policy), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert policy.read_text() != POLICY
    again = inv("acl", "--file", str(policy), "--check", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr


def test_acl_file_without_a_file_is_bad_input(tmp_path: Path) -> None:
    done = inv("acl-file", cwd=tmp_path)
    assert done.returncode == 2 and "--file" in done.stderr and "Traceback" not in done.stderr


# ---------------------------------------------------------------- progress and --list


def test_progress_goes_to_stderr_through_one_helper() -> None:
    """No task or library module prints progress with its own lambda any more."""
    sources = [ROOT / "tasks.py", *sorted((ROOT / "src" / "tailwart").rglob("*.py"))]
    own = [
        str(path.relative_to(ROOT))
        for path in sources
        if "lambda m: print(m, file=sys.stderr" in path.read_text()
        or "lambda text: print(text, file=sys.stderr" in path.read_text()
    ]
    assert own == []


def test_inv_list_imports_nothing_heavy() -> None:
    heavy = ["fabric", "paramiko", "requests", "psycopg", "cryptography", "tailwart.edge.targets"]
    code = (
        "import sys, runpy; sys.argv = ['inv', '-r', sys.argv[1], '--list']\n"
        "try:\n    runpy.run_module('invoke', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        f"print([m for m in {heavy!r} if m in sys.modules], file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, timeout=60
    )
    assert "deploy-edge" in done.stdout and "backup-schedule" in done.stdout
    assert done.stderr.strip().splitlines()[-1] == "[]"
