"""The JMAP vhost as a second wall in front of Stalwart's management API, run by the real
Caddy (``caddy adapt`` of the rendered caddy/jmap.caddy, only moved onto loopback).

Stalwart v0.16 manages itself over JMAP (``POST /jmap``, ``x:`` methods), so the vhost
cannot refuse management by path. It refuses what it can recognise cheaply: Basic
credentials that Stalwart would read as the management login, and bodies larger than
Stalwart accepts on each path. The oracle of "Stalwart reads this as the management
login" is how Stalwart v0.16.18 reads a Basic header (crates/http/src/auth/authenticate.rs:
scheme compared case-insensitively, ``login.trim().to_lowercase()``, decoded by mail-parser
0.11's ``base64_decode``, which skips blanks and restarts at each ``=``): every hostile
row below is built by hand from those rules, and Python's ``base64`` makes the
canonical encodings.
"""

from __future__ import annotations

import base64
import http.client
import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tailwart.edge.render import BODY_CAP, BODY_CAPS
from tailwart.settings import Settings, from_mapping
from tailwart.settings.example import example_values

from .test_jmap_vhost import SIGNATURE, Upstream, serving

pytestmark = pytest.mark.integration
HOST = "mail.example.org"


@dataclass
class Seen:
    """One request as the upstream stand-in received it."""

    proxied: bool
    line: str
    headers: list[tuple[str, str]]
    body: int = 0
    complete: bool = False
    #: the client the PROXY v2 header names (TCP over IPv4: "address:port")
    source: str = ""


class Recorder(Upstream):
    """Stalwart's :8080 stand-in that reads whole requests: PROXY v2 header, request line,
    every header field (repeats kept), and the body (by Content-Length or chunked)."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        #: released once per connection read to its end (the request, or what came of it)
        self.finished = threading.Semaphore(0)
        super().__init__()

    def _handle(self, conn: socket.socket) -> None:
        try:
            self._read(conn)
        finally:
            self.finished.release()

    def _read(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        reader = conn.makefile("rb")
        head = reader.read(16)
        proxied = head[:12] == SIGNATURE
        source = ""
        if proxied:
            payload = reader.read(struct.unpack("!H", head[14:16])[0])
            if head[13] == 0x11 and len(payload) >= 12:  # TCP over IPv4 (PROXY v2 2.2)
                source = f"{socket.inet_ntoa(payload[:4])}:{struct.unpack('!H', payload[8:10])[0]}"
            head = b""
        first = head + reader.readline()
        headers = []
        while (raw := reader.readline()) not in (b"\r\n", b""):
            name, _, value = raw.decode("latin-1").partition(":")
            headers.append((name.strip(), value.strip()))
        seen = Seen(proxied, first.decode("latin-1").rstrip("\r\n"), headers, source=source)
        self.requests.append(seen)
        fields = {k.lower(): v for k, v in headers}
        try:
            if "content-length" in fields:
                seen.body = len(reader.read(int(fields["content-length"])))
                seen.complete = seen.body == int(fields["content-length"])
            elif fields.get("transfer-encoding", "").lower() == "chunked":
                while (size_line := reader.readline()).endswith(b"\r\n"):
                    if (size := int(size_line.split(b";")[0], 16)) == 0:
                        seen.complete = reader.readline() == b"\r\n"
                        break
                    seen.body += len(reader.read(size))
                    reader.readline()
            else:
                seen.complete = True
        except (OSError, ValueError):
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nupstream")


def settings_for(user: str) -> Settings:
    return from_mapping({**example_values(), "STALWART_MANAGEMENT_USER": user})


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    upstream = Recorder()
    yield upstream
    upstream.close()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def send(base: str, fields: list[tuple[str, str]], path: str = "/jmap") -> int:
    """POST ``path`` with exactly these header fields (repeats too), as http.client sends."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest("POST", path, skip_host=True)
        conn.putheader("Host", HOST)
        for name, value in fields:
            conn.putheader(name, value)
        body = b'{"using":[],"methodCalls":[]}'
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        return conn.getresponse().status
    finally:
        conn.close()


def curl(base: str, user: str, password: str) -> int:
    need_tool("curl")
    done = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-u", f"{user}:{password}",
         "-H", f"Host: {HOST}", "-H", "Content-Type: application/json", "--data", "{}",
         f"{base}/jmap"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return int(done.stdout)


def wget(base: str, user: str, password: str) -> int:
    need_tool("wget")
    done = subprocess.run(
        ["wget", "-S", "-O", "/dev/null", "--auth-no-challenge", f"--user={user}",
         f"--password={password}", f"--header=Host: {HOST}", "--post-data={}", f"{base}/jmap"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return int(done.stderr.split("HTTP/1.1 ", 1)[1][:3])


def need_tool(name: str) -> None:
    if shutil.which(name) is None:
        pytest.skip(f"{name} is not installed")


def by_requests(base: str, user: str, password: str) -> int:
    response = requests.post(
        f"{base}/jmap", json={}, auth=(user, password), headers={"Host": HOST}, timeout=30
    )
    return response.status_code


CLIENTS = {"requests": by_requests, "curl": curl, "wget": wget}


@pytest.mark.parametrize(
    "user",
    # the login and its ":" end a base64 group at each of the three offsets:
    # len("tailwart-admin:") = 15 ≡ 0, len("ops-admin:") = 10 ≡ 1, len("mgmt:") = 5 ≡ 2 (mod 3)
    ["tailwart-admin", "ops-admin", "mgmt"],
)
def test_the_management_login_never_reaches_stalwart_from_real_clients(
    caddy_binary: Path, tmp_path: Path, recorder: Recorder, user: str
) -> None:
    with serving(caddy_binary, settings_for(user), tmp_path, recorder) as base:
        for client, send_as in CLIENTS.items():
            # passwords of every length mod 3, and one holding ":"
            for login, password in (
                (user, "pw"),
                (user, "a:b"),
                (f"{user}@example.org", "longer-password"),
                (user.upper(), "x" * 7),
            ):
                assert send_as(base, login, password) == 403, (client, login, password)
        assert recorder.requests == []  # none of them reached Stalwart
        # other accounts pass, their credentials untouched, with PROXY v2
        others = [f"{user}2", f"{user}istrator", f"x{user}", "alice@example.org"]
        for client, send_as in CLIENTS.items():
            for login in others:
                assert send_as(base, login, "pw") == 200, (client, login)
        sent = [f"Basic {b64(f'{login}:pw')}" for _ in CLIENTS for login in others]
        assert [dict(r.headers).get("Authorization") for r in recorder.requests] == sent
        assert all(r.proxied and r.complete for r in recorder.requests)


def test_what_stalwart_would_read_as_the_management_login_is_refused(
    caddy_binary: Path, tmp_path: Path, recorder: Recorder
) -> None:
    """Hand-made spellings, each of which Stalwart v0.16.18 reads as tailwart-admin (its
    rules in the module docstring)."""
    login = "tailwart-admin:pw"
    token = b64(login)

    def basic(credentials: str, scheme: str = "Basic") -> list[tuple[str, str]]:
        return [("Authorization", f"{scheme} {b64(credentials)}")]

    def raw(value: str) -> list[tuple[str, str]]:
        return [("Authorization", value)]

    rows = {
        "scheme in lower case": basic(login, "basic"),
        "scheme in upper case": basic(login, "BASIC"),
        "login in upper case (lower-cased)": basic("TAILWART-ADMIN:pw"),
        "login as an address": basic("Tailwart-Admin@Example.org:pw"),
        "a blank before the login (trimmed)": basic(" " + login),
        "a tab before the login": basic("\t" + login),
        "an ideographic space before it": basic("\u3000" + login),
        "a blank after the login": basic("tailwart-admin :pw"),
        "a blank inside the base64 (skipped)": raw(f"Basic {token[:4]} {token[4:]}"),
        "a tab inside the base64": raw(f"Basic {token[:8]}\t{token[8:]}"),
        "base64 restarted at '='": raw(f"Basic {b64('t')}{b64(login[1:])}"),
        "two blanks after the scheme (trimmed)": raw(f"Basic  {token}"),
        "two fields, the first is read": basic(login) + basic("alice:pw"),
    }
    with serving(caddy_binary, settings_for("tailwart-admin"), tmp_path, recorder) as base:
        for why, fields in rows.items():
            assert send(base, fields) == 403, why
        assert recorder.requests == []
        # the web admin and management paths stay refused, whoever asks
        for path in ("/api/schema", "/admin/", "/API/principal"):
            assert send(base, [("Authorization", f"Basic {b64('alice:pw')}")], path) == 403
        assert recorder.requests == []
        # and a bearer token or no credentials at all go through
        assert send(base, [("Authorization", "Bearer abc.def")]) == 200
        assert send(base, []) == 200
        assert [r.line for r in recorder.requests] == ["POST /jmap HTTP/1.1"] * 2


@pytest.mark.parametrize(
    ("path", "cap"),
    [
        ("/jmap", BODY_CAP),
        ("/jmap/upload/b/", dict((n, s) for n, _, s in BODY_CAPS)["upload"]),
        ("/dav/file/alice/big.bin", dict((n, s) for n, _, s in BODY_CAPS)["dav"]),
        ("/.well-known/jmap", BODY_CAP),
    ],
)
def test_bodies_over_stalwarts_own_cap_never_reach_it(
    caddy_binary: Path, tmp_path: Path, recorder: Recorder, path: str, cap: int
) -> None:
    with serving(caddy_binary, settings_for("tailwart-admin"), tmp_path, recorder) as base:
        over = requests.post(
            f"{base}{path}", data=b"x" * (cap + 1), headers={"Host": HOST}, timeout=60
        )
        assert over.status_code == 413
        assert recorder.requests == []  # refused on its declared length, before any dial
        # exactly the cap passes, whole
        fits = requests.post(f"{base}{path}", data=b"x" * cap, headers={"Host": HOST}, timeout=60)
        assert fits.status_code == 200
        (seen,) = recorder.requests
        assert (seen.line, seen.body, seen.complete) == (f"POST {path} HTTP/1.1", cap, True)


def test_a_chunked_body_over_the_cap_is_cut_and_never_completes(
    caddy_binary: Path, tmp_path: Path, recorder: Recorder
) -> None:
    """No length declared: Caddy streams the body and stops it at the cap, so Stalwart
    sees an aborted request, never a complete one over its limit."""

    def chunks() -> Iterator[bytes]:
        for _ in range(BODY_CAP // 65536 + 16):
            yield b"x" * 65536

    with serving(caddy_binary, settings_for("tailwart-admin"), tmp_path, recorder) as base:
        response = requests.post(f"{base}/jmap", data=chunks(), headers={"Host": HOST}, timeout=60)
        assert response.status_code == 413
        # the stand-in read the proxied request to its end: Caddy closed it mid-body
        assert recorder.finished.acquire(timeout=60)
        (seen,) = recorder.requests
        assert seen.line == "POST /jmap HTTP/1.1" and seen.proxied
        assert not seen.complete and seen.body <= BODY_CAP
