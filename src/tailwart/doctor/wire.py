"""Small socket helpers shared by the edge, TLS and outbound checks."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

from ..greeting import read_line


class WireError(Exception):
    """What went wrong on the wire, in words an operator understands."""


@dataclass(frozen=True)
class Greeting:
    banner: str
    #: the server certificate (DER), when the connection used TLS
    cert_der: bytes | None = None
    tls_version: str = ""


def no_verify_context() -> ssl.SSLContext:
    """TLS that completes against any certificate (the TLS group judges the certificate)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def read_smtp_reply(sock: socket.socket | ssl.SSLSocket) -> list[str]:
    """An SMTP reply: every line up to the one with a space after the code."""
    lines = []
    while True:
        line = read_line(sock)
        lines.append(line)
        if not line or len(line) < 4 or line[3] != "-" or len(lines) > 100:
            return lines


def connect(host: str, port: int, timeout: float) -> socket.socket:
    try:
        return socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError:
        raise WireError(f"{host}:{port} refused the connection") from None
    except TimeoutError:
        raise WireError(f"{host}:{port} did not accept a connection within {timeout:g}s") from None
    except OSError as exc:
        raise WireError(f"{host}:{port}: {exc.strerror or exc}") from None


def tls_wrap(sock: socket.socket, sni: str, context: ssl.SSLContext | None = None) -> ssl.SSLSocket:
    try:
        return (context or no_verify_context()).wrap_socket(sock, server_hostname=sni)
    except ssl.SSLCertVerificationError as exc:
        sock.close()
        raise WireError(f"certificate not trusted: {exc.verify_message or exc.reason}") from None
    except (ssl.SSLError, OSError) as exc:
        sock.close()
        reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        raise WireError(f"no TLS handshake: {reason}") from None


def _ask_starttls(sock: socket.socket, protocol: str, where: str) -> None:
    """The plaintext dialogue that upgrades an SMTP or IMAP session to TLS."""
    if protocol == "smtp":
        sock.sendall(b"EHLO tailwart-doctor\r\n")
        reply = read_smtp_reply(sock)
        if not reply[-1].startswith("250"):
            raise WireError(f"{where}: EHLO refused: {short(reply[-1])!r}")
        if not any(line[4:].strip().upper() == "STARTTLS" for line in reply):
            raise WireError(f"{where}: does not offer STARTTLS")
        sock.sendall(b"STARTTLS\r\n")
        answer = read_smtp_reply(sock)[-1]
        if not answer.startswith("220"):
            raise WireError(f"{where}: STARTTLS refused: {short(answer)!r}")
    elif protocol == "imap":
        sock.sendall(b"t1 STARTTLS\r\n")
        for _ in range(20):  # untagged lines may come first
            line = read_line(sock)
            if not line or line.startswith("t1 "):
                break
        if not line.upper().startswith("T1 OK"):
            raise WireError(f"{where}: STARTTLS refused: {short(line) or 'connection closed'!r}")
    else:  # pragma: no cover - callers pass a literal
        raise ValueError(protocol)


def greet(
    host: str,
    port: int,
    timeout: float,
    *,
    tls: bool = False,
    sni: str = "",
    context: ssl.SSLContext | None = None,
    starttls: str = "",
) -> Greeting:
    """Connect (TLS first when ``tls``), read the server's first line, hang up.

    With ``starttls`` ("smtp" or "imap") the greeting is read in plaintext, the
    session is upgraded with STARTTLS, and the certificate is the upgraded one's.
    """
    sock: socket.socket | ssl.SSLSocket = connect(host, port, timeout)
    cert: bytes | None = None
    version = ""
    try:
        if tls and not starttls:
            sock = tls_wrap(sock, sni or host, context)
            cert = sock.getpeercert(binary_form=True)
            version = sock.version() or ""
        try:
            banner = read_line(sock)
            if starttls:
                assert not isinstance(sock, ssl.SSLSocket)
                _ask_starttls(sock, starttls, f"{host}:{port}")
                sock = tls_wrap(sock, sni or host, context)
                cert = sock.getpeercert(binary_form=True)
                version = sock.version() or ""
        except TimeoutError:
            raise WireError(f"{host}:{port} sent no greeting within {timeout:g}s") from None
        except OSError as exc:
            raise WireError(f"{host}:{port}: {exc}") from None
    finally:
        sock.close()
    return Greeting(banner, cert, version)


def short(text: str, width: int = 60) -> str:
    text = text.strip()
    return text if len(text) <= width else text[: width - 1] + "…"
