"""``inv edge-status``: what each edge host runs, serves and holds, and whether its limits
let it hold EDGE_MAX_SESSIONS, read over SSH."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from ..errors import OperationError
from . import commands as rc
from .health import PortCheck, health_gate
from .hosts import SshOptions, connect
from .limits import Judgement, judge
from .plan import RemoteState
from .remote import Remote
from .rollout import DeployError
from .session import probe
from .targets import DeployOptions, HostJob


@dataclass(frozen=True)
class HostStatus:
    host: str
    state: RemoteState | None
    version: str = ""
    checks: tuple[PortCheck, ...] = ()
    audit: tuple[str, ...] = ()
    error: str = ""
    #: the host's limits against EDGE_MAX_SESSIONS
    limits: Judgement | None = None

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
        if self.limits is not None:
            lines += [f"  {line}" for line in self.limits.lines()]
        up = [f"{c.name}:{c.port} {'up' if c.ok else 'DOWN'}" for c in self.checks]
        lines.append(f"  listeners:       {', '.join(up) or '-'}")
        lines += [f"    {c.name}:{c.port} down: {c.detail}" for c in self.checks if not c.ok]
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


def judge_limits(state: RemoteState, max_sessions: int) -> Judgement:
    """The limits the probe reported, judged for the mode the edge runs in."""
    return judge(
        state.limits,
        max_sessions,
        systemd=state.systemd and state.unit_installed,
        pid=state.running_pid,
    )


def host_limits(job: HostJob, ssh: SshOptions) -> Judgement:
    """Log in, probe (the one round trip of every edge task), judge the host's limits
    against the job's EDGE_MAX_SESSIONS. The errors of ``connect`` and ``Remote.run``."""
    remote = Remote(connect(job.target, ssh), str(job.target), ssh.io_timeout)
    try:
        state = probe(remote, job.remote_layout)
    finally:
        remote.close(wait=1.0)
    return judge_limits(state, job.layout.max_sessions)


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
        return HostStatus(
            label,
            state,
            version,
            tuple(checks),
            tuple(audit.strip().splitlines()),
            limits=judge_limits(state, job.layout.max_sessions),
        )
    except OperationError as exc:
        return HostStatus(label, None, error=str(exc))
    except Exception as exc:  # the link only: anything else is a bug and stays loud
        from .session import is_link_error

        if not is_link_error(exc):
            raise
        detail = str(exc).removeprefix(f"{label}: ") or type(exc).__name__
        return HostStatus(label, None, error=f"{label}: the SSH link failed: {detail}")
    finally:
        remote.close()


def status(
    jobs: Sequence[HostJob],
    opts: DeployOptions,
    out: TextIO | None = None,
    audit_lines: int = 5,
) -> list[HostStatus]:
    """Print every host's status; raise DeployError when a host is unreachable or not serving."""
    out = out or sys.stdout  # looked up now: tasks print through cli's masking stream
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
