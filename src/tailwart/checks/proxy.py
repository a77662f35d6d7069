"""Both ends of the wire agree on PROXY protocol v2 (ids ``proxy.*``).

``proxy.edge``: caddy.json serves exactly EDGE_PUBLIC_PORTS, each with PROXY v2 to the
mailbox. ``proxy.trust``: Stalwart's listeners trust the edge on those ports (and HTTP)
and nobody on the tailnet-only ones. ``policy.ports`` (checks/policy.py) holds the third
end: the snippet opens the public ports to the edge and the others to tailnet members.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any

from ..edge.render import (
    ACME_CHALLENGE_PATH,
    ADMIN_PATHS,
    BODY_CAP,
    BODY_CAPS,
    IMPLICIT_TLS_PORTS,
    JMAP_PORT,
    MAIL_PORTS,
    SERVICE_NAMES,
    http_upstreams,
    management_matcher,
    public_ports,
    service_sites,
)
from ..findings import Finding
from ..settings import Settings
from ..settings.derived import certificate_names, mailbox_nodes
from . import CheckContext
from .registry import rules, run_rules

GROUP = "proxy"


def _port_of(address: str) -> int | None:
    match = re.search(r":(\d+)$", address)
    return int(match.group(1)) if match else None


def _servers(caddy: dict[str, Any]) -> dict[str, Any]:
    servers: dict[str, Any] = caddy.get("apps", {}).get("layer4", {}).get("servers", {})
    return servers


def edge(ctx: CheckContext) -> Finding:
    """caddy.json serves exactly EDGE_PUBLIC_PORTS, each with PROXY v2 to the mailbox."""
    caddy, settings = ctx.caddy_config, ctx.settings
    nodes = mailbox_nodes(settings)
    mailbox = ", ".join(nodes)
    by_port: dict[int, dict[str, Any]] = {}
    for server in _servers(caddy).values():
        for listen in server.get("listen", []):
            port = _port_of(str(listen))
            if port is not None:
                by_port[port] = server
    problems: list[str] = []
    public = public_ports(settings)
    for name, port in MAIL_PORTS:
        server = by_port.get(port)
        if port not in public:
            if server is not None:
                problems.append(
                    f":{port} ({name}) is served, but EDGE_PUBLIC_PORTS keeps it tailnet-only"
                )
            continue
        if server is None:
            problems.append(f":{port} ({name}) has no layer4 server (EDGE_PUBLIC_PORTS lists it)")
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
        wanted = [f"{node}:{port}" for node in nodes]
        if dials != wanted:
            problems.append(f":{port} dials {dials}, expected {wanted!r}")
    if problems:
        return Finding.error(
            "proxy.edge", "; ".join(problems), "re-render the edge: inv render", GROUP
        )
    private = [str(p) for _, p in MAIL_PORTS if p not in public]
    return Finding.ok(
        "proxy.edge",
        f"the {len(public)} public mail port(s) proxy with v2 to {mailbox} on the same "
        f"port; not served: {', '.join(private) or 'none'}",
        GROUP,
    )


def admin(ctx: CheckContext) -> Finding:
    """Caddy's admin API listens on a unix socket only."""
    listen = str(ctx.caddy_config.get("admin", {}).get("listen", ""))
    if listen.startswith("unix/"):
        return Finding.ok("proxy.admin", f"admin API on a unix socket ({listen[5:]})", GROUP)
    return Finding.error(
        "proxy.admin",
        f"admin API listens on {listen or 'the default localhost:2019'}",
        "keep it on a unix socket: inv render",
        GROUP,
    )


def trust_problems(
    listeners: dict[str, dict[str, Any]], system: dict[str, Any], settings: Settings
) -> list[str]:
    """What is wrong with Stalwart's listeners (name → fields) and SystemSettings ``system``:
    one listener per mail port and HTTP; the public ports and HTTP trust exactly the edge,
    the tailnet-only ports trust nothing (members connect directly, without PROXY)."""
    from ..stalwart.desired import trusted_ports

    edge = {settings["EDGE_TAILNET_ADDR"], settings["EDGE_TAILNET_ADDR6"]}
    behind_edge = trusted_ports(settings)
    problems = []
    if system.get("proxyTrustedNetworks"):
        problems.append("the global proxyTrustedNetworks is not empty")
    ports = {}
    for name, fields in listeners.items():
        port = next((p for b in fields["bind"] if (p := _port_of(b)) is not None), None)
        if port is None:
            continue
        ports[port] = name
        trusted = set(fields.get("overrideProxyTrustedNetworks") or {})
        if port in behind_edge and trusted != edge:
            problems.append(f"listener {name} (:{port}) does not trust exactly the edge")
        elif port not in behind_edge and trusted:
            problems.append(
                f"listener {name} (:{port}) trusts {', '.join(sorted(trusted))} for PROXY, but "
                "EDGE_PUBLIC_PORTS keeps it tailnet-only (direct connections only)"
            )
    missing = [str(p) for _, p in MAIL_PORTS if p not in ports]
    if JMAP_PORT not in ports:
        missing.append(str(JMAP_PORT))
    if missing:
        problems.append(f"no listener on {', '.join(missing)}")
    tls_wrong = [
        name
        for port, name in ports.items()
        if listeners[name]["tlsImplicit"] != (port in IMPLICIT_TLS_PORTS)
    ]
    if tls_wrong:
        problems.append(f"wrong implicit-TLS mode on {', '.join(tls_wrong)}")
    return problems


def trust(ctx: CheckContext) -> Finding:
    """Stalwart's listeners trust exactly the edge, on the ports it dials.

    The provisioned listeners: one per mail port and HTTP; PROXY trust where the edge dials.
    """
    settings = ctx.settings
    from ..errors import UsageError
    from ..stalwart.desired import Desired, desired_state

    try:
        state = desired_state(settings)
    except UsageError as exc:
        return Finding.error(
            "proxy.trust",
            str(exc),
            "set EDGE_TAILNET_ADDR6 to the edge's IPv6 tailnet address (/128)",
            GROUP,
        )
    listeners = {
        item.key: item.fields
        for item in state
        if isinstance(item, Desired) and item.type.endswith("NetworkListener")
    }
    system = next(i for i in state if isinstance(i, Desired) and i.type.endswith("SystemSettings"))
    problems = trust_problems(listeners, system.fields, settings)
    if problems:
        return Finding.error("proxy.trust", "; ".join(problems), "report a tailwart bug", GROUP)
    trusted = {settings["EDGE_TAILNET_ADDR"], settings["EDGE_TAILNET_ADDR6"]}
    direct = [str(p) for _, p in MAIL_PORTS if p not in public_ports(settings)]
    return Finding.ok(
        "proxy.trust",
        f"{len(listeners) - len(direct)} listeners trust exactly the edge "
        f"({', '.join(sorted(trusted))}); direct only: {', '.join(direct) or 'none'}; "
        "the global trust list stays empty",
        GROUP,
    )


def jmap(ctx: CheckContext) -> Finding:
    """The JMAP vhost sends PROXY v2, refuses the admin paths, passes ACME through.

    The names on MAIL_DOMAIN (mta-sts., autoconfig., …) pass only Stalwart's documents."""
    text = ctx.text("caddy/jmap.caddy")
    if text is None:
        return Finding.warning(
            "proxy.jmap", "caddy/jmap.caddy is not rendered yet", "run: inv render", GROUP
        )
    target = http_upstreams(ctx.settings)
    proxies = re.findall(r"^\s*reverse_proxy\s+([^{\n]*?)\s*\{?$", text, re.M)
    v2 = re.findall(r"^\s*proxy_protocol\s+v2\s*$", text, re.M)
    if not proxies or set(proxies) != {target} or len(v2) != len(proxies):
        return Finding.error(
            "proxy.jmap",
            f"the JMAP vhost does not send PROXY v2 to {target}; Stalwart would "
            "drop every request from the edge's address",
            "re-render: inv render",
            GROUP,
        )
    matcher = re.search(r"^\s*@admin\s+path\s+(.+)$", text, re.M)
    refused = set(matcher.group(1).split()) if matcher else set()
    open_paths = [p for p in ADMIN_PATHS if f"{p}*" not in refused]
    if open_paths or not re.search(r"^\s*respond\s+@admin\s+403\s*$", text, re.M):
        return Finding.error(
            "proxy.jmap",
            f"the JMAP vhost serves {', '.join(open_paths) or 'the admin paths'} to the internet",
            "re-render: inv render",
            GROUP,
        )
    walls = _walls(text, ctx.settings)
    if walls:
        return Finding.error(
            "proxy.jmap", f"the JMAP vhost {'; '.join(walls)}", "re-render: inv render", GROUP
        )
    acme = (ctx.settings["STALWART_TLS"] or "acme-http") == "acme-http"
    names = certificate_names(ctx.settings)
    routed = _challenge_names(text, target)
    missing = [n for n in names if n.lower() not in routed]
    if acme and missing:
        return Finding.error(
            "proxy.jmap",
            "STALWART_TLS=acme-http but the JMAP vhost does not pass "
            f"{', '.join(f'http://{n}{ACME_CHALLENGE_PATH}' for n in missing)} to the "
            "mailbox; Stalwart's certificate cannot be issued",
            "re-render: inv render",
            GROUP,
        )
    extra = f"; http-01 for {', '.join(names)} reaches Stalwart" if acme else ""
    return Finding.ok(
        "proxy.jmap",
        f"the JMAP vhost sends PROXY v2 to {target}, refuses {', '.join(ADMIN_PATHS)} and "
        f"the Basic login {ctx.settings['STALWART_MANAGEMENT_USER']}, caps bodies; "
        f"passes only Stalwart's documents on {_service_names(ctx.settings)}" + extra,
        GROUP,
    )


def _walls(text: str, settings: Settings) -> list[str]:
    """What the rendered vhost lacks of its second wall: the management login refused (for
    the STALWART_MANAGEMENT_USER of this .env), odd Basic forms refused, bodies capped."""
    auth = re.escape("{http.request.header.Authorization}")
    problems = []
    login = re.search(rf'^\t@management vars_regexp {auth} "(.*)"$', text, re.M)
    if (
        not login
        or login.group(1) != management_matcher(settings)
        or not re.search(r"^\trespond @management 403$", text, re.M)
    ):
        problems.append(
            "does not refuse Basic logins as STALWART_MANAGEMENT_USER="
            f"{settings['STALWART_MANAGEMENT_USER']}"
        )
    if not re.search(r"^\trespond @odd_auth 403$", text, re.M):
        problems.append("does not refuse Basic credentials in unusual forms")
    caps = dict(re.findall(r"^\trequest_body @(\w+) \{\n\t\tmax_size (\d+)\n", text, re.M))
    wanted = {name: str(size) for name, _, size in BODY_CAPS} | {"other_body": str(BODY_CAP)}
    if caps != wanted:
        problems.append("does not cap request bodies as tailwart renders them")
    if service_sites(settings) not in text:
        problems.append(
            f"does not serve {_service_names(settings)} as tailwart renders them "
            "(only Stalwart's documents there, everything else 404)"
        )
    return problems


def _service_names(settings: Settings) -> str:
    return ", ".join(f"{label}.{settings['MAIL_DOMAIN']}" for label, _ in SERVICE_NAMES)


def _challenge_names(text: str, target: str) -> set[str]:
    """The (lower-cased) names of the plain-http site that passes ACME challenges to
    ``target``."""
    sites = re.findall(
        rf"^(http://\S+(?:, http://\S+)*) {{\n\thandle {re.escape(ACME_CHALLENGE_PATH)}\* {{\n"
        rf"\t\treverse_proxy {re.escape(target)} ",
        text,
        re.M,
    )
    return {n.removeprefix("http://").rstrip(",").lower() for s in sites for n in s.split()}


RULES = rules(GROUP, edge, admin, trust, jmap)
run = partial(run_rules, rules=RULES)
