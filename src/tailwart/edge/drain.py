"""``inv drain`` / ``inv undrain``: which mailbox nodes an edge host sends no new sessions to.

The drained set lives on each edge host, in ``EDGE_ROOT/drained`` (one node name a line,
next to the releases), so every deploy from any laptop renders the edge without those
nodes: a later ``inv deploy-edge`` never undrains silently. A drain is a config-only
deploy (the running release's binary, the config without the node, a graceful reload:
caddy-l4 keeps established sessions across a reload, so they finish on their own).

Pure here: reading and writing the file's text, and the plan of one host's change.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import OperationError, UsageError
from .render import RenderError, address

#: the file under EDGE_ROOT
DRAINED_FILE = "drained"
HEADER = "# mailbox nodes this edge sends no new sessions to (inv drain / inv undrain)\n"
#: the most lines the probe reads back from the file
MAX_LINES = 64


class DrainRefused(UsageError):
    """The drain or undrain asked for cannot be done (unknown node, last serving node)."""


class DrainedFileError(OperationError):
    """A host's drained file holds something that is not a node name (exit 1)."""


def parse_drained(lines: Iterable[str], host: str) -> frozenset[str]:
    """The node names of a host's drained file (as the probe reported its lines), lower-cased.

    The file comes from the host: anything but a host name or an IP address (or a
    comment) is refused, shown escaped."""
    names: set[str] = set()
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            address("a drained node", line)  # what the render would write: a name or an IP
        except RenderError:
            shown = line[:80].encode("unicode_escape").decode()
            raise DrainedFileError(
                f"{host}: line {number} of {DRAINED_FILE} is not a node name ({shown!r}); "
                "fix or remove the file on the host, then rerun"
            ) from None
        names.add(line.lower())
    return frozenset(names)


def drained_text(names: Iterable[str]) -> str:
    """The file's content: the header, then one name a line, sorted."""
    return HEADER + "".join(f"{n}\n" for n in sorted({n.lower() for n in names}))


def check_node(node: str, nodes: Sequence[str], flag: str = "--node") -> str:
    """``node`` as MAILBOX_NODES spells it; DrainRefused (exit 2) when it is none of them."""
    by_lower = {n.lower(): n for n in nodes}
    if node.lower() not in by_lower:
        raise DrainRefused(
            f"{flag} {node!r} is not a mailbox node; MAILBOX_NODES lists: {', '.join(nodes)}"
        )
    if len(nodes) < 2:
        raise DrainRefused(
            f"{flag} {node!r}: it is the only mailbox node, so the edge cannot stop sending "
            "it sessions; list the other nodes in MAILBOX_NODES first"
        )
    return by_lower[node.lower()]


@dataclass(frozen=True)
class DrainPlan:
    """One host's change of its drained set."""

    host: str
    node: str
    drain: bool
    before: frozenset[str]
    after: frozenset[str]
    #: names in the host's file that are no node any more (dropped from the render)
    stale: frozenset[str] = frozenset()

    @property
    def changes(self) -> bool:
        return self.before != self.after

    def describe(self, nodes: Sequence[str]) -> list[str]:
        verb = "drain" if self.drain else "undrain"
        serving = [n for n in nodes if n.lower() not in self.after]
        lines = [
            f"{self.host}: {verb} {self.node}: "
            + ("already so, nothing to change" if not self.changes else "reload, config only")
        ]
        lines.append(f"  new sessions go to: {', '.join(serving)}")
        if self.drain and self.changes:
            lines.append(f"  sessions already on {self.node} run on until they end")
        if self.stale:
            lines.append(f"  ignored (no longer in MAILBOX_NODES): {', '.join(sorted(self.stale))}")
        return lines


def plan_drain(
    host: str, nodes: Sequence[str], before: frozenset[str], node: str, *, drain: bool
) -> DrainPlan:
    """The host's drained set after draining (or undraining) ``node``; DrainRefused when
    no node would be left to serve."""
    known = {n.lower() for n in nodes}
    kept = frozenset(n for n in before if n in known)
    after = kept | {node.lower()} if drain else kept - {node.lower()}
    if known <= after:
        raise DrainRefused(
            f"{host}: draining {node} would leave no mailbox node serving (drained there "
            f"already: {', '.join(sorted(kept)) or 'none'}); undrain another node first"
        )
    return DrainPlan(host, node, drain, kept, after, frozenset(before - known))


def for_render(nodes: Sequence[str], drained: frozenset[str]) -> frozenset[str]:
    """The drained set in MAILBOX_NODES' spelling, as the render takes it."""
    return frozenset(n for n in nodes if n.lower() in drained)
