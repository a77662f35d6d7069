"""The mailbox nodes the lifecycle tasks act on: each one's name, role and docker engine.

Pure. Every node runs the committed compose file on its own docker engine
(MAILBOX_DOCKER_HOSTS, in MAILBOX_NODES' order; empty: the local engine, which only one
node can use). ``select`` turns ``--node`` into the nodes to act on, refusing bad input
(exit 2) before any docker command.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..settings import Settings
from ..settings.derived import docker_endpoint, mailbox_nodes, node_name
from .errors import NodeRefused

if TYPE_CHECKING:
    from ..edge.hosts import HostTarget

SSH_SCHEME = "ssh://"


@dataclass(frozen=True)
class Node:
    """One mailbox node: its MagicDNS name (as MAILBOX_NODES spells it), its name (the
    sidecar's TS_HOSTNAME, Stalwart's STALWART_HOSTNAME), its cluster role and the docker
    endpoint its engine answers on ('' = the local engine)."""

    fqdn: str
    name: str
    role: str = ""
    endpoint: str = ""

    @property
    def ssh_target(self) -> HostTarget | None:
        """The SSH login of an ``ssh://`` endpoint (where config.json is uploaded), else None."""
        from ..edge.hosts import parse_target

        if not self.endpoint.startswith(SSH_SCHEME):
            return None
        return parse_target(self.endpoint[len(SSH_SCHEME) :])

    @property
    def label(self) -> str:
        """How output names the node: its MagicDNS name and its engine."""
        return f"{self.fqdn} (docker: {self.endpoint or 'the local engine'})"


def nodes_of(settings: Settings) -> list[Node]:
    """Every mailbox node, in MAILBOX_NODES' order (MAILBOX_FQDN alone when it is empty)."""
    from ..stalwart.cluster import role_for

    return [
        Node(
            fqdn,
            node_name(settings, fqdn),
            role_for(settings, fqdn),
            docker_endpoint(settings, fqdn),
        )
        for fqdn in mailbox_nodes(settings)
    ]


def primary(settings: Settings) -> Node:
    """MAILBOX_FQDN's node: the one inv provision and inv first-start talk to."""
    first = settings["MAILBOX_FQDN"].lower()
    return next(n for n in nodes_of(settings) if n.fqdn.lower() == first)


def find(nodes: list[Node], wanted: str) -> Node | None:
    """The node ``wanted`` names: its MagicDNS name or its first label, any case."""
    key = wanted.lower()
    for node in nodes:
        if key in (node.fqdn.lower(), node.fqdn.split(".", 1)[0].lower()):
            return node
    return None


def select(settings: Settings, wanted: str = "") -> list[Node]:
    """The nodes ``--node`` names (every node when it is empty), after refusing (NodeRefused,
    exit 2, every problem at once) a node MAILBOX_NODES does not list, and several nodes
    without MAILBOX_DOCKER_HOSTS (they cannot all run on the local engine)."""
    nodes = nodes_of(settings)
    problems: list[str] = []
    chosen = nodes
    if wanted:
        found = find(nodes, wanted)
        if found is None:
            listed = ", ".join(n.fqdn for n in nodes)
            problems.append(f"--node {wanted!r} is not a mailbox node; the nodes are: {listed}")
        else:
            chosen = [found]
    if len(nodes) > 1 and not settings["MAILBOX_DOCKER_HOSTS"]:
        problems.append(
            f"MAILBOX_DOCKER_HOSTS is empty but MAILBOX_NODES lists {len(nodes)} nodes: each node "
            "runs on its own docker engine → set MAILBOX_DOCKER_HOSTS to one endpoint per node, "
            "in the same order (ssh://user@host[:port] or unix:///path)"
        )
    if problems:
        raise NodeRefused("refused, no docker command was run:\n  " + "\n  ".join(problems))
    return chosen
