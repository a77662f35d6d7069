"""STALWART_TLS=acme-http without Stalwart: the JMAP vhost tailwart renders, run by the
real Caddy, carries Pebble's http-01 validation to the mailbox, while Caddy gets its own
certificate for the same name from the same CA.

Real parts: Pebble (Let's Encrypt's ACME server) and its DNS test server, caddy-l4's
Caddy reading ``caddy adapt``'s JSON of the rendered caddy/jmap.caddy (only listen and
dial addresses moved onto loopback, and the ACME issuer pointed at Pebble), and an ACME
client (certbot's ``acme`` library) standing in for Stalwart's. The mailbox end is a
stand-in for Stalwart's :8080 that requires PROXY v2 and answers the token it was given.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tailwart.edge.render import ACME_CHALLENGE_PATH
from tailwart.settings import from_mapping
from tailwart.settings.example import example_values
from tests.support.testkit import Pebble, pebble_dns

from .test_jmap_vhost import Upstream, _dials, adapted_vhost, free_port, run_caddy

pytestmark = pytest.mark.integration


class Mailbox(Upstream):
    """Stalwart's :8080 stand-in: PROXY v2 required; answers the tokens it was given
    (404 for any other), as Stalwart answers the tokens of its own orders."""

    def __init__(self) -> None:
        self.tokens: dict[str, bytes] = {}
        super().__init__(self._token)

    def _token(self, path: str) -> tuple[bytes, bytes]:
        body = self.tokens.get(path.removeprefix(ACME_CHALLENGE_PATH))
        if not path.startswith(ACME_CHALLENGE_PATH) or body is None:
            return b"404 Not Found", b""
        return b"200 OK", body


@dataclass
class World:
    pebble: Pebble
    mailbox: Mailbox
    http: int
    https: int
    host: str
    alias: str


@pytest.fixture
def world(caddy_binary: Path, tmp_path: Path) -> Iterator[World]:
    alias = "imap.example.org"
    settings = from_mapping(
        {**example_values(), "STALWART_TLS": "acme-http", "MAIL_HOSTNAME_ALIASES": alias}
    )
    host = settings["MAIL_HOSTNAME"]
    config = adapted_vhost(caddy_binary, settings, tmp_path)
    mailbox = Mailbox()
    http, https = free_port(), free_port()
    dns, dns_addr = pebble_dns(tmp_path / "dns", "127.0.0.1")
    pebble = Pebble(tmp_path / "pebble", http_port=http, dns_server=dns_addr)
    caddy: subprocess.Popen[bytes] | None = None
    try:
        _dials(config, mailbox.port)
        servers = config["apps"]["http"]["servers"]
        listens = {k: v["listen"] for k, v in servers.items()}
        assert sorted(listens.values()) == [[":443"], [":80"]], listens
        for server in servers.values():
            port = http if server["listen"] == [":80"] else https
            server["listen"] = [f"127.0.0.1:{port}"]
        config["apps"]["http"]["http_port"] = http
        config["apps"]["http"]["https_port"] = https
        config["admin"] = {"listen": f"unix/{tmp_path}/admin.sock"}
        config["storage"] = {"module": "file_system", "root": str(tmp_path / "caddy-data")}
        # Caddy's own certificate for the vhost, from the same Pebble, by http-01 too
        config["apps"]["tls"] = {
            "automation": {
                "policies": [
                    {
                        "issuers": [
                            {
                                "module": "acme",
                                "ca": pebble.directory,
                                "trusted_roots_pem_files": [str(pebble.wfe_ca)],
                                "challenges": {"tls-alpn": {"disabled": True}},
                            }
                        ]
                    }
                ]
            }
        }
        (tmp_path / "caddy.json").write_text(json.dumps(config))
        caddy = run_caddy(caddy_binary, tmp_path / "caddy.json", http)
        yield World(pebble, mailbox, http, https, host, alias)
    finally:
        if caddy is not None:
            caddy.terminate()
            caddy.wait(10)
        pebble.close()
        dns.terminate()
        dns.wait(10)
        mailbox.close()


def _issue(world: World, names: list[str]) -> str:
    """An ACME order for ``names`` answered by http-01 through the mailbox; the chain."""
    from acme import challenges, client, crypto_util, messages
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from josepy.jwa import ES256
    from josepy.jwk import JWKEC

    account = JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = client.ClientNetwork(
        account,
        alg=ES256,
        user_agent="tailwart-test",
        verify_ssl=str(world.pebble.wfe_ca),  # type: ignore[arg-type]  # requests: a CA path
    )
    acme = client.ClientV2(client.ClientV2.get_directory(world.pebble.directory, net), net)
    acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    order = acme.new_order(crypto_util.make_csr(pem, names))
    for authz in order.authorizations:
        chall = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01))
        response, validation = chall.response_and_validation(account)
        world.mailbox.tokens[chall.chall.encode("token")] = validation.encode()
        acme.answer_challenge(chall, response)
    done = acme.poll_and_finalize(order, dt.datetime.now() + dt.timedelta(seconds=90))
    return str(done.fullchain_pem)


def test_pebble_validates_http01_through_the_rendered_vhost(world: World) -> None:
    """One order for MAIL_HOSTNAME and an alias, as Stalwart places it: Pebble validates
    http-01 for each name, so the alias needs the route as much as the main name."""
    chain = _issue(world, [world.host, world.alias])
    # Pebble's validation requests reached the mailbox, with PROXY v2, unredirected: one
    # per name (each authorization has its own token)
    asked = [line for proxied, line in world.mailbox.seen if proxied]
    tokens = {line.split(" ")[1] for line in asked if line.startswith(f"GET {ACME_CHALLENGE_PATH}")}
    assert len(tokens) == 2, world.mailbox.seen
    assert all(proxied for proxied, _ in world.mailbox.seen)
    # what Pebble issued: the name asked for, signed by this run's Pebble root (openssl)
    from cryptography import x509

    leaf = x509.load_pem_x509_certificates(chain.encode())[0]
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == sorted([world.host, world.alias])


def test_other_plain_http_is_redirected_and_never_reaches_the_mailbox(world: World) -> None:
    headers = {"Host": world.host}
    base = f"http://127.0.0.1:{world.http}"
    response = requests.get(
        f"{base}/jmap/session", headers=headers, timeout=10, allow_redirects=False
    )
    assert response.status_code == 308
    assert response.headers["Location"] == f"https://{world.host}/jmap/session"
    # an alias's plain http goes to the JMAP vhost's one name too
    response = requests.get(
        f"{base}/jmap/session", headers={"Host": world.alias}, timeout=10, allow_redirects=False
    )
    assert response.status_code == 308
    assert response.headers["Location"] == f"https://{world.host}/jmap/session"
    # an unknown token goes to the mailbox (which says 404), not to Caddy's own solver
    miss = requests.get(f"{base}{ACME_CHALLENGE_PATH}nope", headers=headers, timeout=10)
    assert miss.status_code == 404
    assert world.mailbox.seen == [(True, f"GET {ACME_CHALLENGE_PATH}nope HTTP/1.1")]


def test_caddy_gets_its_own_certificate_for_the_vhost_meanwhile(world: World) -> None:
    """Both ACME clients share the name and the http port: neither swallows the other's."""
    _issue(world, [world.host])
    root = world.pebble.root_pem()
    context = ssl.create_default_context(cadata=root)
    deadline = time.monotonic() + 90
    while True:
        try:
            with (
                socket.create_connection(("127.0.0.1", world.https), timeout=5) as raw,
                context.wrap_socket(raw, server_hostname=world.host) as tls,
            ):
                assert tls.getpeercert() is not None
                return
        except (ssl.SSLError, OSError):
            assert time.monotonic() < deadline, "Caddy got no certificate from Pebble"
            time.sleep(1)
