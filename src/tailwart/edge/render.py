"""Rendering the edge: ``caddy/caddy.json`` (layer 4) and the JMAP vhost snippet.

Pure: settings in, text out, byte-identical for the same input.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import UsageError
from ..settings import Settings

#: the mail ports the edge carries, by server name in caddy.json
MAIL_PORTS: tuple[tuple[str, int], ...] = (
    ("smtp", 25),
    ("submissions", 465),
    ("submission", 587),
    ("imap", 143),
    ("imaps", 993),
)
#: Stalwart's HTTP listener (JMAP, web admin) reached by the host's main Caddy
JMAP_PORT = 8080
#: ports on which the upstream speaks TLS first (pass-through, never terminated)
IMPLICIT_TLS_PORTS = frozenset({465, 993})
DEFAULT_ADMIN_SOCKET = "/run/tailwart-edge/admin.sock"
#: Stalwart's web admin and management paths: the public vhost refuses them, and
#: Stalwart's x:Http allowedEndpoints refuses them to every client off the tailnet
ADMIN_PATHS: tuple[str, ...] = ("/admin", "/api")
#: where ACME http-01 validation requests ask (RFC 8555 §8.3)
ACME_CHALLENGE_PATH = "/.well-known/acme-challenge/"
#: Go runtime settings the edge runs with, in the systemd unit and in every local run.
#: GOMAXPROCS=1, one scheduler thread: measured against the default (one per core) in
#: benchmarks/results/edge.md, two full runs on 2 shared cores: CPU per session -10 to
#: -13 % (perf task-clock), context switches per session -25 to -41 %, sessions/s with
#: 500 held sessions +12 to +17 % and with 200 clients +6 to +14 %; one core still serves
#: ~5,000 sessions/s, far beyond a mail edge's inbound rate. GOGC=400 (CPU -7 %, but 5x
#: the live heap under a connection flood) and the layer4 log level (no effect: nothing
#: is logged per connection at INFO) were measured too and dropped.
RUNTIME_ENV: Mapping[str, str] = {"GOMAXPROCS": "1"}


@dataclass(frozen=True)
class EdgeLayout:
    """Where the edge listens and what it dials, per mail port."""

    upstream_host: str
    listen_host: str = ""
    #: listen port per mail port (default: the same port)
    listen: Mapping[int, int] | None = None
    #: upstream port per mail port (default: the same port)
    upstream: Mapping[int, int] | None = None
    admin_socket: str = DEFAULT_ADMIN_SOCKET
    #: the mail ports served (EDGE_PUBLIC_PORTS; default: all of MAIL_PORTS)
    ports: tuple[int, ...] | None = None

    def served(self) -> tuple[tuple[str, int], ...]:
        """(server name, mail port) of every port this edge serves, in MAIL_PORTS order."""
        return tuple((n, p) for n, p in MAIL_PORTS if self.ports is None or p in self.ports)

    def listen_port(self, port: int) -> int:
        return (self.listen or {}).get(port, port)

    def upstream_port(self, port: int) -> int:
        return (self.upstream or {}).get(port, port)


class RenderError(UsageError):
    """A value that cannot be written into caddy.json or the Caddyfile as a plain address."""


_IP_CHARS = re.compile(r"[0-9A-Fa-f:.]+")
_DNS_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def address(what: str, host: str, *, empty_ok: bool = False) -> str:
    """``host`` when it is a DNS name or an IP literal, else RenderError naming ``what``.

    Never trusted to be clean: caddy expands ``{…}`` placeholders inside dial and site
    addresses, and the Caddyfile splits tokens at blanks, quotes and braces, so only
    these two shapes are ever written (no escaping could make anything else mean a host).
    """
    from ..settings.kinds import Kind

    if empty_ok and host == "":
        return host
    # an IP literal without a scope id: "fe80::1%eth0 x" parses as IPv6, yet holds a blank
    if _IP_CHARS.fullmatch(host) and Kind.IP.check(host) is None:
        return host
    if len(host) <= 253 and _DNS_NAME.fullmatch(host):
        return host
    raise RenderError(
        f"{what} {host!r} cannot be written into the edge's configuration: expected a host "
        "name or an IP address"
    )


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def caddy_config(layout: EdgeLayout) -> dict[str, object]:
    """The caddy.json document: one layer4 server per served port, PROXY v2, no matchers."""
    address("the upstream host", layout.upstream_host)
    address("the listen address", layout.listen_host, empty_ok=True)
    servers: dict[str, object] = {}
    for name, port in layout.served():
        servers[name] = {
            "listen": [_join(layout.listen_host, layout.listen_port(port))],
            "routes": [
                {
                    "handle": [
                        {
                            "handler": "proxy",
                            "proxy_protocol": "v2",
                            "upstreams": [
                                {"dial": [_join(layout.upstream_host, layout.upstream_port(port))]}
                            ],
                        }
                    ]
                }
            ],
        }
    return {
        "admin": {"listen": f"unix/{layout.admin_socket}"},
        "apps": {"layer4": {"servers": servers}},
    }


def caddy_json(layout: EdgeLayout) -> str:
    """Serialised caddy.json (sorted keys, two-space indent, trailing newline)."""
    return json.dumps(caddy_config(layout), indent=2, sort_keys=True) + "\n"


def public_ports(settings: Settings) -> tuple[int, ...]:
    """EDGE_PUBLIC_PORTS (validated by the contract), in MAIL_PORTS order."""
    named = {int(p) for p in settings["EDGE_PUBLIC_PORTS"].split(",") if p}
    return tuple(port for _, port in MAIL_PORTS if port in named)


def layout_for(settings: Settings) -> EdgeLayout:
    """The production layout: the public ports on all addresses, dialing the mailbox's
    MagicDNS name."""
    return EdgeLayout(
        upstream_host=address("MAILBOX_FQDN", settings["MAILBOX_FQDN"]),
        ports=public_ports(settings),
    )


def jmap_vhost(settings: Settings) -> str:
    """Caddyfile snippet for the host's main Caddy: the JMAP/web vhost, PROXY v2 to :8080.

    With STALWART_TLS=acme-http (the default) it also answers plain http for the mail host:
    ACME http-01 requests go to Stalwart unredirected, everything else to https. Caddy's
    own challenge handler answers only tokens of its own orders, so Stalwart's pass."""
    host = address("MAIL_HOSTNAME", settings["MAIL_HOSTNAME"])
    upstream = _join(address("MAILBOX_FQDN", settings["MAILBOX_FQDN"]), JMAP_PORT)
    # a prefix match, like Stalwart's starts_with(path, …): both ends refuse the same paths
    admin = " ".join(f"{p}*" for p in ADMIN_PATHS)
    proxy = (
        f"reverse_proxy {upstream} {{\n"
        "\t\ttransport http {\n"
        "\t\t\tproxy_protocol v2\n"
        "\t\t}\n"
        "\t}\n"
    )
    text = (
        "# Generated by tailwart (inv render) from .env; include it from the main Caddyfile.\n"
        "# Stalwart trusts this edge's tailnet address for PROXY headers on every listener,\n"
        "# so this hop must send PROXY v2 too.\n"
        "# The web admin and the management paths are not served to the internet.\n"
        f"{host} {{\n"
        f"\t@admin path {admin}\n"
        "\trespond @admin 403\n"
        f"\t{proxy}"
        "}\n"
    )
    if (settings["STALWART_TLS"] or "acme-http") == "acme-http":
        nested = proxy.replace("\n\t", "\n\t\t").replace("\n}", "\n\t}")
        text += (
            "\n# STALWART_TLS=acme-http: Stalwart's ACME http-01 answers, never redirected\n"
            f"http://{host} {{\n"
            f"\thandle {ACME_CHALLENGE_PATH}* {{\n"
            f"\t\t{nested}"
            "\t}\n"
            "\thandle {\n"
            "\t\tredir https://{host}{uri} 308\n"
            "\t}\n"
            "}\n"
        )
    return text


def rendered_files(settings: Settings) -> Mapping[str, str]:
    """Relative path → content of every file ``inv render`` writes."""
    return {
        "caddy/caddy.json": caddy_json(layout_for(settings)),
        "caddy/jmap.caddy": jmap_vhost(settings),
    }
