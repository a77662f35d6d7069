"""Doctor group ``mailbox``: every mailbox node answers, each named on its own.

With several nodes, ``mailbox.cluster`` also reads Stalwart's own node leases
(``x:ClusterNode``, with the management login): each listed node must hold an
``active`` lease under its name (``STALWART_HOSTNAME``), i.e. it started on this data
store within the last hour. A node that answers but holds no lease runs on another
store, or under another name.

One check per node of MAILBOX_NODES (MAILBOX_FQDN alone by default): ``GET
/healthz/ready`` on the node's HTTP listener over the tailnet (the scheme and port of
STALWART_MANAGEMENT_URL, default :8080). Stalwart v0.16.18 answers 200 once its data
store is up and 503 before (``crates/http/src/request.rs``); it asks no login. A node
that refuses or stays silent is named as down, so the operator knows which one to look
at while the edge sends its sessions to the others.
"""

from __future__ import annotations

from functools import partial
from urllib.parse import urlsplit, urlunsplit

from ..findings import Finding
from ..settings import Settings
from .registry import Check, DoctorContext, error, ok

GROUP = "mailbox"
READY_PATH = "/healthz/ready"


def node_url(settings: Settings, node: str) -> str:
    """The readiness URL of ``node``: STALWART_MANAGEMENT_URL for MAILBOX_FQDN (it may
    name an address), the same scheme and port on the node's name for the others."""
    from ..stalwart.provision import management_url

    base = urlsplit(management_url(settings))
    if node.lower() != settings["MAILBOX_FQDN"].lower():
        port = f":{base.port}" if base.port else ""
        base = base._replace(netloc=f"{node}{port}")
    return urlunsplit((base.scheme, base.netloc, base.path.rstrip("/") + READY_PATH, "", ""))


def ready(node: str, ctx: DoctorContext) -> Finding:
    import requests

    url = node_url(ctx.settings, node)
    parts = urlsplit(url)
    dialled = url
    if parts.scheme == "http" and parts.hostname:
        # a name is asked of DNS_RESOLVER when set, like every name the doctor looks up
        address = ctx.address(parts.hostname)
        netloc = f"[{address}]" if ":" in address else address
        dialled = parts._replace(netloc=netloc + (f":{parts.port}" if parts.port else "")).geturl()
    advice = (
        f"look at node {node} (docker compose ps and logs on that host); the edge sends "
        "new sessions to the other nodes meanwhile"
    )
    try:
        response = requests.get(
            dialled, timeout=ctx.timeout, allow_redirects=False, headers={"Host": parts.netloc}
        )
    except requests.RequestException as exc:
        kind = type(exc).__name__
        return error(f"node {node} is down: {url} gave no answer ({kind})", advice)
    if response.status_code == 200:
        return ok(f"node {node} is ready ({url})")
    if response.status_code == 503:
        return error(f"node {node} is up but not ready: its data store is not open", advice)
    return error(f"node {node}: {url} answered {response.status_code}, not 200", advice)


#: the lease states Stalwart v0.16.18 reports (enum ClusterNodeStatus): renewed within the
#: hour, within a day, or older
LEASE_STATES = ("active", "stale", "inactive")
#: the most leases read (Stalwart's node ids are 16 bits; a cluster has a handful)
MOST_LEASES = 256


def read_leases(ctx: DoctorContext) -> dict[str, str]:
    """Lease name (lower-cased) → its state, as Stalwart reports them; ValueError naming
    what of the answer is not a lease list."""
    from ..stalwart.jmap import StalwartError
    from .stalwart import management_client

    client = management_client(ctx)
    kind = client.model.cluster_node
    try:
        found = client.call(f"{kind}/get", {"ids": None})
    except StalwartError as exc:
        raise ValueError(str(exc)) from None
    listed = found.get("list")
    if not isinstance(listed, list) or len(listed) > MOST_LEASES:
        raise ValueError(f"{kind}/get: its list is not a list of at most {MOST_LEASES} leases")
    leases: dict[str, str] = {}
    for item in listed:
        name = item.get("hostname") if isinstance(item, dict) else None
        state = item.get("status") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name or len(name) > 253:
            raise ValueError(f"{kind}/get: a lease has no hostname")
        if state not in LEASE_STATES:
            raise ValueError(f"{kind}/get: the lease of {name[:64]!r} has no known status")
        # one name may hold an old lease and a new one: the freshest counts
        if name.lower() not in leases or LEASE_STATES.index(state) < LEASE_STATES.index(
            leases[name.lower()]
        ):
            leases[name.lower()] = state
    return leases


def cluster(ctx: DoctorContext) -> Finding:
    """Every listed node holds an active lease in the shared data store."""
    from ..settings.derived import mailbox_nodes, node_name

    try:
        leases = read_leases(ctx)
    except ValueError as exc:
        return error(
            f"the cluster's node leases could not be read: {exc}",
            "check the management login (inv doctor --only management); a login made "
            "before several nodes needs `inv recover`",
        )
    missing = []
    for node in mailbox_nodes(ctx.settings):
        name = node_name(ctx.settings, node)
        state = leases.get(name.lower())
        if state != "active":
            missing.append(f"{node} ({name}: {state or 'no lease'})")
    if missing:
        return error(
            f"not in the cluster: {'; '.join(missing)}",
            "a node without an active lease has not started on this data store in the last "
            "hour: check its STALWART_HOSTNAME and config.json (inv ps --node, inv logs --node)",
        )
    return ok(f"every node holds an active lease ({len(leases)} leases in the store)")


def checks(ctx: DoctorContext) -> list[Check]:
    from ..settings.derived import mailbox_nodes

    nodes = mailbox_nodes(ctx.settings)
    labels = [node.split(".")[0].lower() for node in nodes]
    # the first label names a node, unless two nodes share it (two tailnets)
    names = labels if len(set(labels)) == len(labels) else [n.lower() for n in nodes]
    if len(nodes) > 1 and "cluster" in names:  # mailbox.cluster is the leases' check
        names = [n.lower() for n in nodes]
    found = [
        Check(f"mailbox.{name}", GROUP, f"node {node} is ready", partial(ready, node))
        for name, node in zip(names, nodes, strict=True)
    ]
    if len(nodes) > 1:
        found.append(Check("mailbox.cluster", GROUP, "every node joined the cluster", cluster))
    return found
