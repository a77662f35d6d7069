"""A local HTTP server keeping the published contract of Tailscale's policy file API (v2).

Reached through real HTTP on 127.0.0.1 by the code under test:

- ``POST /api/v2/oauth/token`` (form ``client_id``, ``client_secret``) → a Bearer
  access token carrying the client's scopes;
- ``GET /api/v2/tailnet/{tailnet}/acl`` → the stored HuJSON, byte for byte, with
  ``ETag: "<sha256>"`` (``Accept: application/json`` gets comment-less JSON);
- ``POST /api/v2/tailnet/{tailnet}/acl/validate`` → 200 ``{}`` or 200 with a
  ``message`` (+ ``data[].errors``) for unknown fields, undeclared tags or
  failing tests, evaluated for real against the policy's acls and grants;
- ``POST /api/v2/tailnet/{tailnet}/acl`` → ``If-Match`` mismatch 412; an invalid
  policy 400; else stored, 200 with the new ETag;
- 401 for a missing or unknown token, 403 without the ``policy_file`` scope.

Test hooks: ``before_post`` (callables run once each when a write arrives,
e.g. another writer), ``fail_next`` (statuses to answer instead, e.g. 503),
``requests`` (every request seen, with headers).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from tailwart.policy.errors import PolicyInputError
from tailwart.policy.evaluate import validate
from tailwart.policy.hujson import parse


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeTailscale:
    policy: str
    tailnet: str = "example.com"
    #: client_id → (secret, scopes)
    clients: dict[str, tuple[str, frozenset[str]]] = field(default_factory=dict)
    #: bearer token → scopes (API tokens and issued access tokens)
    tokens: dict[str, frozenset[str]] = field(default_factory=dict)
    before_post: list[Callable[[FakeTailscale], None]] = field(default_factory=list)
    #: run at every write (a writer that never stops)
    every_post: Callable[[FakeTailscale], None] | None = None
    fail_next: list[int] = field(default_factory=list)
    requests: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    @property
    def etag(self) -> str:
        return hashlib.sha256(self.policy.encode()).hexdigest()

    def writes(self) -> list[Seen]:
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/acl")]

    def add_client(self, scopes: str = "policy_file") -> tuple[str, str]:
        client_id, secret = "k" + secrets.token_hex(6), "tskey-client-" + secrets.token_hex(16)
        self.clients[client_id] = (secret, frozenset(scopes.split()))
        return client_id, secret

    def add_token(self, scopes: str = "policy_file") -> str:
        token = "tskey-api-" + secrets.token_hex(16)
        self.tokens[token] = frozenset(scopes.split())
        return token


def check_policy(text: str) -> dict[str, Any]:
    """What /acl/validate answers (``{}`` when valid): schema, tags, then the tests."""
    try:
        value = parse(text, "policy").value
    except PolicyInputError as exc:
        return {"message": str(exc)}
    report = validate(value)
    if report.problems:
        return {"message": "; ".join(str(p) for p in report.problems)}
    if report.failures:
        return {
            "message": "test(s) failed",
            "data": [{"user": f.src, "errors": list(f.errors)} for f in report.failures],
        }
    return {}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(
        self,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        data = (
            body
            if isinstance(body, bytes)
            else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
        )
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self, method: str) -> None:
        fake = self.server.fake
        body = self._body()
        with fake.lock:
            fake.requests.append(Seen(method, self.path, dict(self.headers.items()), body))
            if fake.fail_next:
                status = fake.fail_next.pop(0)
                self._send(status, {"message": "injected failure"})
                return
            self._route(fake, method, body)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _scopes(self, fake: FakeTailscale) -> frozenset[str] | None:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return None
        return fake.tokens.get(auth.removeprefix("Bearer "))

    def _route(self, fake: FakeTailscale, method: str, body: bytes) -> None:
        if method == "POST" and self.path == "/api/v2/oauth/token":
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            client = fake.clients.get(form.get("client_id", ""))
            if client is None or client[0] != form.get("client_secret"):
                self._send(401, {"message": "invalid client credentials"})
                return
            token = "tskey-access-" + secrets.token_hex(16)
            fake.tokens[token] = client[1]
            self._send(
                200,
                {
                    "access_token": token,
                    "token_type": "Bearer",
                    "expires_in": 3600,
                    "scope": " ".join(sorted(client[1])),
                },
            )
            return
        prefix = "/api/v2/tailnet/"
        if not self.path.startswith(prefix):
            self._send(404, {"message": "not found"})
            return
        tailnet, _, rest = self.path.removeprefix(prefix).partition("/")
        if tailnet not in ("-", fake.tailnet) or rest not in ("acl", "acl/validate"):
            self._send(404, {"message": "not found"})
            return
        scopes = self._scopes(fake)
        if scopes is None:
            self._send(401, {"message": "API token invalid"})
            return
        can_read = bool(scopes & {"policy_file", "policy_file:read", "acl", "acl:read", "all"})
        can_write = bool(scopes & {"policy_file", "acl", "all"})
        if not can_read or (method == "POST" and not can_write):
            self._send(
                403,
                {
                    "message": "calling actor does not have enough permissions to "
                    "perform this function"
                },
            )
            return
        if method == "GET" and rest == "acl":
            tag = f'"{fake.etag}"'
            if self.headers.get("Accept", "") == "application/json":
                value = parse(fake.policy, "policy").value
                self._send(200, value, {"ETag": tag})
            else:
                self._send(200, fake.policy, {"ETag": tag}, "application/hujson")
            return
        text = body.decode("utf-8", "replace")
        if method == "POST" and rest == "acl/validate":
            self._send(200, check_policy(text))
            return
        if method == "POST" and rest == "acl":
            while fake.before_post:
                fake.before_post.pop(0)(fake)
            if fake.every_post is not None:
                fake.every_post(fake)
            match = self.headers.get("If-Match")
            if match is not None and match != f'"{fake.etag}"':
                self._send(412, {"message": "precondition failed, invalid old hash"})
                return
            verdict = check_policy(text)
            if verdict:
                self._send(400, verdict)
                return
            fake.policy = text
            self._send(200, fake.policy, {"ETag": f'"{fake.etag}"'}, "application/hujson")
            return
        self._send(405, {"message": "method not allowed"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeTailscale


@contextmanager
def serve(fake: FakeTailscale) -> Iterator[FakeTailscale]:
    """Run ``fake`` on 127.0.0.1 (a free port) for the duration of the block."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.fake = fake
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
