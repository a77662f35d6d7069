"""The SPF evaluator behind dns.spf, with lookups served from a dict."""

from __future__ import annotations

import ipaddress

import pytest

from tailwart.doctor.spf import IP, check_host


class Zone:
    def __init__(
        self,
        txt: dict[str, list[str]],
        addrs: dict[str, list[str]] | None = None,
        mx: dict[str, list[str]] | None = None,
    ) -> None:
        self._txt, self._addrs, self._mx = txt, addrs or {}, mx or {}
        self.asked: list[str] = []

    def txt(self, name: str) -> list[str]:
        self.asked.append(name)
        return self._txt.get(name, [])

    def addresses(self, name: str) -> list[IP]:
        return [ipaddress.ip_address(a) for a in self._addrs.get(name, [])]

    def mx(self, name: str) -> list[str]:
        return self._mx.get(name, [])


def result(zone: Zone, ip: str, domain: str = "example.test") -> str:
    return check_host(ipaddress.ip_address(ip), domain, zone).result


@pytest.mark.parametrize(
    ("record", "ip", "expected"),
    [
        ("v=spf1 ip4:192.0.2.0/24 -all", "192.0.2.9", "pass"),
        ("v=spf1 ip4:192.0.2.0/24 -all", "198.51.100.1", "fail"),
        ("v=spf1 ip4:192.0.2.0/24 ~all", "198.51.100.1", "softfail"),
        ("v=spf1 ip4:192.0.2.0/24 ?all", "198.51.100.1", "neutral"),
        ("v=spf1 ip4:192.0.2.0/24", "198.51.100.1", "neutral"),
        ("v=spf1 ip6:2001:db8::/32 -all", "2001:db8::25", "pass"),
        ("v=spf1 -ip4:192.0.2.9 +all", "192.0.2.9", "fail"),
        ("v=spf1 a -all", "192.0.2.25", "pass"),
        ("v=spf1 a:mail.example.test/24 -all", "192.0.2.200", "pass"),
        ("v=spf1 mx -all", "192.0.2.25", "pass"),
        ("v=spf1 mx//64 -all", "2001:db8::ffff", "pass"),
        ("v=spf1 exists:%{i}.bl.example -all", "192.0.2.25", "fail"),
        ("v=spf1 include:_spf.relay.test -all", "198.51.100.7", "pass"),
        ("v=spf1 include:_spf.relay.test -all", "203.0.113.1", "fail"),
        ("v=spf1 redirect=_spf.relay.test", "198.51.100.7", "pass"),
        ("v=spf1 include:nothing.test -all", "192.0.2.25", "permerror"),
        ("v=spf1 foo:bar -all", "192.0.2.25", "permerror"),
    ],
)
def test_mechanisms(record: str, ip: str, expected: str) -> None:
    zone = Zone(
        {
            "example.test": [record, "google-site-verification=x"],
            "_spf.relay.test": ["v=spf1 ip4:198.51.100.0/24 -all"],
        },
        {"example.test": ["192.0.2.25", "2001:db8::1"], "mail.example.test": ["192.0.2.25"]},
        {"example.test": ["mail.example.test", "mx6.example.test"]},
    )
    zone._addrs["mx6.example.test"] = ["2001:db8::1"]
    assert result(zone, ip) == expected


def test_no_record_two_records_and_the_lookup_limit() -> None:
    assert result(Zone({}), "192.0.2.1") == "none"
    two = Zone({"example.test": ["v=spf1 -all", "v=spf1 +all"]})
    assert check_host(ipaddress.ip_address("192.0.2.1"), "example.test", two).why == (
        "2 SPF records at example.test"
    )
    chain = {f"l{i}.test": [f"v=spf1 include:l{i + 1}.test -all"] for i in range(12)}
    chain["example.test"] = ["v=spf1 include:l0.test -all"]
    loop = Zone(chain)
    found = check_host(ipaddress.ip_address("192.0.2.1"), "example.test", loop)
    assert found.result == "permerror"
    assert "more than 10" in found.why


def test_the_deciding_term_is_named() -> None:
    zone = Zone({"example.test": ["v=spf1 ip4:192.0.2.0/24 -all"]})
    found = check_host(ipaddress.ip_address("192.0.2.7"), "example.test", zone)
    assert found.why == "ip4:192.0.2.0/24 at example.test"
