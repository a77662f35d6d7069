"""``inv up / down / ps / logs / restart`` over every mailbox node, or the one ``--node`` names.

One ``Stack`` per node, each with that node's compose environment and docker engine. The
static checks run once, before any node. ``up`` starts the nodes one after another, each
healthy before the next. ``restart`` of several nodes rolls: one node at a time is drained
at the edge, restarted, awaited healthy and undrained; a failure stops the roll there,
that node left drained, the nodes after it untouched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..checks import CheckContext
from ..errors import TailwartError, UsageError
from ..findings import Finding
from ..progress import to_stderr
from .compose import STALWART, Context
from .errors import RollStopped
from .nodes import Node, select
from .stack import (
    DEFAULT_TIMEOUT,
    RESTART_TARGETS,
    Checks,
    Stack,
    _all_checks,
    check_timeout,
    confirm_volume_deletion,
)

if TYPE_CHECKING:
    from ..edge.flag_groups import DrainFlags, EdgeHosts
    from ..settings import Settings

#: what drains (or undrains) one node at the edge, by its MagicDNS name
EdgeStep = Callable[[str], None]


def _no_edge(node: str) -> None:
    """--no-drain: the edge is left as it is."""


@dataclass(frozen=True)
class Roll:
    """How a rolling restart takes each node out of the edge and puts it back.

    ``grace``: seconds between the drain and the restart, so that sessions in flight on
    the node (an SMTP transaction) finish before Stalwart stops."""

    drain: EdgeStep = _no_edge
    undrain: EdgeStep = _no_edge
    grace: float = 0.0
    #: False (--no-drain): the edge is not touched
    edge: bool = True


@dataclass
class Fleet:
    """The stacks of the nodes one task acts on, in MAILBOX_NODES' order."""

    stacks: list[Stack]
    #: .env lists several nodes: output names the node each block is about
    clustered: bool
    out: Callable[[str], None] = print
    err: Callable[[str], None] = to_stderr
    sleep: Callable[[float], None] = time.sleep

    @property
    def nodes(self) -> list[Node]:
        return [s.where for s in self.stacks]

    def header(self, stack: Stack) -> None:
        if self.clustered:
            role = f", role {stack.where.role}" if stack.where.role else ""
            self.out(f"== node {stack.where.label}{role}")

    # ------------------------------------------------------------ operations

    def up(
        self, dry_run: bool = False, timeout: int = DEFAULT_TIMEOUT, checks: Checks = _all_checks
    ) -> None:
        check_timeout(timeout)
        self.stacks[0].refuse_if_broken(checks)
        for stack in self.stacks:
            self.header(stack)
            stack.up(dry_run=dry_run, timeout=timeout, checks=_checked)

    def down(
        self,
        volumes: bool = False,
        yes: bool = False,
        dry_run: bool = False,
        confirm: Callable[[str], bool] | None = None,
    ) -> None:
        if volumes and not yes and not dry_run:
            confirm_volume_deletion(
                self.stacks[0].settings, ", ".join(n.fqdn for n in self.nodes), confirm
            )
        for stack in self.stacks:
            self.header(stack)
            stack.down(volumes=volumes, yes=True, dry_run=dry_run)

    def ps(self, dry_run: bool = False) -> None:
        for stack in self.stacks:
            self.header(stack)
            stack.ps(dry_run=dry_run)

    def logs(
        self, service: str = "", follow: bool = False, since: str = "", dry_run: bool = False
    ) -> None:
        if follow and len(self.stacks) > 1:
            raise UsageError(
                "--follow follows one node: add --node (one of: "
                f"{', '.join(n.fqdn for n in self.nodes)})"
            )
        for stack in self.stacks:
            self.header(stack)
            stack.logs(service, follow=follow, since=since, dry_run=dry_run)

    def restart(
        self,
        service: str = STALWART,
        dry_run: bool = False,
        timeout: int = DEFAULT_TIMEOUT,
        checks: Checks = _all_checks,
        roll: Roll | None = None,
    ) -> None:
        """One node: a plain restart. Several: the rolling restart (``roll``, default no edge)."""
        if service not in RESTART_TARGETS:
            raise UsageError(f"unknown service {service!r}: choose {', '.join(RESTART_TARGETS)}")
        check_timeout(timeout)
        self.stacks[0].refuse_if_broken(checks)
        if len(self.stacks) == 1:
            self.header(self.stacks[0])
            self.stacks[0].restart(service, dry_run=dry_run, timeout=timeout, checks=_checked)
            return
        roll = roll or Roll(edge=False)
        if dry_run:
            self._roll_plan(service, timeout, roll)
            return
        done: list[str] = []
        for stack in self.stacks:
            self.header(stack)
            self._roll_one(stack, service, timeout, roll, done)
            done.append(stack.where.fqdn)
        self.out(f"rolling restart done: {', '.join(done)}, one at a time")

    def _roll_one(
        self, stack: Stack, service: str, timeout: int, roll: Roll, done: list[str]
    ) -> None:
        fqdn = stack.where.fqdn
        rest = [n.fqdn for n in self.nodes[len(done) + 1 :]]

        def stopped(what: str, exc: Exception, drained: bool) -> RollStopped:
            if what == "the drain":
                state = (
                    f"{fqdn} was not restarted; some edge hosts may have drained it → "
                    f"`inv undrain --node {fqdn}`, or fix the edge and rerun `inv restart`"
                )
            elif drained:
                state = (
                    f"{fqdn} stays drained at the edge → fix it, `inv restart --node {fqdn}`, "
                    f"then `inv undrain --node {fqdn}`"
                )
            else:
                state = f"{fqdn} still serves; fix the cause and rerun `inv restart`"
            lines = [
                f"rolling restart stopped at {fqdn}: {what} failed: {exc}",
                state,
                f"restarted before it: {', '.join(done) or 'none'}; not touched: "
                f"{', '.join(rest) or 'none'}",
            ]
            return RollStopped("\n".join(lines))

        if roll.edge:
            self.out(f"draining {fqdn} at the edge")
            try:
                roll.drain(fqdn)
            except (TailwartError, OSError) as exc:
                # drained on some edge hosts perhaps: say so, the operator undrains it
                raise stopped("the drain", exc, drained=True) from None
            if roll.grace:
                self.out(f"waiting {roll.grace:g}s for sessions in flight on {fqdn} to finish")
                self.sleep(roll.grace)
        try:
            stack.restart(service, timeout=timeout, checks=_checked)
        except TailwartError as exc:
            raise stopped("the restart", exc, drained=roll.edge) from None
        if roll.edge:
            self.out(f"undraining {fqdn} at the edge")
            try:
                roll.undrain(fqdn)
            except (TailwartError, OSError) as exc:
                raise stopped("the undrain", exc, drained=True) from None

    def _roll_plan(self, service: str, timeout: int, roll: Roll) -> None:
        self.out(f"dry run: a rolling restart of {len(self.stacks)} nodes, one at a time")
        for stack in self.stacks:
            self.header(stack)
            fqdn = stack.where.fqdn
            if roll.edge:
                self.out(f"drain {fqdn} at every edge host (as `inv drain --node {fqdn}`)")
                if roll.grace:
                    self.out(f"wait {roll.grace:g}s for sessions in flight to finish")
            stack.restart(service, dry_run=True, timeout=timeout, checks=_checked)
            if roll.edge:
                self.out(f"undrain {fqdn} at every edge host (as `inv undrain --node {fqdn}`)")


def _checked(ctx: CheckContext) -> list[Finding]:
    """The checks already ran once for every node (``Fleet`` runs them first)."""
    return []


def open_fleet(
    c: Context,
    env_file: str,
    strict: bool,
    node: str = "",
    root: Path | None = None,
    **stack_options: object,
) -> Fleet:
    """The fleet of ``env_file``: every node, or the one ``node`` names. Refuses a missing
    .env, an unknown node and several nodes without MAILBOX_DOCKER_HOSTS (exit 2) before
    any docker command."""
    from ..env_file import load_settings
    from .preconditions import require_env_file

    require_env_file(env_file)
    settings = load_settings(env_file, strict)
    chosen = select(settings, node)
    here = root or Path.cwd()
    stacks = [
        Stack(c, settings, here, env_file, node=n, **stack_options)  # type: ignore[arg-type]
        for n in chosen
    ]
    clustered = len(select(settings)) > 1
    return Fleet(stacks, clustered, out=stacks[0].out, err=stacks[0].err)


def edge_roll(
    settings: Settings, edge: EdgeHosts, flags: DrainFlags | None = None, grace: float = 0.0
) -> Roll:
    """The Roll that drains and undrains through ``inv drain``'s own code path
    (``drain_nodes``) on the edge hosts ``edge`` names (default EDGE_HOSTS). The hosts and
    SSH flags are checked now (exit 2), before any node is touched."""
    from ..edge.deploy_release import drain_nodes
    from ..edge.flag_groups import DrainFlags

    flags = flags or DrainFlags()
    targets = edge.targets(settings, dry_run=flags.dry_run, flags=flags.values())
    options = flags.options(targets)

    #: nodes every edge host had drained before the roll: the operator's, left drained
    before: set[str] = set()

    def drain(node: str) -> None:
        results = drain_nodes(targets.jobs, options, node, drain=True)
        if results and all(r.status == "unchanged" for r in results):
            before.add(node.lower())

    def undrain(node: str) -> None:
        if node.lower() in before:
            print(f"{node} was drained before the roll: it stays drained (`inv undrain`)")
            return
        drain_nodes(targets.jobs, options, node, drain=False)

    return Roll(drain, undrain, grace)


#: the default seconds between a node's drain and its restart
DEFAULT_GRACE = 10.0
#: the most --drain-grace accepts
MOST_GRACE = 3600.0


def roll_for(
    settings: Settings,
    edge: EdgeHosts,
    no_drain: bool = False,
    grace: float = DEFAULT_GRACE,
    dry_run: bool = False,
) -> Roll:
    """How ``inv restart`` rolls: through the edge hosts, or not (``no_drain``). Bad input
    (--drain-grace, the edge hosts and SSH flags) exits 2 before any node is touched."""
    if not 0 <= grace <= MOST_GRACE:  # NaN fails both
        raise UsageError(f"--drain-grace {grace!r}: expected seconds from 0 to {MOST_GRACE:g}")
    if no_drain:
        return Roll(edge=False)
    if dry_run:
        return Roll(grace=grace)  # the plan names each drain; no edge host is reached
    return edge_roll(settings, edge, grace=grace)
