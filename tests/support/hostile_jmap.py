"""A hostile Stalwart management API on 127.0.0.1, for the tests of issue 21.

One HTTP server (the standard library's ``http.server``) that answers ``GET
/api/schema`` with the schema redirect a real Stalwart v0.16.18 sent (read from the
recorded exchanges) and ``POST /jmap`` as ``mode`` says:

- ``valid``: every ``x:<Type>/get`` answered with ``objects`` (default: none);
- ``redirect``: ``status`` with a ``Location`` on another origin (``redirect_to``);
- ``huge``: a 600 MiB ``Content-Length`` whose bytes flow until the client hangs up;
- ``trickle``: a body one byte every 50 ms, forever; ``trickle-headers``: the same
  inside the header block;
- ``raw``: ``body`` as it is (not JSON, wrong shapes, control characters);
- ``error``: every call answered with a JMAP ``error`` whose description is
  ``description``, where ``{echo}`` becomes the echoed credential (below).

``{echo}`` in ``description`` or in an object's strings is replaced by the credential
the client sent, in every encoding a careless server might quote it in (``echoes``).
The server keeps what it received (``received``) and what it sent (``sent_bytes``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "stalwart-0.16.18"


def recorded_schema_hash() -> str:
    """The schema hash a real Stalwart v0.16.18 redirected to (the recorded exchange)."""
    first = (FIXTURES / "02-check-clean.jsonl").read_text().splitlines()[0]
    return str(json.loads(first)["schema"])


def echoes(credential: str) -> list[str]:
    """``credential`` (``name:password``) and its password, each raw, JSON-escaped,
    percent-encoded and in base64, the way a server may quote what it received."""
    out = []
    for value in (credential, credential.partition(":")[2]):
        raw = value.encode()
        out += [
            value,
            json.dumps(value)[1:-1],
            quote(value, safe=""),
            quote_plus(value),
            base64.b64encode(raw).decode(),
            base64.urlsafe_b64encode(raw).decode().rstrip("="),
        ]
    return out


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def credential(self) -> str:
        """The ``name:password`` of the Basic Authorization header ('' without one)."""
        kind, _, value = self.headers.get("Authorization", "").partition(" ")
        return base64.b64decode(value).decode() if kind == "Basic" else ""


@dataclass
class HostileJmap:
    mode: str = "valid"
    status: int = 307
    redirect_to: str = ""
    body: bytes = b""
    description: str = ""
    #: type ("x:Certificate") -> its objects, for ``valid``
    objects: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    sent_bytes: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @contextlib.contextmanager
    def running(self) -> Iterator[HostileJmap]:
        hostile = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _record(self) -> Received:
                length = int(self.headers.get("Content-Length") or 0)
                seen = Received(
                    self.command, self.path, dict(self.headers.items()), self.rfile.read(length)
                )
                hostile.received.append(seen)
                return seen

            def _send(self, data: bytes) -> None:
                self.wfile.write(data)
                self.wfile.flush()
                hostile.sent_bytes += len(data)

            def do_GET(self) -> None:
                self._record()
                self.send_response(307)
                self.send_header("Location", f"/api/schema/{recorded_schema_hash()}")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                seen = self._record()
                with contextlib.suppress(OSError):  # the client hung up: what we want
                    hostile.answer(self, seen)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()

    def answer(self, handler: Any, seen: Received) -> None:
        echo = echoes(seen.credential())
        if self.mode == "redirect":
            handler.send_response(self.status)
            handler.send_header("Location", self.redirect_to)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        elif self.mode == "huge":
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(600 * 1024 * 1024))
            handler.end_headers()
            chunk = b"[" + b" " * 65535
            while self.sent_bytes < 600 * 1024 * 1024:
                handler._send(chunk)
        elif self.mode == "trickle":
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", "1000000")
            handler.end_headers()
            handler._send(b'{"methodResponses": ')
            while True:
                handler._send(b" ")
                time.sleep(0.05)
        elif self.mode == "trickle-headers":
            handler._send(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while True:
                handler._send(b"a")
                time.sleep(0.05)
        elif self.mode == "raw":
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(self.body)))
            handler.end_headers()
            handler._send(self.body)
        else:
            calls = json.loads(seen.body)["methodCalls"]
            responses = []
            for name, _args, call_id in calls:
                if self.mode == "error":
                    text = self.description.replace("{echo}", " ".join(echo))
                    responses.append(["error", {"type": "forbidden", "description": text}, call_id])
                else:
                    found = self.objects.get(name.rsplit("/", 1)[0], [])
                    listed = _filled(found, " ".join(echo))
                    responses.append([name, {"accountId": "a", "list": listed}, call_id])
            data = json.dumps({"methodResponses": responses}).encode()
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler._send(data)


def _filled(value: Any, echo: str) -> Any:
    """``value`` with ``{echo}`` replaced by ``echo`` in every string."""
    if isinstance(value, str):
        return value.replace("{echo}", echo)
    if isinstance(value, dict):
        return {k: _filled(v, echo) for k, v in value.items()}
    if isinstance(value, list):
        return [_filled(v, echo) for v in value]
    return value
