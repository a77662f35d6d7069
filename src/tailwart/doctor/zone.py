"""Doctor group ``zone``: the published zone against the records ``inv dns`` wants, and
what those records promise, fetched through the edge.

The records are asked of the zone's authoritative servers directly (the addresses of
its NS hosts on :53, and DNS_SERVER, the primary ``inv dns`` writes to), never of a
cache, each query without recursion, and each answer must carry the AA flag. Every
record that differs is named with the line that fixes it. A missing record the mail
flow needs (MX, address, SPF, DMARC, DKIM) is an error; a missing convenience (SRV,
the names clients look up, TLS-RPT, CAA, the MTA-STS id) a warning; a record that is
there with another value is an error.

Then the MTA-STS policy (``https://mta-sts.DOMAIN/.well-known/mta-sts.txt``) and the
autoconfig document (``https://autoconfig.DOMAIN/mail/config-v1.1.xml``), fetched
through the edge as a sender or a mail client would.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from ..findings import Finding
from .registry import Check, DoctorContext, error, ok, warning
from .resolver import Dns, DnsFailure, fqdn

GROUP = "zone"
FIX = "inv dns publishes it (or add it by hand: {line})"
#: a record set's purpose → (check id suffix, title, whether missing is an error)
PURPOSES: dict[str, tuple[str, bool]] = {
    "mx": ("MX of the domain", True),
    "addresses": ("A/AAAA of MAIL_HOSTNAME and its aliases", True),
    "spf": ("SPF of the domain", True),
    "dkim": ("DKIM keys Stalwart signs with", True),
    "dmarc": ("DMARC policy", True),
    "tls-rpt": ("TLS-RPT reports", False),
    "mta-sts-id": ("MTA-STS policy id", False),
    "names": ("mta-sts., autoconfig., autodiscover., ua-auto-config.", False),
    "srv": ("SRV records of the mail services (RFC 6186)", False),
    "caa": ("CAA of MAIL_HOSTNAME", False),
}
#: the check that says why nothing was compared, when the others cannot either
FIRST = "mx"
#: RFC 8461 3.3: a policy is text/plain
POLICY_TYPE = "text/plain"
POLICY_PATH = "/.well-known/mta-sts.txt"
AUTOCONFIG_PATH = "/mail/config-v1.1.xml"
#: autoconfig: (socketType, port) a client may be told, by port
SOCKET_TYPES = {465: "SSL", 993: "SSL", 587: "STARTTLS", 143: "STARTTLS"}


class ZoneUnknown(Exception):
    """The desired records cannot be computed from .env (a key is missing)."""


@dataclass(frozen=True)
class Server:
    """One authoritative server: the NS name (or DNS_SERVER) and where it is asked."""

    name: str
    address: str
    port: int

    def __str__(self) -> str:
        at = self.address if self.port == 53 else f"{self.address}:{self.port}"
        return at if self.name == self.address else f"{self.name} ({at})"


def purpose(name: str, rtype: str, domain: str) -> str:
    """Which check judges the record set ``rtype name``."""
    if rtype == "TXT":
        if name.endswith("._domainkey." + domain):
            return "dkim"
        label = name[: -len(domain) - 1] if name.endswith("." + domain) else ""
        return {"_dmarc": "dmarc", "_smtp._tls": "tls-rpt", "_mta-sts": "mta-sts-id"}.get(
            label, "spf"
        )
    return {"MX": "mx", "A": "addresses", "AAAA": "addresses", "CAA": "caa"}.get(
        rtype, "names" if rtype == "CNAME" else "srv"
    )


# -- what is wanted -----------------------------------------------------------------


def _desired(ctx: DoctorContext) -> Any:
    """The record set inv dns wants, DKIM left out (read by ``_dkim_desired``)."""
    from ..dns.records import desired_records
    from ..dns.spf import spf_text
    from ..errors import UsageError
    from ..settings import SettingsError

    try:
        return desired_records(ctx.settings, spf_text(ctx.settings), None)
    except SettingsError as exc:
        raise ZoneUnknown("; ".join(f"{p.key} {p.message}" for p in exc.problems)) from None
    except UsageError as exc:
        raise ZoneUnknown(str(exc)) from None


def _dkim_desired(ctx: DoctorContext) -> Any:
    """The DKIM records of the keys the running Stalwart holds."""
    from ..dns.dkim import read_dkim
    from ..dns.records import desired_records
    from ..dns.spf import spf_text

    keys = read_dkim(ctx.settings)
    return desired_records(ctx.settings, spf_text(ctx.settings), keys)


# -- what the zone holds --------------------------------------------------------------


def authoritative(ctx: DoctorContext, zone: str) -> list[Server]:
    """The zone's authoritative servers: its NS hosts' addresses on :53 (looked up
    through DNS_RESOLVER or the system), and DNS_SERVER at DNS_PORT when set."""
    dns = Dns(ctx.settings, ctx.timeout)
    servers: list[Server] = []
    primary = ctx.settings["DNS_SERVER"]
    try:
        hosts = [fqdn(r.target.to_text()) for r in dns.query(zone, "NS")]
    except DnsFailure:
        if not primary:
            raise
        hosts = []
    for host in sorted(hosts):
        servers += [Server(host, str(ip), 53) for ip in dns.addresses(host)]
    if primary:
        port = ctx.settings.integer("DNS_PORT")
        try:
            infos = socket.getaddrinfo(primary, port, proto=socket.IPPROTO_UDP)
            address = str(infos[0][4][0])
        except OSError:
            raise DnsFailure(f"DNS_SERVER {primary} does not resolve") from None
        if not any(s.address == address and s.port == port for s in servers):
            servers.append(Server(f"DNS_SERVER {primary}", address, port))
    if not servers:
        raise DnsFailure(f"{zone} has no NS record with an address, and DNS_SERVER is unset")
    return servers


def ask(server: Server, name: str, rtype: str, timeout: float) -> list[Any]:
    """The ``rtype`` records at ``name`` as ``server`` holds them (no recursion; the
    answer must be authoritative). DnsFailure when it does not answer so."""
    import dns.exception
    import dns.flags
    import dns.message
    import dns.query
    import dns.rcode
    import dns.rdatatype

    query = dns.message.make_query(name + ".", rtype)
    query.flags &= ~dns.flags.RD
    try:
        reply, _ = dns.query.udp_with_fallback(query, server.address, timeout, server.port)
    except (dns.exception.DNSException, OSError) as exc:
        raise DnsFailure(f"{server}: {type(exc).__name__} for {rtype} {name}") from None
    if reply.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise DnsFailure(f"{server}: {dns.rcode.to_text(reply.rcode())} for {rtype} {name}")
    if not reply.flags & dns.flags.AA:
        raise DnsFailure(f"{server} is not authoritative for {name} (no AA flag)")
    wanted = dns.rdatatype.from_text(rtype)
    return [rd for rrset in reply.answer if rrset.rdtype == wanted for rd in rrset]


def _key(rdata: Any) -> Any:
    """What a record is compared by: a TXT's joined strings (the split into 255-byte
    strings is not part of its meaning), else the record's canonical form."""
    strings = getattr(rdata, "strings", None)
    return b"".join(strings) if strings is not None else rdata


def _wanted(rrset: Any) -> list[Any]:
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype

    kind = dns.rdatatype.from_text(rrset.type)
    return [dns.rdata.from_text(dns.rdataclass.IN, kind, value) for value in rrset.values]


def _text(rdata: Any) -> str:
    return str(rdata.to_text())


def compare(rrset: Any, held: Sequence[Any]) -> str | None:
    """What is wrong with ``held`` for the desired ``rrset`` ("missing", or a diff in
    words), or None when it holds exactly the wanted values (for a shared TXT set:
    exactly tailwart's one among the operator's)."""
    wanted = _wanted(rrset)
    mine = list(held)
    if rrset.shares:
        prefix = rrset.shares.encode()
        mine = [r for r in held if _key(r).lower().startswith(prefix)]
    if not mine:
        return "missing"
    want_keys, have_keys = {_key(r) for r in wanted}, {_key(r) for r in mine}
    if want_keys == have_keys:
        return None
    extra = [_text(r) for r in mine if _key(r) not in want_keys]
    lacking = [_text(r) for r in wanted if _key(r) not in have_keys]
    parts = []
    if lacking:
        parts.append("lacks " + ", ".join(lacking))
    if extra:
        parts.append("also holds " + ", ".join(extra))
    return "; ".join(parts)


def _line(rrset: Any) -> str:
    return " ".join(f"{rrset.fqdn()} {rrset.ttl} IN {rrset.type} {v}" for v in rrset.values)


def judge(
    ctx: DoctorContext, which: str, rrsets: Sequence[Any], servers: Sequence[Server]
) -> Finding:
    """The verdict on the record sets of one purpose, asked of every server."""
    needed = PURPOSES[which][1]
    problems: list[tuple[bool, str, str]] = []  # (is an error, what, fix)
    for rrset in rrsets:
        for server in servers:
            found = compare(rrset, ask(server, rrset.name, rrset.type, ctx.timeout))
            if found is None:
                continue
            where = f"{rrset.type} {rrset.fqdn()} on {server}"
            serious = needed or found != "missing"
            problems.append((serious, f"{where}: {found}", _line(rrset)))
    shown = ", ".join(f"{r.type} {r.fqdn()}" for r in rrsets)
    if not problems:
        return ok(f"{shown}: as inv dns wants, on {len(servers)} authoritative server(s)")
    message = "; ".join(what for _, what, _ in problems)
    fixes = list(dict.fromkeys(fix for _, _, fix in problems))
    advice = FIX.format(line=" | ".join(fixes))
    if any(serious for serious, _, _ in problems):
        return error(message, advice)
    return warning(message, advice)


def records(which: str, ctx: DoctorContext) -> Finding:
    from ..dns import DnsError, DnsInputError

    domain = ctx.settings["MAIL_DOMAIN"].lower()
    title = PURPOSES[which][0]
    try:
        desired = ctx.shared.once("zone.desired", lambda: _desired(ctx))
        if which == "dkim":
            if not ctx.settings["STALWART_MANAGEMENT_PASSWORD"]:
                return warning(
                    "DKIM not compared: STALWART_MANAGEMENT_PASSWORD is unset, so the keys "
                    "Stalwart signs with cannot be read",
                    "set the management login, or compare by hand: inv dns --zone",
                )
            desired = _dkim_desired(ctx)
        servers = ctx.shared.once("zone.servers", lambda: authoritative(ctx, desired.zone))
    except ZoneUnknown as exc:
        if which != FIRST:  # said once, by the first check
            return warning(f"{title}: not compared (see zone.{FIRST})", f"fix zone.{FIRST} first")
        return warning(f"{title}: not compared ({exc})", "set the keys inv dns needs")
    except (DnsError, DnsInputError) as exc:
        return error(f"{title}: not compared: {exc}", "start Stalwart, or see inv dns --dry-run")
    except DnsFailure as exc:
        if which != FIRST:
            return warning(f"{title}: not compared (see zone.{FIRST})", f"fix zone.{FIRST} first")
        return error(
            f"the zone's authoritative servers: {exc}", "check the NS records and DNS_SERVER"
        )
    rrsets = [r for r in desired.records if purpose(r.name, r.type, domain) == which]
    if not rrsets:
        note = next((n for n in desired.notes if which.upper() in n.upper()), "")
        return ok(f"{title}: nothing to publish" + (f" ({note})" if note else ""))
    try:
        return judge(ctx, which, rrsets, servers)
    except DnsFailure as exc:
        return error(str(exc), "check the zone's name servers (NS) and DNS_SERVER")


# -- what the records promise, through the edge ------------------------------------------


def _fetched(
    ctx: DoctorContext, host: str, path: str, kinds: tuple[str, ...]
) -> tuple[bytes, str] | Finding:
    """The body of ``https://host/path`` through the edge (status 200, a media type of
    ``kinds``, within the size limit), or the finding that says why not."""
    from .edge_https import READ_LIMIT, EdgeHttpError, fetch

    where = f"https://{host}{path} through the edge"
    try:
        answer = fetch(ctx, host, path)
    except EdgeHttpError as exc:
        return error(
            f"{where}: {exc}", "is the edge's main Caddy serving the name (inv deploy-edge)?"
        )
    if answer.status != 200:
        return error(
            f"{where}: answered {answer.status}",
            "the edge passes the path to Stalwart (inv deploy-edge); is Stalwart up?",
        )
    media = answer.content_type.partition(";")[0].strip().lower()
    if media not in kinds:
        return error(
            f"{where}: served as {media or 'no media type'!r}, not {' or '.join(kinds)}",
            "senders and clients refuse it: check what answers on the name",
        )
    if answer.truncated:
        return error(f"{where}: over {READ_LIMIT} bytes", "check what answers on the name")
    return answer.body, where


def mta_sts_policy(ctx: DoctorContext) -> Finding:
    """The policy senders fetch: valid, lists the MX, with the mode and max_age of .env."""
    from ..dns.mta_sts import PolicyError, mx_matches, parse_policy

    s = ctx.settings
    domain = s["MAIL_DOMAIN"].lower()
    got = _fetched(ctx, f"mta-sts.{domain}", POLICY_PATH, (POLICY_TYPE,))
    if isinstance(got, Finding):
        return got
    body, where = got
    try:
        policy = parse_policy(body.decode("ascii"))
    except UnicodeDecodeError:
        return error(f"{where}: the policy is not ASCII text", "inv provision owns the policy")
    except PolicyError as exc:
        return error(f"{where}: not a valid policy: {exc}", "inv provision owns the policy")
    host = s["MAIL_HOSTNAME"].lower()
    try:
        published = Dns(s, ctx.timeout).mx(domain)
    except DnsFailure:
        published = []
    uncovered = [
        h for h in dict.fromkeys([host, *published]) if not any(mx_matches(p, h) for p in policy.mx)
    ]
    if uncovered and policy.mode != "none":
        return error(
            f"{where}: mx {', '.join(policy.mx) or '(none)'} does not cover "
            f"{', '.join(uncovered)}; in enforce mode senders refuse to deliver there",
            "inv provision (the policy lists MAIL_HOSTNAME); point the MX at MAIL_HOSTNAME",
        )
    if policy.mode != s["MTA_STS_MODE"]:
        return error(
            f"{where}: mode {policy.mode}, .env says MTA_STS_MODE={s['MTA_STS_MODE']}",
            "inv provision, then inv dns (the policy's id changes with it)",
        )
    if policy.max_age != s.integer("MTA_STS_MAX_AGE"):
        return warning(
            f"{where}: max_age {policy.max_age}, .env says MTA_STS_MAX_AGE={s['MTA_STS_MAX_AGE']}",
            "inv provision, then inv dns",
        )
    return ok(f"{where}: mode {policy.mode}, mx {', '.join(policy.mx)}, max_age {policy.max_age}")


def autoconfig(ctx: DoctorContext) -> Finding:
    """The document Thunderbird-style clients fetch: the right host, ports the edge opens."""
    s = ctx.settings
    domain = s["MAIL_DOMAIN"].lower()
    path = f"{AUTOCONFIG_PATH}?emailaddress=postmaster%40{domain}"
    got = _fetched(ctx, f"autoconfig.{domain}", path, ("application/xml", "text/xml"))
    if isinstance(got, Finding):
        return got
    body, where = got
    try:
        servers = autoconfig_servers(body)
    except ValueError as exc:
        return error(f"{where}: {exc}", "check what answers on autoconfig.")
    public = {int(p) for p in s["EDGE_PUBLIC_PORTS"].split(",")}
    hosts = {
        s["MAIL_HOSTNAME"].lower(),
        *(n.lower() for n in s["MAIL_HOSTNAME_ALIASES"].split(",") if n),
    }
    wrong = []
    for _, protocol, host, port, socket_type in servers:
        label = f"{protocol} {host}:{port}"
        if host.lower() not in hosts:
            wrong.append(f"{label} is not MAIL_HOSTNAME")
        elif port not in public:
            wrong.append(f"{label} is a port the edge does not open (EDGE_PUBLIC_PORTS)")
        elif SOCKET_TYPES.get(port) != socket_type:
            wrong.append(f"{label} is offered as {socket_type}")
    if wrong:
        return error(
            f"{where}: " + "; ".join(wrong),
            "inv provision (Stalwart advertises what the edge opens)",
        )
    kinds = {kind for kind, *_ in servers}
    shown = ", ".join(f"{p} {h}:{port}" for _, p, h, port, _ in servers)
    missing = [k for k in ("incomingServer", "outgoingServer") if k not in kinds]
    if missing:
        return warning(
            f"{where}: no {' and no '.join(missing)} ({shown or 'no server'}); clients guess",
            "open 993 and 465 on the edge (EDGE_PUBLIC_PORTS), then inv provision",
        )
    return ok(f"{where}: {shown}")


def autoconfig_servers(body: bytes) -> list[tuple[str, str, str, int, str]]:
    """(element, type, hostname, port, socketType) of every server an autoconfig
    document names. ValueError when it is not such a document (defusedxml refuses
    entity tricks)."""
    import defusedxml.ElementTree as ET
    from defusedxml import DefusedXmlException

    try:
        root = ET.fromstring(body)
    except (ET.ParseError, DefusedXmlException) as exc:
        raise ValueError(f"not XML ({type(exc).__name__})") from None
    if root.tag != "clientConfig":
        raise ValueError(f"the root element is {root.tag[:40]!r}, not clientConfig")
    out = []
    for provider in root.findall("emailProvider"):
        for element in (*provider.findall("incomingServer"), *provider.findall("outgoingServer")):
            host = (element.findtext("hostname") or "").strip()
            port_text = (element.findtext("port") or "").strip()
            if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise ValueError(f"a {element.tag} without a hostname and a port")
            out.append(
                (
                    element.tag,
                    element.get("type", "?"),
                    host,
                    int(port_text),
                    (element.findtext("socketType") or "").strip(),
                )
            )
    return out


def checks(ctx: DoctorContext) -> list[Check]:
    out = [
        Check(f"zone.{which}", GROUP, title, partial(records, which))
        for which, (title, _) in PURPOSES.items()
    ]
    fetch_checks: list[tuple[str, str, Callable[[DoctorContext], Finding]]] = [
        ("mta-sts-policy", "the MTA-STS policy, through the edge", mta_sts_policy),
        ("autoconfig", "the autoconfig document, through the edge", autoconfig),
    ]
    out += [Check(f"zone.{name}", GROUP, title, fn) for name, title, fn in fetch_checks]
    return out
