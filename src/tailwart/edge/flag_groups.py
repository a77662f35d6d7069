"""The edge tasks' flags in groups: which hosts and how to reach them, how to deploy.

Each group is a frozen dataclass whose fields are flags (help in the field's metadata);
``tailwart.cli.operator_task`` spreads a group into flags and hands the task the group.
Kept light for ``inv --list``: what a group builds is imported when it is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, TypeVar

from ..plan import CHECK_HELP, JSON_HELP

if TYPE_CHECKING:
    from ..settings import Settings
    from .targets import DeployOptions, FlagValues, Targets


T = TypeVar("T")


def _flag(default: T, help: str) -> T:
    """A dataclass field that is a flag: its default and its --help text."""
    made: T = field(default=default, metadata={"help": help})
    return made


@dataclass(frozen=True)
class EdgeHosts:
    """--host and the SSH flags of every edge task: which hosts, and how to log in."""

    host: list[str] | None = field(
        default=None,
        metadata={
            "help": "edge host: user@host[:port] or an SSH config alias "
            "(repeatable; default EDGE_HOSTS)"
        },
    )
    root: str = _flag("", "remote directory of releases, lock and audit log (default EDGE_ROOT)")
    known_hosts: str = _flag(
        "", "known_hosts file to verify host keys against (default ~/.ssh/known_hosts)"
    )
    identity: str = _flag(
        "", "SSH private key to log in with (default: SSH config, agent, ~/.ssh keys)"
    )
    ssh_config: str = _flag(
        "", "SSH config file to read instead of ~/.ssh/config and /etc/ssh/ssh_config"
    )
    accept_new_host_key: bool = _flag(
        False, "trust an unknown host key on first use (recorded in known_hosts)"
    )

    def targets(
        self,
        settings: Settings,
        *,
        dry_run: bool,
        keep: int | None = None,
        flags: FlagValues | None = None,
    ) -> Targets:
        """The hosts to act on, every flag and .env value checked at once (exit 2)."""
        from .targets import targets_from

        ssh = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "host"}
        return targets_from(
            settings, self.host or [], dry_run=dry_run, keep=keep, flags=flags, **ssh
        )


MODE_HELP = "auto (systemd if running there), systemd, or supervised (caddy start + pidfile)"
FORCE_UNLOCK_HELP = "break a lock held by another (dead) deploy"
MESSAGE_HELP = "why: recorded in the lock and the audit log"


@dataclass(frozen=True)
class DeployFlags:
    """The flags of ``inv deploy-edge`` besides the hosts and .env."""

    dry_run: bool = _flag(False, "print the plan per host; change nothing, take no lock")
    check: bool = _flag(False, CHECK_HELP)
    json: bool = _flag(False, JSON_HELP)
    force_unlock: bool = _flag(False, FORCE_UNLOCK_HELP)
    message: str = _flag("", MESSAGE_HELP)
    mode: str = _flag("auto", MODE_HELP)
    keep: int = _flag(0, "releases kept per host (0 = EDGE_KEEP_RELEASES, default 5)")
    parallel: int = _flag(1, "hosts deployed at once (default 1: a rolling deploy)")
    check_greeting: bool = _flag(
        True,
        "health gate hears the mailbox answer through the edge (default; "
        "--no-check-greeting: TCP accept only)",
    )
    health_timeout: float = _flag(10.0, "seconds the health gate waits for every port (default 10)")
    binary: str = _flag(
        "", "deploy this caddy-l4 binary instead of building for each host's OS/arch"
    )

    def values(self) -> FlagValues:
        """These flags for the up-front check of ``targets_from``."""
        from .targets import FlagValues

        return FlagValues(self.mode, self.parallel, self.health_timeout, self.message, self.binary)

    def options(self, targets: Targets) -> DeployOptions:
        """What the deploy does on every host of ``targets``."""
        from pathlib import Path

        from .targets import DeployOptions

        return DeployOptions(
            ssh=targets.ssh,
            mode=self.mode,
            keep=targets.keep,
            dry_run=self.dry_run,
            check=self.check,
            as_json=self.json,
            force_unlock=self.force_unlock,
            message=self.message,
            check_greeting=self.check_greeting,
            health_timeout=self.health_timeout,
            parallel=self.parallel,
            binary=Path(self.binary) if self.binary else None,
        )


@dataclass(frozen=True)
class DrainFlags:
    """The flags of ``inv drain`` and ``inv undrain`` besides the hosts and .env."""

    node: str = _flag("", "the mailbox node (as MAILBOX_NODES names it)")
    dry_run: bool = _flag(False, "print the plan per host; change nothing, take no lock")
    force_unlock: bool = _flag(False, FORCE_UNLOCK_HELP)
    message: str = _flag("", MESSAGE_HELP)
    mode: str = _flag("auto", MODE_HELP)
    health_timeout: float = _flag(10.0, "seconds the health gate waits for every port (default 10)")

    def values(self) -> FlagValues:
        """These flags for the up-front check of ``targets_from``."""
        from .targets import FlagValues

        return FlagValues(self.mode, 1, self.health_timeout, self.message)

    def options(self, targets: Targets) -> DeployOptions:
        """A config-only deploy on every host of ``targets``, one at a time."""
        from .targets import DeployOptions

        return DeployOptions(
            ssh=targets.ssh,
            mode=self.mode,
            keep=targets.keep,
            dry_run=self.dry_run,
            force_unlock=self.force_unlock,
            message=self.message,
            health_timeout=self.health_timeout,
        )

    def targets(self, edge: EdgeHosts, settings: Settings) -> Targets:
        """The hosts to act on, --node and every other flag checked at once (exit 2)."""
        from ..errors import UsageError
        from ..settings.derived import mailbox_nodes
        from .drain import DrainRefused, check_node

        nodes = mailbox_nodes(settings)
        problems: list[str] = []
        if not self.node:
            problems.append(f"--node is missing: name a mailbox node ({', '.join(nodes)})")
        else:
            try:
                check_node(self.node, nodes)
            except UsageError as exc:
                problems.append(str(exc))
        try:
            targets = edge.targets(settings, dry_run=self.dry_run, flags=self.values())
        except UsageError as exc:
            problems.append(str(exc))
        if problems:
            raise DrainRefused("\n".join(problems))
        return targets
