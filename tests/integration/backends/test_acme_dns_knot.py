"""STALWART_TLS=acme-dns without Stalwart: the TSIG key as .env declares it is what a real
knotd takes for the RFC 2136 updates dns-01 needs (a TXT at _acme-challenge.<name>).

The update is sent by dnspython with the .env values (key name, algorithm, base64
secret), the way Stalwart's x:DnsServer (Tsig) sends it; knotd is the judge. The live
suite runs the same knotd configuration under a real Stalwart and Pebble.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator

import dns.message
import dns.query
import dns.rcode
import dns.tsigkeyring
import dns.update
import pytest

from tailwart.settings import from_mapping
from tailwart.settings.example import example_values
from tests.support.backend_servers import KnotServer
from tests.support.testkit import need_tool

pytestmark = pytest.mark.integration
ZONE = "example.org"
SOA = f"""$ORIGIN {ZONE}.
$TTL 300
@ IN SOA ns1 hostmaster 1 3600 600 86400 300
@ IN NS ns1
ns1 IN A 192.0.2.53
mail IN A 192.0.2.25
"""


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[KnotServer, dict[str, str]]]:
    values = {
        **example_values(),
        "STALWART_TLS": "acme-dns",
        "ACME_DNS_SERVER": "127.0.0.1",
        "ACME_DNS_TSIG_KEY": "tailwart-acme",
        "ACME_DNS_TSIG_ALGORITHM": "hmac-sha256",
        "ACME_DNS_TSIG_SECRET": base64.b64encode(secrets.token_bytes(32)).decode(),
    }
    s = from_mapping(values)  # what tailwart accepts is what knot is given
    key = (s["ACME_DNS_TSIG_KEY"], s["ACME_DNS_TSIG_ALGORITHM"], s["ACME_DNS_TSIG_SECRET"])
    # the ACL the README gives: TXT only, at the challenge names and below _domainkey
    names = (f"_acme-challenge.{s['MAIL_HOSTNAME']}.", f"_domainkey.{s['MAIL_DOMAIN']}.")
    server = KnotServer.start(need_tool("knotd"), {ZONE: SOA}, update_key=key, update_names=names)
    try:
        yield server, values
    finally:
        server.close()


def _update(server: KnotServer, name: str, text: str, key: tuple[str, str, str]) -> int:
    keyring = dns.tsigkeyring.from_text({key[0]: (key[1], key[2])})
    update = dns.update.UpdateMessage(ZONE, keyring=keyring, keyalgorithm=key[1])
    update.replace(name, 60, "TXT", f'"{text}"')
    reply = dns.query.tcp(update, server.host, port=server.port, timeout=5)
    return int(reply.rcode())


def _txt(server: KnotServer, name: str) -> list[str]:
    reply = dns.query.udp(
        dns.message.make_query(f"{name}.{ZONE}.", "TXT"), server.host, port=server.port, timeout=5
    )
    return [r.to_text().strip('"') for rrset in reply.answer for r in rrset]


def test_the_challenge_record_is_accepted_with_the_env_tsig_key(
    world: tuple[KnotServer, dict[str, str]],
) -> None:
    server, values = world
    key = (values["ACME_DNS_TSIG_KEY"], "hmac-sha256", values["ACME_DNS_TSIG_SECRET"])
    proof = "3q2-7w" + secrets.token_hex(8)
    assert _update(server, "_acme-challenge.mail", proof, key) == dns.rcode.NOERROR
    assert _txt(server, "_acme-challenge.mail") == [proof]
    # the DKIM keys Stalwart publishes in this mode go below _domainkey
    assert _update(server, "v1._domainkey", "v=DKIM1; p=AAAA", key) == dns.rcode.NOERROR


def test_a_wrong_secret_and_other_names_are_refused(
    world: tuple[KnotServer, dict[str, str]],
) -> None:
    server, values = world
    wrong = (values["ACME_DNS_TSIG_KEY"], "hmac-sha256", base64.b64encode(b"x" * 32).decode())
    with pytest.raises(dns.tsig.PeerBadSignature):
        _update(server, "_acme-challenge.mail", "nope", wrong)
    key = (values["ACME_DNS_TSIG_KEY"], "hmac-sha256", values["ACME_DNS_TSIG_SECRET"])
    # the key may not touch the rest of the zone (the knot ACL the README shows): knot
    # answers an update outside the ACL as if it did not know the key
    with pytest.raises(dns.tsig.PeerBadKey):
        _update(server, "mail", "hijack", key)
    assert _txt(server, "mail") == []
