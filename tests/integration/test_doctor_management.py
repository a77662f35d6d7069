"""``inv doctor --only management``: tailwart's login posted through the public vhost must
be refused. A stand-in HTTPS server on loopback plays the edge's vhost and Stalwart behind
it, answering as each case needs; the task runs as an operator runs it. What a real
Stalwart and the real Caddy answer is in tests/live (``test_doctor_finds_the_management_
login_refused_through_the_vhost``)."""

from __future__ import annotations

import base64
import http.server
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tailwart.testing.standin import TlsFiles, make_self_signed
from tests.support.testkit import inv, write_env

pytestmark = pytest.mark.integration

OK_ANSWER = {"methodResponses": [["x:Domain/get", {"list": []}, "c0"]]}
REFUSED_METHOD = {"methodResponses": [["error", {"type": "forbidden"}, "c0"]]}


class Vhost:
    """The public JMAP vhost (and Stalwart behind it) as the doctor's probe meets it:
    answers every POST with ``status`` and ``answer``, recording what it received."""

    def __init__(self, tls_dir: Path, hostname: str, tls: TlsFiles | None = None) -> None:
        self.status, self.answer = 401, b""
        self.seen: list[tuple[str, str, bytes]] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.seen.append((self.path, self.headers.get("Authorization") or "", body))
                self.send_response(owner.status)
                self.send_header("Content-Length", str(len(owner.answer)))
                self.end_headers()
                self.wfile.write(owner.answer)

            def log_message(self, *_: Any) -> None:
                pass

        self.tls = tls or make_self_signed(tls_dir, hostname)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.tls.cert, self.tls.key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def vhost(tmp_path: Path, example_values: dict[str, str]) -> Iterator[Vhost]:
    server = Vhost(tmp_path / "tls", example_values["MAIL_HOSTNAME"])
    yield server
    server.close()


def doctor(vhost: Vhost, tmp_path: Path, values: dict[str, str]) -> tuple[dict[str, Any], str]:
    env = write_env(tmp_path / ".env", values)
    result = inv(
        "doctor", "--only", "management", "--edge", "127.0.0.1", "--port", f"443={vhost.port}",
        "--ca-file", str(vhost.tls.cert), "--json", "--env-file", str(env), cwd=tmp_path,
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert "unexpected" not in out and "Traceback" not in out, out
    assert values["STALWART_MANAGEMENT_PASSWORD"] not in out
    (finding,) = json.loads(result.stdout)["findings"]
    return finding, out


@pytest.mark.parametrize(
    ("status", "answer", "verdict", "says"),
    [
        (401, b"", "ok", "Stalwart refuses the management login from the internet (401)"),
        (403, b"", "ok", "the management login is refused (403)"),
        (200, json.dumps(OK_ANSWER).encode(), "error", "ran an x: method from the internet"),
        (200, json.dumps(REFUSED_METHOD).encode(), "error", "accepted the management login"),
        (502, b"bad gateway", "warning", "answered 502"),
    ],
)
def test_the_probe_judges_what_the_vhost_answers(
    vhost: Vhost,
    tmp_path: Path,
    example_values: dict[str, str],
    status: int,
    answer: bytes,
    verdict: str,
    says: str,
) -> None:
    vhost.status, vhost.answer = status, answer
    finding, _ = doctor(vhost, tmp_path, example_values)
    assert finding["id"] == "management.internet"
    assert finding["status"] == verdict, finding
    assert says in finding["message"], finding
    # what crossed the wire: one POST /jmap, the management login, an x: method
    ((path, authorization, body),) = vhost.seen
    assert path == "/jmap"
    scheme, _, token = authorization.partition(" ")
    login = f"tailwart-admin@{example_values['MAIL_DOMAIN']}"
    assert scheme == "Basic"
    assert base64.b64decode(token).decode() == (
        f"{login}:{example_values['STALWART_MANAGEMENT_PASSWORD']}"
    )
    assert json.loads(body)["methodCalls"][0][0] == "x:Domain/get"


def test_an_unverified_certificate_is_a_warning_and_sends_nothing(
    vhost: Vhost, tmp_path: Path, example_values: dict[str, str]
) -> None:
    other = make_self_signed(tmp_path / "other", example_values["MAIL_HOSTNAME"])
    env = write_env(tmp_path / ".env", example_values)
    result = inv(
        "doctor", "--only", "management", "--edge", "127.0.0.1", "--port", f"443={vhost.port}",
        "--ca-file", str(other.cert), "--json", "--env-file", str(env), cwd=tmp_path,
    )  # fmt: skip
    (finding,) = json.loads(result.stdout)["findings"]
    assert finding["status"] == "warning" and "no answer" in finding["message"], finding
    assert vhost.seen == []  # the credential never left before the certificate was verified
