"""One host, one deploy or rollback: the SSH connection, the remote lock, the switch.

``HostSession`` holds what a failure must undo: whether it holds the host's lock and
which release was current before it switched. ``guard`` is the one recovery path for
deploy and rollback alike: after a failure it switches back to the previous release and
brings it up (on the same connection, or on a fresh one when the link dropped), drops a
partial upload, records the outcome in the audit log and releases the lock.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import TextIO

from .. import clock
from ..errors import OperationError, UsageError
from . import commands as rc
from .commands import Layout, parse_probe
from .health import PortCheck, health_gate
from .hosts import HostError, connect
from .plan import Action, RemoteState, decide_action
from .remote import Remote, RemoteError
from .report import HostResult
from .targets import MODES, DeployOptions, HostJob


class LockHeld(OperationError):
    """Another deploy holds the host's lock."""


def operator() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def utc_now() -> str:
    return clock.utc_stamp()


def audit_line(action: str, release: str, result: str, msg: str) -> str:
    return (
        f"{utc_now()} action={action} release={release or '-'} result={result} "
        f"by={operator()} message={json.dumps(msg)}"
    )


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
    return parse_probe(out, layout, remote.label)


_LINK_ERRORS: tuple[type[BaseException], ...] = (EOFError, OSError, ConnectionError)


def is_link_error(exc: BaseException) -> bool:
    """The SSH link failed (dropped, stalled), as opposed to a command or a check."""
    import paramiko

    return isinstance(exc, (*_LINK_ERRORS, paramiko.SSHException)) and not isinstance(
        exc, OperationError
    )


class HostSession:
    """The connection to one host, its lock, and whether (and from what) it switched."""

    def __init__(self, job: HostJob, opts: DeployOptions, operation: str, out: TextIO) -> None:
        self.job = job
        self.opts = opts
        #: what the audit log calls it: deploy or rollback
        self.operation = operation
        self.out = out
        self.label = str(job.target)
        self.layout = job.remote_layout
        self.mode = "supervised"
        self.token = secrets.token_hex(8)
        #: True from the lock until the audit line that releases it
        self.locked = False
        #: True once ``current`` may point elsewhere than ``previous``
        self.switched = False
        self.previous: str | None = None
        self._state: RemoteState | None = None
        self._remote: Remote | None = None
        self._started = time.monotonic()

    @property
    def remote(self) -> Remote:
        if self._remote is None:
            raise RuntimeError(f"{self.label}: not connected")
        return self._remote

    def say(self, text: str) -> None:
        self.out.write(f"{self.label}: {text}\n")
        self.out.flush()

    def connect(self) -> RemoteState:
        """Connect, probe the host, and settle the mode (systemd or supervised)."""
        ssh = self.opts.ssh
        self._remote = Remote(connect(self.job.target, ssh), self.label, ssh.io_timeout)
        state = probe(self._remote, self.layout)
        self.mode = resolve_mode(self.opts.mode, state, self.label)
        return state

    def lock(self, message: str) -> RemoteState:
        """Take the host's lock and return its state as seen under the lock."""
        info = (
            f"holder={operator()}\nsince={utc_now()}\nmessage={json.dumps(message)}\n"
            f"token={self.token}"
        )
        res = self.remote.run(
            rc.lock_and_probe_command(self.layout, info, force=self.opts.force_unlock),
            what="lock",
        )
        first, _, rest = res.stdout.partition("\n")
        if first.strip() != "acquired":
            holder = " ".join(
                w for w in first.removeprefix("held").split() if not w.startswith("token=")
            )
            raise LockHeld(
                f"{self.label}: deploy refused: locked by {holder or '(unknown holder)'}; wait "
                "for it to finish, or rerun with --force-unlock if that deploy is dead"
            )
        self.locked = True
        self._state = parse_probe(rest, self.layout, self.label)
        return self._state

    def gate(self, config: str) -> list[PortCheck]:
        """The health gate on ``config``'s listeners; a failed port raises RemoteError."""
        checks = health_gate(
            self.remote.conn.host,
            config,
            greeting=self.opts.check_greeting,
            timeout=self.opts.health_timeout,
        )
        bad = [c for c in checks if not c.ok]
        if bad:
            raise RemoteError("health gate failed: " + "; ".join(str(c) for c in bad))
        return checks

    def switch(self, rid: str, config: str, action: Action, unit_text: str = "") -> list[PortCheck]:
        """Under the lock: switch ``current`` to ``rid``, bring it up, gate it.

        ``unit_text``: install this systemd unit first. A failure from here on is undone
        by ``guard``: the release current before comes back.
        """
        state = self._state
        if state is None or not self.locked:
            raise RuntimeError(f"{self.label}: switch without the lock")
        self.previous, self.switched = state.current, True
        if unit_text:
            self._install_unit(unit_text)
        self.say(f"current -> {rid}; {action.describe()}")
        cmd = rc.switch_command(self.layout, rid)
        activate = rc.activation_command(self.layout, self.mode, action, state.running_pid)
        self.remote.run(
            f"{cmd} && {activate}" if activate else cmd, what=f"switch and {action.value}"
        )
        checks = self.gate(config)
        self.say("health gate: " + ", ".join(f"{c.name}:{c.port} ok" for c in checks))
        return checks

    def finish(self, line: str, prune: tuple[str, ...] = (), remote: Remote | None = None) -> None:
        """Append the audit line, prune old releases, release the lock (one round trip)."""
        (remote or self.remote).run(
            rc.finish_command(self.layout, line, self.token, prune), check=False
        )
        self.locked = False

    @contextlib.contextmanager
    def guard(self, result: HostResult) -> Iterator[HostSession]:
        """Run one host's operation: a failure lands in ``result`` (and is undone), never raised."""
        try:
            yield self
        except Exception as exc:
            if not isinstance(exc, OperationError | UsageError) and not is_link_error(exc):
                raise
            self._recover(exc, result)
        finally:
            self._close(result)

    # ------------------------------------------------------------------ recovery

    def _recover(self, exc: Exception, result: HostResult) -> None:
        """Leave the previous release serving and the lock released, whatever failed."""
        cause = str(exc) or type(exc).__name__
        result.status, result.detail = "failed", cause
        if not self.locked:
            return
        if self.switched:
            self.say(f"FAILED after the switch: {cause}")
        lost = is_link_error(exc)
        remote = self._remote
        if lost:
            try:
                remote = self._reconnect()
            except Exception as again:
                result.detail = (
                    f"SSH link lost: {cause}; could not reconnect to clean up ({again}); the "
                    "lock stays held: check the host and rerun with --force-unlock"
                )
                return
        assert remote is not None  # locked implies connected
        undone: list[str] = []
        failure = ""
        try:
            settle = f"{rc.settle_command(self.layout)}; " if lost else ""
            remote.run(settle + rc.discard_incoming_command(self.layout), check=False)
            if self.switched:
                undone.append(self._restore(remote))
                result.status = "rolled-back"
        except Exception as again:
            failure = str(again) or type(again).__name__
        with contextlib.suppress(Exception):
            first = cause.splitlines()[0][:200]
            self.finish(
                audit_line(self.operation, result.release, result.status, first), (), remote
            )
        if lost:
            remote.close()
            steps = undone or ["partial upload discarded"]
            steps += [f"cleanup failed ({failure})"] if failure else []
            steps += [] if self.locked else ["lock released"]
            result.detail = f"SSH link lost: {cause}; reconnected: {', '.join(steps)}"
        else:
            failed = [f"and switching back failed too: {failure}"] if failure else []
            result.detail = "; ".join([cause, *undone, *failed])

    def _reconnect(self) -> Remote:
        ssh = replace(self.opts.ssh, accept_new_host_key=False)
        return Remote(connect(self.job.target, ssh), self.label, ssh.io_timeout)

    def _restore(self, remote: Remote) -> str:
        """Switch back to ``previous`` and bring it up (or stop, after a failed first install)."""
        layout = self.layout
        now = probe(remote, layout)
        if self.previous is None:
            remote.run(rc.stop_command(layout, self.mode, now.running_pid), check=False)
            remote.run(rc.unswitch_command(layout), check=False)
            msg = "rolled back: first install undone, nothing is current"
            self.say(msg)
            return msg
        previous = self.previous
        rel = now.release(previous)
        if rel is None:
            raise RemoteError(f"{self.label}: release {previous} vanished; cannot switch back")
        remote.run(rc.switch_command(layout, previous), what="switch back")
        now = probe(remote, layout)
        action = decide_action(now, previous, rel.binary_sha256, rel.config_sha256)
        if action is Action.NONE:
            action = Action.RELOAD  # the running process may hold the failed config
        remote.run(
            rc.activation_command(layout, self.mode, action, now.running_pid), what="restore"
        )
        checks = health_gate(
            remote.conn.host,
            now.current_config,
            greeting=self.opts.check_greeting,
            timeout=self.opts.health_timeout,
        )
        serving = all(c.ok for c in checks)
        msg = f"rolled back to {previous} ({action.value}): " + (
            "serving" if serving else "NOT serving: " + "; ".join(map(str, checks))
        )
        self.say(msg)
        return msg

    def _install_unit(self, unit_text: str) -> None:
        tmp = f"{self.layout.root}/.unit.new"
        self.remote.run(f"mkdir -p {rc.q(self.layout.root)}", what="mkdir")
        self.remote.put_text(unit_text, tmp)
        self.remote.run(" && ".join(rc.install_unit_commands(tmp)), what="install the systemd unit")

    def _close(self, result: HostResult) -> None:
        """Record what went over the wire, close the connection, say when a lock is left."""
        if self._remote is not None:
            if self.locked:
                result.detail += "; the lock may still be held: check with inv edge-status"
            result.bytes_sent = self._remote.counters.bytes_sent
            result.commands = list(self._remote.counters.commands)
            with contextlib.suppress(Exception):
                self._remote.close()
        result.seconds = time.monotonic() - self._started
