"""The DKIM keys Stalwart signs with, out of its computed zone (``x:Domain/get`` →
``dnsZoneFile``, BIND format), parsed by dnspython's zone parser.

Only the TXT records at ``<selector>._domainkey.MAIL_DOMAIN`` are kept: the rest of that
zone is written for a single public host and is wrong for the split topology.
"""

from __future__ import annotations

from typing import Any

from ..settings import Settings
from . import DnsError, DnsInputError
from .records import DkimKey

#: the zone text Stalwart sends is read up to this size
ZONE_TEXT_LIMIT = 256 * 1024


def dkim_from_zone_text(text: str, domain: str) -> list[DkimKey]:
    """The DKIM TXT records of ``domain`` in ``text`` (BIND zone lines, absolute names).
    DnsInputError when the text does not parse (a string over 255 bytes, a stray quote…)."""
    import dns.exception
    import dns.name
    import dns.rdatatype
    import dns.zone

    if len(text) > ZONE_TEXT_LIMIT:
        raise DnsInputError(f"Stalwart's zone text is over {ZONE_TEXT_LIMIT} bytes; refused")
    origin = dns.name.from_text(domain)
    try:
        # Stalwart's lines carry no TTL: a default makes them a zone (the TTL is tailwart's)
        zone = dns.zone.from_text(
            "$TTL 3600\n" + text, origin=origin, relativize=False, check_origin=False
        )
    except (dns.exception.DNSException, ValueError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise DnsInputError(
            f"Stalwart's zone text for {domain} does not parse as a zone ({detail}); "
            "nothing was published"
        ) from None
    under = dns.name.from_text("_domainkey", origin)
    keys: list[DkimKey] = []
    for name, _ttl, rdata in zone.iterate_rdatas(dns.rdatatype.TXT):
        if name.parent() != under:
            continue
        strings: list[bytes] = list(rdata.strings)  # type: ignore[attr-defined]
        raw = b"".join(strings)
        try:
            value = raw.decode("ascii")
        except UnicodeDecodeError:
            raise DnsInputError(
                f"DKIM {name}: the value is not ASCII; nothing was published"
            ) from None
        keys.append(DkimKey(name.labels[0].decode("ascii", "replace"), value))
    return keys


def zone_text_of(result: dict[str, Any], domain: str) -> str:
    """The ``dnsZoneFile`` of ``domain`` in an ``x:Domain/get`` result."""
    found = result.get("list")
    if not isinstance(found, list):
        raise DnsError("x:Domain/get: the answer has no list of domains")
    for item in found:
        if isinstance(item, dict) and str(item.get("name", "")).lower() == domain.lower():
            text = item.get("dnsZoneFile")
            if not isinstance(text, str):
                raise DnsError(f"x:Domain/get: {domain} has no dnsZoneFile text")
            return text
    raise DnsError(
        f"Stalwart holds no domain {domain}: run inv provision first (it creates the "
        "domain and its DKIM keys)"
    )


def read_dkim(settings: Settings) -> list[DkimKey]:
    """The DKIM keys of MAIL_DOMAIN, read from the running Stalwart with tailwart's
    management login (as inv provision reaches it). DnsError when it cannot be reached."""
    from ..stalwart.jmap import StalwartError
    from ..stalwart.provision import client_for

    domain = settings["MAIL_DOMAIN"]
    try:
        client = client_for(settings)
        client.check_schema()
        result = client.call(
            f"{client.model.domain}/get",
            {"ids": None, "properties": ["name", "dnsZoneFile"]},
        )
    except StalwartError as exc:
        raise DnsError(
            f"the DKIM keys could not be read from Stalwart ({exc}); start it, or run "
            "inv dns --no-stalwart to publish the rest and leave the zone's DKIM records "
            "as they are"
        ) from None
    return dkim_from_zone_text(zone_text_of(result, domain), domain)
