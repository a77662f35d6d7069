"""Doctor group ``mailbox``: every mailbox node answers, each named on its own.

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


def checks(ctx: DoctorContext) -> list[Check]:
    from ..settings.derived import mailbox_nodes

    nodes = mailbox_nodes(ctx.settings)
    labels = [node.split(".")[0].lower() for node in nodes]
    # the first label names a node, unless two nodes share it (two tailnets)
    names = labels if len(set(labels)) == len(labels) else [n.lower() for n in nodes]
    return [
        Check(f"mailbox.{name}", GROUP, f"node {node} is ready", partial(ready, node))
        for name, node in zip(names, nodes, strict=True)
    ]
