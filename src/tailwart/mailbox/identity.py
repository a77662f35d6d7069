"""The tailnet name the sidecar actually got, from ``tailscale status --json`` (pure).

The sidecar is an ephemeral node with in-memory state: every recreate registers a
new node. While the previous node still lingers, the new one is named
``<name>-1`` and the edge, which dials ``MAILBOX_FQDN``, reaches a dead node.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..settings import Settings


@dataclass(frozen=True)
class NodeIdentity:
    dns_name: str  # MagicDNS name without the trailing dot
    host_name: str
    addresses: tuple[str, ...]
    tags: tuple[str, ...]
    online: bool

    @property
    def node_name(self) -> str:
        return self.dns_name.split(".", 1)[0] if self.dns_name else self.host_name


def parse_status(text: str) -> NodeIdentity:
    """``Self`` of ``tailscale status --json``; ValueError when the document has none."""
    doc = json.loads(text)
    me = doc.get("Self") if isinstance(doc, dict) else None
    if not isinstance(me, dict):
        raise ValueError("tailscale status --json has no Self entry")
    return NodeIdentity(
        dns_name=str(me.get("DNSName", "")).rstrip("."),
        host_name=str(me.get("HostName", "")),
        addresses=tuple(str(a) for a in me.get("TailscaleIPs") or ()),
        tags=tuple(str(t) for t in me.get("Tags") or ()),
        online=bool(me.get("Online", False)),
    )


def identity_report(
    node: NodeIdentity, settings: Settings, wanted: str = "", fqdn: str = ""
) -> tuple[str, list[str]]:
    """(the line that names the node, warnings when it is not what the edge dials).

    ``wanted`` / ``fqdn``: the name and MagicDNS name this node should have (default
    MAILBOX_NODE_NAME and MAILBOX_FQDN)."""
    wanted = wanted or settings["MAILBOX_NODE_NAME"]
    fqdn = fqdn or settings["MAILBOX_FQDN"]
    tag = settings["MAILBOX_TAG"]
    addrs = ", ".join(node.addresses) or "no address yet"
    info = f"sidecar node: {node.dns_name or node.host_name} ({addrs})"
    warnings = []
    if node.node_name != wanted:
        remove = (
            f"delete the old {wanted!r} node on headscale (`headscale nodes list`, then "
            "`headscale nodes delete --identifier <id>`)"
            if settings["TS_LOGIN_SERVER"]
            else f"remove the old {wanted!r} machine in the Tailscale admin console"
        )
        warnings.append(
            f"the sidecar registered as {node.node_name!r}, not MAILBOX_NODE_NAME={wanted!r}: a "
            f"previous ephemeral node named {wanted!r} still lingers, and the edge dials a dead "
            f"name → {remove}, then `inv restart --service ts-stalwart`"
        )
    elif fqdn and node.dns_name and node.dns_name != fqdn:
        warnings.append(
            f"the sidecar's MagicDNS name is {node.dns_name!r} but MAILBOX_FQDN={fqdn!r}: the edge "
            "dials MAILBOX_FQDN → fix MAILBOX_FQDN in .env and redeploy the edge"
        )
    if node.tags and tag not in node.tags:
        warnings.append(
            f"the sidecar carries tags {', '.join(node.tags)}, not {tag}: the tailnet policy "
            f"admits the edge only to {tag} → check TS_EXTRA_ARGS and the OAuth client's tags"
        )
    return info, warnings
