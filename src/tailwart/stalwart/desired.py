"""The objects tailwart owns on a Stalwart v0.16 server, derived from ``.env`` alone.

Pure: settings in, a list of ``Desired`` out. Each names its type, how to find it
among the server's objects (a singleton, or a natural key), the fields tailwart
owns (every other field is left as the operator set it), and when a change takes
effect. ``Absent`` names objects that must not exist.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from ..edge.render import ADMIN_PATHS, IMPLICIT_TLS_PORTS, JMAP_PORT, MAIL_PORTS
from ..errors import UsageError
from ..settings import Settings
from ..settings.derived import certificate_names
from ..settings.kinds import HostPort
from .versions import CURRENT, Model

LIVE, RELOAD, RESTART = "live", "reload", "restart"
#: how strong an effect is: the plan's overall need is its strongest entry
STRENGTH = {LIVE: 0, RELOAD: 1, RESTART: 2}
#: listeners v0.16 seeds on a fresh store that the edge never forwards
UNFORWARDED_LISTENERS = ("pop3s", "sieve", "https")
HTTP_LISTENER = "http"
RELAY_ROUTE = "smarthost"
RELAY_TLS = "smarthost-tls"
#: where the secret values live: container environment variables, never the store
ENV_S3_ACCESS = "STALWART_S3_ACCESS_KEY"
ENV_S3_SECRET = "STALWART_S3_SECRET_KEY"
ENV_RELAY_SECRET = "STALWART_SMARTHOST_PASSWORD"
ENV_TSIG_SECRET = "ACME_DNS_TSIG_SECRET"
ENV_METRICS_SECRET = "STALWART_METRICS_PASSWORD"
ENV_REDIS_SECRET = "STALWART_REDIS_PASSWORD"
ENV_SENTINEL_SECRET = "STALWART_REDIS_SENTINEL_PASSWORD"
#: the Prometheus endpoint's Basic-auth user (its password: STALWART_METRICS_PASSWORD)
METRICS_USER = "prometheus"
#: where the compose file mounts STALWART_TLS=files' PEM files (read-only)
TLS_CERT_PATH = "/etc/stalwart/tls/fullchain.pem"
TLS_KEY_PATH = "/etc/stalwart/tls/privkey.pem"
#: the x:DnsServer tailwart owns is found by its description
DNS_SERVER_NAME = "tailwart acme-dns"
#: what Stalwart publishes through the acme-dns server besides the challenge: its own
#: DKIM keys (new names only); MX, SPF and DMARC stay the operator's
ACME_DNS_PUBLISH = ("dkim",)
#: failed logins from one address before Stalwart bans it, within this window (ms); the
#: address is the client's own (PROXY v2 from the edge), never the edge's
AUTH_BAN_RATE = {"count": 10, "period": 10 * 60_000}
#: how long an address stays banned (ms)
AUTH_BAN_PERIOD = 60 * 60_000
#: HTTP requests a minute per address: anonymous, and signed in (upstream's defaults, owned
#: so that a drift is seen)
HTTP_RATE_ANONYMOUS = {"count": 100, "period": 60_000}
HTTP_RATE_AUTHENTICATED = {"count": 1000, "period": 60_000}
#: upstream's default TLS-strategy expression (opportunistic TLS for MX delivery)
MX_TLS_EXPRESSION = {
    "match": {"0": {"if": "retry_num > 0 && last_error == 'tls'", "then": "'invalid-tls'"}},
    "else": "'default'",
}


@dataclass(frozen=True)
class Ref:
    """A field value that is the id of another owned object, found by its key."""

    type: str
    key: str
    key_field: str = "name"


@dataclass(frozen=True)
class Desired:
    type: str
    #: "singleton", or the value of ``key_field`` that identifies the object
    key: str
    fields: dict[str, Any]
    effect: str = RELOAD
    key_field: str | None = "name"
    #: fields whose change needs more than ``effect`` (field → effect)
    field_effects: dict[str, str] = field(default_factory=dict)
    #: field → value written just before a change of that field: Stalwart acts on some
    #: changes only on a transition (a certificate order on Manual → Automatic)
    resets: dict[str, Any] = field(default_factory=dict)
    #: reload settings right after writing this, before the objects after it: what it
    #: enables is read at reload, and a later write may start work that needs it
    reload_first: bool = False

    def effect_of(self, names: set[str]) -> str:
        effects = [self.field_effects.get(n, self.effect) for n in names] or [self.effect]
        return max(effects, key=STRENGTH.__getitem__)


@dataclass(frozen=True)
class Absent:
    """Objects of ``type`` whose ``key_field`` equals ``key`` must not exist."""

    type: str
    key: str
    effect: str = RELOAD
    key_field: str = "name"


State = list[Desired | Absent]


def env_ref(name: str) -> dict[str, str]:
    return {"@type": "EnvironmentVariable", "variableName": name}


def _set(*items: str) -> dict[str, bool]:
    return dict.fromkeys(items, True)


def edge_networks(settings: Settings) -> list[str]:
    """The edge's tailnet addresses as /32 and /128 networks (both are required)."""
    missing = [k for k in ("EDGE_TAILNET_ADDR", "EDGE_TAILNET_ADDR6") if not settings[k]]
    if missing:
        raise UsageError(
            f"{', '.join(missing)}: missing; PROXY trust needs the edge's IPv4 /32 AND IPv6 "
            "/128 tailnet address (MagicDNS resolves to both; `tailscale ip` on the edge)"
        )
    # the address families are checked with the .env (settings cross-checks)
    return [
        str(ipaddress.ip_network(settings[k])) for k in ("EDGE_TAILNET_ADDR", "EDGE_TAILNET_ADDR6")
    ]


def redis_url(settings: Settings) -> str:
    """Stalwart's single-node Redis store takes the password and DB index only in the URL."""
    password = quote(settings["STALWART_REDIS_PASSWORD"], safe="")
    host = settings["STALWART_REDIS_HOST"]
    host = f"[{host}]" if ":" in host else host
    return (
        f"redis://:{password}@{host}:{settings['STALWART_REDIS_PORT']}/"
        f"{settings['STALWART_REDIS_DB']}"
    )


def memory_store(settings: Settings) -> dict[str, Any]:
    """x:InMemoryStore: one Redis by its URL, or Redis Sentinel (STALWART_REDIS_SENTINELS):
    the sentinels' URLs, the master's name and both passwords by reference. The data nodes
    are reached as the default user (requirepass), like the single Redis's URL does;
    the schema's default authUsername ``stalwart`` would need an ACL user."""
    sentinels = settings["STALWART_REDIS_SENTINELS"]
    if not sentinels:
        return {"@type": "Redis", "url": redis_url(settings)}
    urls = {}
    for item in sentinels.split(","):
        where = HostPort.parse(item)
        host = f"[{where.host}]" if ":" in where.host else where.host
        urls[f"redis://{host}:{where.port}"] = True
    none = {"@type": "None"}
    return {
        "@type": "RedisSentinel",
        "urls": urls,
        "serviceName": settings["STALWART_REDIS_MASTER"],
        "authUsername": None,
        "authSecret": env_ref(ENV_REDIS_SECRET),
        "sentinelUsername": None,
        "sentinelSecret": (env_ref(ENV_SENTINEL_SECRET) if settings[ENV_SENTINEL_SECRET] else none),
    }


def management_networks(settings: Settings) -> list[str]:
    """STALWART_MANAGEMENT_NETWORKS: where the management login and admin paths work."""
    return [n for n in settings["STALWART_MANAGEMENT_NETWORKS"].split(",") if n]


def allowed_endpoints(settings: Settings) -> dict[str, Any]:
    """403 for the web admin and management paths to any client outside
    STALWART_MANAGEMENT_NETWORKS. Not loopback: through PROXY v2, anything on the edge host
    can claim 127.0.0.1."""
    sources = management_networks(settings)
    inside = " || ".join(f"is_ip_in_cidr(remote_ip, '{net}')" for net in sources)
    paths = " || ".join(f"starts_with(path, '{p}')" for p in ADMIN_PATHS)
    return {"match": {"0": {"if": f"!({inside}) && ({paths})", "then": "403"}}, "else": "200"}


def listener_specs() -> list[tuple[str, int, str]]:
    """(name, port, protocol) of every listener tailwart provisions: what the edge dials."""
    ports = [(name, port, "imap" if port in (143, 993) else "smtp") for name, port in MAIL_PORTS]
    return [*ports, (HTTP_LISTENER, JMAP_PORT, "http")]


def trusted_ports(settings: Settings) -> frozenset[int]:
    """Listener ports that take PROXY v2 from the edge: the public mail ports and HTTP (the
    JMAP vhost). Every other listener takes direct connections only (tailnet members)."""
    from ..edge.render import public_ports

    return frozenset({*public_ports(settings), JMAP_PORT})


def _listeners(settings: Settings, model: Model) -> State:
    edge = _set(*edge_networks(settings))
    behind_edge = trusted_ports(settings)
    out: State = []
    for name, port, protocol in listener_specs():
        # empty: the global list (kept empty) applies, so no source is read as a proxy
        trust = edge if port in behind_edge else {}
        out.append(
            Desired(
                model.listener,
                name,
                {
                    "name": name,
                    "bind": _set(f"[::]:{port}"),
                    "protocol": protocol,
                    "useTls": protocol != "http",
                    "tlsImplicit": port in IMPLICIT_TLS_PORTS,
                    "overrideProxyTrustedNetworks": trust,
                },
                effect=RESTART,
            )
        )
    out += [Absent(model.listener, name, RESTART) for name in UNFORWARDED_LISTENERS]
    return out


def _outbound(settings: Settings, model: Model) -> State:
    relay = settings.hostport("STALWART_SMARTHOST")
    out: State = [
        Desired(model.route, "local", {"@type": "Local", "name": "local"}),
        Desired(model.route, "mx", {"@type": "Mx", "name": "mx"}),
    ]
    local = {"0": {"if": "is_local_domain(rcpt_domain)", "then": "'local'"}}
    if relay is None:
        out += [Absent(model.route, RELAY_ROUTE), Absent(model.tls_strategy, RELAY_TLS)]
        route = {"match": local, "else": "'mx'"}
        tls: dict[str, Any] = MX_TLS_EXPRESSION
    else:
        user = settings["STALWART_SMARTHOST_USER"]
        out.append(
            Desired(
                model.route,
                RELAY_ROUTE,
                {
                    "@type": "Relay",
                    "name": RELAY_ROUTE,
                    "address": relay.host,
                    "port": relay.port,
                    "protocol": "smtp",
                    "implicitTls": settings["STALWART_SMARTHOST_TLS"] == "implicit",
                    "allowInvalidCerts": False,
                    "authUsername": user or None,
                    "authSecret": env_ref(ENV_RELAY_SECRET) if user else {"@type": "None"},
                },
            )
        )
        out.append(
            Desired(
                model.tls_strategy,
                RELAY_TLS,
                {
                    "name": RELAY_TLS,
                    "startTls": "require",
                    "allowInvalidCerts": False,
                    "dane": "disable",
                    "mtaSts": "disable",
                },
            )
        )
        route = {"match": local, "else": f"'{RELAY_ROUTE}'"}
        # one strategy for every attempt: no fallback to "invalid-tls" after a TLS error
        tls = {"match": {}, "else": f"'{RELAY_TLS}'"}
    out.append(
        Desired(model.outbound, model.singleton_id, {"route": route, "tls": tls}, key_field=None)
    )
    return out


def acme_contact(settings: Settings) -> str:
    return settings["ACME_CONTACT"] or f"postmaster@{settings['MAIL_DOMAIN']}"


def _tls(settings: Settings, model: Model) -> tuple[State, dict[str, Any], Any]:
    """Objects for STALWART_TLS, the domain's certificate/DNS management fields, and the
    default certificate (a Ref, or None to leave it to Stalwart)."""
    mode = settings["STALWART_TLS"] or "acme-http"
    directory = settings["ACME_DIRECTORY"]
    out: State = []
    domain: dict[str, Any] = {}
    if mode == "files":
        out.append(Absent(model.acme_provider, directory, key_field="directory"))
        out.append(Absent(model.dns_server, DNS_SERVER_NAME, key_field="description"))
        domain["certificateManagement"] = {"@type": "Manual"}
        domain["dnsManagement"] = {"@type": "Manual"}
        cert = {"@type": "File", "filePath": TLS_CERT_PATH}
        out.append(
            Desired(
                model.certificate,
                TLS_CERT_PATH,
                {"certificate": cert, "privateKey": {"@type": "File", "filePath": TLS_KEY_PATH}},
                key_field="certificate.filePath",
            )
        )
        return out, domain, Ref(model.certificate, TLS_CERT_PATH, "certificate.filePath")
    challenge = "Http01" if mode == "acme-http" else "Dns01"
    out.append(
        Desired(
            model.acme_provider,
            directory,
            {
                "directory": directory,
                "challengeType": challenge,
                # Stalwart stores contacts as mailto: URIs when it registers the account
                "contact": _set("mailto:" + acme_contact(settings).lower()),
                # keep the key across renewals: a DANE TLSA (3 1 1) record stays true
                "reuseKey": True,
            },
            key_field="directory",
            # Stalwart answers /.well-known/acme-challenge/ only once its settings know an
            # http-01 provider (read at reload); the domain's write starts the order at once
            effect=RELOAD,
            reload_first=True,
        )
    )
    if mode == "acme-dns":
        out.append(
            Desired(
                model.dns_server,
                DNS_SERVER_NAME,
                {
                    "@type": "Tsig",
                    "description": DNS_SERVER_NAME,
                    "host": settings["ACME_DNS_SERVER"],
                    "port": int(settings["ACME_DNS_PORT"] or 53),
                    "keyName": settings["ACME_DNS_TSIG_KEY"],
                    "key": env_ref(ENV_TSIG_SECRET),
                    "tsigAlgorithm": settings["ACME_DNS_TSIG_ALGORITHM"],
                    "protocol": "tcp",
                },
                key_field="description",
                effect=LIVE,
            )
        )
        domain["dnsManagement"] = {
            "@type": "Automatic",
            "dnsServerId": Ref(model.dns_server, DNS_SERVER_NAME, "description"),
            "origin": settings["ACME_DNS_ZONE"] or settings["MAIL_DOMAIN"],
            "publishRecords": _set(*ACME_DNS_PUBLISH),
        }
    else:
        out.append(Absent(model.dns_server, DNS_SERVER_NAME, key_field="description"))
        domain["dnsManagement"] = {"@type": "Manual"}
    out.append(Absent(model.certificate, TLS_CERT_PATH, key_field="certificate.filePath"))
    names = certificate_names(settings)
    domain["certificateManagement"] = {
        "@type": "Automatic",
        "acmeProviderId": Ref(model.acme_provider, directory, "directory"),
        "subjectAlternativeNames": _set(*names),
    }
    # no default certificate: Stalwart serves the certificate that names the client's SNI
    # (and its only one to a client without SNI); the ACME certificate arrives after this
    # run, and pinning it would make every first --check report drift
    return out, domain, None


def key_of(obj: Any, key_field: str) -> str | None:
    """The value of ``key_field`` (a dotted path) in a live object, as a key."""
    value = obj
    for part in key_field.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return None if value is None or isinstance(value, dict | list) else str(value)


def desired_state(settings: Settings, model: Model = CURRENT) -> State:
    """Every object tailwart owns, parents first (the order apply creates them in)."""
    s3 = f"http://{settings['STALWART_S3_HOST']}:{settings['STALWART_S3_PORT']}"
    one = model.singleton_id
    tls_objects, domain_tls, default_cert = _tls(settings, model)
    system: dict[str, Any] = {
        "defaultHostname": settings["MAIL_HOSTNAME"],
        "defaultDomainId": Ref(model.domain, settings["MAIL_DOMAIN"]),
        "proxyTrustedNetworks": {},
        "services": services(settings),
    }
    # files: the mounted certificate; ACME: none (a files-mode default would otherwise
    # keep the mounted certificate from being removed)
    system["defaultCertificateId"] = default_cert
    state: State = [
        Desired(
            model.blob_store,
            one,
            {
                "@type": "S3",
                "bucket": settings["STALWART_S3_BUCKET"],
                "region": {
                    "@type": "Custom",
                    "customEndpoint": s3,
                    "customRegion": settings["STALWART_S3_REGION"],
                },
                "accessKey": env_ref(ENV_S3_ACCESS),
                "secretKey": env_ref(ENV_S3_SECRET),
            },
            effect=RESTART,
            key_field=None,
        ),
        Desired(
            model.memory_store,
            one,
            memory_store(settings),
            effect=RESTART,
            key_field=None,
        ),
        Desired(model.search_store, one, {"@type": "Default"}, effect=RESTART, key_field=None),
        *tls_objects,
        Desired(
            model.domain,
            settings["MAIL_DOMAIN"],
            {
                "name": settings["MAIL_DOMAIN"],
                "dkimManagement": {"@type": "Automatic"},
                **domain_tls,
            },
            effect=LIVE,
            # new names or a new provider: Stalwart orders a certificate only when
            # certificate management turns Automatic, so pass through Manual first
            resets=(
                {"certificateManagement": {"@type": "Manual"}}
                if domain_tls["certificateManagement"]["@type"] == "Automatic"
                else {}
            ),
        ),
        Desired(
            model.system,
            one,
            system,
            key_field=None,
            field_effects={"proxyTrustedNetworks": RESTART},
        ),
    ]
    state += _listeners(settings, model)
    state.append(
        Desired(
            model.http,
            one,
            {
                "allowedEndpoints": allowed_endpoints(settings),
                "useXForwarded": False,
                "rateLimitAnonymous": HTTP_RATE_ANONYMOUS,
                "rateLimitAuthenticated": HTTP_RATE_AUTHENTICATED,
            },
            key_field=None,
        )
    )
    state.append(
        Desired(
            model.security,
            one,
            {"authBanRate": AUTH_BAN_RATE, "authBanPeriod": AUTH_BAN_PERIOD},
            key_field=None,
        )
    )
    state += _outbound(settings, model)
    state.append(
        Desired(
            model.tracer,
            "Stdout",
            {"@type": "Stdout", "level": "info", "ansi": False, "enable": True},
            key_field="@type",
        )
    )
    # the seeded file tracer writes to /var/log/stalwart, which the image does not have
    state.append(Absent(model.tracer, "Log", key_field="@type"))
    state.append(Desired(model.metrics, one, {"prometheus": prometheus(settings)}, key_field=None))
    state.append(Desired(model.mta_sts, one, mta_sts(settings), key_field=None))
    state += _cluster(settings, model)
    return state


def _cluster(settings: Settings, model: Model) -> State:
    """Several mailbox nodes: Stalwart's broadcasts through the shared Redis (the in-memory
    store, ``Default``) and the two roles the nodes' STALWART_ROLE name. Both are read at
    start only. One node: nothing (no request, so a single node is served as before)."""
    from . import cluster

    if not cluster.clustered(settings):
        return []
    return [
        Desired(model.coordinator, model.singleton_id, {"@type": "Default"}, RESTART, None),
        *(
            Desired(model.cluster_role, name, cluster.role_fields(name), RESTART)
            for name in (cluster.PRIMARY, cluster.SECONDARY)
        ),
    ]


def mta_sts(settings: Settings) -> dict[str, Any]:
    """The MTA-STS policy Stalwart serves on mta-sts.MAIL_DOMAIN: exactly the MX
    (MAIL_HOSTNAME), the mode and max_age from .env (``inv dns`` publishes its id)."""
    return {
        "mode": settings["MTA_STS_MODE"],
        "maxAge": settings.integer("MTA_STS_MAX_AGE") * 1000,
        "mxHosts": _set(settings["MAIL_HOSTNAME"].lower()),
    }


def services(settings: Settings) -> dict[str, dict[str, Any]]:
    """What Stalwart advertises in autoconfig and autodiscover: only what the edge exposes.

    Stalwart lists a service's implicit-TLS port always and its STARTTLS port only with
    ``cleartext`` (v0.16.18 ``legacy_autoconfig.rs``: SMTP 465 + 587, IMAP 993 + 143).
    POP3 and ManageSieve are never forwarded; JMAP and DAV are the vhost's (443).
    """
    public = {int(p) for p in settings["EDGE_PUBLIC_PORTS"].split(",")}
    out: dict[str, dict[str, Any]] = {
        name: {"hostname": None, "cleartext": False}
        for name in ("caldav", "carddav", "jmap", "webdav")
    }
    for name, implicit, starttls in (("imap", 993, 143), ("smtp", 465, 587)):
        if implicit in public:
            out[name] = {"hostname": None, "cleartext": starttls in public}
    return dict(sorted(out.items()))


def prometheus(settings: Settings) -> dict[str, Any]:
    """Stalwart's Prometheus endpoint: on, behind Basic auth, when STALWART_METRICS_PASSWORD
    is set (its value stays in the container's environment); else off."""
    if not settings[ENV_METRICS_SECRET]:
        return {"@type": "Disabled"}
    secret = env_ref(ENV_METRICS_SECRET)
    return {"@type": "Enabled", "authUsername": METRICS_USER, "authSecret": secret}
