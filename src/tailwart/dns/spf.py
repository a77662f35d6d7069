"""The domain's SPF from the real outbound path, and its DNS lookup count (RFC 7208).

In tailwart the MX is the edge, and mail leaves from the smarthost or from the mailbox
host: ``mx`` would name the wrong addresses, so it is never used. With a smarthost the
SPF includes the relay's SPF domain (SPF_INCLUDE); without one it lists the mailbox
host's egress addresses (OUTBOUND_ADDRESSES). An SPF that covers neither is refused.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from ..settings import Problem, Settings, SettingsError
from . import DnsError, DnsInputError

#: RFC 7208 4.6.4: at most 10 terms that cause DNS lookups
LOOKUP_LIMIT = 10
#: terms that cost a lookup (RFC 7208 4.6.4); ``redirect=`` counts as well
_LOOKUP_TERMS = ("include", "a", "mx", "ptr", "exists")

#: what the counter asks: the TXT strings of a name (each record joined), [] when none
TxtLookup = Callable[[str], list[str]]


def spf_text(settings: Settings) -> str:
    """``v=spf1 … -all`` for the outbound path .env describes; SettingsError (exit 2)
    naming the key that is missing."""
    includes: list[str] = []
    if settings["STALWART_SMARTHOST"]:
        if not settings["SPF_INCLUDE"]:
            raise SettingsError(
                settings.source,
                [
                    Problem(
                        "SPF_INCLUDE",
                        "is required by inv dns while STALWART_SMARTHOST is set: mail leaves "
                        "through the relay, so the SPF must include the relay's SPF domain "
                        "(its documentation names it); expected a DNS name",
                    )
                ],
            )
        includes.append(f"include:{settings['SPF_INCLUDE'].lower()}")
    elif not settings["OUTBOUND_ADDRESSES"]:
        raise SettingsError(
            settings.source,
            [
                Problem(
                    "OUTBOUND_ADDRESSES",
                    "is required by inv dns without STALWART_SMARTHOST: mail leaves from the "
                    "mailbox host, so the SPF must list its public addresses (the MX is the "
                    "edge, which sends nothing); expected comma-separated IP addresses",
                )
            ],
        )
    terms = ["v=spf1"]
    for item in settings["OUTBOUND_ADDRESSES"].split(","):
        if item:
            address = ipaddress.ip_address(item)
            terms.append(f"ip{address.version}:{address}")
    return " ".join([*terms, *includes, "-all"])


def spf_records(texts: list[str]) -> list[str]:
    return [t for t in texts if t.lower() == "v=spf1" or t.lower().startswith("v=spf1 ")]


def count_lookups(spf: str, txt: TxtLookup, limit: int = LOOKUP_LIMIT) -> int:
    """The DNS lookups evaluating ``spf`` costs, following include: and redirect= through
    ``txt``. DnsInputError (exit 2) past ``limit``, for an include without exactly one
    SPF record, or a loop; DnsError when a lookup fails."""
    count = 0
    seen: set[str] = set()

    def walk(record: str, where: str) -> None:
        nonlocal count
        for term in record.split()[1:]:
            body = term.lstrip("+-~?").lower()
            mech, _, arg = body.partition(":")
            if body.startswith("redirect="):
                mech, arg = "redirect", body.partition("=")[2]
            elif "/" in mech:
                mech = mech.split("/", 1)[0]
            if mech not in (*_LOOKUP_TERMS, "redirect"):
                continue
            count += 1
            if count > limit:
                raise DnsInputError(
                    f"SPF: evaluating it takes more than {limit} DNS lookups (RFC 7208 4.6.4; "
                    f"the {count}th is {term!r} in the SPF of {where}); receivers would "
                    "answer permerror. Use a flatter SPF_INCLUDE (the relay documents one); "
                    "nothing was published"
                )
            if mech in ("include", "redirect"):
                if not arg or "%" in arg:
                    continue  # macros are not expanded here
                name = arg.rstrip(".")
                if name in seen:
                    raise DnsInputError(f"SPF: {name} is included twice (a loop?)")
                seen.add(name)
                try:
                    found = spf_records(txt(name))
                except DnsError:
                    raise
                if len(found) != 1:
                    raise DnsInputError(
                        f"SPF: {mech} {name} (from {where}) has {len(found)} SPF records; "
                        "exactly one is needed or receivers answer permerror. Check "
                        "SPF_INCLUDE; nothing was published"
                    )
                walk(found[0], name)

    walk(spf, "the domain")
    return count


def txt_lookup(settings: Settings, timeout: float = 5.0) -> TxtLookup:
    """TXT lookups through DNS_RESOLVER (host:port) when set, else the system's resolver."""
    import socket

    import dns.exception
    import dns.resolver

    target = settings.hostport("DNS_RESOLVER")
    resolver = dns.resolver.Resolver(configure=target is None)
    if target is not None:
        infos = socket.getaddrinfo(target.host, target.port, proto=socket.IPPROTO_UDP)
        resolver.nameservers = [str(infos[0][4][0])]
        resolver.port = target.port
    resolver.lifetime = resolver.timeout = timeout
    where = f"{target.host}:{target.port}" if target else "the system resolver"

    def lookup(name: str) -> list[str]:
        try:
            answer = resolver.resolve(name + ".", "TXT", search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as exc:
            raise DnsError(f"SPF: TXT {name}: {type(exc).__name__} from {where}") from None
        return [b"".join(r.strings).decode("ascii", "replace") for r in answer]

    return lookup
