"""What a mail server says first, and reading it off a socket.

Shared by the edge's health gate (``edge/health.py``: through a fresh edge, the
upstream greets) and ``inv doctor`` (``doctor/wire.py``: each public port greets).
"""

from __future__ import annotations

import socket
import ssl

#: the greeting each public mail port's server sends first (on 465/993: inside TLS)
EXPECTED: dict[int, str] = {25: "220", 465: "220", 587: "220", 143: "* OK", 993: "* OK"}
#: any mail greeting: SMTP ``220``, IMAP ``* OK``
GREETINGS: tuple[str, ...] = tuple(sorted(set(EXPECTED.values())))


def read_line(sock: socket.socket | ssl.SSLSocket, limit: int = 1024) -> str:
    """One line (CR LF stripped), at most ``limit`` bytes; '' when the peer closed first.
    A timeout or a reset raises (OSError)."""
    data = b""
    while not data.endswith(b"\n") and len(data) < limit:
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8", "replace").rstrip("\r\n")
