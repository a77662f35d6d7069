"""Several mailbox nodes behind the real caddy-l4: failover, health checks, drain.

Two stand-in mailboxes (each demands PROXY v2 from the edge) on their own loopback
addresses, the same ports; the edge rendered for both (``EdgeLayout.upstream_hosts``)
with the shipped policy and health checks. Which node served a session is read from the
stand-ins' own records, never from the edge.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tailwart.edge.render import MAIL_PORTS, EdgeLayout, caddy_json
from tailwart.edge.run import RunningEdge, short_tempdir
from tailwart.testing.standin import StandinMailbox, TlsFiles, free_port

EDGE = "127.0.0.1"
#: this worker's two node addresses (loopback: the whole 127/8 answers on Linux)
NET = 100 + os.getpid() % 150
A, B = f"127.{NET}.91.1", f"127.{NET}.91.2"
#: where new sessions must land within this many seconds of a node's death or return
WITHIN = 10.0
SERVED = (25, 143)


def read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def accepted(box: StandinMailbox, port: int) -> int:
    """Sessions the node accepted on ``port`` with a valid PROXY v2 header (the health
    checks' bare connects are refused there and do not count)."""
    return sum(1 for s in box.seen if s.port == port and not s.error)


class World:
    def __init__(self, caddy: Path, tls: TlsFiles) -> None:
        self.caddy, self.tls = caddy, tls
        self.work = short_tempdir()
        self.a = StandinMailbox(tls, host=A, only=SERVED)
        self.a.start()
        self.b = self._node_b()
        self.layout = EdgeLayout(
            upstream_host=A,
            upstream_hosts=(A, B),
            listen_host=EDGE,
            listen={port: free_port(EDGE) for _, port in MAIL_PORTS},
            upstream=dict(self.a.ports),
            admin_socket=str(self.work / "admin.sock"),
            ports=SERVED,
        )
        self.edge = RunningEdge(caddy, self.layout, self.work / "edge")
        self.edge.start()

    def _node_b(self) -> StandinMailbox:
        box = StandinMailbox(self.tls, host=B, ports=self.a.ports, only=SERVED)
        box.start()
        return box

    def restart_b(self) -> None:
        self.b = self._node_b()

    def smtp(self) -> bytes:
        """One SMTP session through the edge: its greeting (or the error)."""
        try:
            with socket.create_connection((EDGE, self.layout.listen_port(25)), 10) as sock:
                sock.settimeout(10)
                line = read_line(sock)
                sock.sendall(b"QUIT\r\n")
                return line
        except OSError as exc:
            return repr(exc).encode()

    def close(self) -> None:
        self.edge.stop()
        self.a.stop()
        self.b.stop()
        shutil.rmtree(self.work, ignore_errors=True)


@pytest.fixture
def world(caddy_binary: Path, tls: TlsFiles) -> Iterator[World]:
    w = World(caddy_binary, tls)
    try:
        yield w
    finally:
        w.close()


def test_the_rendered_edge_dials_both_nodes(world: World) -> None:
    config = caddy_json(world.layout)
    assert f"{A}:{world.a.ports[25]}" in config and f"{B}:{world.a.ports[25]}" in config
    greetings = [world.smtp() for _ in range(10)]
    assert all(g.startswith(b"220 ") for g in greetings), greetings
    # round robin: both nodes take sessions, five each
    assert (accepted(world.a, 25), accepted(world.b, 25)) == (5, 5)


def test_a_killed_node_is_routed_around_and_gets_sessions_again_when_back(world: World) -> None:
    assert all(world.smtp().startswith(b"220 ") for _ in range(4))
    assert accepted(world.b, 25) > 0
    world.b.stop()
    killed = time.monotonic()
    on_a = accepted(world.a, 25)
    # every session from the kill on: none may fail once WITHIN has passed, and in fact
    # (a refused dial is retried on the other node) none fails at all
    failures: list[tuple[float, bytes]] = []
    count = 0
    # sessions until the active check has marked the node down too (bounded: WITHIN)
    while count < 20 or (
        '"msg":"host is down"' not in world.edge.log_text() and time.monotonic() - killed < WITHIN
    ):
        greeting = world.smtp()
        count += 1
        if not greeting.startswith(b"220 "):
            failures.append((time.monotonic() - killed, greeting))
    late = [f for f in failures if f[0] >= WITHIN]
    assert not late, late
    assert not failures, failures
    assert accepted(world.a, 25) - on_a == count  # every one of them on the live node

    world.restart_b()
    back = time.monotonic()
    while accepted(world.b, 25) == 0 and time.monotonic() - back < WITHIN:
        assert world.smtp().startswith(b"220 ")
        time.sleep(0.1)
    assert accepted(world.b, 25) > 0, "the node that came back got no session"
    # the active checks saw it too: caddy-l4 logged it down, then up
    log = world.edge.log_text()
    assert log.index('"msg":"host is down"') < log.index('"msg":"host is up"')


def test_active_checks_connect_without_a_proxy_header_and_keep_the_node_in(
    world: World,
) -> None:
    """caddy-l4's active check is a bare TCP connect: the node (which demands PROXY v2)
    refuses it as a connection without a header, yet the connect is all the check needs:
    the node stays in and serves real sessions, with their PROXY header, between checks."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(s.error for s in world.b.seen):
        time.sleep(0.2)
    probes = [s for s in world.b.seen if s.error]
    assert probes, "no health check reached the node"
    assert all("PROXY" in s.error for s in probes), {s.error for s in probes}
    assert {s.port for s in probes} <= set(SERVED)
    for _ in range(4):
        assert world.smtp().startswith(b"220 ")
    assert accepted(world.b, 25) == 2


def test_drain_keeps_50_held_sessions_and_sends_new_ones_elsewhere(world: World) -> None:
    held: list[socket.socket] = []
    try:
        for _ in range(50):
            sock = socket.create_connection((EDGE, world.layout.listen_port(143)), 10)
            sock.settimeout(10)
            assert read_line(sock).startswith(b"* OK")
            held.append(sock)
        assert (accepted(world.a, 143), accepted(world.b, 143)) == (25, 25)

        world.edge.reload(replace(world.layout, drained=frozenset({B})))
        on_a, on_b = accepted(world.a, 143), accepted(world.b, 143)
        for _ in range(10):
            with socket.create_connection((EDGE, world.layout.listen_port(143)), 10) as sock:
                sock.settimeout(10)
                assert read_line(sock).startswith(b"* OK")
        assert accepted(world.b, 143) == on_b  # the drained node took no new session
        assert accepted(world.a, 143) == on_a + 10
        for i, sock in enumerate(held):  # every held session still talks, on both nodes
            sock.sendall(f"h{i} NOOP\r\n".encode())
            assert read_line(sock) == f"h{i} OK NOOP completed\r\n".encode(), i

        world.edge.reload(world.layout)  # undrain
        for _ in range(10):
            with socket.create_connection((EDGE, world.layout.listen_port(143)), 10) as sock:
                sock.settimeout(10)
                assert read_line(sock).startswith(b"* OK")
        assert accepted(world.b, 143) == on_b + 5
        for i, sock in enumerate(held):
            sock.sendall(f"u{i} NOOP\r\n".encode())
            assert read_line(sock) == f"u{i} OK NOOP completed\r\n".encode(), i
    finally:
        for sock in held:
            sock.close()
