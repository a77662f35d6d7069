"""inv dns against a real knotd (RFC 2136 + AXFR, TSIG): publish, a second run changes
nothing, the operator's records stay, conflicts are reported (and --force replaces
them), drift made behind tailwart's back is seen and repaired, hostile input publishes
nothing. The zone is judged by dnspython asking knotd, never by tailwart's plan."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsigkeyring
import dns.update
import pytest

from tailwart.dns.records import DkimKey
from tailwart.dns.run import DnsOptions, run_dns
from tailwart.plan import Drift, PlanFlags
from tailwart.settings import Settings, from_mapping
from tailwart.settings.example import example_values
from tests.support.backend_servers import KnotServer
from tests.support.testkit import boundary_clean, inv, need_tool, write_env

pytestmark = pytest.mark.integration
ZONE = "example.org"
KEY = "tailwart-dns"
DKIM = DkimKey(
    "v1-ed25519-20261207",
    "v=DKIM1; k=ed25519; h=sha256; p=r/AUl1/GBOhNcDSU+Qy18bPaiZ36ZBiUAsnBR5R86kU=",
)
ZONE_TEXT = f"""$ORIGIN {ZONE}.
$TTL 300
@ IN SOA ns1 hostmaster 1 3600 600 86400 300
@ IN NS ns1
@ IN TXT "google-site-verification=operator-own"
ns1 IN A 192.0.2.53
www IN A 192.0.2.80
"""
#: the relay's SPF: an include chain of ``depth`` lookups under relay.test
RELAY = """$ORIGIN relay.test.
$TTL 300
@ IN SOA ns1 hostmaster 1 3600 600 86400 300
@ IN NS ns1
ns1 IN A 192.0.2.53
_spf IN TXT "v=spf1 ip4:192.0.2.99 -all"
{chain}"""


def relay_chain(depth: int) -> str:
    lines = ['deep IN TXT "v=spf1 include:d1.relay.test -all"']
    for i in range(1, depth):
        lines.append(f'd{i} IN TXT "v=spf1 include:d{i + 1}.relay.test -all"')
    lines.append(f'd{depth} IN TXT "v=spf1 ip4:192.0.2.98 -all"')
    return "\n".join(lines) + "\n"


class World:
    def __init__(self, server: KnotServer, values: dict[str, str]) -> None:
        self.server, self.values = server, values

    def settings(self, **more: str) -> Settings:
        return from_mapping({**self.values, **more})

    def run(self, flags: PlanFlags | None = None, **options: bool) -> tuple[int, list[str]]:
        flags = flags or PlanFlags()
        lines: list[str] = []
        code = run_dns(
            self.settings(), DnsOptions(flags, **options), lines.append, read_dkim=lambda _: [DKIM]
        )
        return code, lines

    def query(self, name: str, rtype: str) -> set[str]:
        fqdn = f"{name}.{ZONE}." if name else f"{ZONE}."
        reply = dns.query.udp(
            dns.message.make_query(fqdn, rtype), self.server.host, port=self.server.port, timeout=5
        )
        wanted = dns.rdatatype.from_text(rtype)
        return {r.to_text() for rrset in reply.answer if rrset.rdtype == wanted for r in rrset}

    def serial(self) -> int:
        (soa,) = self.query("", "SOA")
        return int(soa.split()[2])

    def update(self, change: str, name: str, rtype: str, *values: str) -> None:
        keyring = dns.tsigkeyring.from_text({KEY: ("hmac-sha256", self.values["DNS_TSIG_SECRET"])})
        update = dns.update.UpdateMessage(ZONE, keyring=keyring, keyalgorithm="hmac-sha256")
        getattr(update, change)(name, *((300, rtype, *values) if values else (rtype,)))
        reply = dns.query.tcp(update, self.server.host, port=self.server.port, timeout=5)
        assert reply.rcode() == dns.rcode.NOERROR


@pytest.fixture
def world() -> Iterator[World]:
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    zones = {ZONE: ZONE_TEXT, "relay.test": RELAY.format(chain=relay_chain(10))}
    server = KnotServer.start(
        need_tool("knotd"), zones, update_key=(KEY, "hmac-sha256", secret), whole_zone=True
    )
    values = {
        **example_values(),
        "DNS_SERVER": server.host,
        "DNS_PORT": str(server.port),
        "DNS_TSIG_KEY": KEY,
        "DNS_TSIG_SECRET": secret,
        "DNS_RESOLVER": server.resolver,
        "OUTBOUND_ADDRESSES": "198.51.100.7",
        "EDGE_PUBLIC_ADDRESSES": "203.0.113.25,2001:db8::25",
        "EDGE_PUBLIC_PORTS": "25,465,993",
    }
    try:
        yield World(server, values)
    finally:
        server.close()


def test_publish_writes_the_records_and_a_second_run_changes_nothing(world: World) -> None:
    code, lines = world.run()
    assert code == 0, lines
    assert world.query("", "MX") == {"10 mail.example.org."}
    assert world.query("", "TXT") == {
        '"v=spf1 ip4:198.51.100.7 -all"',
        '"google-site-verification=operator-own"',  # the operator's own TXT stays
    }
    assert world.query("mail", "A") == {"203.0.113.25"}
    assert world.query("mail", "AAAA") == {"2001:db8::25"}
    assert world.query("mail", "CAA") == {'0 issue "letsencrypt.org"'}
    assert world.query(f"{DKIM.selector}._domainkey", "TXT") == {f'"{DKIM.text}"'}
    assert world.query("_dmarc", "TXT") == {'"v=DMARC1; p=none; rua=mailto:postmaster@example.org"'}
    assert world.query("autodiscover", "CNAME") == {"mail.example.org."}
    assert world.query("_submissions._tcp", "SRV") == {"0 1 465 mail.example.org."}
    assert world.query("_submission._tcp", "SRV") == {"0 0 0 ."}  # 587 not public
    assert world.query("www", "A") == {"192.0.2.80"}  # the operator's web record stays
    assert world.query("_tailwart.mx", "TXT")  # ownership, visible in the zone
    serial = world.serial()

    code, lines = world.run()
    assert code == 0 and world.serial() == serial, lines
    code, lines = world.run(PlanFlags(check=True))
    assert code == 0 and "in step" in lines[0]


def test_a_conflicting_record_is_reported_not_changed_and_force_replaces_it(
    world: World,
) -> None:
    world.update("add", "_dmarc", "TXT", '"v=DMARC1; p=reject"')
    world.update("add", "autoconfig", "A", "192.0.2.80")
    code, lines = world.run()
    assert code == 1
    text = "\n".join(lines)
    assert "conflict TXT _dmarc.example.org." in text
    assert "conflict CNAME autoconfig.example.org." in text
    assert world.query("_dmarc", "TXT") == {'"v=DMARC1; p=reject"'}
    assert world.query("autoconfig", "A") == {"192.0.2.80"}
    assert not world.query("_tailwart.txt._dmarc", "TXT")  # not taken over
    assert world.query("", "MX") == {"10 mail.example.org."}  # the rest is published
    with pytest.raises(Drift):
        world.run(PlanFlags(check=True))

    code, lines = world.run(force=True)
    assert code == 0, lines
    assert world.query("_dmarc", "TXT") == {'"v=DMARC1; p=none; rua=mailto:postmaster@example.org"'}
    assert world.query("autoconfig", "CNAME") == {"mail.example.org."}
    assert world.query("_tailwart.txt._dmarc", "TXT")


def test_a_dkim_record_deleted_behind_tailwarts_back_is_seen_and_put_back(world: World) -> None:
    assert world.run()[0] == 0
    world.update("delete", f"{DKIM.selector}._domainkey", "TXT")
    assert not world.query(f"{DKIM.selector}._domainkey", "TXT")
    serial = world.serial()
    with pytest.raises(Drift) as caught:
        world.run(PlanFlags(check=True))
    assert caught.value.exit_code == 1 and world.serial() == serial  # --check wrote nothing
    assert world.run()[0] == 0
    assert world.query(f"{DKIM.selector}._domainkey", "TXT") == {f'"{DKIM.text}"'}


def test_without_stalwart_the_zones_dkim_records_stay(world: World) -> None:
    assert world.run()[0] == 0
    code, lines = world.run(stalwart=False)
    assert code == 0 and "in step" in lines[0], lines
    assert world.query(f"{DKIM.selector}._domainkey", "TXT") == {f'"{DKIM.text}"'}


def test_an_owned_record_no_longer_wanted_is_deleted_a_foreign_one_is_not(
    world: World,
) -> None:
    assert world.run()[0] == 0
    world.update("add", "old._domainkey", "TXT", '"v=DKIM1; p=AAAA"')  # the operator's
    lines: list[str] = []
    run_dns(world.settings(), DnsOptions(), lines.append, read_dkim=lambda _: [])
    assert not world.query(f"{DKIM.selector}._domainkey", "TXT")  # tailwart's, retired
    assert world.query("old._domainkey", "TXT") == {'"v=DKIM1; p=AAAA"'}


# ---------------------------------------------------------------- the task, as run


def run_task(world: World, tmp_path: Path, *flags: str, **more: str) -> tuple[int, str]:
    env = write_env(tmp_path / ".env", {**world.values, **more})
    proc = inv("dns", "--env-file", str(env), "--no-stalwart", *flags, cwd=tmp_path)
    hidden = [world.values["DNS_TSIG_SECRET"], more.get("DNS_TSIG_SECRET", "")]
    text = boundary_clean(proc, *(h for h in hidden if h))
    return proc.returncode, text


def test_the_task_publishes_checks_and_prints_json(world: World, tmp_path: Path) -> None:
    code, text = run_task(world, tmp_path, "--dry-run")
    assert code == 0 and "+ create MX example.org." in text
    assert not world.query("", "MX")  # a dry run writes nothing
    code, text = run_task(world, tmp_path, "--check")
    assert code == 1
    code, text = run_task(world, tmp_path)
    assert code == 0 and world.query("", "MX") == {"10 mail.example.org."}
    code, text = run_task(world, tmp_path, "--check", "--json")
    assert code == 0 and '"changes": []' in text


def test_an_spf_of_eleven_lookups_is_refused_and_nothing_published(
    world: World, tmp_path: Path
) -> None:
    serial = world.serial()
    code, text = run_task(
        world,
        tmp_path,
        STALWART_SMARTHOST="smtp.relay.test:587",
        SPF_INCLUDE="deep.relay.test",
        OUTBOUND_ADDRESSES="",
    )
    assert code == 2 and "more than 10 DNS lookups" in text, text
    assert world.serial() == serial
    code, text = run_task(
        world,
        tmp_path,
        STALWART_SMARTHOST="smtp.relay.test:587",
        SPF_INCLUDE="_spf.relay.test",
        OUTBOUND_ADDRESSES="",
    )
    assert code == 0, text
    assert world.query("", "TXT") >= {'"v=spf1 include:_spf.relay.test -all"'}


@pytest.mark.parametrize(
    ("key", "value", "exit_code"),
    [
        ("DNS_TSIG_SECRET", 'bm90IGJhc2U2NA"\n', 2),  # not base64 (and a quote)
        ("DNS_TSIG_SECRET", base64.b64encode(b"w" * 32).decode(), 1),  # valid, but wrong
        ("DNS_ZONE", "example.org;rm", 2),
        ("DNS_ZONE", "other.test", 2),
        ("SPF_INCLUDE", 'x" -all', 2),
    ],
)
def test_hostile_input_is_a_clear_error_and_nothing_is_published(
    world: World, tmp_path: Path, key: str, value: str, exit_code: int
) -> None:
    serial = world.serial()
    more = {key: value.strip()}
    if key == "SPF_INCLUDE":
        more["STALWART_SMARTHOST"] = "smtp.relay.test:587"
    code, text = run_task(world, tmp_path, **more)
    assert code == exit_code, text
    assert key in text or "AXFR" in text, text
    assert world.serial() == serial and not world.query("", "MX")
