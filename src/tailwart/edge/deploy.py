"""``inv deploy-edge``, ``inv rollback-edge``, ``inv edge-status``: the edge over SSH.

Per host: probe → plan → (dry run stops here) → lock → upload what is missing →
verify sha256 → ``caddy validate`` remotely → publish → switch ``current`` →
reload (config only) or restart (new binary) or first install → health gate →
on failure switch back and bring the previous release up → unlock, audit, prune.
Hosts roll one at a time (or N at a time); the rollout stops at the first failure.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import re
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ..errors import OperationError, UsageError
from . import commands as rc
from .commands import Layout, parse_probe
from .health import PortCheck, health_gate
from .hosts import HostError, HostTarget, SshOptions, connect
from .plan import (
    MIGRATE_SYSCTL,
    SYSCTL_DROPIN,
    Action,
    LocalRelease,
    Plan,
    RemoteState,
    decide_action,
    make_plan,
    sha256_text,
)
from .remote import Remote, RemoteError
from .render import EdgeLayout, caddy_json

if TYPE_CHECKING:
    from ..settings import Settings
    from .build import Pins

MODES = ("auto", "systemd", "supervised")


class DeployError(OperationError):
    """A deploy, rollback or status failed on at least one host (the report says which)."""

    def __init__(self, message: str, results: Sequence[object] = ()) -> None:
        super().__init__(message)
        self.results = list(results)


class LockHeld(OperationError):
    """Another deploy holds the host's lock."""


class RolledBack(OperationError):
    """The new release failed after the switch; the previous one was brought back."""


@dataclass(frozen=True)
class HostJob:
    """One host to act on: where, which config layout, which remote root."""

    target: HostTarget
    layout: EdgeLayout
    root: str = rc.DEFAULT_ROOT

    @property
    def remote_layout(self) -> Layout:
        return Layout(root=self.root, admin_socket=self.layout.admin_socket)


@dataclass(frozen=True)
class LocalBinary:
    path: Path
    sha256: str
    size: int
    version: str = ""


BinaryProvider = Callable[[str, str], LocalBinary]


@dataclass(frozen=True)
class DeployOptions:
    ssh: SshOptions
    mode: str = "auto"
    keep: int = 5
    dry_run: bool = False
    force_unlock: bool = False
    message: str = ""
    check_greeting: bool = True
    health_timeout: float = 10.0
    parallel: int = 1
    progress: bool = True
    #: deploy this binary as is instead of building for the host's OS/arch
    binary: Path | None = None


@dataclass
class HostResult:
    host: str
    status: str  # deployed | unchanged | planned | rolled-back | failed | skipped | ok
    release: str = ""
    action: str = ""
    detail: str = ""
    bytes_sent: int = 0
    seconds: float = 0.0
    plan: Plan | None = None
    commands: list[str] = field(default_factory=list)
    checks: list[PortCheck] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "rolled-back")


# ------------------------------------------------------------------ local side


def built_binary_provider(
    verbose: bool = False, pins: Pins | None = None, out_dir: Path | None = None
) -> BinaryProvider:
    """Build (or reuse from build-caddy's cache) caddy-l4 for the host's OS/arch."""
    cache: dict[tuple[str, str], LocalBinary] = {}
    lock = threading.Lock()

    def provide(goos: str, goarch: str) -> LocalBinary:
        with lock:
            if (goos, goarch) not in cache:
                from .build import ensure_caddy

                built = ensure_caddy(goos, goarch, verbose=verbose, pins=pins, out_dir=out_dir)
                path = Path(built.path)
                cache[goos, goarch] = LocalBinary(
                    path, built.sha256, path.stat().st_size, str(built.version)
                )
            return cache[goos, goarch]

    return provide


def fixed_binary_provider(path: Path) -> BinaryProvider:
    """Deploy one given binary to every host (the operator vouches for its OS/arch)."""
    if not path.is_file():
        raise UsageError(f"--binary {path}: no such file")
    from .build import file_sha256

    binary = LocalBinary(path, file_sha256(path), path.stat().st_size, "")

    def provide(goos: str, goarch: str) -> LocalBinary:
        return binary

    return provide


def operator() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Progress:
    """A progress bar for the binary upload (a single summary line when not a terminal)."""

    def __init__(self, label: str, stream: TextIO, enabled: bool) -> None:
        self.label = label
        self.stream = stream
        self.tty = enabled and stream.isatty()
        self.start = time.monotonic()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.tty or (now - self.last < 0.1 and done < total):
            return
        self.last = now
        width = 30
        filled = int(width * done / total) if total else width
        self.stream.write(
            f"\r  {self.label} [{'#' * filled}{'.' * (width - filled)}] "
            f"{done / 1048576:5.1f}/{total / 1048576:.1f} MiB"
        )
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()

    def summary(self, size: int) -> str:
        secs = max(time.monotonic() - self.start, 1e-6)
        return (
            f"uploaded {size / 1048576:.1f} MiB in {secs:.1f} s ({size / 1048576 / secs:.1f} MiB/s)"
        )


# ------------------------------------------------------------------ per-host steps


def resolve_mode(requested: str, state: RemoteState, host: str) -> str:
    if requested not in MODES:
        raise UsageError(f"--mode {requested!r}: expected one of {', '.join(MODES)}")
    if requested == "auto":
        return "systemd" if state.systemd else "supervised"
    if requested == "systemd" and not state.systemd:
        raise HostError(f"{host}: --mode systemd, but systemd is not running there")
    return requested


def probe(remote: Remote, layout: Layout) -> RemoteState:
    out = remote.run(rc.probe_command(layout), what="probe").stdout
    return parse_probe(out, layout)


class _Say:
    def __init__(self, label: str, out: TextIO) -> None:
        self.label = label
        self.out = out

    def __call__(self, text: str) -> None:
        self.out.write(f"{self.label}: {text}\n")
        self.out.flush()


def _take_lock(
    remote: Remote, layout: Layout, token: str, message: str, force: bool
) -> RemoteState:
    """Take the host's lock and return its state as seen under the lock."""
    info = f"holder={operator()}\nsince={_now()}\nmessage={json.dumps(message)}\ntoken={token}"
    res = remote.run(rc.lock_and_probe_command(layout, info, force=force), what="lock")
    first, _, rest = res.stdout.partition("\n")
    if first.strip() != "acquired":
        holder = " ".join(
            w for w in first.removeprefix("held").split() if not w.startswith("token=")
        )
        raise LockHeld(
            f"{remote.label}: deploy refused: locked by {holder or '(unknown holder)'}; wait for "
            "it to finish, or rerun with --force-unlock if that deploy is dead"
        )
    return parse_probe(rest, layout)


def _stage(
    remote: Remote, layout: Layout, local: LocalRelease, plan: Plan, say: _Say, progress: bool
) -> None:
    """Put the release in place: upload/reuse, verify by sha256, validate, publish."""
    rid = local.id
    if not plan.uploads:
        return
    inc = layout.incoming(rid)
    binary = next(u for u in plan.uploads if u.name == "binary")
    if binary.source == "upload":
        remote.run(rc.prepare_command(layout, rid), what="prepare")
        bar = Progress(f"{remote.label} caddy", sys.stderr, progress)
        remote.put_file(local.binary_path, f"{inc}/caddy", bar)
        say(bar.summary(binary.size))
    else:
        source = binary.source.removeprefix("reuse ")
        remote.run(
            rc.prepare_command(layout, rid) + " && " + rc.reuse_binary_command(layout, rid, source),
            what="prepare",
        )
        say(f"binary already on the host (release {source}): 0 bytes sent")
    remote.put_text(local.config, f"{inc}/caddy.json")
    remote.put_text(
        rc.meta_text(local.binary_sha256, local.config_sha256, local.version, _now(), operator()),
        f"{inc}/meta",
    )
    res = remote.run(
        rc.install_release_command(
            layout,
            rid,
            local.binary_sha256,
            local.config_sha256,
            uploaded=binary.source == "upload",
        ),
        check=False,
    )
    if res.exited == rc.VALIDATE_REFUSED:
        tail = "\n".join(res.stdout.strip().splitlines()[-5:])
        raise RemoteError(
            f"{remote.label}: caddy validate refused the new config; nothing was switched:\n{tail}"
        )
    if res.exited != 0:
        out = (res.stdout + res.stderr).strip()
        raise RemoteError(f"{remote.label}: installing the release failed: {out[-500:]}")
    say("sha256 verified, caddy validate: ok")


def _activation_command(layout: Layout, mode: str, action: Action, pid: int | None) -> str:
    """The command that brings ``current`` up for ``action`` ('' for none)."""
    if action is Action.FIRST_INSTALL:
        return rc.enable_command() if mode == "systemd" else rc.start_command(layout, mode)
    if action is Action.START:
        return rc.start_command(layout, mode)
    if action is Action.RELOAD:
        return rc.reload_command(layout, mode)
    if action is Action.RESTART:
        return rc.restart_command(layout, mode, pid)
    return ""


def _migrate_req(remote: Remote, plan: Plan, say: _Say) -> None:
    """net.ipv4.tcp_migrate_req=1 before the release comes up; a refusal warns, never fails."""
    if not (plan.set_migrate_req or plan.persist_sysctl):
        return
    res = remote.run(
        rc.migrate_req_command(runtime=plan.set_migrate_req, persist=plan.persist_sysctl),
        check=False,
        what="sysctl",
    )
    if res.exited == 0:
        kept = f", kept in {SYSCTL_DROPIN}" if plan.persist_sysctl else ""
        say(f"{MIGRATE_SYSCTL}=1{kept}: reloads hand queued connections over")
        return
    why = " ".join((res.stdout + res.stderr).split())[-200:] or f"exit {res.exited}"
    say(
        f"warning: the host refused {MIGRATE_SYSCTL}=1 ({why}): a reload may reset "
        "connections queued on the old listener; deploying anyway"
    )


def _install_unit(remote: Remote, layout: Layout, unit_text: str) -> None:
    tmp = f"{layout.root}/.unit.new"
    remote.run(f"mkdir -p {rc.q(layout.root)}", what="mkdir")
    remote.put_text(unit_text, tmp)
    remote.run(" && ".join(rc.install_unit_commands(tmp)), what="install the systemd unit")


def _gate(config: str, conn_host: str, opts: DeployOptions) -> list[PortCheck]:
    checks = health_gate(
        conn_host, config, greeting=opts.check_greeting, timeout=opts.health_timeout
    )
    bad = [c for c in checks if not c.ok]
    if bad:
        raise RemoteError("health gate failed: " + "; ".join(str(c) for c in bad))
    return checks


def _switch_and_serve(
    remote: Remote,
    job: HostJob,
    opts: DeployOptions,
    mode: str,
    state: RemoteState,
    rid: str,
    config: str,
    action: Action,
    unit_text: str,
    install_unit: bool,
    say: _Say,
) -> list[PortCheck]:
    """Switch ``current`` to ``rid``, bring it up, gate it; on failure go back and re-raise."""
    layout = job.remote_layout
    previous = state.current
    try:
        if install_unit:
            _install_unit(remote, layout, unit_text)
        say(f"current -> {rid}; {action.describe()}")
        cmd = rc.switch_command(layout, rid)
        activate = _activation_command(layout, mode, action, state.running_pid)
        remote.run(f"{cmd} && {activate}" if activate else cmd, what=f"switch and {action.value}")
        checks = _gate(config, remote.conn.host, opts)
        say("health gate: " + ", ".join(f"{c.name}:{c.port} ok" for c in checks))
        return checks
    except Exception as exc:
        if _is_link_error(exc):
            raise
        say(f"FAILED after the switch: {exc}")
        try:
            back = _restore(remote, job, opts, mode, previous, say)
        except Exception as again:
            raise OperationError(f"{exc}; and switching back failed too: {again}") from None
        raise RolledBack(f"{exc}; {back}") from None


def _restore(
    remote: Remote, job: HostJob, opts: DeployOptions, mode: str, previous: str | None, say: _Say
) -> str:
    """Switch back to ``previous`` and bring it up (or stop, after a failed first install)."""
    layout = job.remote_layout
    now = probe(remote, layout)
    if previous is None:
        remote.run(rc.stop_command(layout, mode, now.running_pid), check=False)
        remote.run(rc.unswitch_command(layout), check=False)
        msg = "rolled back: first install undone, nothing is current"
        say(msg)
        return msg
    rel = now.release(previous)
    if rel is None:
        raise RemoteError(f"{remote.label}: release {previous} vanished; cannot switch back")
    remote.run(rc.switch_command(layout, previous), what="switch back")
    now = probe(remote, layout)
    action = decide_action(now, previous, rel.binary_sha256, rel.config_sha256)
    if action is Action.NONE:
        action = Action.RELOAD  # the running process may hold the failed config
    remote.run(_activation_command(layout, mode, action, now.running_pid), what="restore")
    checks = health_gate(
        remote.conn.host,
        now.current_config,
        greeting=opts.check_greeting,
        timeout=opts.health_timeout,
    )
    serving = all(c.ok for c in checks)
    msg = f"rolled back to {previous} ({action.value}): " + (
        "serving" if serving else "NOT serving: " + "; ".join(map(str, checks))
    )
    say(msg)
    return msg


def _audit_line(action: str, release: str, result: str, msg: str) -> str:
    return (
        f"{_now()} action={action} release={release or '-'} result={result} by={operator()} "
        f"message={json.dumps(msg)}"
    )


def _finish(
    remote: Remote, layout: Layout, token: str, line: str, prune: tuple[str, ...] = ()
) -> None:
    remote.run(rc.finish_command(layout, line, token, prune), check=False)


_LINK_ERRORS: tuple[type[BaseException], ...] = (EOFError, OSError, ConnectionError)


def _is_link_error(exc: BaseException) -> bool:
    import paramiko

    return isinstance(exc, (*_LINK_ERRORS, paramiko.SSHException)) and not isinstance(
        exc, OperationError
    )


def _recover_after_loss(
    job: HostJob,
    opts: DeployOptions,
    token: str,
    mode: str,
    switched: bool,
    previous: str | None,
    detail: str,
    say: _Say,
) -> str:
    """The SSH link dropped: on a fresh connection, undo what is half done and unlock."""
    layout = job.remote_layout
    try:
        conn = connect(job.target, replace(opts.ssh, accept_new_host_key=False))
    except Exception as exc:
        return (
            f"could not reconnect to clean up ({exc}); the lock stays held: check the host and "
            "rerun with --force-unlock"
        )
    remote = Remote(conn, str(job.target), opts.ssh.io_timeout)
    try:
        remote.run(rc.discard_incoming_command(layout), check=False)
        what = "partial upload discarded"
        if switched:
            _restore(remote, job, opts, mode, previous, say)
            what = f"switched back to {previous or '(none)'}"
        _finish(remote, layout, token, _audit_line("deploy", "", "failed", detail[:200]))
        return f"reconnected: {what}, lock released"
    except Exception as exc:
        return f"cleanup after reconnect failed ({exc}); rerun with --force-unlock"
    finally:
        remote.close()


def deploy_host(
    job: HostJob, opts: DeployOptions, binaries: BinaryProvider, out: TextIO = sys.stdout
) -> HostResult:
    """Deploy to one host; a host-level failure is reported in the result, never raised."""
    label = str(job.target)
    say = _Say(label, out)
    started = time.monotonic()
    result = HostResult(label, "failed")
    remote: Remote | None = None
    token = secrets.token_hex(8)
    locked = switched = False
    mode = "supervised"
    previous: str | None = None
    layout = job.remote_layout
    try:
        remote = Remote(connect(job.target, opts.ssh), label, opts.ssh.io_timeout)
        state = probe(remote, layout)
        mode = resolve_mode(opts.mode, state, label)
        binary = binaries(state.goos, state.goarch)
        local = LocalRelease(
            str(binary.path), binary.sha256, binary.size, caddy_json(job.layout), binary.version
        )
        unit_text = unit_sha = ""
        if mode == "systemd":
            from .unit import render_unit

            unit_text = render_unit(job.root, job.layout.admin_socket)
            unit_sha = sha256_text(unit_text)
        plan = make_plan(label, local, state, mode=mode, keep=opts.keep, unit_sha256=unit_sha)
        result.plan, result.release, result.action = plan, plan.release, plan.action.value
        out.write(plan.render() + "\n")
        if state.lock:
            say(f"lock: HELD by {state.lock.split(' token=')[0]}")
        if opts.dry_run:
            result.status = "planned"
            return result
        if not plan.changes:
            result.checks = _gate(local.config, remote.conn.host, opts)
            say("unchanged; health gate ok")
            result.status = "unchanged"
            return result
        held_by = state.lock
        state = _take_lock(remote, layout, token, opts.message, opts.force_unlock)
        locked = True
        forced = f" lock=forced(was:{held_by.split(' token=')[0]})" if held_by else ""
        replan = make_plan(label, local, state, mode=mode, keep=opts.keep, unit_sha256=unit_sha)
        if replan != plan:
            out.write("the host changed since the plan; now:\n" + replan.render() + "\n")
        plan = result.plan = replan
        result.action = plan.action.value
        _stage(remote, layout, local, plan, say, opts.progress)
        _migrate_req(remote, plan, say)
        previous, switched = state.current, True
        result.checks = _switch_and_serve(
            remote,
            job,
            opts,
            mode,
            state,
            plan.release,
            local.config,
            plan.action,
            unit_text,
            plan.install_unit,
            say,
        )
        result.status = "deployed"
        _finish(
            remote,
            layout,
            token,
            _audit_line("deploy", plan.release, f"ok:{plan.action.value}", opts.message)
            + (forced if opts.force_unlock else ""),
            plan.prune,
        )
        locked = False
        if plan.prune:
            say(f"pruned {len(plan.prune)} old release(s): {', '.join(plan.prune)}")
    except Exception as exc:
        if not isinstance(exc, OperationError | UsageError) and not _is_link_error(exc):
            raise
        result.status = "rolled-back" if isinstance(exc, RolledBack) else "failed"
        result.detail = str(exc) or type(exc).__name__
        if locked and _is_link_error(exc):
            result.detail = f"SSH link lost: {result.detail}; " + _recover_after_loss(
                job, opts, token, mode, switched, previous, result.detail, say
            )
            locked = False
        elif locked and remote is not None:
            with contextlib.suppress(Exception):
                first = result.detail.splitlines()[0][:200]
                _finish(
                    remote,
                    layout,
                    token,
                    _audit_line("deploy", result.release, result.status, first),
                )
                locked = False
    finally:
        _wrap_up(result, remote, locked, started)
    return result


def _wrap_up(result: HostResult, remote: Remote | None, locked: bool, started: float) -> None:
    """Record what went over the wire, close the connection, and say when a lock is left."""
    if remote is not None:
        if locked:
            result.detail += "; the lock may still be held: check with inv edge-status"
        result.bytes_sent = remote.counters.bytes_sent
        result.commands = list(remote.counters.commands)
        with contextlib.suppress(Exception):
            remote.close()
    result.seconds = time.monotonic() - started


# ------------------------------------------------------------------ rollouts


def rollout(
    jobs: Sequence[HostJob],
    run_one: Callable[[HostJob], HostResult],
    parallel: int = 1,
) -> list[HostResult]:
    """Run hosts one at a time (or ``parallel`` at a time); stop starting hosts after a failure."""
    results: dict[int, HostResult] = {}
    stop = threading.Event()

    def task(index: int) -> None:
        job = jobs[index]
        if stop.is_set():
            results[index] = HostResult(
                str(job.target), "skipped", detail="not attempted: an earlier host failed"
            )
            return
        res = run_one(job)
        results[index] = res
        if res.failed:
            stop.set()

    if parallel <= 1:
        for i in range(len(jobs)):
            task(i)
    else:
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            list(pool.map(task, range(len(jobs))))
    return [results[i] for i in range(len(jobs))]


def _fmt_bytes(n: int) -> str:
    return f"{n / 1048576:.1f} MiB" if n >= 1 << 20 else f"{n / 1024:.1f} KiB"


def report(results: Sequence[HostResult], title: str = "deploy") -> str:
    """The per-host table printed at the end of every rollout."""
    width = max([len(r.host) for r in results] + [4])
    lines = [
        f"{title} report:",
        f"  {'host':<{width}}  {'result':<11} {'release':<16}  "
        f"{'action':<13} {'sent':>9}  {'time':>6}",
    ]
    for r in results:
        lines.append(
            f"  {r.host:<{width}}  {r.status:<11} {r.release or '-':<16}  {r.action or '-':<13} "
            f"{_fmt_bytes(r.bytes_sent):>9}  {r.seconds:5.1f}s"
        )
        if r.detail and r.status not in ("deployed", "unchanged", "planned", "ok"):
            lines += [f"    {line}" for line in r.detail.splitlines()]
    return "\n".join(lines)


def deploy(
    jobs: Sequence[HostJob],
    opts: DeployOptions,
    binaries: BinaryProvider | None = None,
    out: TextIO = sys.stdout,
) -> list[HostResult]:
    """Roll the edge out to every host; raise DeployError (exit 1) with the report on failure."""
    if opts.keep < 1:
        raise UsageError("--keep must be at least 1")
    if opts.parallel < 1:
        raise UsageError("--parallel must be at least 1")
    if opts.mode not in MODES:
        raise UsageError(f"--mode {opts.mode!r}: expected one of {', '.join(MODES)}")
    if binaries is None:
        binaries = fixed_binary_provider(opts.binary) if opts.binary else built_binary_provider()
    provide = binaries
    parallel_opts = replace(opts, progress=opts.progress and opts.parallel == 1)
    results = rollout(
        jobs, lambda job: deploy_host(job, parallel_opts, provide, out), opts.parallel
    )
    text = report(results, "dry run" if opts.dry_run else "deploy")
    out.write(text + "\n")
    if any(r.failed for r in results):
        failed = [r.host for r in results if r.failed]
        raise DeployError(f"deploy failed on {', '.join(failed)} (see the report above)", results)
    return results


# ------------------------------------------------------------------ rollback and status


def rollback_host(
    job: HostJob, opts: DeployOptions, to: str | None, out: TextIO = sys.stdout
) -> HostResult:
    """Switch one host back to a kept release (default: the one active before ``current``)."""
    label = str(job.target)
    say = _Say(label, out)
    started = time.monotonic()
    result = HostResult(label, "failed", action="rollback")
    remote: Remote | None = None
    token = secrets.token_hex(8)
    locked = False
    layout = job.remote_layout
    try:
        remote = Remote(connect(job.target, opts.ssh), label, opts.ssh.io_timeout)
        state = probe(remote, layout)
        mode = resolve_mode(opts.mode, state, label)
        target = state.release(to) if to else state.previous()
        if target is None:
            kept = ", ".join(r.id for r in state.releases) or "none"
            raise DeployError(
                f"{label}: no release {to!r} to roll back to (kept: {kept})"
                if to
                else f"{label}: no previous release to roll back to (kept: {kept})"
            )
        result.release = target.id
        action = decide_action(state, target.id, target.binary_sha256, target.config_sha256)
        say(f"rollback {state.current or '(none)'} -> {target.id}: {action.describe()}")
        if opts.dry_run:
            result.status = "planned"
            return result
        if action is Action.NONE:
            result.status = "unchanged"
            return result
        msg = opts.message or f"rollback to {target.id}"
        state = _take_lock(remote, layout, token, msg, opts.force_unlock)
        locked = True
        action = decide_action(state, target.id, target.binary_sha256, target.config_sha256)
        config = remote.run(
            f"cat {rc.q(layout.release(target.id) + '/caddy.json')}", what="read release config"
        ).stdout
        result.checks = _switch_and_serve(
            remote, job, opts, mode, state, target.id, config, action, "", False, say
        )
        result.status = "ok"
        _finish(
            remote, layout, token, _audit_line("rollback", target.id, f"ok:{action.value}", msg)
        )
        locked = False
    except Exception as exc:
        if not isinstance(exc, OperationError | UsageError) and not _is_link_error(exc):
            raise
        result.status = "rolled-back" if isinstance(exc, RolledBack) else "failed"
        result.detail = str(exc) or type(exc).__name__
        if locked and remote is not None:
            with contextlib.suppress(Exception):
                first = result.detail.splitlines()[0][:200]
                _finish(
                    remote, layout, token, _audit_line("rollback", result.release, "failed", first)
                )
                locked = False
    finally:
        _wrap_up(result, remote, locked, started)
    return result


def rollback(
    jobs: Sequence[HostJob], opts: DeployOptions, to: str | None = None, out: TextIO = sys.stdout
) -> list[HostResult]:
    results = rollout(jobs, lambda job: rollback_host(job, opts, to, out), opts.parallel)
    out.write(report(results, "rollback") + "\n")
    if any(r.failed for r in results):
        failed = ", ".join(r.host for r in results if r.failed)
        raise DeployError(f"rollback failed on {failed} (see the report above)", results)
    return results


@dataclass(frozen=True)
class HostStatus:
    host: str
    state: RemoteState | None
    version: str = ""
    checks: tuple[PortCheck, ...] = ()
    audit: tuple[str, ...] = ()
    error: str = ""

    def render(self) -> str:
        if self.state is None:
            return f"{self.host}: UNREACHABLE: {self.error}"
        st = self.state
        cur = st.release(st.current)
        lines = [f"{self.host}: {st.goos}/{st.goarch}, {'systemd' if st.systemd else 'no systemd'}"]
        lines.append(f"  current release: {st.current or '(none)'}")
        if cur is not None:
            lines.append(f"  binary sha256:   {cur.binary_sha256}")
        if st.running_pid:
            ran = st.release(st.running_release)
            if ran is None:
                runs = "a binary outside the kept releases: redeploy to restart it"
            elif cur is not None and ran.binary_sha256 == cur.binary_sha256:
                runs = "the current binary"
            else:
                runs = f"the binary of release {ran.id}, NOT current's: a restart is pending"
            lines.append(f"  running:         pid {st.running_pid}, {self.version}, {runs}")
        else:
            lines.append("  running:         NOT RUNNING")
        if st.tcp_migrate_req:
            lines.append(f"  tcp_migrate_req: {_migrate_req_status(st.tcp_migrate_req)}")
        up = [f"{c.name}:{c.port} {'up' if c.ok else 'DOWN'}" for c in self.checks]
        lines.append(f"  listeners:       {', '.join(up) or '-'}")
        lines.append(
            f"  lock:            {('HELD ' + st.lock.split(' token=')[0]) if st.lock else 'free'}"
        )
        kept = sorted(st.releases, key=lambda r: r.activated, reverse=True)
        lines.append(f"  kept releases:   {', '.join(r.id for r in kept) or '-'}")
        lines.append("  last audit lines:")
        lines += [f"    {line}" for line in self.audit] or ["    (none)"]
        return "\n".join(lines)


def _migrate_req_status(value: str) -> str:
    if value == "1":
        return "1"
    resets = "a reload may reset connections queued on the old listener"
    if value == "missing":
        return f"WARNING: not available (kernel < 5.14): {resets}"
    return f"{value}: WARNING: {resets}; the next deploy that brings the edge up sets it to 1"


def status_host(job: HostJob, opts: DeployOptions, audit_lines: int = 5) -> HostStatus:
    label = str(job.target)
    try:
        remote = Remote(connect(job.target, opts.ssh), label, opts.ssh.io_timeout)
    except OperationError as exc:
        return HostStatus(label, None, error=str(exc))
    try:
        layout = job.remote_layout
        state = probe(remote, layout)
        extra = remote.run(
            rc.status_command(layout, audit_lines, state.running_pid), what="status"
        ).stdout
        head, _, audit = extra.partition("--- audit ---\n")
        version = head.strip().removeprefix("version ").strip()
        checks = health_gate(remote.conn.host, state.current_config, timeout=2.0)
        return HostStatus(label, state, version, tuple(checks), tuple(audit.strip().splitlines()))
    except OperationError as exc:
        return HostStatus(label, None, error=str(exc))
    finally:
        remote.close()


def status(
    jobs: Sequence[HostJob], opts: DeployOptions, out: TextIO = sys.stdout, audit_lines: int = 5
) -> list[HostStatus]:
    """Print every host's status; raise DeployError when a host is unreachable or not serving."""
    statuses = [status_host(job, opts, audit_lines) for job in jobs]
    for st in statuses:
        out.write(st.render() + "\n")
    bad = [
        s.host
        for s in statuses
        if s.state is None or not s.state.running_pid or not all(c.ok for c in s.checks)
    ]
    if bad:
        raise DeployError(f"edge not serving on {', '.join(bad)}", statuses)
    return statuses


def jobs_for(targets: Sequence[HostTarget], layout: EdgeLayout, root: str) -> list[HostJob]:
    return [HostJob(t, layout, root) for t in targets]


# ------------------------------------------------------------------ task glue


@dataclass(frozen=True)
class Targets:
    """What every edge task needs from flags and .env: hosts, root, SSH options."""

    jobs: list[HostJob]
    ssh: SshOptions
    keep: int


@dataclass(frozen=True)
class FlagValues:
    """The deploy/rollback/status flags besides hosts and SSH files, for one up-front check."""

    mode: str = "auto"
    parallel: int = 1
    health_timeout: float = 10.0
    message: str = ""
    binary: str = ""
    to: str = ""
    audit_lines: int = 5

    def problems(self) -> list[str]:
        from .. import flags

        found = [
            flags.count("--parallel", self.parallel, most=64),
            flags.seconds("--health-timeout", self.health_timeout, at_most=600),
            flags.control("--message", self.message),
            flags.existing_file("--binary", self.binary) if self.binary else None,
            flags.count("--audit-lines", self.audit_lines, least=0, most=1000),
        ]
        if self.mode not in MODES:
            found.append(f"--mode {self.mode!r}: expected one of {', '.join(MODES)}")
        if self.to and not re.fullmatch(r"[0-9a-f]{16}", self.to):
            found.append(
                f"--to {self.to!r}: expected a release id (16 hex digits, see edge-status)"
            )
        return [p for p in found if p]


def targets_from(
    settings: Settings,
    hosts: Sequence[str],
    *,
    root: str = "",
    known_hosts: str = "",
    identity: str = "",
    ssh_config: str = "",
    accept_new_host_key: bool = False,
    dry_run: bool = False,
    keep: int | None = None,
    flags: FlagValues | None = None,
) -> Targets:
    """Hosts from --host or EDGE_HOSTS, layout from .env; bad input → UsageError (exit 2).

    ``flags``: the task's other flags, checked here too so that every problem is
    reported at once, before any connection.
    """
    from .hosts import default_known_hosts, parse_targets, ssh_input_problems
    from .render import layout_for
    from .unit import root_problem

    problems: list[str] = []
    try:
        parsed = parse_targets(hosts, settings["EDGE_HOSTS"])
    except UsageError as exc:
        problems.append(str(exc))
        parsed = []
    source = "--root" if root else "EDGE_ROOT"
    root = root or settings["EDGE_ROOT"] or rc.DEFAULT_ROOT
    problem = root_problem(root)
    if problem:
        problems.append(f"{source} {root!r}: {problem}; expected an absolute path")
    from .. import flags as flag_checks

    for flag, value in (("--identity", identity), ("--ssh-config", ssh_config)):
        problem = flag_checks.existing_file(flag, value) if value else None
        if problem:
            problems.append(problem)
    problem = flag_checks.control("--known-hosts", known_hosts)
    if problem:
        problems.append(problem)
    keep = keep if keep is not None else settings.integer("EDGE_KEEP_RELEASES")
    if keep < 1:
        problems.append(f"--keep {keep}: keep at least 1 release")
    problems += (flags or FlagValues()).problems()
    if problems:
        raise UsageError("\n".join(problems))
    ssh = SshOptions(
        known_hosts=Path(known_hosts) if known_hosts else default_known_hosts(),
        identity=Path(identity) if identity else None,
        ssh_config=Path(ssh_config) if ssh_config else None,
        accept_new_host_key=accept_new_host_key,
        save_new_host_key=not dry_run,
    )
    problems = ssh_input_problems(parsed, ssh)
    if problems:
        raise UsageError("\n".join(problems))
    return Targets(jobs_for(parsed, layout_for(settings), root), ssh, keep)
