"""The health gate: every public port accepts TCP; optionally the upstream greets through it."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass

from .render import IMPLICIT_TLS_PORTS, MAIL_PORTS

#: caddy.json servers whose upstream speaks first in plaintext (SMTP 220, IMAP * OK)
PLAINTEXT_SERVERS = frozenset(name for name, port in MAIL_PORTS if port not in IMPLICIT_TLS_PORTS)

#: what a mail server says first on a plaintext port
GREETINGS = (b"220", b"* OK")


@dataclass(frozen=True)
class PortCheck:
    name: str
    port: int
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"{self.name}:{self.port} {'ok' if self.ok else 'FAILED'} ({self.detail})"


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    return socket.create_connection((host, port), timeout=timeout)


def check_port(
    host: str, name: str, port: int, *, greeting: bool, timeout: float, deadline: float
) -> PortCheck:
    """Retry until ``deadline``: accept, and (with ``greeting``) read a mail greeting."""
    last = "no attempt"
    while True:
        try:
            with _connect(host, port, timeout) as sock:
                if not greeting:
                    return PortCheck(name, port, True, "accepts TCP")
                sock.settimeout(timeout)
                data = b""
                while b"\n" not in data and len(data) < 512:
                    chunk = sock.recv(512)
                    if not chunk:
                        break
                    data += chunk
                line = data.split(b"\n", 1)[0].strip()
                if line.startswith(GREETINGS):
                    return PortCheck(
                        name, port, True, f"greeting {line[:40].decode(errors='replace')!r}"
                    )
                last = f"no greeting through the edge (got {line[:40]!r})"
        except OSError as exc:
            last = str(exc) or type(exc).__name__
        if time.monotonic() >= deadline:
            return PortCheck(name, port, False, last)
        time.sleep(0.2)


def listeners(config: str) -> list[tuple[str, str, int]]:
    """(server name, host, port) of every layer4 listener in a caddy.json document."""
    doc = json.loads(config) if config.strip() else {}
    servers = doc.get("apps", {}).get("layer4", {}).get("servers", {})
    found: list[tuple[str, str, int]] = []
    for name, server in sorted(servers.items()):
        for addr in server.get("listen", []):
            host, _, port = str(addr).rpartition(":")
            found.append((name, host.strip("[]"), int(port)))
    return found


def health_gate(
    host: str, config: str, *, greeting: bool = False, timeout: float = 5.0
) -> list[PortCheck]:
    """Check every listener of ``config`` on ``host`` (or the address it binds).

    With ``greeting``, the plaintext mail ports must also return the upstream's greeting.
    """
    deadline = time.monotonic() + timeout
    checks = []
    for name, bind, port in listeners(config):
        target = bind if bind and bind not in ("0.0.0.0", "::") else host
        checks.append(
            check_port(
                target,
                name,
                port,
                greeting=greeting and name in PLAINTEXT_SERVERS,
                timeout=min(timeout, 3.0),
                deadline=deadline,
            )
        )
    return checks
