"""The edge runs with the Go runtime settings the benchmark earned (issue 16).

The oracle is the Go runtime inside the real caddy: its own metrics
(``go_sched_gomaxprocs_threads``, read from runtime/metrics) on the admin socket.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from tailwart.edge.render import MAIL_PORTS, EdgeLayout
from tailwart.edge.run import RunningEdge, short_tempdir
from tailwart.testing.standin import free_port

from .conftest import EDGE_HOST, MAILBOX_HOST, EdgeFactory, Recorder

pytestmark = pytest.mark.integration


def admin_metrics(admin_socket: str) -> str:
    """GET /metrics on caddy's admin unix socket (HTTP/1.0: the server closes)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(admin_socket)
        sock.sendall(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head[:80]
    return body.decode()


def gauge(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in caddy's metrics")


def test_the_local_edge_runs_one_scheduler_thread(start_edge: EdgeFactory) -> None:
    upstream = Recorder()
    try:
        edge = start_edge({25: upstream.port})
        assert gauge(admin_metrics(edge.layout.admin_socket), "go_sched_gomaxprocs_threads") == 1
    finally:
        upstream.close()


def test_an_explicit_environment_overrides_the_runtime_settings(caddy_binary: Path) -> None:
    """Control: the gauge does follow GOMAXPROCS (the benchmark's untuned edge drops it)."""
    upstream = Recorder()
    work = short_tempdir()
    layout = EdgeLayout(
        upstream_host=MAILBOX_HOST,
        listen_host=EDGE_HOST,
        listen={port: free_port(EDGE_HOST) for _, port in MAIL_PORTS},
        upstream={25: upstream.port},
        admin_socket=str(work / "admin.sock"),
    )
    try:
        with RunningEdge(caddy_binary, layout, work, env={"GOMAXPROCS": "2"}):
            assert gauge(admin_metrics(layout.admin_socket), "go_sched_gomaxprocs_threads") == 2
    finally:
        upstream.close()
        shutil.rmtree(work, ignore_errors=True)
