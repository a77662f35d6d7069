"""A small SPF evaluator (RFC 7208 ``check_host``) for the doctor's coverage check.

Supports all, include, a, mx, ip4, ip6, exists and redirect=, with the limit of
10 DNS-querying terms. Macros and ``ptr`` never match (ptr is deprecated).
Lookups are injected, so the evaluator is pure and unit-tested without DNS.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Protocol

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
LOOKUP_LIMIT = 10
QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}


class Lookups(Protocol):
    def txt(self, name: str) -> list[str]: ...
    def addresses(self, name: str) -> list[IP]: ...
    def mx(self, name: str) -> list[str]: ...


@dataclass(frozen=True)
class SpfResult:
    result: str  # pass fail softfail neutral none permerror
    why: str  # the deciding term, or the reason


class _PermError(Exception):
    pass


def spf_records(txts: list[str]) -> list[str]:
    return [t for t in txts if t.lower() == "v=spf1" or t.lower().startswith("v=spf1 ")]


def _split_cidr(spec: str) -> tuple[str, int | None, int | None]:
    """``domain/24//64`` → (domain, 24, 64)."""
    v6: int | None = None
    if "//" in spec:
        spec, v6s = spec.split("//", 1)
        v6 = int(v6s)
    v4: int | None = None
    if "/" in spec:
        spec, v4s = spec.split("/", 1)
        v4 = int(v4s)
    return spec, v4, v6


def _in(ip: IP, addr: IP, v4: int | None, v6: int | None) -> bool:
    if ip.version != addr.version:
        return False
    length = (v4 if v4 is not None else 32) if ip.version == 4 else (v6 if v6 is not None else 128)
    return ip in ipaddress.ip_network(f"{addr}/{length}", strict=False)


class _Evaluator:
    def __init__(self, lookups: Lookups) -> None:
        self.lookups = lookups
        self.count = 0

    def _count(self) -> None:
        self.count += 1
        if self.count > LOOKUP_LIMIT:
            raise _PermError(f"more than {LOOKUP_LIMIT} DNS-querying terms")

    def check(self, ip: IP, domain: str) -> SpfResult:
        records = spf_records(self.lookups.txt(domain))
        if not records:
            return SpfResult("none", f"no SPF record at {domain}")
        if len(records) > 1:
            raise _PermError(f"{len(records)} SPF records at {domain}")
        redirect = ""
        for term in records[0].split()[1:]:
            name, eq, value = term.partition("=")
            if eq and ":" not in name and "/" not in name:
                if name.lower() == "redirect":
                    redirect = value
                continue  # exp= and unknown modifiers
            qualifier = QUALIFIERS.get(term[0])
            mech = term[1:] if qualifier else term
            if self._matches(ip, domain, mech):
                return SpfResult(qualifier or "pass", f"{term} at {domain}")
        if redirect:
            self._count()
            sub = self.check(ip, redirect)
            if sub.result == "none":
                raise _PermError(f"redirect={redirect} has no SPF record")
            return sub
        return SpfResult("neutral", f"no term of {domain}'s SPF record matched")

    def _matches(self, ip: IP, domain: str, mech: str) -> bool:
        kind, _, arg = mech.partition(":")
        kind_l = kind.lower()
        if "%{" in mech or kind_l == "ptr" or kind_l.startswith("ptr/"):
            if kind_l.startswith("ptr"):
                self._count()
            return False
        if kind_l == "all":
            return True
        if kind_l in ("ip4", "ip6"):
            try:
                return ip in ipaddress.ip_network(arg, strict=False)
            except ValueError:
                raise _PermError(f"bad {mech}") from None
        if kind_l == "include":
            self._count()
            sub = self.check(ip, arg)
            if sub.result == "none":
                raise _PermError(f"include:{arg} has no SPF record")
            return sub.result == "pass"
        if kind_l == "exists":
            self._count()
            return bool(self.lookups.addresses(arg))
        base, v4, v6 = _split_cidr(mech)
        kind_b, _, target = base.partition(":")
        if kind_b.lower() == "a":
            self._count()
            return any(_in(ip, a, v4, v6) for a in self.lookups.addresses(target or domain))
        if kind_b.lower() == "mx":
            self._count()
            hosts = self.lookups.mx(target or domain)
            return any(_in(ip, a, v4, v6) for h in hosts[:10] for a in self.lookups.addresses(h))
        raise _PermError(f"unknown mechanism {mech!r}")


def check_host(ip: IP, domain: str, lookups: Lookups) -> SpfResult:
    """The SPF result for mail from ``domain`` sent by ``ip``."""
    try:
        return _Evaluator(lookups).check(ip, domain)
    except _PermError as exc:
        return SpfResult("permerror", str(exc))
