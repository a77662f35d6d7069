"""Doctor groups edge and tls against real greeting servers on loopback (TLS made per run)."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from tailwart.doctor import runner
from tailwart.doctor.registry import DoctorContext, DoctorOptions, registry
from tailwart.findings import Finding, Status
from tests.support.backend_env import HOST, edge_servers, inv, settings, values
from tests.support.backend_servers import LineServer, Pki, closed_port, line_servers
from tests.support.testkit import self_signed_ca, write_env

pytestmark = pytest.mark.integration


def run_groups(
    groups: tuple[str, ...],
    ports: dict[int, int],
    ca_file: str = "",
) -> dict[str, Finding]:
    options = DoctorOptions(edge_host="127.0.0.1", port_map=ports, ca_file=ca_file, timeout=3)
    ctx = DoctorContext(settings(), options)
    return {f.id: f for f in runner.run(ctx, registry(ctx, groups))}


def test_every_port_greets_through_the_edge(pki: Pki) -> None:
    servers = edge_servers(pki)
    with line_servers(*servers.values()):
        found = run_groups(("edge", "tls"), {p: s.port for p, s in servers.items()}, pki.ca_file)
    assert {k: f.status for k, f in found.items()} == dict.fromkeys(
        [
            "edge.smtp",
            "edge.submissions",
            "edge.submission",
            "edge.imap",
            "edge.imaps",
            "tls.submissions",
            "tls.imaps",
            "tls.submission",
            "tls.imap",
        ],
        Status.OK,
    )
    assert found["edge.smtp"].message.endswith("(public :25): 220 mail.good.test ESMTP Stalwart")
    assert "TLSv1.3, * OK [CAPABILITY IMAP4rev2] Stalwart ready" in found["edge.imaps"].message
    assert f"valid for {HOST} until" in found["tls.imaps"].message
    assert "issuer tailwart test CA" in found["tls.imaps"].message
    assert "(public :587) after STARTTLS: valid for" in found["tls.submission"].message
    assert "(public :143) after STARTTLS: valid for" in found["tls.imap"].message


TLS_PORTS = (465, 993, 587, 143)
TLS_CHECKS = ("tls.submissions", "tls.imaps", "tls.submission", "tls.imap")


def test_closed_port_wrong_greeting_and_plaintext_on_a_tls_port(pki: Pki) -> None:
    servers = edge_servers(pki)
    servers[25] = LineServer("554 5.7.1 no PROXY header")
    servers[993] = LineServer("* OK plaintext where TLS belongs")
    servers[465] = LineServer("", tls=servers[465].tls)  # TLS, then silence closing
    servers[587] = LineServer("* OK Dovecot ready")  # the edge dials the wrong service
    with line_servers(*servers.values()):
        ports = {p: s.port for p, s in servers.items()}
        ports[143] = closed_port()
        found = run_groups(("edge",), ports)
    assert found["edge.smtp"].status is Status.ERROR
    assert "expected '220' greeting, got '554 5.7.1 no PROXY header'" in found["edge.smtp"].message
    assert found["edge.imap"].status is Status.ERROR
    assert "refused the connection" in found["edge.imap"].message
    assert "caddy-l4 running" in found["edge.imap"].advice
    assert found["edge.imaps"].status is Status.ERROR
    assert "no TLS handshake" in found["edge.imaps"].message
    assert "pass TLS through" in found["edge.imaps"].advice
    assert found["edge.submissions"].status is Status.ERROR
    assert found["edge.submission"].status is Status.ERROR
    assert "expected '220' greeting, got '* OK Dovecot ready'" in found["edge.submission"].message


@pytest.mark.parametrize(
    ("days", "names", "ca", "status", "text"),
    [
        (10, (HOST,), True, Status.WARNING, "expires"),
        (2, (HOST,), True, Status.ERROR, "expires"),
        (-1, (HOST,), True, Status.ERROR, "expired on"),
        (
            90,
            ("other.good.test",),
            True,
            Status.ERROR,
            "is for other.good.test, not mail.good.test",
        ),
        (90, ("*.good.test",), True, Status.OK, "valid for mail.good.test"),
        (90, (HOST,), False, Status.ERROR, "certificate not trusted"),
    ],
    ids=["10-days", "2-days", "expired", "wrong-name", "wildcard", "untrusted"],
)
def test_certificate_expiry_name_and_trust(
    pki: Pki,
    days: float,
    names: tuple[str, ...],
    ca: bool,
    status: Status,
    text: str,
) -> None:
    servers = edge_servers(pki, days, names)
    with line_servers(*(servers[p] for p in TLS_PORTS)):
        found = run_groups(
            ("tls",), {p: servers[p].port for p in TLS_PORTS}, pki.ca_file if ca else ""
        )
    for check in TLS_CHECKS:
        assert found[check].status is status, found[check]
        assert text in found[check].message
        if status is not Status.OK:  # the advice names the mode and its next step
            assert "STALWART_TLS=acme-http: check that the JMAP vhost" in found[check].advice


def test_self_signed_certificate_is_an_error_that_says_what_to_do(pki: Pki) -> None:
    """What Stalwart serves when no certificate is configured (a self-signed one)."""
    tls = pki.context("self-signed", [HOST], 90, self_signed=True)
    servers = {
        465: LineServer("220 mail.good.test ESMTP", tls=tls),
        993: LineServer("* OK ready", tls=tls),
        587: LineServer("220 mail.good.test ESMTP", ehlo=["STARTTLS"], starttls=tls),
        143: LineServer("* OK [CAPABILITY IMAP4rev2 STARTTLS] ready", starttls=tls),
    }
    with line_servers(*servers.values()):
        found = run_groups(("tls",), {p: s.port for p, s in servers.items()}, pki.ca_file)
    for check in TLS_CHECKS:
        assert found[check].status is Status.ERROR, found[check]
        assert "self-signed certificate" in found[check].message
        assert found[check].advice.startswith(
            "Stalwart serves its own self-signed certificate when it has none: "
            "STALWART_TLS=acme-http: check that the JMAP vhost is deployed"
        )
        assert found[check].advice.endswith("then `inv provision --check`")


def test_starttls_not_offered_or_refused(pki: Pki) -> None:
    servers = {
        587: LineServer("220 mail.good.test ESMTP", ehlo=["PIPELINING"]),
        143: LineServer("* OK ready"),  # hangs up instead of answering STARTTLS
    }
    with line_servers(*servers.values()):
        ports = {p: s.port for p, s in servers.items()}
        ports.update({465: closed_port(), 993: closed_port()})
        found = run_groups(("tls",), ports, pki.ca_file)
    assert found["tls.submission"].status is Status.ERROR
    assert "does not offer STARTTLS" in found["tls.submission"].message
    assert found["tls.imap"].status is Status.ERROR
    # the server hangs up on STARTTLS: seen as a closed connection or, when our
    # command crosses its close, a reset; never as a certificate
    message = found["tls.imap"].message
    assert "STARTTLS refused: 'connection closed'" in message or "reset by peer" in message


def test_tls_port_without_tls_is_an_error(pki: Pki) -> None:
    plain = LineServer("220 plaintext")
    with line_servers(plain):
        found = run_groups(("tls",), {465: plain.port, 993: closed_port()})
    assert found["tls.submissions"].status is Status.ERROR
    assert "no TLS handshake" in found["tls.submissions"].message
    assert "refused the connection" in found["tls.imaps"].message


def test_a_port_that_accepts_but_never_greets_times_out() -> None:
    silent = LineServer("", hold=True)
    with line_servers(silent):
        options = DoctorOptions(edge_host="127.0.0.1", port_map={25: silent.port}, timeout=1)
        ctx = DoctorContext(settings(), options)
        found = runner.run(ctx, [c for c in registry(ctx, ("edge",)) if c.id == "edge.smtp"])
    assert found[0].status is Status.ERROR
    assert found[0].message.endswith(f"127.0.0.1:{silent.port} sent no greeting within 1s")


#: what a hostile edge (or a certificate's issuer) would like to print: clear the screen,
#: go back to the line start, forge a clean result, flip the text's direction
FORGED = "\x1b[2J\x1b[H\rok    all fine\u202e\x07"


def test_what_a_hostile_edge_says_reaches_the_terminal_escaped(tmp_path: Path) -> None:
    """Issue 21, finding 6, through the task runner: a greeting and a certificate issuer
    holding control characters are printed escaped, each finding on its own line."""
    key, ca = self_signed_ca(f"evil CA {FORGED}")
    hostile = Pki(tmp_path, key, ca)
    tls = hostile.context("hostile", [HOST], 90)
    servers = {
        25: LineServer(f"220 mail.good.test ESMTP {FORGED}"),
        465: LineServer("220 mail.good.test ESMTP", tls=tls),
    }
    with line_servers(*servers.values()):
        flags = ["--only", "edge,tls", "--edge", "127.0.0.1", "--timeout", "3"]
        for public in (25, 465, 587, 143, 993):
            port = servers[public].port if public in servers else closed_port()
            flags += ["--port", f"{public}={port}"]
        env = write_env(tmp_path / ".env", values())
        done = inv("doctor", "--env-file", str(env), *flags)
    text = done.stdout + done.stderr
    assert done.returncode == 1, text  # the closed ports and the unknown CA are errors
    assert "Traceback" not in text and "unexpected" not in text
    raw = [c for c in text if c != "\n" and unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp"}]
    assert raw == [], text
    rows = done.stdout.splitlines()
    (smtp,) = [row for row in rows if " edge.smtp " in row]
    assert smtp.endswith("ESMTP \\x1b[2J\\x1b[H\\x0dok    all fine\\u202e\\x07")
    (tls_row,) = [row for row in rows if " tls.submissions " in row]
    assert "issuer evil CA \\x1b[2J" in tls_row
    assert not any(row.startswith("ok    all fine") for row in rows)
