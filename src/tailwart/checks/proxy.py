"""Both ends of the wire agree on PROXY protocol v2 (ids ``proxy.*``)."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from ..edge.render import IMPLICIT_TLS_PORTS, JMAP_PORT, MAIL_PORTS
from ..findings import Finding
from ..settings import Settings
from ..settings.derived import compose_environment
from . import CheckContext
from .envcontract import MACRO

G = "proxy"


def expand(value: str, settings: Settings) -> str:
    """Expand %{env:X}% the way Stalwart would inside the container."""
    env = compose_environment(settings)
    return MACRO.sub(lambda m: env.get(m.group(1), ""), value)


def _port_of(address: str) -> int | None:
    match = re.search(r":(\d+)$", address)
    return int(match.group(1)) if match else None


def _servers(caddy: dict[str, Any]) -> dict[str, Any]:
    servers: dict[str, Any] = caddy.get("apps", {}).get("layer4", {}).get("servers", {})
    return servers


def _check_caddy(caddy: dict[str, Any], settings: Settings) -> list[Finding]:
    out: list[Finding] = []
    mailbox = settings["MAILBOX_FQDN"]
    by_port: dict[int, dict[str, Any]] = {}
    for server in _servers(caddy).values():
        for listen in server.get("listen", []):
            port = _port_of(str(listen))
            if port is not None:
                by_port[port] = server
    problems: list[str] = []
    for name, port in MAIL_PORTS:
        server = by_port.get(port)
        if server is None:
            problems.append(f":{port} ({name}) has no layer4 server")
            continue
        routes = server.get("routes", [])
        if len(routes) != 1 or routes[0].get("match"):
            problems.append(f":{port} must have exactly one route with no matchers")
            continue
        handlers = routes[0].get("handle", [])
        proxies = [h for h in handlers if h.get("handler") == "proxy"]
        if len(handlers) != 1 or not proxies:
            problems.append(f":{port} must have a single proxy handler (no tls, no other handler)")
            continue
        proxy = proxies[0]
        if proxy.get("proxy_protocol") != "v2":
            problems.append(
                f":{port} proxies with proxy_protocol={proxy.get('proxy_protocol')!r}, not 'v2'"
            )
        dials = [d for up in proxy.get("upstreams", []) for d in up.get("dial", [])]
        wanted = f"{mailbox}:{port}"
        if dials != [wanted]:
            problems.append(f":{port} dials {dials}, expected [{wanted!r}]")
    if problems:
        out.append(
            Finding.error("proxy.edge", "; ".join(problems), "re-render the edge: inv render", G)
        )
    else:
        out.append(
            Finding.ok(
                "proxy.edge",
                f"all {len(MAIL_PORTS)} mail ports proxy with v2 to {mailbox} on the same port",
                G,
            )
        )
    admin = str(caddy.get("admin", {}).get("listen", ""))
    if admin.startswith("unix/"):
        out.append(Finding.ok("proxy.admin", f"admin API on a unix socket ({admin[5:]})", G))
    else:
        out.append(
            Finding.error(
                "proxy.admin",
                f"admin API listens on {admin or 'the default localhost:2019'}",
                "keep it on a unix socket: inv render",
                G,
            )
        )
    return out


def _check_trust(config: dict[str, Any], settings: Settings) -> list[Finding]:
    out: list[Finding] = []
    raw = config.get("server", {}).get("proxy", {}).get("trusted-networks")
    edge = (
        ipaddress.ip_network(settings["EDGE_TAILNET_ADDR"])
        if settings["EDGE_TAILNET_ADDR"]
        else None
    )
    values = [raw] if isinstance(raw, str) else list(raw or [])
    expanded = [expand(str(v), settings) for v in values]
    problems: list[str] = []
    nets = []
    for text in expanded:
        try:
            nets.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            problems.append(f"{text!r} is not an address or CIDR")
    for net in nets:
        if net.prefixlen == 0:
            problems.append(f"{net} trusts the whole internet")
        elif net.network_address.is_loopback:
            problems.append(
                f"{net} is loopback (the container's own health probe would be dropped)"
            )
        elif net.prefixlen != net.max_prefixlen:
            problems.append(f"{net} is a range; trust exactly one host")
    if edge is not None and nets and edge not in nets:
        problems.append(f"the edge's address {edge} is not trusted")
    if not values:
        problems.append(
            "server.proxy.trusted-networks is not set: the edge's address would "
            "become every client's address"
        )
    if problems:
        out.append(
            Finding.error(
                "proxy.trust",
                "; ".join(problems),
                'set server.proxy.trusted-networks = ["%{env:EDGE_TAILNET_ADDR}%"]',
                G,
            )
        )
    else:
        out.append(Finding.ok("proxy.trust", f"Stalwart trusts exactly the edge ({edge})", G))

    listeners: dict[str, Any] = config.get("server", {}).get("listener", {})
    by_port: dict[int, tuple[str, dict[str, Any]]] = {}
    for lid, listener in listeners.items():
        binds = listener.get("bind", [])
        for bind in [binds] if isinstance(binds, str) else binds:
            port = _port_of(str(bind))
            if port is not None:
                by_port[port] = (lid, listener)
    missing, tls_wrong, dropped = [], [], []
    for port in [p for _, p in MAIL_PORTS] + [JMAP_PORT]:
        if port not in by_port:
            missing.append(str(port))
            continue
        lid, listener = by_port[port]
        implicit = bool(listener.get("tls", {}).get("implicit", False))
        if implicit != (port in IMPLICIT_TLS_PORTS):
            tls_wrong.append(f"{lid}(:{port}) tls.implicit={str(implicit).lower()}")
        override = listener.get("proxy", {}).get("trusted-networks")
        if override is not None:
            items = [override] if isinstance(override, str) else override
            own = {expand(str(i), settings) for i in items}
            if edge is None or not any(_same(text, edge) for text in own):
                dropped.append(f"{lid}(:{port})")
    if missing:
        out.append(
            Finding.error(
                "proxy.listeners",
                f"the edge reaches ports with no Stalwart listener: {', '.join(missing)}",
                "add server.listener.<id> entries bound to those ports",
                G,
            )
        )
    elif tls_wrong:
        out.append(
            Finding.error(
                "proxy.listeners",
                f"wrong TLS mode: {', '.join(tls_wrong)}",
                "465 and 993 are implicit TLS; 25, 587, 143 and 8080 are not",
                G,
            )
        )
    else:
        out.append(
            Finding.ok(
                "proxy.listeners",
                "every port the edge reaches has a listener with the right TLS mode",
                G,
            )
        )
    if dropped:
        out.append(
            Finding.error(
                "proxy.overrides",
                f"per-listener trusted-networks drop the edge on {', '.join(dropped)}",
                "remove the override or include the edge's address in it",
                G,
            )
        )
    else:
        out.append(
            Finding.ok("proxy.overrides", "no listener override drops the edge's PROXY header", G)
        )
    return out


def _same(text: str, edge: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        return ipaddress.ip_network(text, strict=False) == edge
    except ValueError:
        return False


def _check_jmap(ctx: CheckContext) -> Finding:
    text = ctx.text("caddy/jmap.caddy")
    if text is None:
        return Finding.warning(
            "proxy.jmap", "caddy/jmap.caddy is not rendered yet", "run: inv render", G
        )
    target = f"{ctx.settings['MAILBOX_FQDN']}:{JMAP_PORT}"
    if target not in text or not re.search(r"proxy_protocol\s+v2", text):
        return Finding.error(
            "proxy.jmap",
            f"the JMAP vhost does not send PROXY v2 to {target}; Stalwart would "
            "drop every request from the edge's address",
            "re-render: inv render",
            G,
        )
    return Finding.ok("proxy.jmap", f"the JMAP vhost sends PROXY v2 to {target}", G)


def run(ctx: CheckContext) -> list[Finding]:
    out = _check_caddy(ctx.caddy_config, ctx.settings)
    config = ctx.stalwart_config
    if config is None:
        out.append(
            Finding.error("proxy.trust", "config/config.toml is missing", "restore it from git", G)
        )
    else:
        out += _check_trust(config, ctx.settings)
    out.append(_check_jmap(ctx))
    return out
