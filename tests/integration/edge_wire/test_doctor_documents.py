"""inv doctor's ``zone.mta-sts-policy`` and ``zone.autoconfig`` through the real Caddy
serving the rendered caddy/jmap.caddy (its internal CA; the certificate verified by SNI),
in front of a stand-in for Stalwart's :8080 that demands PROXY v2 and answers what the
real Stalwart v0.16.18 answered through the edge in the live run (recorded:
``tests/fixtures/stalwart-0.16.18/{mta-sts,autoconfig}.json``), then hostile answers.
Each expected verdict is written out here."""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tailwart.doctor.registry import DoctorContext, DoctorOptions, registry
from tailwart.doctor.runner import run
from tailwart.findings import Finding
from tailwart.settings import from_mapping
from tailwart.settings.example import example_values
from tests.support.backend_servers import KnotServer
from tests.support.testkit import need_tool

from .test_jmap_vhost import SIGNATURE, Upstream
from .test_service_names import ROOT_CA, fetch, serving_tls

pytestmark = pytest.mark.integration
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "stalwart-0.16.18"
DOMAIN = "good.test"
CHECKS = ("zone.mta-sts-policy", "zone.autoconfig")


@dataclass
class Document:
    status: int
    content_type: str
    body: bytes


def recorded(name: str) -> Document:
    data = json.loads((FIXTURES / f"{name}.json").read_text())
    return Document(data["status"], data["content_type"], data["body"].encode())


class Documents(Upstream):
    """Stalwart's :8080 stand-in: answers only behind a PROXY v2 header, by path."""

    def __init__(self) -> None:
        self.documents = {
            "/.well-known/mta-sts.txt": recorded("mta-sts"),
            "/mail/config-v1.1.xml": recorded("autoconfig"),
        }
        super().__init__()

    def _handle(self, conn: socket.socket) -> None:
        head = conn.recv(16, socket.MSG_WAITALL)
        if head[:12] != SIGNATURE:
            return  # Stalwart's listeners behind the edge demand the header
        conn.recv(struct.unpack("!H", head[14:16])[0], socket.MSG_WAITALL)
        line = conn.recv(4096).split(b"\r\n", 1)[0].decode(errors="replace")
        path = line.split(" ")[1].partition("?")[0] if line.count(" ") == 2 else ""
        self.seen.append((True, line))
        doc = self.documents.get(path, Document(404, "text/plain", b"not found"))
        conn.sendall(
            f"HTTP/1.1 {doc.status} X\r\nContent-Type: {doc.content_type}\r\n"
            f"Content-Length: {len(doc.body)}\r\nConnection: close\r\n\r\n".encode()
            + doc.body
        )


#: the domain's MX, as the policy check looks it up (a second, backup MX below)
ZONE_TEXT = f"""$ORIGIN {DOMAIN}.
$TTL 300
@ IN SOA ns1 hostmaster 1 3600 600 86400 300
@ IN NS ns1
@ IN MX 10 mail
{{more}}ns1 IN A 192.0.2.53
"""


def settings(resolver: str = "127.0.0.1:53", **more: str) -> dict[str, str]:
    return {
        **example_values(),
        "MAIL_DOMAIN": DOMAIN,
        "MAIL_HOSTNAME": f"mail.{DOMAIN}",
        "DNS_RESOLVER": resolver,
        **more,
    }


class Edge:
    def __init__(self, port: int, work: Path, upstream: Documents, knot: KnotServer) -> None:
        self.port, self.work, self.upstream, self.knot = port, work, upstream, knot

    def doctor(self, **more: str) -> dict[str, Finding]:
        options = DoctorOptions("127.0.0.1", {443: self.port}, str(self.work / ROOT_CA), 10)
        ctx = DoctorContext(from_mapping(settings(self.knot.resolver, **more)), options)
        checks = [c for c in registry(ctx, ("zone",)) if c.id in CHECKS]
        return {f.id: f for f in run(ctx, checks)}


@pytest.fixture(scope="module")
def edge(caddy_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    work = tmp_path_factory.mktemp("documents")
    knot = KnotServer.start(need_tool("knotd"), {DOMAIN: ZONE_TEXT.format(more="")})
    upstream = Documents()
    try:
        with serving_tls(caddy_binary, work, upstream, settings=from_mapping(settings())) as (
            port,
            context,
        ):
            # Caddy issues each name's certificate on its own: wait until both are served
            for name, path in (("mta-sts", "/.well-known/mta-sts.txt"), ("autoconfig", "/")):
                fetch(port, context, f"{name}.{DOMAIN}", "GET", path)
            upstream.seen.clear()
            yield Edge(port, work, upstream, knot)
    finally:
        upstream.close()
        knot.close()


@pytest.fixture(autouse=True)
def fresh(edge: Edge) -> Iterator[None]:
    saved = dict(edge.upstream.documents)
    yield
    edge.upstream.documents = saved


def test_what_stalwart_served_passes_both_checks(edge: Edge) -> None:
    found = edge.doctor()
    policy, config = found["zone.mta-sts-policy"], found["zone.autoconfig"]
    assert policy.status == "ok", policy
    assert policy.message == (
        f"https://mta-sts.{DOMAIN}/.well-known/mta-sts.txt through the edge: mode testing, "
        f"mx mail.{DOMAIN}, max_age 604800"
    )
    assert config.status == "ok", config
    for port in (993, 143, 465, 587):
        assert f"mail.{DOMAIN}:{port}" in config.message
    # the requests came through the edge, behind PROXY v2
    assert any("/.well-known/mta-sts.txt" in line for _, line in edge.upstream.seen)


def test_a_policy_for_another_mode_or_another_mx_is_an_error(edge: Edge) -> None:
    found = edge.doctor(MTA_STS_MODE="enforce")["zone.mta-sts-policy"]
    assert found.status == "error"
    assert "mode testing, .env says MTA_STS_MODE=enforce" in found.message
    found = edge.doctor(MTA_STS_MAX_AGE="86400")["zone.mta-sts-policy"]
    assert found.status == "warning"
    assert "max_age 604800, .env says MTA_STS_MAX_AGE=86400" in found.message
    found = edge.doctor(MAIL_HOSTNAME="mx.good.test")["zone.mta-sts-policy"]
    assert found.status == "error"
    assert "mx mail.good.test does not cover mx.good.test;" in found.message


def test_an_mx_the_policy_does_not_list_is_an_error(edge: Edge) -> None:
    """The zone publishes a backup MX the policy leaves out: enforcing senders would
    refuse to deliver there."""
    backup = KnotServer.start(
        need_tool("knotd"), {DOMAIN: ZONE_TEXT.format(more="@ IN MX 20 backup\n")}
    )
    try:
        found = edge.doctor(DNS_RESOLVER=backup.resolver)["zone.mta-sts-policy"]
    finally:
        backup.close()
    assert found.status == "error"
    assert "mx mail.good.test does not cover backup.good.test" in found.message


@pytest.mark.parametrize(
    ("document", "said"),
    [
        (Document(404, "text/plain", b"nope"), "answered 404"),
        (Document(200, "text/html", b"version: STSv1\r\n"), "served as 'text/html'"),
        (Document(200, "text/plain", b"<html>hello</html>"), "not a valid policy: line 1"),
        (
            Document(200, "text/plain", b"version: STSv1\r\nmode: enforce\r\nmax_age: 1\r\n"),
            "no mx field",
        ),
        (
            Document(200, "text/plain", b"version: STSv1\nmode: on\nmx: a.b\nmax_age: 9\n"),
            "mode is 'on'",
        ),
        (Document(200, "text/plain", b"x" * 70_000), "over 65536 bytes"),
        (Document(200, "text/plain", "mode: t\u00e9sting\n".encode()), "not ASCII"),
    ],
    ids=["404", "html", "not-a-policy", "no-mx", "bad-mode", "huge", "not-ascii"],
)
def test_a_hostile_policy_is_one_clear_error(edge: Edge, document: Document, said: str) -> None:
    edge.upstream.documents["/.well-known/mta-sts.txt"] = document
    found = edge.doctor()["zone.mta-sts-policy"]
    assert found.status == "error"
    assert said in found.message, found.message
    assert "Traceback" not in found.message and "crashed" not in found.message


def test_autoconfig_naming_a_port_the_edge_keeps_closed_is_an_error(edge: Edge) -> None:
    # the edge without IMAP's STARTTLS port: the recorded document still offers 143
    found = edge.doctor(EDGE_PUBLIC_PORTS="25,465,587,993")["zone.autoconfig"]
    assert found.status == "error"
    assert f"imap mail.{DOMAIN}:143 is a port the edge does not open" in found.message
    # what Stalwart lists out of the box: POP3 on 995, which no edge forwards
    body = recorded("autoconfig").body.replace(
        b"</emailProvider>",
        b'<incomingServer type="pop3"><hostname>mail.good.test</hostname><port>995</port>'
        b"<socketType>SSL</socketType></incomingServer></emailProvider>",
    )
    edge.upstream.documents["/mail/config-v1.1.xml"] = Document(200, "application/xml", body)
    found = edge.doctor()["zone.autoconfig"]
    assert found.status == "error"
    assert f"pop3 mail.{DOMAIN}:995 is a port the edge does not open" in found.message


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
            b"<clientConfig>&b;</clientConfig>",
            "not XML (EntitiesForbidden)",
        ),
        (b"<html><body>hi</body></html>", "the root element is 'html'"),
        (b"<clientConfig><emailProvider><incomingServer/></emailProvider></clientConfig>",
         "without a hostname and a port"),
        (b"\x00\xff", "not XML"),
    ],
    ids=["entities", "html", "no-port", "binary"],
)  # fmt: skip
def test_a_hostile_autoconfig_is_one_clear_error(edge: Edge, body: bytes, said: str) -> None:
    edge.upstream.documents["/mail/config-v1.1.xml"] = Document(200, "application/xml", body)
    found = edge.doctor()["zone.autoconfig"]
    assert found.status == "error"
    assert said in found.message, found.message


def test_autoconfig_for_another_host_is_an_error(edge: Edge) -> None:
    found = edge.doctor(MAIL_HOSTNAME="imap.good.test")["zone.autoconfig"]
    assert found.status == "error"
    assert f"mail.{DOMAIN}:993 is not MAIL_HOSTNAME" in found.message
