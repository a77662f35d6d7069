"""Fixtures for the edge wire tests: the real caddy-l4 build, a stand-in mailbox, a running edge.

The binary comes from ``ensure_caddy`` (the same code as ``inv build-caddy``); under CI
a missing Go fails these tests instead of skipping them.
"""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from tailwart.edge.render import MAIL_PORTS, EdgeLayout
from tailwart.edge.run import RunningEdge, short_tempdir
from tailwart.testing.standin import StandinMailbox, TlsFiles, free_port, make_self_signed
from tests.support.testkit import GO_ENV, built_caddy

EDGE_HOST = "127.0.0.1"
MAILBOX_HOST = "127.0.0.2"
#: Go's caches as the real user has them (HOME is faked per test)
_GO_CACHES = GO_ENV


@pytest.fixture(scope="session")
def caddy_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The verified caddy-l4 binary (built or reused through ensure_caddy)."""
    return built_caddy(tmp_path_factory.mktemp("caddy-bin"))


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def mailbox(tls: TlsFiles) -> Iterator[StandinMailbox]:
    with StandinMailbox(tls, host=MAILBOX_HOST) as box:
        yield box


EdgeFactory = Callable[[Mapping[int, int]], RunningEdge]


@pytest.fixture
def start_edge(caddy_binary: Path) -> Iterator[EdgeFactory]:
    """Start the rendered edge on free loopback ports in front of ``upstream`` ports."""
    started: list[tuple[RunningEdge, Path]] = []

    def start(upstream: Mapping[int, int], upstream_host: str = MAILBOX_HOST) -> RunningEdge:
        work = short_tempdir()
        layout = EdgeLayout(
            upstream_host=upstream_host,
            listen_host=EDGE_HOST,
            listen={port: free_port(EDGE_HOST) for _, port in MAIL_PORTS},
            upstream=dict(upstream),
            admin_socket=str(work / "admin.sock"),
        )
        edge = RunningEdge(caddy_binary, layout, work)
        started.append((edge, work))
        edge.start()
        return edge

    yield start
    for edge, work in started:
        edge.stop()
        shutil.rmtree(work, ignore_errors=True)


class Recorder:
    """A raw upstream: records every byte each connection sends until EOF, then closes."""

    def __init__(self, host: str = MAILBOX_HOST) -> None:
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.port: int = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.done = threading.Condition()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        data = b""
        with conn:
            try:
                while chunk := conn.recv(65536):
                    data += chunk
            except OSError:
                pass
        with self.done:
            self.received.append(data)
            self.done.notify_all()

    def wait(self, count: int, timeout: float = 30) -> list[bytes]:
        with self.done:
            self.done.wait_for(lambda: len(self.received) >= count, timeout)
            return list(self.received)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def recorders() -> Iterator[dict[int, Recorder]]:
    recs = {port: Recorder() for _, port in MAIL_PORTS}
    yield recs
    for rec in recs.values():
        rec.close()
