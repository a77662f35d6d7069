"""The health gate: through every public port, the upstream answers.

Accepting TCP proves only that caddy listens: caddy-l4 accepts first and dials the
upstream afterwards, so an edge that cannot resolve or reach the mailbox still
accepts. By default the gate therefore asks the upstream itself, through the edge:
on a plaintext port it waits for the mail greeting (SMTP ``220``, IMAP ``* OK``);
on an implicit-TLS port (465, 993) it sends a TLS ClientHello and waits for the
upstream's first bytes (its ServerHello). An edge that closes or stays silent fails.
``greeting=False`` (``--no-check-greeting``) falls back to the TCP-only check.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from dataclasses import dataclass

from ..greeting import GREETINGS, read_line
from .render import IMPLICIT_TLS_PORTS, MAIL_PORTS

#: caddy.json servers whose upstream speaks first in plaintext (SMTP 220, IMAP * OK)
PLAINTEXT_SERVERS = frozenset(name for name, port in MAIL_PORTS if port not in IMPLICIT_TLS_PORTS)


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


def _tls_answer(sock: socket.socket) -> int:
    """Send a TLS ClientHello; the number of bytes the far end answers with (0 = closed)."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing)
    with contextlib.suppress(ssl.SSLWantReadError):  # it waits for the server's answer
        tls.do_handshake()
    sock.sendall(outgoing.read())
    return len(sock.recv(4096))


def check_port(
    host: str,
    name: str,
    port: int,
    *,
    greeting: bool,
    timeout: float,
    deadline: float,
    tls: bool = False,
) -> PortCheck:
    """Retry until ``deadline``: accept, and (with ``greeting``) hear the upstream answer.

    ``tls``: the upstream speaks TLS first from us (implicit TLS): send a ClientHello
    and wait for its answer; else read the plaintext greeting.
    """
    last = "no attempt"
    while True:
        connected = False
        try:
            with _connect(host, port, timeout) as sock:
                connected = True
                if not greeting:
                    return PortCheck(name, port, True, "accepts TCP")
                sock.settimeout(timeout)
                if tls:
                    answer = _tls_answer(sock)
                    if answer:
                        return PortCheck(
                            name, port, True, f"upstream answered a TLS hello ({answer} bytes)"
                        )
                    raise ConnectionError("the edge closed without an answer from upstream")
                line = read_line(sock, limit=512).strip()
                if line.startswith(GREETINGS):
                    return PortCheck(name, port, True, f"greeting {line[:40]!r}")
                last = f"no greeting through the edge (got {line[:40]!r})"
        except TimeoutError:
            last = (
                f"accepted, but nothing came through the edge within {timeout:g} s"
                if connected
                else f"no TCP answer within {timeout:g} s"
            )
        except OSError as exc:
            last = exc.strerror or str(exc) or type(exc).__name__
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
    host: str, config: str, *, greeting: bool = True, timeout: float = 5.0
) -> list[PortCheck]:
    """Check every listener of ``config`` on ``host`` (or the address it binds).

    With ``greeting`` (the default), the upstream must answer through every port: its
    greeting on the plaintext ports, a TLS answer on the implicit-TLS ones.
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
                greeting=greeting,
                timeout=min(timeout, 3.0),
                deadline=deadline,
                tls=name not in PLAINTEXT_SERVERS,
            )
        )
    return checks
