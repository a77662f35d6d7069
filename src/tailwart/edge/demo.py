"""``inv demo``: the edge's main job on one machine, with built-in values and no accounts.

Builds (or reuses) caddy-l4, renders the edge from the built-in example settings onto
unprivileged loopback ports, starts a stand-in mailbox that requires PROXY v2 on
every port, and speaks real SMTP and IMAP through the edge from a distinct loopback
address. It then prints what the mailbox saw, the client's address carried by
PROXY v2 next to the edge's own address, and stops everything it started.
"""

from __future__ import annotations

import imaplib
import shutil
import smtplib
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, replace
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

from ..errors import OperationError
from ..settings.example import example_settings
from ..testing.standin import Message, Seen, StandinMailbox, TlsFiles, free_port, make_self_signed
from .build import Built, ensure_caddy
from .render import MAIL_PORTS, layout_for
from .run import RunningEdge, short_tempdir

EDGE_HOST = "127.0.0.1"
MAILBOX_HOST = "127.0.0.2"
CLIENT_HOST = "127.0.0.23"
TIMEOUT = 15.0


class DemoError(OperationError):
    """The demo did not prove the wire (exit 1); the message says where it broke."""


@dataclass(frozen=True)
class Exchange:
    """One client session through the edge."""

    port: int
    client: tuple[str, int]  #: the client's own address and port
    result: str  #: what the client got


def _tls_context(tls: TlsFiles) -> ssl.SSLContext:
    """Trust only the mailbox's certificate; the client dials an IP, so no name check."""
    ctx = ssl.create_default_context(cafile=str(tls.cert))
    ctx.check_hostname = False
    return ctx


def _peer_cert_matches(sock: Any, tls: TlsFiles) -> bool:
    der = sock.getpeercert(binary_form=True)
    return bool(der) and ssl.DER_cert_to_PEM_cert(der).strip() == tls.cert.read_text().strip()


class _IMAP(imaplib.IMAP4):
    source: tuple[str, int] = (CLIENT_HOST, 0)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout, self.source)


class _IMAPS(imaplib.IMAP4_SSL):
    source: tuple[str, int] = (CLIENT_HOST, 0)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        raw = socket.create_connection((self.host, self.port), timeout, self.source)
        context: ssl.SSLContext = self.ssl_context
        return context.wrap_socket(raw, server_hostname=None)


def _message(port: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "demo-sender@client.tailwart.test"
    msg["To"] = "postmaster@mailbox.tailwart.test"
    msg["Subject"] = f"tailwart demo through the edge (port {port})"
    msg["Message-ID"] = make_msgid(domain="client.tailwart.test")
    msg.set_content("Sent by `inv demo` through caddy-l4; the mailbox saw the real client.\n")
    return msg


def _smtp(port: int, edge_port: int, tls: TlsFiles) -> Exchange:
    ctx = _tls_context(tls)
    kwargs: dict[str, Any] = {
        "source_address": (CLIENT_HOST, 0),
        "local_hostname": "client.tailwart.test",
        "timeout": TIMEOUT,
    }
    smtp: smtplib.SMTP
    if port == 465:
        smtp = smtplib.SMTP_SSL(EDGE_HOST, edge_port, context=ctx, **kwargs)
    else:
        smtp = smtplib.SMTP(EDGE_HOST, edge_port, **kwargs)
    try:
        assert smtp.sock is not None
        client = smtp.sock.getsockname()[:2]
        smtp.ehlo()
        how = "implicit TLS" if port == 465 else "plain"
        if port == 587:
            smtp.starttls(context=ctx)
            smtp.ehlo()
            how = "STARTTLS"
        if port != 25 and not _peer_cert_matches(smtp.sock, tls):
            raise DemoError(f"port {port}: the TLS certificate is not the mailbox's")
        msg = _message(port)
        smtp.send_message(msg)
        return Exchange(port, client, f"EHLO, {how}, message accepted")
    finally:
        smtp.quit()


def _imap(port: int, edge_port: int, tls: TlsFiles) -> Exchange:
    imap: imaplib.IMAP4
    if port == 993:
        imap = _IMAPS(EDGE_HOST, edge_port, ssl_context=_tls_context(tls), timeout=TIMEOUT)
        if not _peer_cert_matches(imap.sock, tls):
            raise DemoError("port 993: the TLS certificate is not the mailbox's")
    else:
        imap = _IMAP(EDGE_HOST, edge_port, timeout=TIMEOUT)
    client = imap.sock.getsockname()[:2]
    greeting = imap.welcome.decode(errors="replace")
    greeting = greeting if len(greeting) < 56 else greeting[:53] + "…"
    typ, _ = imap.capability()
    imap.logout()
    how = "TLS, mailbox certificate" if port == 993 else "plain"
    return Exchange(port, client, f"greeting {greeting!r}, CAPABILITY {typ} ({how})")


def run_demo(
    say: Callable[[str], None] = print,
    *,
    progress: Callable[[str], None] | None = None,
    built: Built | None = None,
) -> list[Seen]:
    """Run the demo; returns what the mailbox saw. Raises DemoError when the wire is wrong."""
    built = built or ensure_caddy(*_host(), progress=progress)
    work = short_tempdir("tailwart-demo-")
    try:
        return _run(built, work, say)
    except OSError as exc:
        raise DemoError(
            f"the demo could not set up its loopback servers: {exc}\n"
            f"Next: it needs Linux loopback addresses {EDGE_HOST}, {MAILBOX_HOST} and "
            f"{CLIENT_HOST} (all of 127.0.0.0/8 is local on Linux)."
        ) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _host() -> tuple[str, str]:
    from .build import _host_target

    return _host_target()


def _run(built: Built, work: Path, say: Callable[[str], None]) -> list[Seen]:
    tls = make_self_signed(work / "tls")
    settings = example_settings()
    say(f"tailwart demo: caddy-l4 edge → stand-in mailbox, on loopback ({built.action} build)")
    say(f"  caddy    {built.path.name}  sha256 {built.sha256[:16]}…")
    with StandinMailbox(tls, host=MAILBOX_HOST) as mailbox:
        layout = replace(
            layout_for(settings),
            listen_host=EDGE_HOST,
            listen={port: free_port(EDGE_HOST) for _, port in MAIL_PORTS},
            upstream_host=MAILBOX_HOST,
            upstream=mailbox.ports,
            admin_socket=str(work / "admin.sock"),
        )
        with RunningEdge(built.path, layout, work / "edge") as edge:
            say(
                f"  edge     {EDGE_HOST}, rendered by tailwart.edge.render from the built-in "
                f"example settings ({settings['MAIL_HOSTNAME']}); caddy validate ok; running"
            )
            say(f"  mailbox  {MAILBOX_HOST}, PROXY v2 required on every port")
            say(f"  client   {CLIENT_HOST}, real smtplib/imaplib sessions")
            exchanges = []
            try:
                for _, port in MAIL_PORTS:
                    talk = _smtp if port in (25, 465, 587) else _imap
                    exchanges.append(talk(port, layout.listen_port(port), tls))
            except (OSError, smtplib.SMTPException, imaplib.IMAP4.error) as exc:
                raise DemoError(
                    f"a session through the edge failed: {exc}\n"
                    f"caddy log (tail):\n{edge.log_text()[-1500:]}"
                ) from None
            mailbox.wait_for(
                lambda seen, msgs: len(seen) >= len(MAIL_PORTS) and len(msgs) >= 3, TIMEOUT
            )
            seen, messages = mailbox.seen, mailbox.messages
        edge_log = (work / "edge" / "caddy.log").read_text(errors="replace")
    _report(layout.listen_port, exchanges, seen, messages, say)
    if "shutdown complete" not in edge_log:
        raise DemoError("caddy did not report a clean shutdown")
    say("  everything stopped: caddy exited, mailbox closed, temp files removed.")
    return seen


def _fmt(addr: tuple[str, int] | None) -> str:
    return f"{addr[0]}:{addr[1]}" if addr else "-"


def _report(
    listen_port: Callable[[int], int],
    exchanges: list[Exchange],
    seen: list[Seen],
    messages: list[Message],
    say: Callable[[str], None],
) -> None:
    by_src = {s.src: s for s in seen if s.src}
    head = (
        f"{'port':<5} {'service':<12} {'client sent from':<18} {'mailbox saw (PROXY v2)':<23} "
        f"{'edge listener':<16} edge own address"
    )
    say("")
    say(head)
    say("-" * len(head))
    problems = []
    for ex in exchanges:
        got = by_src.get(ex.client)
        name = dict((p, n) for n, p in MAIL_PORTS)[ex.port]
        say(
            f"{ex.port:<5} {name:<12} {_fmt(ex.client):<18} {_fmt(got.src if got else None):<23} "
            f"{_fmt(got.dst if got else None):<16} {_fmt(got.peer if got else None)}"
        )
        say(f"{'':<18} └ {ex.result}")
        if got is None:
            problems.append(
                f"port {ex.port}: the mailbox saw no PROXY header from {_fmt(ex.client)}"
            )
        elif got.port != ex.port:
            problems.append(f"port {ex.port}: the client arrived on mailbox port {got.port}")
        elif got.dst != (EDGE_HOST, listen_port(ex.port)):
            problems.append(f"port {ex.port}: PROXY destination {_fmt(got.dst)} is not the edge")
    for ex in exchanges:
        if ex.port in (25, 465, 587) and not any(
            m.port == ex.port and m.client == ex.client for m in messages
        ):
            problems.append(f"port {ex.port}: the message did not reach the mailbox")
    for m in messages:
        subject = next(
            (
                ln
                for ln in m.data.decode(errors="replace").splitlines()
                if ln.startswith("Subject:")
            ),
            "",
        )
        say(f"mailbox stored {len(m.data)} bytes from {_fmt(m.client)}: {subject}")
    refused = [s for s in seen if s.error]
    problems += [f"port {s.port}: mailbox refused {_fmt(s.peer)}: {s.error}" for s in refused]
    say("")
    if problems:
        raise DemoError("the demo failed:\n" + "\n".join("  " + p for p in problems))
    say(
        "OK: on every port the mailbox saw the client's own address and port (PROXY v2),\n"
        f"    while its TCP peer was the edge ({EDGE_HOST}); TLS stayed end to end."
    )
