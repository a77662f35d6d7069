"""inv doctor's ``zone`` group against real authoritative servers: two knotd on loopback
addresses of their own at :53 (ns1, the primary inv dns writes to, and ns2, a copy), found
through the zone's own NS records. The zone is changed behind tailwart's back with
dnspython's RFC 2136 client, and each expected verdict is written out here by hand.

The DKIM keys are the real Stalwart's, from its recorded ``x:Domain/get`` answer.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.tsigkeyring
import dns.update
import pytest

from tailwart.dns.dkim import dkim_from_zone_text, zone_text_of
from tailwart.dns.records import DkimKey
from tailwart.dns.run import DnsOptions, run_dns
from tailwart.doctor.registry import DoctorContext, DoctorOptions, registry
from tailwart.doctor.runner import run
from tailwart.findings import Finding
from tailwart.settings import from_mapping
from tailwart.settings.example import example_values
from tests.support.backend_servers import KnotServer
from tests.support.testkit import need_root, need_tool

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
RECORDED = ROOT / "tests/fixtures/stalwart-0.16.18/domain-zone.json"
ZONE = "good.test"
KEY = "tailwart-dns"
#: the records checks (the two fetched through the edge are tested with Caddy)
RECORD_CHECKS = (
    "zone.mx",
    "zone.addresses",
    "zone.spf",
    "zone.dkim",
    "zone.dmarc",
    "zone.tls-rpt",
    "zone.mta-sts-id",
    "zone.names",
    "zone.srv",
    "zone.caa",
)


def _addresses() -> tuple[str, str]:
    """ns1 and ns2: loopback addresses of this worker's own (port 53 is shared by all)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    base = 10 + 2 * (int(worker) if worker.isdigit() else 0)
    return f"127.0.53.{base}", f"127.0.53.{base + 1}"


def zone_text(ns1: str, ns2: str) -> str:
    return f"""$ORIGIN {ZONE}.
$TTL 300
@ IN SOA ns1 hostmaster 1 3600 600 86400 300
@ IN NS ns1
@ IN NS ns2
@ IN TXT "google-site-verification=operator-own"
ns1 IN A {ns1}
ns2 IN A {ns2}
www IN A 192.0.2.80
"""


class World:
    def __init__(self, ns1: KnotServer, ns2: KnotServer, values: dict[str, str]) -> None:
        self.ns1, self.ns2, self.values = ns1, ns2, values

    def doctor(self, only: tuple[str, ...] = RECORD_CHECKS) -> dict[str, Finding]:
        settings = from_mapping(self.values)
        ctx = DoctorContext(settings, DoctorOptions(timeout=5))
        checks = [c for c in registry(ctx, ("zone",)) if c.id in only]
        return {f.id: f for f in run(ctx, checks)}

    def change(self, server: KnotServer, how: str, name: str, rtype: str, *values: str) -> None:
        keyring = dns.tsigkeyring.from_text({KEY: ("hmac-sha256", self.values["DNS_TSIG_SECRET"])})
        update = dns.update.UpdateMessage(ZONE, keyring=keyring, keyalgorithm="hmac-sha256")
        getattr(update, how)(name, *((300, rtype, *values) if values else (rtype,)))
        reply = dns.query.tcp(update, server.host, port=53, timeout=5)
        assert reply.rcode() == dns.rcode.NOERROR


def recorded_keys() -> list[DkimKey]:
    result = json.loads(RECORDED.read_text())
    return list(dkim_from_zone_text(zone_text_of(result, ZONE), ZONE))


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    need_root()  # loopback addresses at :53
    binary = need_tool("knotd")
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    first, second = _addresses()
    text = zone_text(first, second)
    key = (KEY, "hmac-sha256", secret)
    ns1 = KnotServer.start(binary, {ZONE: text}, first, key, port=53, whole_zone=True)
    try:
        ns2 = KnotServer.start(binary, {ZONE: text}, second, key, port=53, whole_zone=True)
    except BaseException:
        ns1.close()
        raise
    values = {
        **example_values(),
        "MAIL_DOMAIN": ZONE,
        "MAIL_HOSTNAME": f"mail.{ZONE}",
        "MAILBOX_FQDN": "stalwart.tail1234.ts.net",
        "DNS_SERVER": first,
        "DNS_PORT": "53",
        "DNS_TSIG_KEY": KEY,
        "DNS_TSIG_SECRET": secret,
        "DNS_RESOLVER": f"{first}:53",
        "OUTBOUND_ADDRESSES": "198.51.100.7",
        "EDGE_PUBLIC_ADDRESSES": "203.0.113.25,2001:db8::25",
        "EDGE_PUBLIC_PORTS": "25,465,993",
        "STALWART_MANAGEMENT_PASSWORD": "zone-test-" + secrets.token_hex(12),
    }
    world = World(ns1, ns2, values)
    code = run_dns(
        from_mapping(values), DnsOptions(), lambda _: None, read_dkim=lambda _: recorded_keys()
    )
    assert code == 0
    try:
        yield world
    finally:
        ns1.close()
        ns2.close()


@pytest.fixture(autouse=True)
def stalwart_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stalwart's answer is the recorded one (the live run reads the real server)."""
    monkeypatch.setattr("tailwart.dns.dkim.read_dkim", lambda _settings: recorded_keys())


def test_the_primary_is_right_and_the_stale_secondary_is_named(world: World) -> None:
    found = world.doctor()
    # ns2 still holds the zone as the operator wrote it: no MX, SPF, DKIM or DMARC, each
    # an error naming ns2; ns1, where inv dns wrote, is right
    mx = found["zone.mx"]
    assert mx.status == "error", mx
    assert f"MX mail.{ZONE}." not in mx.message
    assert f"MX {ZONE}. on ns2.{ZONE} ({world.ns2.host}): missing" in mx.message
    assert f"ns1.{ZONE}" not in mx.message  # the primary holds it
    assert f"{ZONE}. 3600 IN MX 10 mail.{ZONE}." in mx.advice
    # optional records missing on ns2 only warn
    srv = found["zone.srv"]
    assert srv.status == "warning", srv
    assert f"SRV _imaps._tcp.{ZONE}. on ns2.{ZONE}" in srv.message


def test_a_copy_in_step_makes_every_record_check_pass(world: World) -> None:
    # bring ns2 in step the way a secondary would: the same records, written directly
    for name, rtype, values in (
        (ZONE, "MX", [f"10 mail.{ZONE}."]),
        (f"mail.{ZONE}", "A", ["203.0.113.25"]),
        (f"mail.{ZONE}", "AAAA", ["2001:db8::25"]),
        (f"mail.{ZONE}", "CAA", ['0 issue "letsencrypt.org"']),
        (ZONE, "TXT", ['"v=spf1 ip4:198.51.100.7 -all"']),
        (f"_dmarc.{ZONE}", "TXT", [f'"v=DMARC1; p=none; rua=mailto:postmaster@{ZONE}"']),
        (f"_smtp._tls.{ZONE}", "TXT", [f'"v=TLSRPTv1; rua=mailto:postmaster@{ZONE}"']),
        (f"_submissions._tcp.{ZONE}", "SRV", [f"0 1 465 mail.{ZONE}."]),
        (f"_imaps._tcp.{ZONE}", "SRV", [f"0 1 993 mail.{ZONE}."]),
        (f"_submission._tcp.{ZONE}", "SRV", ["0 0 0 ."]),
        (f"_imap._tcp.{ZONE}", "SRV", ["0 0 0 ."]),
        *(
            (f"{label}.{ZONE}", "CNAME", [f"mail.{ZONE}."])
            for label in ("mta-sts", "autoconfig", "autodiscover", "ua-auto-config")
        ),
    ):
        for value in values:
            world.change(world.ns2, "add", name + ".", rtype, value)
    # the DKIM keys and the MTA-STS id: copied from what ns1 serves, as a transfer would
    for name in (f"_mta-sts.{ZONE}", *_dkim_names()):
        answer = dns.query.udp(
            dns.message.make_query(name + ".", "TXT"), world.ns1.host, port=53, timeout=5
        )
        (rrset,) = answer.answer
        for rdata in rrset:
            world.change(world.ns2, "add", name + ".", "TXT", rdata.to_text())
    found = world.doctor()
    assert {k: f.status for k, f in found.items()} == dict.fromkeys(RECORD_CHECKS, "ok"), found
    assert found["zone.mx"].message == (
        f"MX {ZONE}.: as inv dns wants, on 2 authoritative server(s)"
    )


def _dkim_names() -> list[str]:
    return [f"{key.selector}._domainkey.{ZONE}" for key in recorded_keys()]


def test_drift_behind_tailwarts_back_is_named_with_its_fix(world: World) -> None:
    selector = _dkim_names()[0]
    world.change(world.ns1, "delete", selector + ".", "TXT")
    world.change(world.ns1, "replace", f"_dmarc.{ZONE}.", "TXT", '"v=DMARC1; p=reject"')
    world.change(world.ns1, "delete", f"autoconfig.{ZONE}.", "CNAME")
    found = world.doctor()
    dkim = found["zone.dkim"]
    assert dkim.status == "error"
    assert f"TXT {selector}. on ns1.{ZONE} ({world.ns1.host}): missing" in dkim.message
    dmarc = found["zone.dmarc"]
    assert dmarc.status == "error"
    assert 'lacks "v=DMARC1; p=none; rua=mailto:postmaster@good.test"' in dmarc.message
    assert 'also holds "v=DMARC1; p=reject"' in dmarc.message
    names = found["zone.names"]
    assert names.status == "warning"  # a convenience: clients fall back to guessing
    assert f"CNAME autoconfig.{ZONE}. on ns1.{ZONE}" in names.message
    assert f"autoconfig.{ZONE}. 3600 IN CNAME mail.{ZONE}." in names.advice
    # the operator's own records are nobody's business here
    assert found["zone.spf"].status == "ok"
    # inv dns puts it back on both, and the doctor agrees
    for server in (world.ns1, world.ns2):
        world.values["DNS_SERVER"] = server.host
        code = run_dns(
            from_mapping(world.values),
            DnsOptions(force=True),
            lambda _: None,
            read_dkim=lambda _: recorded_keys(),
        )
        assert code == 0
    world.values["DNS_SERVER"] = world.ns1.host
    after = world.doctor(("zone.dkim", "zone.dmarc", "zone.names"))
    assert {k: f.status for k, f in after.items()} == dict.fromkeys(after, "ok"), after


def test_a_server_that_is_not_authoritative_is_an_error(world: World) -> None:
    values = dict(world.values)
    world.values["DNS_SERVER"] = "127.0.0.1"  # nothing answers there at :53
    world.values["DNS_RESOLVER"] = f"{world.ns1.host}:53"
    try:
        found = world.doctor(("zone.mx",))
    finally:
        world.values.clear()
        world.values.update(values)
    assert found["zone.mx"].status == "error"
    assert "DNS_SERVER 127.0.0.1 (127.0.0.1)" in found["zone.mx"].message


def test_without_the_edges_addresses_nothing_is_compared(world: World) -> None:
    values = dict(world.values)
    world.values["EDGE_PUBLIC_ADDRESSES"] = ""
    world.values["EDGE_PUBLIC_IP"] = ""
    try:
        found = world.doctor(("zone.mx", "zone.dmarc"))
    finally:
        world.values.clear()
        world.values.update(values)
    assert found["zone.mx"].status == "warning"
    assert "EDGE_PUBLIC_ADDRESSES" in found["zone.mx"].message
    # said once: the others point at it
    assert found["zone.dmarc"].message == "DMARC policy: not compared (see zone.mx)"
