"""The names DNS points at the edge (mta-sts., autoconfig., autodiscover., ua-auto-config.
of MAIL_DOMAIN), served by the real Caddy from the rendered caddy/jmap.caddy.

``caddy adapt`` of the rendered file, moved onto loopback as in test_jmap_vhost.py, but
with automatic HTTPS kept: Caddy issues each name's certificate itself (from its internal
CA here, from the ACME CA in production), and the client verifies it against that CA's
root with Python's ssl module, asking by SNI. The requests are written byte for byte on a
raw socket, so no client normalises a path before Caddy sees it. The paths that must pass
are written out by hand from Stalwart v0.16.18's router (crates/http/src/request.rs), not
read from tailwart's renderer.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tailwart.edge.render import SERVICE_BODY_CAP
from tailwart.settings import Settings

from .test_jmap_vhost import Upstream, _dials, adapted_vhost, free_port, run_caddy
from .test_jmap_vhost_walls import Recorder, b64, settings_for

pytestmark = pytest.mark.integration
#: the internal CA's root certificate, under the directory Caddy runs in
ROOT_CA = ".local/share/caddy/pki/authorities/local/root.crt"
#: the clients connect from here, an address of their own (Caddy dials from 127.0.0.1)
CLIENT = "127.0.0.7"
DOMAIN = "example.org"
#: (host, method, request target, body) of every document Stalwart serves on these names
DOCUMENTS = [
    ("mta-sts", "GET", "/.well-known/mta-sts.txt", b""),
    ("autoconfig", "GET", "/mail/config-v1.1.xml?emailaddress=alice%40example.org", b""),
    ("autoconfig", "GET", "/.well-known/autoconfig/mail/config-v1.1.xml", b""),
    (
        "autodiscover",
        "POST",
        "/autodiscover/autodiscover.xml",
        b'<?xml version="1.0"?><Autodiscover><Request><EMailAddress>alice@example.org'
        b"</EMailAddress></Request></Autodiscover>",
    ),
    # Outlook's own spelling; Stalwart takes the file name in any case
    ("autodiscover", "POST", "/Autodiscover/Autodiscover.xml", b"<Autodiscover/>"),
    (
        "autodiscover",
        "GET",
        "/autodiscover/autodiscover.json/v1.0/alice@example.org?Protocol=AutoDiscoverV1",
        b"",
    ),
    ("autodiscover", "GET", "/AutoDiscover/AutoDiscover.json/v1.0/alice%40example.org", b""),
    ("ua-auto-config", "GET", "/.well-known/user-agent-configuration.json", b""),
]
NAMES = sorted({name for name, *_ in DOCUMENTS})
#: never passed on any of these names: management, mail, the web admin, other documents,
#: and spellings whose cleaned path is a document but whose raw path is not
REFUSED = [
    ("GET", "/"),
    ("POST", "/jmap"),
    ("GET", "/jmap/session"),
    ("GET", "/.well-known/jmap"),
    ("GET", "/api/principal"),
    ("GET", "/API/schema"),
    ("GET", "/admin"),
    ("GET", "/admin/"),
    ("GET", "/metrics/prometheus"),
    ("GET", "/dav/card/alice"),
    ("GET", "/robots.txt"),
    ("GET", "/api/../mail/config-v1.1.xml"),
    ("GET", "/api/%2e%2e/.well-known/mta-sts.txt"),
    ("GET", "//api/x/../../.well-known/mta-sts.txt"),
    ("GET", "/mail/config-v1.1.xml/../../api/principal"),
    ("GET", "/autodiscover/autodiscover.json/../../api/principal"),
    ("GET", "/autodiscover/autodiscover.json/%2e%2e/%2e%2e/api/principal"),
    ("GET", "/autodiscover/autodiscover.json/.%2E/.%2e/api/principal"),
    ("GET", "/autodiscover/autodiscover.json%2f..%2f..%2fapi"),
    ("POST", "/AUTODISCOVER/autodiscover.xml"),  # Stalwart routes this spelling elsewhere
    ("GET", "/autodiscover/autodiscover.xml"),  # Stalwart answers the XML to POST only
    ("POST", "/.well-known/mta-sts.txt"),
    ("GET", "/.well-known/mta-sts.txt.bak"),
]


class Fetched:
    def __init__(self, status: int, body: bytes, client: str) -> None:
        self.status, self.body, self.client = status, body, client


@contextmanager
def serving_tls(
    binary: Path,
    work: Path,
    upstream: Upstream,
    user: str = "tailwart-admin",
    settings: Settings | None = None,
) -> Iterator[tuple[int, ssl.SSLContext]]:
    """The rendered file (for ``settings``, default the example's with ``user``) run by the
    real Caddy with automatic HTTPS from its internal CA: the https port on 127.0.0.1, and
    a client context trusting only that CA (``ROOT_CA`` under ``work``)."""
    config = adapted_vhost(binary, settings or settings_for(user), work)
    _dials(config, upstream.port)
    port = free_port()
    config["admin"] = {"listen": f"unix/{work}/admin.sock"}
    for server in config["apps"]["http"]["servers"].values():
        plain = server["listen"] == [":80"]
        server["listen"] = [f"127.0.0.1:{free_port() if plain else port}"]
        server["automatic_https"] = {"disable": True} if plain else {"disable_redirects": True}
    config["apps"]["tls"] = {"automation": {"policies": [{"issuers": [{"module": "internal"}]}]}}
    config["apps"]["pki"] = {"certificate_authorities": {"local": {"install_trust": False}}}
    (work / "caddy.json").write_text(json.dumps(config))
    proc = run_caddy(binary, work / "caddy.json", port)
    try:
        root = work / ROOT_CA
        deadline = time.monotonic() + 30
        while not root.exists():
            assert time.monotonic() < deadline, "caddy made no CA"
            time.sleep(0.1)
        context = ssl.create_default_context(cafile=str(root))
        yield port, context
    finally:
        proc.terminate()
        proc.wait(10)


def fetch(
    port: int,
    context: ssl.SSLContext,
    host: str,
    method: str,
    target: str,
    body: bytes = b"",
    fields: tuple[tuple[str, str], ...] = (),
) -> Fetched:
    """One request written exactly as given, over TLS with SNI ``host`` (the certificate
    verified for it); retried while Caddy is still obtaining the certificate."""
    head = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in fields)
    if body or method == "POST":
        head += f"Content-Type: text/xml\r\nContent-Length: {len(body)}\r\n"
    deadline = time.monotonic() + 30
    while True:
        try:
            raw = socket.create_connection(("127.0.0.1", port), 30, (CLIENT, 0))
            with context.wrap_socket(raw, server_hostname=host) as conn:
                client = "{}:{}".format(*conn.getsockname())
                conn.sendall(head.encode() + b"\r\n" + body)
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
            break
        except (ssl.SSLError, ConnectionResetError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    status_line, _, rest = data.partition(b"\r\n")
    return Fetched(int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2], client)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    upstream = Recorder()
    yield upstream
    upstream.close()


def test_each_name_has_its_own_certificate_and_its_documents_reach_stalwart_with_proxy_v2(
    caddy_binary: Path, tmp_path: Path, recorder: Recorder
) -> None:
    management = ("Authorization", f"Basic {b64('tailwart-admin:pw')}")
    with serving_tls(caddy_binary, tmp_path, recorder) as (port, context):
        for label, method, target, body in DOCUMENTS:
            host = f"{label}.{DOMAIN}"
            got = fetch(port, context, host, method, target, body, (management, ("Cookie", "a=b")))
            assert (got.status, got.body) == (200, b"upstream"), (host, target)
            seen = recorder.requests[-1]
            assert seen.line == f"{method} {target} HTTP/1.1", host
            # PROXY v2 naming the client's address (Caddy's HTTP transport sends port 0)
            assert seen.proxied, host
            assert seen.source.rpartition(":")[0] == got.client.rpartition(":")[0] == CLIENT
            fields = {name.lower(): value for name, value in seen.headers}
            assert fields["host"] == host
            # no credential or cookie crosses the hop, the management login included
            assert "authorization" not in fields and "cookie" not in fields
            assert seen.body == len(body) and seen.complete
        assert len(recorder.requests) == len(DOCUMENTS)


def test_nothing_else_on_those_names_reaches_stalwart(
    caddy_binary: Path, tmp_path: Path, recorder: Recorder
) -> None:
    with serving_tls(caddy_binary, tmp_path, recorder) as (port, context):
        # every name answers its own documents only: another name's document is refused too
        asked = [(name, method, target) for name in NAMES for method, target in REFUSED]
        asked += [
            (name, method, target)
            for label, method, target, _ in DOCUMENTS
            for name in NAMES
            if name != label
        ]
        for name, method, target in asked:
            got = fetch(port, context, f"{name}.{DOMAIN}", method, target)
            assert got.status in (403, 404), (name, method, target, got.status)
        # the management login on the JMAP path, too
        basic = ("Authorization", f"Basic {b64('tailwart-admin:pw')}")
        assert fetch(
            port, context, f"mta-sts.{DOMAIN}", "POST", "/jmap", b"{}", (basic,)
        ).status in (
            403,
            404,
        )
        assert recorder.requests == []
        # and the same Caddy still serves a document (the refusals were not an outage)
        assert (
            fetch(port, context, f"mta-sts.{DOMAIN}", "GET", "/.well-known/mta-sts.txt").status
            == 200
        )
        assert [r.line for r in recorder.requests] == ["GET /.well-known/mta-sts.txt HTTP/1.1"]


def test_an_autodiscover_body_over_stalwarts_own_read_is_refused(
    caddy_binary: Path, tmp_path: Path, recorder: Recorder
) -> None:
    """Stalwart reads at most 8192 bytes of an autodiscover POST (fetch_body)."""
    assert SERVICE_BODY_CAP == 8192
    host, target = f"autodiscover.{DOMAIN}", "/autodiscover/autodiscover.xml"
    with serving_tls(caddy_binary, tmp_path, recorder) as (port, context):
        assert fetch(port, context, host, "POST", target, b"x" * 8193).status == 413
        assert recorder.requests == []
        assert fetch(port, context, host, "POST", target, b"x" * 8192).status == 200
        (seen,) = recorder.requests
        assert (seen.line, seen.body, seen.complete) == (f"POST {target} HTTP/1.1", 8192, True)
