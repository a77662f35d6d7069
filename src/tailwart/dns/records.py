"""The desired records of MAIL_DOMAIN for the split topology (pure: values in, RRsets out).

The MX and the hostnames mail clients look up point at the edge (MAIL_HOSTNAME); the SPF
covers the real outbound path (``spf``); the DKIM keys are given (Stalwart holds them).
Every value is checked here: a TXT string is printable ASCII without quotes or
backslashes, split into 255-byte character-strings; nothing else reaches the zone.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..settings import Settings
from ..settings.kinds import MAIL_PORT_NUMBERS
from . import DnsInputError

#: a TXT value tailwart builds or takes in: at most this many characters
TXT_LIMIT = 4096
#: one character-string of a TXT record: at most 255 bytes (RFC 1035 3.3)
CHUNK = 255
#: SRV per RFC 6186 and RFC 8314: (service label, port)
SRV_SERVICES: tuple[tuple[str, int], ...] = (
    ("_submissions._tcp", 465),
    ("_submission._tcp", 587),
    ("_imaps._tcp", 993),
    ("_imap._tcp", 143),
)
#: the names mail clients and senders look up, served by the edge (its SERVICE_NAMES)
EDGE_NAMES = ("mta-sts", "autoconfig", "autodiscover", "ua-auto-config")
#: ACME directory host → the CAA issuer domain of that CA
CAA_ISSUERS = {
    "acme-v02.api.letsencrypt.org": "letsencrypt.org",
    "acme-staging-v02.api.letsencrypt.org": "letsencrypt.org",
    "acme.zerossl.com": "sectigo.com",
    "dv.acme-v02.api.pki.goog": "pki.goog",
    "api.buypass.com": "buypass.com",
}
_SELECTOR = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?", re.ASCII)
_DKIM_VALUE = re.compile(r"v=DKIM1(;.*)?", re.ASCII)
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}", re.ASCII)


@dataclass(frozen=True)
class Rrset:
    """One record set: owner (absolute, lower case, no final dot), type, TTL, and the
    values in presentation format (as a zone file writes them)."""

    name: str
    type: str
    ttl: int
    values: tuple[str, ...]
    #: what it is for, one line
    why: str = ""
    #: a TXT set shared with the operator: tailwart's values start with this (``v=spf1``);
    #: the others at that name are the operator's and stay
    shares: str = ""

    def fqdn(self) -> str:
        return self.name + "."


@dataclass(frozen=True)
class DkimKey:
    """A DKIM public key record as Stalwart computes it: selector and TXT text."""

    selector: str
    text: str


@dataclass(frozen=True)
class Desired:
    """The records tailwart wants, and what it left out (one line each)."""

    zone: str
    records: tuple[Rrset, ...]
    notes: tuple[str, ...] = field(default=())


def check_txt(owner: str, text: str) -> str:
    """``text`` as TXT presentation: quoted 255-byte strings. DnsInputError names the
    owner and what is wrong (never a raw control character)."""
    problem = txt_problem(text)
    if problem:
        raise DnsInputError(f"TXT {owner}: the value {problem}; nothing was published")
    return " ".join(f'"{text[i : i + CHUNK]}"' for i in range(0, len(text), CHUNK))


def txt_problem(text: str) -> str | None:
    """What makes ``text`` unfit for a TXT value tailwart publishes, or None."""
    if not text:
        return "is empty"
    if len(text) > TXT_LIMIT:
        return f"is {len(text)} characters long; at most {TXT_LIMIT} are published"
    for index, char in enumerate(text, 1):
        if not " " <= char <= "~":
            return (
                f"holds a control or non-ASCII character (U+{ord(char):04X}) at position "
                f"{index}; TXT values are printable ASCII on one line"
            )
        if char in '"\\':
            return f"holds {char!r} at position {index}; quotes and backslashes are refused"
    return None


def dkim_problem(key: DkimKey) -> str | None:
    """What is wrong with a DKIM key record, or None."""
    if not _SELECTOR.fullmatch(key.selector):
        return f"selector {key.selector[:64]!r} is not a DNS label"
    problem = txt_problem(key.text)
    if problem:
        return f"the value {problem}"
    if not _DKIM_VALUE.fullmatch(key.text):
        return "the value does not start with v=DKIM1"
    tags = dict(part.strip().partition("=")[::2] for part in key.text.split(";") if part.strip())
    public = tags.get("p", "").replace(" ", "")
    if not public or not _BASE64.fullmatch(public):
        return "the value has no base64 public key (p=)"
    return None


def relative(name: str, zone: str) -> str | None:
    """``name`` inside ``zone`` (both without final dot), or None when outside it."""
    name, zone = name.lower(), zone.lower()
    return name if name == zone or name.endswith("." + zone) else None


def mta_sts_policy(settings: Settings) -> str:
    """The MTA-STS policy text (RFC 8461 3.2): exactly the MX, mode and max_age from .env."""
    return (
        "version: STSv1\r\n"
        f"mode: {settings['MTA_STS_MODE']}\r\n"
        f"mx: {settings['MAIL_HOSTNAME'].lower()}\r\n"
        f"max_age: {settings['MTA_STS_MAX_AGE']}\r\n"
    )


def mta_sts_id(policy: str) -> str:
    """The TXT ``id``: derived from the policy's bytes, so it changes when the policy does."""
    return hashlib.sha256(policy.encode()).hexdigest()[:20]


def report_address(settings: Settings) -> str:
    return settings["DNS_REPORT_TO"] or f"postmaster@{settings['MAIL_DOMAIN'].lower()}"


def edge_addresses(settings: Settings) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """EDGE_PUBLIC_ADDRESSES, else EDGE_PUBLIC_IP; DnsInputError when neither is set."""
    listed = settings["EDGE_PUBLIC_ADDRESSES"] or settings["EDGE_PUBLIC_IP"]
    if not listed:
        from ..settings import Problem, SettingsError

        raise SettingsError(
            settings.source,
            [
                Problem(
                    "EDGE_PUBLIC_ADDRESSES",
                    "is required by inv dns (the A/AAAA of MAIL_HOSTNAME); expected the edge "
                    "hosts' public addresses, comma-separated (or EDGE_PUBLIC_IP)",
                )
            ],
        )
    return [ipaddress.ip_address(item) for item in listed.split(",")]


def caa_issuer(settings: Settings) -> str | None:
    """The CAA issuer domain of ACME_DIRECTORY's CA, or None when tailwart does not know it."""
    host = (urlsplit(settings["ACME_DIRECTORY"]).hostname or "").lower()
    return CAA_ISSUERS.get(host)


def zone_of(settings: Settings) -> str:
    return (settings["DNS_ZONE"] or settings["MAIL_DOMAIN"]).lower()


def desired_records(settings: Settings, spf: str, dkim: Sequence[DkimKey] | None) -> Desired:
    """Every record of MAIL_DOMAIN tailwart wants in the zone (``dkim`` None: DKIM is left
    out, and so left as the zone holds it)."""
    zone = zone_of(settings)
    domain = settings["MAIL_DOMAIN"].lower()
    host = settings["MAIL_HOSTNAME"].lower()
    ttl = settings.integer("DNS_TTL")
    target = host + "."
    notes: list[str] = []
    out: list[Rrset] = []

    def add(name: str, rtype: str, values: Sequence[str], why: str, shares: str = "") -> None:
        if relative(name, zone) is None:
            notes.append(f"{rtype} {name}. is outside the zone {zone}.: publish it there")
            return
        out.append(Rrset(name, rtype, ttl, tuple(values), why, shares))

    add(domain, "MX", [f"10 {target}"], "mail for the domain goes to the edge")
    add(domain, "TXT", [check_txt(domain, spf)], "SPF: the real outbound path", "v=spf1")
    hosts = [host, *(n.lower() for n in settings["MAIL_HOSTNAME_ALIASES"].split(",") if n)]
    addresses = edge_addresses(settings)
    issuer = caa_issuer(settings)
    for name in dict.fromkeys(hosts):
        v4 = [str(a) for a in addresses if a.version == 4]
        v6 = [str(a) for a in addresses if a.version == 6]
        if v4:
            add(name, "A", v4, "the edge's public IPv4 addresses")
        if v6:
            add(name, "AAAA", v6, "the edge's public IPv6 addresses")
        if issuer:
            add(name, "CAA", [f'0 issue "{issuer}"'], "only the ACME CA in use issues")
    if not issuer:
        notes.append(
            "CAA left out: tailwart does not know the CA of ACME_DIRECTORY "
            f"({urlsplit(settings['ACME_DIRECTORY']).hostname})"
        )
    if dkim is None:
        notes.append("DKIM left out: the zone's DKIM records stay as they are (--no-stalwart)")
    else:
        for key in sorted(dkim, key=lambda k: k.selector.lower()):
            problem = dkim_problem(key)
            if problem:
                raise DnsInputError(f"DKIM key from Stalwart: {problem}; nothing was published")
            owner = f"{key.selector.lower()}._domainkey.{domain}"
            add(owner, "TXT", [check_txt(owner, key.text)], "DKIM public key Stalwart signs with")
        if not dkim:
            notes.append("DKIM: Stalwart holds no DKIM key for the domain yet")
    rua = f"mailto:{report_address(settings)}"
    dmarc = f"v=DMARC1; p={settings['DMARC_POLICY']}; rua={rua}"
    add(f"_dmarc.{domain}", "TXT", [check_txt("_dmarc", dmarc)], "DMARC policy and reports")
    tlsrpt = f"v=TLSRPTv1; rua={rua}"
    add(f"_smtp._tls.{domain}", "TXT", [check_txt("_smtp._tls", tlsrpt)], "TLS-RPT reports")
    sts = f"v=STSv1; id={mta_sts_id(mta_sts_policy(settings))}"
    add(f"_mta-sts.{domain}", "TXT", [check_txt("_mta-sts", sts)], "MTA-STS policy id")
    for label in EDGE_NAMES:
        name = f"{label}.{domain}"
        if name in hosts:
            notes.append(f"{name}. is MAIL_HOSTNAME or an alias: no CNAME")
            continue
        add(name, "CNAME", [target], "served by the edge")
    public = {int(p) for p in settings["EDGE_PUBLIC_PORTS"].split(",")}
    for service, port in SRV_SERVICES:
        assert port in MAIL_PORT_NUMBERS
        if port in public:
            add(f"{service}.{domain}", "SRV", [f"0 1 {port} {target}"], "offered by the edge")
        else:
            add(f"{service}.{domain}", "SRV", ["0 0 0 ."], "not offered (RFC 6186 target '.')")
    return Desired(zone, tuple(out), tuple(notes))
