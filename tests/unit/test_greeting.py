"""The one greeting reader: the edge's health gate and `inv doctor` read the first line
a mail server sends the same way (loopback servers that send scripted bytes)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tailwart.doctor.wire import WireError, greet
from tailwart.edge.health import check_port


@pytest.fixture
def server() -> Iterator[tuple[int, list[list[bytes]]]]:
    """A loopback server: each connection gets the next script (byte chunks, sent with a
    pause between them so they arrive as separate segments), then the close."""
    scripts: list[list[bytes]] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                for chunk in scripts.pop(0) if scripts else []:
                    conn.sendall(chunk)
                    time.sleep(0.01)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], scripts
    stop.set()
    thread.join(2)
    listener.close()


def both(port: int, scripts: list[list[bytes]], script: list[bytes]) -> tuple[bool, str, str]:
    """(gate passed, gate's detail, doctor's banner or error) for the same server bytes."""
    scripts += [script, script]
    gate = check_port(
        "127.0.0.1", "smtp", port, greeting=True, timeout=5, deadline=time.monotonic()
    )
    try:
        banner = greet("127.0.0.1", port, 5).banner
    except WireError as exc:
        banner = f"error: {exc}"
    return gate.ok, gate.detail, banner


def test_a_greeting_in_pieces_is_one_line_to_both(server: tuple[int, list[list[bytes]]]) -> None:
    ok, detail, banner = both(*server, [b"22", b"0 mail.example", b".org ESMTP\r\n", b"250 x\r\n"])
    assert ok and detail == "greeting '220 mail.example.org ESMTP'"
    assert banner == "220 mail.example.org ESMTP"


def test_imap_greeting(server: tuple[int, list[list[bytes]]]) -> None:
    ok, _, banner = both(*server, [b"* OK [CAPABILITY IMAP4rev2] ready\r\n"])
    assert ok and banner.startswith("* OK")


@pytest.mark.parametrize(
    ("script", "seen"),
    [([b"HTTP/1.1 400 Bad Request\r\n"], "HTTP/1.1 400 Bad Request"), ([], "")],
    ids=["not-mail", "closed"],
)
def test_no_greeting_fails_the_gate(
    server: tuple[int, list[list[bytes]]], script: list[bytes], seen: str
) -> None:
    ok, detail, banner = both(*server, script)
    assert not ok and detail == f"no greeting through the edge (got {seen!r})"
    assert banner == seen


def test_the_gate_says_whether_the_port_refused_or_stayed_silent() -> None:
    """A port nobody listens on is refused; a listener that accepts (the kernel completes
    the handshake) but never answers is "accepted, but nothing came"."""
    with socket.socket() as gone:
        gone.bind(("127.0.0.1", 0))
        closed_port = gone.getsockname()[1]
    refused = check_port(
        "127.0.0.1", "smtp", closed_port, greeting=True, timeout=1, deadline=time.monotonic()
    )
    assert not refused.ok and refused.detail == "Connection refused"
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # never accepts: what a stuck proxy looks like from outside
        quiet = check_port(
            "127.0.0.1",
            "smtp",
            silent.getsockname()[1],
            greeting=True,
            timeout=0.3,
            deadline=time.monotonic(),
        )
    assert not quiet.ok
    assert quiet.detail == "accepted, but nothing came through the edge within 0.3 s"
