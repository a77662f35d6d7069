"""The mailbox operations behind ``inv up / down / ps / logs / restart``.

Each operation plans its docker command lines first; ``--dry-run`` prints them and
runs nothing. ``up`` and ``restart`` refuse before any docker command when the static
checks of ``inv check`` find an error, then wait for both containers' health.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from ..checks import CheckContext
from ..errors import UsageError
from ..findings import Finding, Status, has_errors, to_table
from ..progress import to_stderr
from ..settings import Settings
from ..settings.derived import recovery_values
from . import health, identity
from .compose import LOG_TAIL, SERVICES, SIDECAR, STALWART, Compose, Context, Runner, inspect, line
from .errors import MailboxError, StackRefused
from .nodes import Node, primary
from .preconditions import COMPOSE_CHECK, DAEMON_CHECK, require_docker

if TYPE_CHECKING:
    from ..edge.hosts import SshOptions

Checks = Callable[[CheckContext], list[Finding]]
#: default seconds ``up`` / ``restart`` wait for both containers to be healthy
DEFAULT_TIMEOUT = 300
RESTART_TARGETS = (STALWART, SIDECAR, "all")


def _all_checks(ctx: CheckContext) -> list[Finding]:
    from ..checks.run import collect

    return collect(ctx)


@dataclass
class Stack:
    """The compose project of one .env on one mailbox node (default MAILBOX_FQDN's): its
    command builder, runner (that node's compose environment and docker engine) and output."""

    c: Context
    settings: Settings
    root: Path
    env_file: str
    out: Callable[[str], None] = print
    err: Callable[[str], None] = to_stderr
    #: seconds between two health polls; clock and sleep are injectable for tests
    interval: float = 5.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    #: the node this stack runs on (default MAILBOX_FQDN's node)
    node: Node | None = None
    #: how config.json reaches an ssh:// node (default: the operator's SSH setup)
    ssh: SshOptions | None = None

    def __post_init__(self) -> None:
        self.where: Node = self.node or primary(self.settings)
        self.compose = Compose.for_settings(self.settings, self.env_file, self.root)
        self.runner = Runner.for_node(self.c, self.settings, self.where, self.out)

    # ------------------------------------------------------------ shared steps

    def refuse_if_broken(self, checks: Checks = _all_checks) -> list[Finding]:
        """Run the static checks, before any docker command: an error in the operator's
        input refuses (StackRefused, exit 2), a crashed check refuses (MailboxError,
        exit 1); errors of the advisory groups (repository hygiene) are only warnings."""
        from ..checks import ADVISORY_FOR_UP
        from ..checks.run import context_for, input_errors

        ctx = context_for(self.settings, self.root, renders_config=True)  # write_config() follows
        findings = checks(ctx)
        blocking = [f for f in findings if f.group not in ADVISORY_FOR_UP]
        if has_errors(blocking):
            shown = [f for f in blocking if f.status is not Status.OK]
            self.out(to_table(shown).rstrip().rsplit("\n", 1)[0].rstrip())
            errors = len(input_errors(blocking))
            if errors:
                raise StackRefused(
                    f"refused: the static checks found {errors} error(s) (above); no "
                    "docker command was run → fix them, `inv check` to confirm"
                )
            raise MailboxError(
                "refused: a static check crashed (above), so the stack is unchecked; no "
                "docker command was run → report a tailwart bug"
            )
        for finding in findings:
            if finding.status is not Status.OK and (
                finding.status is Status.WARNING or finding.group in ADVISORY_FOR_UP
            ):
                self.err(f"warning: {finding.id}: {finding.message} → {finding.advice}")
        return findings

    def print_plan(
        self, steps: Sequence[Sequence[str]], after: Sequence[str] = (), config: bool = False
    ) -> None:
        """The docker commands of ``steps`` (``config``: after writing config.json)."""
        self.out("dry run: nothing runs. The docker commands, in order:")
        if self.where.endpoint:
            self.out(f"  (each with DOCKER_HOST={self.where.endpoint})")
        for check in (DAEMON_CHECK, COMPOSE_CHECK):
            self.out(f"  {line(check)}")
        target = self.where.ssh_target
        if config and target is not None:
            from ..settings.derived import REMOTE_CONFIG_FILE

            self.out(f"  then config/config.json is uploaded to {target}:{REMOTE_CONFIG_FILE}")
        for step in steps:
            self.out(f"  {line(step)}")
        for note in after:
            self.out(f"  {note}")

    def wait_plan(self, timeout: int) -> list[str]:
        return [
            f"then, every few seconds for up to {timeout}s until both are healthy:",
            f"  {line(self.compose.ps())}",
            f"  {line(inspect())} <{SIDECAR} container> <{STALWART} container>",
            "then, to report the node name the sidecar got:",
            f"  {line(self.compose.tailscale_status())}",
        ]

    def poll(self) -> health.StackState:
        listing = self.runner.capture(self.compose.ps())
        if not listing.ok:
            raise MailboxError(f"docker compose ps failed: {listing.stderr.strip()}")
        names = health.containers_to_inspect(health.parse_ps(listing.stdout))
        if not names:
            return health.judge([])
        inspected = self.runner.capture(inspect(*names))
        return health.judge(health.parse_inspect(inspected.stdout))

    def await_healthy(self, timeout: int) -> None:
        """Wait until both containers are healthy; MailboxError with the report otherwise."""

        def progress(state: health.StackState, waited: float) -> None:
            self.out(f"  {waited:3.0f}s  {health.summary_line(state)}")

        self.out(f"waiting up to {timeout}s for {SIDECAR} and {STALWART} to be healthy")
        result = health.wait(
            self.poll, timeout, self.interval, clock=self.clock, sleep=self.sleep, progress=progress
        )
        if result.verdict is health.Verdict.READY:
            self.out(
                f"mailbox healthy after {result.waited:.0f}s: {health.summary_line(result.state)}"
            )
            return
        self.fail(result.state, result.waited, result.timed_out)

    def fail(self, state: health.StackState, waited: float, timed_out: bool) -> NoReturn:
        logs = {}
        for service in state.not_ready:
            if service in state.containers:
                out = self.runner.capture(self.compose.logs(service, tail=LOG_TAIL))
                logs[service] = out.stdout if out.ok else f"(logs failed: {out.stderr.strip()})"
        raise MailboxError(health.failure_report(state, logs, waited, timed_out))

    def failed_step(self, what: str) -> NoReturn:
        """A compose step failed: report the containers at once (compose gives up when the
        sidecar never turns healthy), or compose's own output when they look fine."""
        state = self.poll()
        if state.not_ready:
            self.fail(state, 0, timed_out=False)
        raise MailboxError(f"docker compose {what} failed (see its output above)")

    def report_identity(self) -> None:
        """Print the node name the sidecar got; warn when the edge would dial another."""
        status = self.runner.capture(self.compose.tailscale_status())
        try:
            node = identity.parse_status(status.stdout) if status.ok else None
        except ValueError:
            node = None
        if node is None:
            self.err(
                "warning: could not read `tailscale status --json` from the sidecar: its "
                "node name is unknown → `inv logs ts-stalwart`"
            )
            return
        info, warnings = identity.identity_report(
            node, self.settings, self.where.name, self.where.fqdn
        )
        self.out(info)
        for warning in warnings:
            self.err(f"warning: {warning}")

    def write_config(self) -> None:
        """Render config/config.json (the DataStore) before compose mounts it; on a node
        reached over ssh://, also put it where that node's engine mounts it from."""
        from ..files import write_atomic
        from ..stalwart.datastore import CONFIG_FILE, config_json

        text = config_json(self.settings)
        if write_atomic(self.root / CONFIG_FILE, text):
            self.out(f"wrote {CONFIG_FILE}")
        target = self.where.ssh_target
        if target is None:
            return
        from .remote_config import default_ssh_options, upload_config

        done = upload_config(target, text, self.ssh or default_ssh_options())
        state = "uploaded" if done.changed else "unchanged"
        self.out(f"{state} {done.host}:{done.path}")

    # ------------------------------------------------------------ operations

    def up(
        self, dry_run: bool = False, timeout: int = DEFAULT_TIMEOUT, checks: Checks = _all_checks
    ) -> None:
        check_timeout(timeout)
        self.refuse_if_broken(checks)
        step = self.compose.up()
        if dry_run:
            self.print_plan([step], self.wait_plan(timeout), config=True)
            return
        require_docker(self.runner)
        self.write_config()
        if not self.runner.stream(step).ok:
            self.failed_step("up -d")
        self.await_healthy(timeout)
        self.report_identity()

    def down(
        self,
        volumes: bool = False,
        yes: bool = False,
        dry_run: bool = False,
        confirm: Callable[[str], bool] | None = None,
    ) -> None:
        step = self.compose.down(volumes)
        if dry_run:
            self.print_plan([step])
            return
        if volumes and not yes:
            confirm_volume_deletion(self.settings, "", confirm)
        require_docker(self.runner)
        if not self.runner.stream(step).ok:
            raise MailboxError("docker compose down failed (see above)")

    def ps(self, dry_run: bool = False) -> None:
        if dry_run:
            self.print_plan([self.compose.ps()])
            return
        require_docker(self.runner)
        listing = self.runner.capture(self.compose.ps())
        if not listing.ok:
            raise MailboxError(f"docker compose ps failed: {listing.stderr.strip()}")
        rows = health.parse_ps(listing.stdout)
        self.out(ps_table(rows, self.settings["STALWART_IMAGE"]))
        pinned = self.settings["STALWART_IMAGE"]
        running = next((r.image for r in rows if r.service == STALWART), "")
        if running and running != pinned:
            self.err(
                f"warning: stalwart runs {running} but .env pins {pinned} → `inv up` "
                "recreates it with the pinned image"
            )

    def logs(
        self, service: str = "", follow: bool = False, since: str = "", dry_run: bool = False
    ) -> None:
        if service and service not in SERVICES:
            raise UsageError(f"unknown service {service!r}: choose {' or '.join(SERVICES)}")
        if since and not re.fullmatch(r"[0-9][0-9A-Za-z:.+-]{0,39}", since):
            raise UsageError(
                f"--since {since!r}: expected a duration or a time, e.g. 10m or 2026-01-02T15:04:05"
            )
        step = self.compose.logs(*([service] if service else []), follow=follow, since=since)
        if dry_run:
            self.print_plan([step])
            return
        require_docker(self.runner)
        if not self.runner.stream(step, echo=False).ok:
            raise MailboxError("docker compose logs failed (see above)")

    def restart_steps(self, service: str) -> list[list[str]]:
        if service == STALWART:
            return [self.compose.restart(STALWART)]
        # the sidecar owns the network namespace: stop the app, recreate both in order
        return [
            self.compose.stop(STALWART),
            self.compose.up(SIDECAR, force_recreate=True),
            self.compose.up(STALWART, force_recreate=True),
        ]

    def restart(
        self,
        service: str = STALWART,
        dry_run: bool = False,
        timeout: int = DEFAULT_TIMEOUT,
        checks: Checks = _all_checks,
    ) -> None:
        if service not in RESTART_TARGETS:
            raise UsageError(f"unknown service {service!r}: choose {', '.join(RESTART_TARGETS)}")
        check_timeout(timeout)
        self.refuse_if_broken(checks)
        steps = self.restart_steps(service)
        if dry_run:
            self.print_plan(steps, self.wait_plan(timeout), config=True)
            return
        require_docker(self.runner)
        self.write_config()  # Stalwart reads config.json only at start: this is the moment
        for step in steps:
            if not self.runner.stream(step).ok:
                self.failed_step(" ".join(step[len(self.compose.base()) :]))
        self.await_healthy(timeout)
        self.report_identity()


@dataclass
class ComposeControl:
    """Starts and stops Stalwart alone through compose, for ``inv first-start``."""

    stack: Stack
    timeout: int = DEFAULT_TIMEOUT

    def start(self, recovery: bool) -> None:
        env = dict(self.stack.runner.env)
        values = recovery_values(self.stack.settings)
        env.update(values if recovery else dict.fromkeys(values, ""))
        self.stack.runner.env = env
        step = self.stack.compose.up(STALWART, force_recreate=True)
        if not self.stack.runner.stream(step).ok:
            self.stack.failed_step("up stalwart")
        self.stack.await_healthy(self.timeout)

    def stop(self) -> None:
        if not self.stack.runner.stream(self.stack.compose.stop(STALWART)).ok:
            self.stack.failed_step("stop stalwart")


def confirm_volume_deletion(
    settings: Settings, where: str, confirm: Callable[[str], bool] | None = None
) -> None:
    """Ask before `down --volumes` deletes stalwart-data (``where``: the nodes, '' for one);
    UsageError (nothing stopped or deleted) unless the answer is yes."""
    on = f" on {where}" if where else ""
    question = (
        f"delete the volume {settings['COMPOSE_PROJECT']}_stalwart-data{on} (Stalwart's local "
        "data, and the web admin's local state)?"
    )
    if not (confirm or _ask)(question):
        raise UsageError("not confirmed: nothing was stopped or deleted (--yes skips the question)")


def _ask(question: str) -> bool:
    if not sys.stdin.isatty():
        raise UsageError(f"{question} needs a confirmation: stdin is not a terminal → pass --yes")
    return input(f"{question} [type yes] ").strip() == "yes"


def ps_table(rows: Sequence[health.Listed], pinned: str) -> str:
    """Containers, state, health and image; the Stalwart image tag on the last line."""
    if not rows:
        return "the mailbox is not running (no containers) → `inv up`"
    header = ("SERVICE", "CONTAINER", "STATE", "HEALTH", "IMAGE")
    table = [header] + [
        (
            r.service,
            r.name,
            r.state if r.state != "exited" else f"exited ({r.exit_code})",
            r.health or "-",
            r.image,
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]
    running = next((r.image for r in rows if r.service == STALWART), "")
    tag = running.rsplit(":", 1)[1] if ":" in running.rsplit("/", 1)[-1] else "(untagged)"
    lines.append(
        f"\nstalwart image tag: {tag} (pinned in .env: {pinned})"
        if running
        else f"\nstalwart is not created (pinned in .env: {pinned})"
    )
    return "\n".join(lines)


def check_timeout(timeout: int) -> None:
    """--timeout is a count of seconds, at most a day: UsageError (exit 2) otherwise."""
    from ..flags import count

    problem = count("--timeout", timeout, least=0, most=24 * 3600)
    if problem:
        raise UsageError(problem)


def open_stack(c: Context, env_file: str, strict: bool, root: Path | None = None) -> Stack:
    """The stack of ``env_file`` on MAILBOX_FQDN's node: refuses a missing .env, and several
    nodes without MAILBOX_DOCKER_HOSTS (exit 2), before anything else."""
    from ..env_file import load_settings
    from .nodes import select
    from .preconditions import require_env_file

    require_env_file(env_file)
    settings = load_settings(env_file, strict)
    select(settings)
    return Stack(c, settings, root or Path.cwd(), env_file, node=primary(settings))
