"""The JMAP vhost end of "admin not reachable from the internet", run by the real Caddy.

``caddy adapt`` turns the rendered caddy/jmap.caddy into Caddy's own JSON; only the
transport is moved onto loopback (listen address, no automatic HTTPS, the upstream's
dial address); the routes are Caddy's reading of the rendered file. The Stalwart end
(x:Http allowedEndpoints) is proven against a real Stalwart in tests/live/.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from tailwart.edge.render import ADMIN_PATHS, jmap_vhost
from tailwart.settings import Settings
from tailwart.settings.example import example_settings

pytestmark = pytest.mark.integration
SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Upstream:
    """Stands in for Stalwart's :8080: requires a PROXY v2 header, records request lines.

    ``answer`` maps a request path to (status line, body); by default every path gets
    200 "upstream"."""

    def __init__(self, answer: Callable[[str], tuple[bytes, bytes]] | None = None) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.seen: list[tuple[bool, str]] = []
        self.answer = answer or (lambda _path: (b"200 OK", b"upstream"))
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        """Answer one connection (the accept loop closes it after)."""
        head = conn.recv(16, socket.MSG_WAITALL)
        proxied = head[:12] == SIGNATURE
        if proxied:
            conn.recv(struct.unpack("!H", head[14:16])[0], socket.MSG_WAITALL)
            data = conn.recv(4096)
        else:
            data = head + conn.recv(4096)
        line = data.split(b"\r\n", 1)[0].decode(errors="replace")
        self.seen.append((proxied, line))
        parts = line.split(" ")
        status, body = self.answer(parts[1] if len(parts) == 3 else "")
        conn.sendall(
            b"HTTP/1.1 " + status + b"\r\nContent-Length: " + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n" + body
        )  # fmt: skip

    def close(self) -> None:
        self.sock.close()


def _dials(node: Any, port: int) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "dial":
                node[key] = f"127.0.0.1:{port}"
            else:
                _dials(value, port)
    elif isinstance(node, list):
        for item in node:
            _dials(item, port)


def run_caddy(binary: Path, config: Path, port: int) -> subprocess.Popen[bytes]:
    """``caddy run`` on ``config`` (its stderr beside it), once it listens on ``port``."""
    proc = subprocess.Popen(
        [str(binary), "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=config.with_suffix(".log").open("wb"),
        env={"PATH": "/usr/bin:/bin", "HOME": str(config.parent)},
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(
                    "caddy did not listen:\n" + config.with_suffix(".log").read_text()[-2000:]
                ) from None
            time.sleep(0.1)


def adapted_vhost(binary: Path, settings: Settings, work: Path) -> dict[str, Any]:
    """``caddy adapt``'s JSON of the jmap.caddy tailwart renders for ``settings``."""
    snippet = work / "jmap.caddy"
    snippet.write_text(jmap_vhost(settings))
    adapted = subprocess.run(
        [str(binary), "adapt", "--adapter", "caddyfile", "--config", str(snippet)],
        capture_output=True,
        text=True,
        check=True,
    )
    config: dict[str, Any] = json.loads(adapted.stdout)
    return config


@contextmanager
def serving(binary: Path, settings: Settings, work: Path, upstream: Upstream) -> Iterator[str]:
    """The rendered vhost for ``settings``, run by the real Caddy in front of ``upstream``:
    the base URL of its https site (served as plain http on loopback)."""
    config = adapted_vhost(binary, settings, work)
    port = free_port()
    _dials(config, upstream.port)
    config["admin"] = {"listen": f"unix/{work}/admin.sock"}
    for server in config["apps"]["http"]["servers"].values():
        # the https vhost on the port the test asks; the plain-http site (acme-http's
        # challenge route) on a port of its own
        plain = server["listen"] == [":80"]
        server["listen"] = [f"127.0.0.1:{free_port() if plain else port}"]
        server["automatic_https"] = {"disable": True}
    (work / "caddy.json").write_text(json.dumps(config))
    proc = run_caddy(binary, work / "caddy.json", port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def vhost(caddy_binary: Path, tmp_path: Path) -> Iterator[tuple[str, Upstream]]:
    upstream = Upstream()
    try:
        with serving(caddy_binary, example_settings(), tmp_path, upstream) as base:
            yield base, upstream
    finally:
        upstream.close()


def test_admin_paths_are_refused_and_jmap_goes_through_with_proxy_v2(
    vhost: tuple[str, Upstream],
) -> None:
    base, upstream = vhost
    host = {"Host": example_settings()["MAIL_HOSTNAME"]}
    for path in ADMIN_PATHS:
        for suffix in ("", "/", "/schema"):
            response = requests.get(f"{base}{path}{suffix}", headers=host, timeout=10)
            assert response.status_code == 403, (path + suffix, response.status_code)
    assert upstream.seen == []  # none of them reached Stalwart
    response = requests.get(f"{base}/jmap/session", headers=host, timeout=10)
    assert (response.status_code, response.text) == (200, "upstream")
    assert upstream.seen == [(True, "GET /jmap/session HTTP/1.1")]
    # a prefix match, as Stalwart's starts_with(path, '/admin'): both ends refuse the same
    assert requests.get(f"{base}/administrivia", headers=host, timeout=10).status_code == 403
