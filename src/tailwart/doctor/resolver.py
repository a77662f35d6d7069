"""The doctor's DNS resolver: DNS_RESOLVER when set, else the system's (dnspython)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from ..settings import Settings
from .spf import IP


class DnsFailure(Exception):
    """The resolver did not answer (timeout, SERVFAIL, refused)."""


def fqdn(name: str) -> str:
    """``name`` as compared: lower case, no trailing dot."""
    return name.rstrip(".").lower()


class Dns:
    """dnspython adapter: empty lists for NXDOMAIN/no data, DnsFailure otherwise."""

    def __init__(self, settings: Settings, timeout: float) -> None:
        import dns.resolver

        target = settings.hostport("DNS_RESOLVER")
        self.resolver = dns.resolver.Resolver(configure=target is None)
        if target is not None:
            infos = socket.getaddrinfo(target.host, target.port, proto=socket.IPPROTO_UDP)
            self.resolver.nameservers = [str(infos[0][4][0])]
            self.resolver.port = target.port
        self.resolver.lifetime = timeout
        self.resolver.timeout = timeout
        self.where = f"{target.host}:{target.port}" if target else "the system resolver"

    def query(self, name: str, rdtype: str) -> list[Any]:
        import dns.exception
        import dns.resolver

        try:
            answer = self.resolver.resolve(name.rstrip(".") + ".", rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as exc:
            raise DnsFailure(f"{rdtype} {name}: {type(exc).__name__} from {self.where}") from None
        return list(answer)

    def txt(self, name: str) -> list[str]:
        return [b"".join(r.strings).decode("utf-8", "replace") for r in self.query(name, "TXT")]

    def addresses(self, name: str) -> list[IP]:
        return [ipaddress.ip_address(r.address) for t in ("A", "AAAA") for r in self.query(name, t)]

    def mx_records(self, name: str) -> list[tuple[int, str]]:
        return sorted(
            (int(r.preference), fqdn(r.exchange.to_text())) for r in self.query(name, "MX")
        )

    def mx(self, name: str) -> list[str]:
        return [host for _, host in self.mx_records(name)]

    def ptr(self, ip: IP) -> list[str]:
        import dns.reversename

        return [
            fqdn(r.target.to_text())
            for r in self.query(dns.reversename.from_address(str(ip)).to_text(), "PTR")
        ]
