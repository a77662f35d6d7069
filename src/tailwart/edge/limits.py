"""Whether a host's limits let the edge hold EDGE_MAX_SESSIONS sessions: pure.

A held session costs the edge two file descriptors (the client's socket and the one
toward the mailbox) and one local port: every upstream socket goes from the edge's one
tailnet address to the same mailbox address:port, so the ephemeral port range is the
most sessions one mail port can carry. Go asks for ``net.core.somaxconn`` as the
accept backlog of every listener: a low one drops a burst of new sessions (every phone
reconnecting after an outage).

What the host reported is untrusted text: every value is parsed strictly, and one that
is missing or garbled is named as unreadable, never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..findings import Finding, Status
from ..masking import one_line

KEY = "EDGE_MAX_SESSIONS"
#: open files the edge may hold: the unit's LimitNOFILE, and what the supervised start asks
NOFILE = 1048576
FDS_PER_SESSION = 2
#: descriptors besides the held sessions: listeners, the admin socket, the log, the Go
#: runtime (epoll, pipes) and sessions still being set up
FD_MARGIN = 1024
#: the backlog below which a burst of new sessions may overflow (the kernel's default
#: since 5.4)
SOMAXCONN_MIN = 4096
#: the widest usual ephemeral range: below 1024 lie the privileged ports
WIDE_RANGE = (1024, 65535)
#: where the edge's sysctl settings persist (shared with net.ipv4.tcp_migrate_req)
SYSCTL_DROPIN = "/etc/sysctl.d/60-tailwart-edge.conf"
NOFILE_DROPIN = "/etc/systemd/system/tailwart-edge.service.d/limits.conf"

GROUP = "edge"
_INT = re.compile(r"[0-9]{1,19}", re.ASCII)
_NOFILE_LINE = re.compile(
    r"Max open files[ \t]+([0-9]{1,19}|unlimited)[ \t]+([0-9]{1,19}|unlimited)[ \t]+files[ \t]*",
    re.ASCII,
)
_LONG_MAX = 2**63 - 1
_RANGE = re.compile(r"([0-9]{1,5})[ \t]+([0-9]{1,5})", re.ASCII)


@dataclass(frozen=True)
class HostLimits:
    """The limits as the host reported them: untrusted text, "" when not reported."""

    #: the running caddy's ``Max open files`` line of ``/proc/<pid>/limits``
    nofile: str = ""
    somaxconn: str = ""
    #: ``net.ipv4.ip_local_port_range``: two numbers
    port_range: str = ""
    file_max: str = ""
    nr_open: str = ""


class Unreadable(ValueError):
    """A value the host reported that is not what the kernel writes there."""


def _unreadable(what: str, text: str) -> Unreadable:
    if not text.strip():
        return Unreadable(f"{what}: not reported")
    return Unreadable(f"{what}: unreadable {one_line(text, 40)!r}")


def number(text: str, what: str, most: int = _LONG_MAX) -> int:
    """``text`` as a whole number 0..``most`` in ASCII digits, else Unreadable."""
    value = text.strip()
    if not _INT.fullmatch(value) or int(value) > most:
        raise _unreadable(what, text)
    return int(value)


def nofile_soft(text: str) -> int | None:
    """The soft ``Max open files`` of a ``/proc/<pid>/limits`` text (the whole file, or its
    one line); None: unlimited. Unreadable unless exactly one such line parses."""
    found = [line for line in text.splitlines() if line.startswith("Max open files")]
    match = _NOFILE_LINE.fullmatch(found[0]) if len(found) == 1 else None
    if match is None:
        raise _unreadable("open files of the running caddy", found[0] if found else text)
    soft = match.group(1)
    return None if soft == "unlimited" else int(soft)


def port_range(text: str) -> tuple[int, int]:
    """``net.ipv4.ip_local_port_range`` (``"32768\\t60999"``) as (low, high)."""
    match = _RANGE.fullmatch(text.strip())
    if match:
        low, high = int(match.group(1)), int(match.group(2))
        if 1 <= low <= high <= 65535:
            return low, high
    raise _unreadable("net.ipv4.ip_local_port_range", text)


def needed_files(sessions: int) -> int:
    """Open files the edge needs to hold ``sessions``."""
    return FDS_PER_SESSION * sessions + FD_MARGIN


def sessions_for(files: int) -> int:
    """Sessions ``files`` open files hold."""
    return max(0, (files - FD_MARGIN) // FDS_PER_SESSION)


def _persist(line: str) -> str:
    return f"keep it across reboots: '{line}' in {SYSCTL_DROPIN}"


@dataclass(frozen=True)
class Judgement:
    """The host's limits against ``max_sessions``: one finding per limit (ok or a cap,
    with value, limit and unit) and at most one naming every unreadable value."""

    max_sessions: int
    findings: tuple[Finding, ...] = ()
    #: the most sessions the measured limits allow (None: nothing that caps was measured)
    allowed: int | None = None
    #: what could not be judged: missing or garbled values
    unreadable: tuple[str, ...] = field(default=())

    @property
    def caps(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.status is not Status.OK)

    @property
    def fine(self) -> bool:
        return not self.caps

    def lines(self) -> list[str]:
        """What ``edge-status`` prints: one ``limits:`` line, then each cap and its fix."""
        if self.fine:
            seen = ", ".join(f.message for f in self.findings)
            return [f"limits:          fine for {KEY}={self.max_sessions}: {seen}"]
        n = len(self.caps)
        out = [f"limits:          WARNING: {n} problem(s) for {KEY}={self.max_sessions}"]
        for cap in self.caps:
            out.append(f"  {cap.message}")
            if cap.advice:
                out.append(f"    fix: {cap.advice}")
        return out


def judge(
    limits: HostLimits, max_sessions: int, *, systemd: bool, pid: int | None = None
) -> Judgement:
    """Judge what the host reported against ``max_sessions`` held sessions.

    ``systemd``: the edge runs as the unit (the fix is a drop-in), else supervised;
    ``pid``: the running caddy (None: nothing runs, its open files are not measured).
    """
    findings: list[Finding] = []
    unreadable: list[str] = []
    caps: list[int] = []
    need = needed_files(max_sessions)
    limit_to = max(NOFILE, need)
    want = f"{KEY}={max_sessions}"

    if pid is None:
        unreadable.append("open files of the running caddy: the edge is not running")
    else:
        try:
            soft = nofile_soft(limits.nofile)
        except Unreadable as exc:
            unreadable.append(str(exc))
        else:
            if soft is None:
                findings.append(_ok("nofile", "open files unlimited"))
            else:
                caps.append(sessions_for(soft))
                findings.append(_nofile(soft, need, want, limit_to, systemd=systemd, pid=pid))

    try:
        low, high = port_range(limits.port_range)
    except Unreadable as exc:
        unreadable.append(str(exc))
    else:
        size = high - low + 1
        caps.append(size)
        if size >= max_sessions:
            found = _ok("ports", f"{size} local ports")
        else:
            wide = f"{WIDE_RANGE[0]} {WIDE_RANGE[1]}"
            more = (
                ""
                if max_sessions <= WIDE_RANGE[1] - WIDE_RANGE[0] + 1
                else "; even that is fewer than planned: give the mailbox more addresses"
            )
            found = Finding.warning(
                "edge.limits.ports",
                f"local ports: net.ipv4.ip_local_port_range {low} {high} holds {size} "
                f"sessions toward each mailbox address:port, fewer than {want}",
                f'sysctl -w net.ipv4.ip_local_port_range="{wide}"; '
                + _persist(f"net.ipv4.ip_local_port_range = {wide}")
                + more,
                GROUP,
            )
        findings.append(found.measured(size, max_sessions, "local ports"))

    try:
        backlog = number(limits.somaxconn, "net.core.somaxconn")
    except Unreadable as exc:
        unreadable.append(str(exc))
    else:
        if backlog >= SOMAXCONN_MIN:
            found = _ok("somaxconn", f"somaxconn {backlog}")
        else:
            found = Finding.warning(
                "edge.limits.somaxconn",
                f"accept backlog: net.core.somaxconn {backlog} (Go asks for it on every "
                f"listener): a burst of more than {backlog} new sessions at once is dropped "
                f"(under {SOMAXCONN_MIN})",
                f"sysctl -w net.core.somaxconn={SOMAXCONN_MIN}; "
                + _persist(f"net.core.somaxconn = {SOMAXCONN_MIN}")
                + "; the edge's listeners take it at their next start",
                GROUP,
            )
        findings.append(found.measured(backlog, SOMAXCONN_MIN, "connections"))

    for name, raw, scope, fix in (
        ("fs.file-max", limits.file_max, "the whole host", max(2 * need, 2 * NOFILE)),
        ("fs.nr_open", limits.nr_open, "any one process", limit_to),
    ):
        try:
            value = number(raw, name)
        except Unreadable as exc:
            unreadable.append(str(exc))
            continue
        short = name.removeprefix("fs.").replace("_", "-")
        if name == "fs.file-max":
            caps.append(sessions_for(value))
        if value >= need:
            found = _ok(short, f"{name} {value}")
        else:
            found = Finding.warning(
                f"edge.limits.{short}",
                f"{name} {value}: {scope} may open fewer files than the {need} {want} "
                f"needs ({FDS_PER_SESSION} per session + {FD_MARGIN})",
                f"sysctl -w {name}={fix}; " + _persist(f"{name} = {fix}"),
                GROUP,
            )
        findings.append(found.measured(value, need, "open files"))

    if unreadable:
        findings.append(
            Finding.warning(
                "edge.limits.unreadable",
                "not judged: " + "; ".join(unreadable),
                "read them on the host: /proc/<caddy pid>/limits, sysctl net.core.somaxconn "
                "net.ipv4.ip_local_port_range fs.file-max fs.nr_open",
                GROUP,
            )
        )
    return Judgement(max_sessions, tuple(findings), min(caps, default=None), tuple(unreadable))


def _ok(name: str, message: str) -> Finding:
    return Finding.ok(f"edge.limits.{name}", message, GROUP)


def _nofile(soft: int, need: int, want: str, limit_to: int, *, systemd: bool, pid: int) -> Finding:
    if soft >= need:
        return _ok("nofile", f"open files {soft} (needs {need})").measured(soft, need, "open files")
    restart = "restart the edge (live sessions drop) so caddy starts under it"
    if systemd:
        fix = (
            f"LimitNOFILE={limit_to} under [Service] in {NOFILE_DROPIN}, then systemctl "
            f"daemon-reload; {restart}"
        )
    else:
        fix = (
            f"the supervised start raises it only up to the SSH login's hard limit: raise "
            f"that ('<user> hard nofile {limit_to}' in /etc/security/limits.conf, or the "
            f"container's nofile ulimit), then {restart}"
        )
    return Finding.warning(
        "edge.limits.nofile",
        f"open files: caddy (pid {pid}) may open {soft}, {want} needs {need} "
        f"({FDS_PER_SESSION} per session + {FD_MARGIN}): it holds at most "
        f"{sessions_for(soft)} sessions",
        fix,
        GROUP,
    ).measured(soft, need, "open files")
