"""What every edge task acts on: the hosts (``--host`` or ``EDGE_HOSTS``) and its options.

``targets_from`` checks every flag and the .env values at once, before any connection:
bad input is one UsageError (exit 2) naming each problem.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError
from .commands import DEFAULT_ROOT, Layout
from .hosts import HostTarget, SshOptions
from .render import EdgeLayout

if TYPE_CHECKING:
    from ..settings import Settings

MODES = ("auto", "systemd", "supervised")


@dataclass(frozen=True)
class HostJob:
    """One host to act on: where, which config layout, which remote root."""

    target: HostTarget
    layout: EdgeLayout
    root: str = DEFAULT_ROOT

    @property
    def remote_layout(self) -> Layout:
        return Layout(root=self.root, admin_socket=self.layout.admin_socket)


@dataclass(frozen=True)
class DeployOptions:
    ssh: SshOptions
    mode: str = "auto"
    keep: int = 5
    dry_run: bool = False
    #: plan only, exit 1 when a host would change (``tailwart.plan``)
    check: bool = False
    #: print the rollout's plan as JSON on stdout (everything else on stderr)
    as_json: bool = False
    force_unlock: bool = False
    message: str = ""
    check_greeting: bool = True
    health_timeout: float = 10.0
    parallel: int = 1
    progress: bool = True
    #: deploy this binary as is instead of building for the host's OS/arch
    binary: Path | None = None
    #: inv drain / undrain: (node, True to drain or False to undrain); a config-only
    #: deploy with the running release's binary
    drain: tuple[str, bool] | None = None


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


def jobs_for(targets: Sequence[HostTarget], layout: EdgeLayout, root: str) -> list[HostJob]:
    return [HostJob(t, layout, root) for t in targets]


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
    root = root or settings["EDGE_ROOT"] or DEFAULT_ROOT
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
