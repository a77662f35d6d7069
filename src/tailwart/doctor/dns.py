"""Doctor group ``dns``: MX, A/AAAA, forward-confirmed reverse DNS, SPF, DMARC, DKIM.

Asks ``DNS_RESOLVER`` (host:port) when set, else the system's resolver.
"""

from __future__ import annotations

import base64
import ipaddress
from typing import Any

from ..findings import Finding
from .registry import Check, DoctorContext, error, ok, warning
from .resolver import Dns, DnsFailure, fqdn
from .spf import IP, check_host, spf_records

GROUP = "dns"


def _guard(fn: Any) -> Any:
    """A DnsFailure becomes an error finding naming the resolver."""

    def wrapped(ctx: DoctorContext) -> Finding:
        try:
            result: Finding = fn(ctx, Dns(ctx.settings, ctx.timeout))
        except DnsFailure as exc:
            return error(f"no answer: {exc}", "check DNS_RESOLVER, or the zone's name servers")
        return result

    return wrapped


def _edge_ip(ctx: DoctorContext) -> IP | None:
    value = ctx.settings["EDGE_PUBLIC_IP"]
    return ipaddress.ip_address(value) if value else None


def check_mx(ctx: DoctorContext, dns: Dns) -> Finding:
    domain, host = ctx.settings["MAIL_DOMAIN"], fqdn(ctx.settings["MAIL_HOSTNAME"])
    records = dns.mx_records(domain)
    if not records:
        return error(f"{domain} has no MX record", f"add: {domain}. MX 10 {host}.")
    shown = ", ".join(f"{p} {h}" for p, h in records)
    ours = [p for p, h in records if h == host]
    if not ours:
        return error(
            f"MX of {domain} is {shown}, not {host}",
            f"point the MX at MAIL_HOSTNAME: {domain}. MX 10 {host}.",
        )
    if min(ours) > records[0][0]:
        return warning(
            f"MX of {domain}: {shown}; another host is preferred over {host}",
            "give MAIL_HOSTNAME the lowest preference, or remove the other MX",
        )
    return ok(f"MX of {domain}: {shown}")


def check_address(ctx: DoctorContext, dns: Dns) -> Finding:
    host = ctx.settings["MAIL_HOSTNAME"]
    found = dns.addresses(host)
    if not found:
        return error(f"{host} has no A or AAAA record", "add an A record with the edge's address")
    shown = ", ".join(map(str, found))
    edge = _edge_ip(ctx)
    if edge is None:
        return warning(
            f"{host} → {shown}; EDGE_PUBLIC_IP is not set to compare", "set EDGE_PUBLIC_IP in .env"
        )
    family = "A" if edge.version == 4 else "AAAA"
    same = [a for a in found if a.version == edge.version]
    if edge not in same:
        return error(
            f"{family} of {host} is {', '.join(map(str, same)) or 'missing'}, not the "
            f"edge's {edge}",
            f"set the {family} record of {host} to {edge}",
        )
    if len(same) > 1:
        return warning(
            f"{host} → {shown}: more {family} records than the edge's {edge}",
            f"remove the other {family} records; senders pick any of them",
        )
    return ok(f"{host} → {shown}")


def check_fcrdns(ctx: DoctorContext, dns: Dns) -> Finding:
    host = fqdn(ctx.settings["MAIL_HOSTNAME"])
    edge = _edge_ip(ctx)
    addrs = [edge] if edge is not None else dns.addresses(host)[:1]
    if not addrs:
        return error(
            f"no address to check: EDGE_PUBLIC_IP unset and {host} unresolved", "set EDGE_PUBLIC_IP"
        )
    ip = addrs[0]
    names = dns.ptr(ip)
    if not names:
        return error(f"{ip} has no PTR record", f"ask the edge's provider for PTR {ip} → {host}")
    confirmed = [n for n in names if ip in dns.addresses(n)]
    if not confirmed:
        return error(
            f"PTR of {ip} is {', '.join(names)}, which does not resolve back to {ip}",
            f"set PTR {ip} → {host} and {host} → {ip}",
        )
    if host not in confirmed:
        return warning(
            f"{ip} ↔ {confirmed[0]} is confirmed, but is not MAIL_HOSTNAME {host}",
            f"set the PTR of {ip} to {host} (receivers compare it with the HELO name)",
        )
    return ok(f"{ip} → {host} → {ip} (forward-confirmed)")


def check_spf(ctx: DoctorContext, dns: Dns) -> Finding:
    s = ctx.settings
    domain = s["MAIL_DOMAIN"]
    records = spf_records(dns.txt(domain))
    if not records:
        return error(f"{domain} has no SPF record", f'add: {domain}. TXT "v=spf1 mx -all"')
    if len(records) > 1:
        return error(
            f"{domain} has {len(records)} SPF records (a permanent error)",
            "merge them into one TXT record",
        )
    record = records[0]
    terms = record.lower().split()
    if any(t in ("all", "+all") for t in terms):
        return error(
            f"SPF of {domain} ends in +all: anyone may send as {domain}",
            "end the record with -all or ~all",
        )
    smarthost = s.hostport("STALWART_SMARTHOST")
    if smarthost is not None:
        path, ips = f"smarthost {smarthost.host}", dns.addresses(smarthost.host)
    else:
        edge = _edge_ip(ctx)
        path, ips = f"edge {s['EDGE_PUBLIC_IP']}", [edge] if edge else []
    if not ips:
        return warning(
            f"SPF of {domain}: {record}; the sending path ({path}) has no address to test",
            "set EDGE_PUBLIC_IP or STALWART_SMARTHOST",
        )
    results = [(ip, check_host(ip, domain, dns)) for ip in ips]
    failing = [(ip, r) for ip, r in results if r.result != "pass"]
    if not failing:
        return ok(f"SPF of {domain} passes for the {path} ({results[0][1].why})")
    if smarthost is not None:
        parent = ".".join(smarthost.host.rstrip(".").lower().split(".")[-2:])
        includes = [t.split(":", 1)[1] for t in terms if t.lstrip("+?~-").startswith("include:")]
        includes += [t.split("=", 1)[1] for t in terms if t.startswith("redirect=")]
        if any(fqdn(i) == parent or fqdn(i).endswith("." + parent) for i in includes):
            return warning(
                f"SPF of {domain} includes {parent}'s record but does not pass for the "
                f"{path}'s address {failing[0][0]}",
                "confirm the relay sends from the addresses its SPF lists",
            )
    ip, r = failing[0]
    return error(
        f"SPF of {domain} gives {r.result} for the {path} ({ip}): {r.why}",
        "add the sending path to the record (the relay's include: or ip4:/ip6:)",
    )


def check_dmarc(ctx: DoctorContext, dns: Dns) -> Finding:
    domain = ctx.settings["MAIL_DOMAIN"]
    name = f"_dmarc.{domain}"
    records = [t for t in dns.txt(name) if t.replace(" ", "").lower().startswith("v=dmarc1")]
    if not records:
        return error(
            f"{name} has no DMARC record",
            f'add: {name}. TXT "v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}"',
        )
    if len(records) > 1:
        return error(f"{name} has {len(records)} DMARC records", "keep exactly one")
    tags = dict(
        (k.strip().lower(), v.strip())
        for k, _, v in (part.partition("=") for part in records[0].split(";") if "=" in part)
    )
    policy = tags.get("p", "").lower()
    if policy not in ("none", "quarantine", "reject"):
        return error(
            f"DMARC of {domain} has no valid p= tag: {records[0]}", "set p=quarantine or p=reject"
        )
    if policy == "none":
        return warning(
            f"DMARC of {domain}: p=none (monitoring only)",
            "move to p=quarantine once reports look clean",
        )
    return ok(f"DMARC of {domain}: p={policy}")


def check_dkim(ctx: DoctorContext, dns: Dns) -> Finding:
    s = ctx.settings
    selector, domain = s["DKIM_SELECTOR"], s["MAIL_DOMAIN"]
    if not selector:
        return warning(
            "DKIM_SELECTOR is not set: the DKIM record was not checked",
            "set DKIM_SELECTOR to the selector Stalwart signs with",
        )
    name = f"{selector}._domainkey.{domain}"
    records = dns.txt(name)
    if not records:
        return error(
            f"{name} has no DKIM record",
            "publish the DKIM public key Stalwart shows for this selector",
        )
    tags = dict(
        (k.strip().lower(), v.strip())
        for k, _, v in (part.partition("=") for part in records[0].split(";") if "=" in part)
    )
    key = tags.get("p", "").replace(" ", "")
    if not key:
        return error(
            f"{name}: the key (p=) is empty, i.e. revoked", "publish the current DKIM public key"
        )
    try:
        described = _describe_key(key, tags.get("k", "rsa"))
    except ValueError as exc:
        return error(f"{name}: {exc}", "publish the DKIM public key exactly as Stalwart shows it")
    return ok(f"{name}: {described}")


def _describe_key(b64: str, kind: str) -> str:
    """ "rsa 2048-bit key" / "ed25519 key"; ValueError when the key is not usable."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    try:
        raw = base64.b64decode(b64, validate=True)
    except ValueError:
        raise ValueError("the key (p=) is not valid base64") from None
    if kind.lower() == "ed25519":
        if len(raw) != 32:
            raise ValueError(f"the ed25519 key has {len(raw)} bytes, not 32")
        return "ed25519 key"
    try:
        key = load_der_public_key(raw)
    except ValueError:
        raise ValueError(f"the {kind} key (p=) cannot be parsed") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 1024:
            raise ValueError(f"the rsa key has only {key.key_size} bits (receivers ignore it)")
        return f"rsa {key.key_size}-bit key"
    return f"{kind} key"


def checks(ctx: DoctorContext) -> list[Check]:
    return [
        Check("dns.mx", GROUP, "MX record", _guard(check_mx)),
        Check("dns.address", GROUP, "A/AAAA of MAIL_HOSTNAME", _guard(check_address)),
        Check("dns.fcrdns", GROUP, "reverse DNS of the edge", _guard(check_fcrdns)),
        Check("dns.spf", GROUP, "SPF record", _guard(check_spf)),
        Check("dns.dmarc", GROUP, "DMARC record", _guard(check_dmarc)),
        Check("dns.dkim", GROUP, "DKIM record", _guard(check_dkim)),
    ]
