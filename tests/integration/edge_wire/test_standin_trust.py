"""The stand-in mailbox with per-port PROXY trust, as Stalwart v0.16's listeners behave
(stalwart-0.16.md: a trusted source must send PROXY, any other is served directly).

The PROXY v2 header is built here by hand from the spec's byte layout, not by tailwart."""

from __future__ import annotations

import json
import smtplib
import socket
import ssl
import struct
from pathlib import Path

from tailwart.testing.standin import StandinMailbox, TlsFiles, listener_trust

MAILBOX = "127.0.0.2"
CLIENT = "127.0.0.1"  # the untrusted source ("a tailnet member")


def proxy_v2(src: tuple[str, int], dst: tuple[str, int]) -> bytes:
    """PROXY v2, PROXY command, TCP over IPv4 (spec section 2.2)."""
    body = socket.inet_aton(src[0]) + socket.inet_aton(dst[0]) + struct.pack("!HH", src[1], dst[1])
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


def test_untrusted_sources_are_served_directly_trusted_ones_need_proxy(tls: TlsFiles) -> None:
    trusted = {25: ("127.0.0.0/8",), 587: (), 993: ()}
    with StandinMailbox(tls, host=MAILBOX, only=(25, 587, 993), trusted=trusted) as box:
        ports = box.ports
        # 587: nobody trusted, a plain SMTP client is served; its message's client is its peer
        with smtplib.SMTP(MAILBOX, ports[587], timeout=10, source_address=(CLIENT, 0)) as smtp:
            assert smtp.sock is not None
            me = smtp.sock.getsockname()
            smtp.sendmail("a@member.test", ["b@example.org"], "Subject: direct\r\n\r\nhi\r\n")
        # 993: direct, then implicit TLS, then the IMAP greeting
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with (
            socket.create_connection((MAILBOX, ports[993]), 10, (CLIENT, 0)) as raw,
            ctx.wrap_socket(raw) as tls_sock,
        ):
            assert tls_sock.recv(200).startswith(b"* OK")
        # 25: the source is trusted, so no header = refused (closed without a greeting)
        with socket.create_connection((MAILBOX, ports[25]), 10, (CLIENT, 0)) as raw:
            raw.sendall(b"EHLO client.example.org\r\n")  # >= 16 bytes: judged at once
            raw.settimeout(15)
            try:
                got = raw.recv(200)
            except ConnectionResetError:  # closed with our bytes unread
                got = b""
            assert got == b""
        # 25 with a header: the client is the header's source
        with socket.create_connection((MAILBOX, ports[25]), 10, (CLIENT, 0)) as raw:
            raw.sendall(proxy_v2(("203.0.113.7", 40000), ("198.18.0.9", 25)))
            raw.settimeout(10)
            assert raw.recv(200).startswith(b"220")
        assert box.wait_for(lambda seen, msgs: len(seen) >= 4 and len(msgs) >= 1, 15)
        seen = {(s.port, s.error == "", s.direct): s for s in box.seen}
        direct = seen[(587, True, True)]
        assert direct.peer == me and direct.src == me
        assert seen[(993, True, True)].peer[0] == CLIENT
        assert (25, False, False) in seen
        assert seen[(25, True, False)].src == ("203.0.113.7", 40000)
        assert box.messages[0].client == me


def test_listener_trust_reads_listener_objects(tmp_path: Path) -> None:
    path = tmp_path / "listeners.json"
    assert listener_trust(path) is None
    listeners = [
        {"bind": {"[::]:25": True}, "overrideProxyTrustedNetworks": {"100.64.0.2/32": True}},
        {"bind": {"[::]:993": True}, "overrideProxyTrustedNetworks": {}},
    ]
    path.write_text(json.dumps(listeners))
    assert listener_trust(path) == {25: ("100.64.0.2/32",), 993: ()}
