"""Doctor group dns against a real authoritative server (knotd) on loopback."""

from __future__ import annotations

import pytest

from tailwart.doctor import runner
from tailwart.doctor.registry import DoctorContext, DoctorOptions, registry
from tailwart.findings import Finding, Status
from tests.support.backend_env import settings
from tests.support.backend_servers import KnotServer

pytestmark = pytest.mark.integration


def dns_doctor(knot: KnotServer, **values: str) -> dict[str, Finding]:
    ctx = DoctorContext(settings(DNS_RESOLVER=knot.resolver, **values), DoctorOptions(timeout=3))
    return {f.id: f for f in runner.run(ctx, registry(ctx, ("dns",)))}


def test_a_complete_zone_passes_every_check(knot: KnotServer) -> None:
    found = dns_doctor(knot, DKIM_SELECTOR="s1", STALWART_SMARTHOST="smtp.relay.test:587")
    assert {k: f.status for k, f in found.items()} == dict.fromkeys(
        ["dns.mx", "dns.address", "dns.fcrdns", "dns.spf", "dns.dmarc", "dns.dkim"], Status.OK
    )
    assert found["dns.mx"].message == "MX of good.test: 10 mail.good.test"
    assert found["dns.fcrdns"].message == (
        "198.18.5.25 → mail.good.test → 198.18.5.25 (forward-confirmed)"
    )
    assert "passes for the smarthost smtp.relay.test (include:_spf.relay.test" in (
        found["dns.spf"].message
    )
    assert found["dns.dkim"].message == "s1._domainkey.good.test: rsa 2048-bit key"


def test_spf_without_smarthost_must_cover_the_edge(knot: KnotServer) -> None:
    found = dns_doctor(knot)  # a:mail.good.test covers the edge address
    assert found["dns.spf"].status is Status.OK
    assert "passes for the edge 198.18.5.25 (a:mail.good.test at good.test)" in (
        found["dns.spf"].message
    )
    # without DKIM_SELECTOR the record is not checked, and the doctor says so
    assert found["dns.dkim"].status is Status.WARNING


def test_a_wrong_zone_fails_every_check(knot: KnotServer) -> None:
    found = dns_doctor(
        knot,
        MAIL_DOMAIN="bad.test",
        MAIL_HOSTNAME="mail.bad.test",
        EDGE_PUBLIC_IP="198.18.5.26",
        DKIM_SELECTOR="s1",
        STALWART_SMARTHOST="smtp.relay.test:587",
    )
    assert {f.status for f in found.values()} == {Status.ERROR}
    assert found["dns.mx"].message == "MX of bad.test is 10 mx.elsewhere.test, not mail.bad.test"
    assert found["dns.address"].message == (
        "A of mail.bad.test is 198.18.5.99, not the edge's 198.18.5.26"
    )
    assert found["dns.fcrdns"].message == (
        "PTR of 198.18.5.26 is mail.bad.test, which does not resolve back to 198.18.5.26"
    )
    assert found["dns.spf"].message.startswith(
        "SPF of bad.test gives fail for the smarthost smtp.relay.test (198.18.6.10)"
    )
    assert found["dns.dmarc"].message == "_dmarc.bad.test has no DMARC record"
    assert found["dns.dkim"].message == "s1._domainkey.bad.test has no DKIM record"
    assert found["dns.mx"].advice == "point the MX at MAIL_HOSTNAME: bad.test. MX 10 mail.bad.test."


def test_odd_records_warn_or_fail(knot: KnotServer) -> None:
    found = dns_doctor(
        knot,
        MAIL_DOMAIN="odd.test",
        MAIL_HOSTNAME="mail.odd.test",
        EDGE_PUBLIC_IP="198.18.5.77",
        DKIM_SELECTOR="s1",
    )
    status = {k: f.status for k, f in found.items()}
    assert status == {
        "dns.mx": Status.WARNING,
        "dns.address": Status.WARNING,
        "dns.fcrdns": Status.OK,
        "dns.spf": Status.ERROR,
        "dns.dmarc": Status.WARNING,
        "dns.dkim": Status.ERROR,
    }
    assert "2 SPF records" in found["dns.spf"].message
    assert "p=none" in found["dns.dmarc"].message
    assert "revoked" in found["dns.dkim"].message


def test_missing_ptr_and_missing_zone(knot: KnotServer) -> None:
    found = dns_doctor(knot, EDGE_PUBLIC_IP="198.18.5.27")
    assert found["dns.fcrdns"].status is Status.ERROR
    assert found["dns.fcrdns"].message == "198.18.5.27 has no PTR record"
    assert found["dns.address"].status is Status.ERROR

    # a domain the server does not serve: REFUSED → every check says the resolver did not answer
    found = dns_doctor(knot, MAIL_DOMAIN="nowhere.test", MAIL_HOSTNAME="mail.nowhere.test")
    assert found["dns.mx"].status is Status.ERROR
    assert found["dns.mx"].message.startswith("no answer: MX nowhere.test")
    assert f"from 127.0.0.1:{knot.port}" in found["dns.mx"].message
