"""The deploy plan for one edge host: pure, from what is local and what the host reported.

A release id derives from the binary's and the config's sha256, so an identical
deploy is recognised as such and a kept release is reused instead of uploaded.
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .limits import SYSCTL_DROPIN as SYSCTL_DROPIN  # systemd mode: keeps it across reboots
from .limits import HostLimits

#: with 1, a listener closed by a reload hands its queued connections to the new one
#: (SO_REUSEPORT); with the default 0 the kernel resets them (Linux >= 5.14)
MIGRATE_SYSCTL = "net.ipv4.tcp_migrate_req"


class Action(StrEnum):
    """What happens to the running edge."""

    NONE = "none"  # identical release already current and running
    FIRST_INSTALL = "first-install"  # nothing installed yet: install and start
    START = "start"  # installed but not running
    RELOAD = "reload"  # same binary, new config: zero-downtime reload
    RESTART = "restart"  # new binary: restart, drops live sessions

    def describe(self) -> str:
        return {
            Action.NONE: "nothing to do: this release is current and running",
            Action.FIRST_INSTALL: "first install: install and start the edge",
            Action.START: "start the edge (installed but not running)",
            Action.RELOAD: "reload through the admin socket: established sessions survive",
            Action.RESTART: "RESTART: the binary changes, live mail sessions will be dropped",
        }[self]


def release_id(binary_sha256: str, config_sha256: str) -> str:
    """Stable id of a (binary, config) pair."""
    return hashlib.sha256(f"{binary_sha256}\n{config_sha256}\n".encode()).hexdigest()[:16]


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class LocalRelease:
    """What the operator deploys: a built binary and a rendered config."""

    binary_path: str
    binary_sha256: str
    binary_size: int
    config: str
    version: str = ""

    @property
    def config_sha256(self) -> str:
        return sha256_text(self.config)

    @property
    def id(self) -> str:
        return release_id(self.binary_sha256, self.config_sha256)


@dataclass(frozen=True)
class RemoteRelease:
    """A kept release on the host."""

    id: str
    binary_sha256: str
    config_sha256: str
    activated: float = 0.0
    version: str = ""


@dataclass(frozen=True)
class RemoteState:
    """What the host reported (one probe)."""

    goos: str
    goarch: str
    systemd: bool
    releases: tuple[RemoteRelease, ...] = ()
    current: str | None = None
    current_config: str = ""
    #: pid of the running edge, and the release whose binary it runs (None: not ours/unknown)
    running_pid: int | None = None
    running_release: str | None = None
    unit_installed: bool = False
    unit_sha256: str = ""
    lock: str | None = None
    #: net.ipv4.tcp_migrate_req as read on the host; "missing": the kernel has none (< 5.14);
    #: "": not reported
    tcp_migrate_req: str = ""
    #: SYSCTL_DROPIN exists on the host
    sysctl_dropin: bool = False
    #: the running caddy's open-files limit and the kernel's limits, as reported
    limits: HostLimits = field(default_factory=HostLimits)
    #: the lines of EDGE_ROOT/drained as read (untrusted; edge.drain parses them)
    drained_lines: tuple[str, ...] = ()

    def release(self, rid: str | None) -> RemoteRelease | None:
        return next((r for r in self.releases if r.id == rid), None)

    def previous(self) -> RemoteRelease | None:
        """The most recently active release other than the current one."""
        others = [r for r in self.releases if r.id != self.current]
        return max(others, key=lambda r: r.activated, default=None)


@dataclass(frozen=True)
class Upload:
    name: str
    size: int
    #: where the bytes come from: "upload" or "reuse <release>"
    source: str

    @property
    def sent(self) -> int:
        return self.size if self.source == "upload" else 0


@dataclass(frozen=True)
class Change:
    """One change on the host: ``action`` (an ``Action`` value, or ``install-unit``) and
    what it is about."""

    action: str
    what: str

    def to_json(self) -> dict[str, str]:
        return {"action": self.action, "what": self.what}


UNIT_PATH = "/etc/systemd/system/tailwart-edge.service"


@dataclass(frozen=True)
class Plan:
    """Everything deploy will do on one host, computed before anything changes (the plan
    protocol of ``tailwart.plan``: its effect is what the running edge goes through)."""

    host: str
    mode: str
    release: str
    action: Action
    uploads: tuple[Upload, ...] = ()
    config_diff: str = ""
    install_unit: bool = False
    switch_from: str | None = None
    prune: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())
    #: first install: a summary of the config instead of a diff against nothing
    new_config: str = ""
    #: set net.ipv4.tcp_migrate_req=1 before bringing the release up
    set_migrate_req: bool = False
    #: write SYSCTL_DROPIN (systemd mode)
    persist_sysctl: bool = False
    warnings: tuple[str, ...] = ()

    @property
    def changes(self) -> tuple[Change, ...]:
        """The release brought up (unless it is current and running), the unit installed."""
        out = []
        if self.action is not Action.NONE:
            out.append(Change(self.action.value, f"release {self.release}"))
        if self.install_unit:
            out.append(Change("install-unit", UNIT_PATH))
        return tuple(out)

    @property
    def effect(self) -> str:
        """What the running edge goes through: none, first-install, start, reload, restart."""
        return self.action.value

    @property
    def bytes_to_send(self) -> int:
        return sum(u.sent for u in self.uploads)

    def render(self) -> str:
        """Human-readable plan (printed by --dry-run and before every deploy)."""
        return "\n".join(self.describe())

    def describe(self) -> list[str]:
        """The plan's lines: action, switch, uploads, unit, sysctl, prune, notes, diff."""
        lines = [f"{self.host}: release {self.release} ({self.mode} mode)"]
        lines.append(f"  action:  {self.action.describe()}")
        if self.switch_from or self.action is not Action.NONE:
            lines.append(f"  current: {self.switch_from or '(none)'} -> {self.release}")
        for up in self.uploads:
            what = "upload" if up.source == "upload" else f"no upload ({up.source})"
            lines.append(f"  {up.name:<11}{what}, {_size(up.size)}")
        if self.install_unit:
            lines.append(f"  unit:    install {UNIT_PATH}")
        if self.set_migrate_req:
            lines.append(f"  sysctl:  set {MIGRATE_SYSCTL}=1 (reload hand-over without resets)")
        if self.persist_sysctl:
            lines.append(f"  sysctl:  persist {MIGRATE_SYSCTL} = 1 in {SYSCTL_DROPIN}")
        if self.prune:
            lines.append(f"  prune:   {', '.join(self.prune)}")
        for note in self.notes:
            lines.append(f"  note:    {note}")
        for warning in self.warnings:
            lines.append(f"  warning: {warning}")
        if self.new_config:
            lines.append(f"  config:  new caddy.json, {self.new_config}")
        elif self.config_diff:
            lines.append("  config diff:")
            lines += [f"    {line}" for line in self.config_diff.rstrip("\n").split("\n")]
        elif self.action is not Action.NONE:
            lines.append("  config diff: (none)")
        return lines

    def to_json(self) -> dict[str, Any]:
        """The plan as data: effect, changes, and every field of the plan."""
        return {
            "host": self.host,
            "mode": self.mode,
            "release": self.release,
            "effect": self.effect,
            "changes": [c.to_json() for c in self.changes],
            "switch_from": self.switch_from,
            "uploads": [{"name": u.name, "size": u.size, "source": u.source} for u in self.uploads],
            "bytes_to_send": self.bytes_to_send,
            "install_unit": self.install_unit,
            "set_migrate_req": self.set_migrate_req,
            "persist_sysctl": self.persist_sysctl,
            "prune": list(self.prune),
            "notes": list(self.notes),
            "warnings": list(self.warnings),
            "config_diff": self.config_diff,
            "new_config": self.new_config,
        }


#: effects of the edge in increasing weight (the strongest of several hosts is the rollout's)
EFFECTS = tuple(
    a.value
    for a in (Action.NONE, Action.START, Action.FIRST_INSTALL, Action.RELOAD, Action.RESTART)
)


@dataclass(frozen=True)
class Rollout:
    """The plans of every edge host, as one plan (``--json``, ``--check`` of a rollout)."""

    plans: tuple[Plan, ...]

    @property
    def changes(self) -> tuple[Change, ...]:
        return tuple(Change(c.action, f"{p.host}: {c.what}") for p in self.plans for c in p.changes)

    @property
    def effect(self) -> str:
        return max((p.effect for p in self.plans), key=EFFECTS.index, default=Action.NONE.value)

    def describe(self) -> list[str]:
        return [line for p in self.plans for line in p.describe()]

    def to_json(self) -> dict[str, Any]:
        return {
            "effect": self.effect,
            "changes": [c.to_json() for c in self.changes],
            "hosts": [p.to_json() for p in self.plans],
        }


MIGRATE_MISSING = (
    f"the host has no {MIGRATE_SYSCTL} (kernel < 5.14): a reload may reset connections "
    "queued on the old listener; deploying anyway"
)


def _size(n: int) -> str:
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    if n >= 1 << 10:
        return f"{n / (1 << 10):.1f} KiB"
    return f"{n} B"


def config_diff(old: str, new: str, host: str) -> str:
    """Unified diff of the host's current caddy.json against the new one ('' if equal)."""
    if old == new:
        return ""
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"{host}:current/caddy.json",
            tofile="new/caddy.json",
            n=2,
        )
    )


def keep_after(
    state: RemoteState, new_id: str, keep: int, running: str | None = None
) -> tuple[str, ...]:
    """Releases to prune once ``new_id`` is current: all but the ``keep`` most recently active.

    ``running`` (the release whose binary the process keeps running after a reload) is never
    pruned: the process must stay recognisable, or the next deploy would restart it.
    """
    keep = max(keep, 1)
    others = sorted(
        (r for r in state.releases if r.id != new_id), key=lambda r: r.activated, reverse=True
    )
    protected = {new_id} | ({running} if running else set())
    kept = 1
    for rel in others:
        if kept < keep or rel.id == state.current:
            protected.add(rel.id)
            kept += 1
    return tuple(sorted(r.id for r in state.releases if r.id not in protected))


def decide_action(state: RemoteState, rid: str, binary_sha256: str, config_sha256: str) -> Action:
    """How to get release ``rid`` (this binary and config) serving, given what runs now."""
    running = state.release(state.running_release) if state.running_pid else None
    if state.current is None and state.running_pid is None:
        return Action.FIRST_INSTALL
    if state.running_pid is None:
        return Action.START
    if running is None or running.binary_sha256 != binary_sha256:
        return Action.RESTART
    if state.current != rid or sha256_text(state.current_config) != config_sha256:
        return Action.RELOAD
    return Action.NONE


def make_plan(
    host: str,
    local: LocalRelease,
    state: RemoteState,
    *,
    mode: str,
    keep: int,
    unit_sha256: str = "",
) -> Plan:
    """Decide uploads, the action (reload vs restart vs first install) and pruning."""
    rid = local.id
    uploads: list[Upload] = []
    notes: list[str] = []
    if state.release(rid) is None:
        reuse = next((r for r in state.releases if r.binary_sha256 == local.binary_sha256), None)
        source = f"reuse {reuse.id}" if reuse else "upload"
        uploads.append(Upload("binary", local.binary_size, source))
        uploads.append(Upload("caddy.json", len(local.config.encode()), "upload"))
    elif state.current != rid:
        notes.append(f"release {rid} is kept on the host: switching back to it, nothing to upload")
    action = decide_action(state, rid, local.binary_sha256, local.config_sha256)
    if action is Action.RESTART and state.release(state.running_release) is None:
        notes.append(f"the running process (pid {state.running_pid}) runs an unknown binary")
    install_unit = mode == "systemd" and (
        not state.unit_installed or (bool(unit_sha256) and state.unit_sha256 != unit_sha256)
    )
    if mode == "systemd" and state.unit_installed and install_unit:
        notes.append("the systemd unit changes: daemon-reload")
    brings_up = action is not Action.NONE
    migrate = state.tcp_migrate_req
    warnings: list[str] = []
    if brings_up and migrate == "missing":
        warnings.append(MIGRATE_MISSING)
    first = not state.current
    summary = f"{len(local.config.splitlines())} lines, sha256 {local.config_sha256[:16]}"
    return Plan(
        host=host,
        mode=mode,
        release=rid,
        action=action,
        uploads=tuple(uploads),
        config_diff="" if first else config_diff(state.current_config, local.config, host),
        new_config=summary if first else "",
        install_unit=install_unit,
        switch_from=state.current if state.current != rid else None,
        prune=keep_after(
            state,
            rid,
            keep,
            state.running_release if action in (Action.RELOAD, Action.NONE) else None,
        )
        if action is not Action.NONE
        else (),
        notes=tuple(notes),
        set_migrate_req=brings_up and migrate not in ("", "1", "missing"),
        persist_sysctl=brings_up
        and mode == "systemd"
        and not state.sysctl_dropin
        and migrate not in ("", "missing"),
        warnings=tuple(warnings),
    )
