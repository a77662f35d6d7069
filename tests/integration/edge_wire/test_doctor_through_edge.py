"""``inv doctor``'s edge and TLS groups through the real caddy-l4 edge and the stand-in mailbox.

The same world as the wire tests (``start_edge``, ``mailbox``): the edge built by
this code on 127.0.0.1, the stand-in on 127.0.0.2 refusing any connection that
does not start with a PROXY v2 header, TLS passed through to it untouched. A
greeting can only reach the doctor if caddy-l4 forwarded the connection and its
PROXY header was valid; the stand-in's record of each connection shows it.

The stand-in's IMAP on 143 offers no STARTTLS (Stalwart does), so ``tls.imap``
is left to the line-server tests in backends/test_doctor_edge.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tailwart.doctor import runner
from tailwart.doctor.registry import DoctorContext, DoctorOptions, registry
from tailwart.edge.render import MAIL_PORTS
from tailwart.edge.run import RunningEdge
from tailwart.findings import Finding, Status
from tailwart.settings import from_mapping
from tailwart.testing.standin import StandinMailbox, TlsFiles, make_self_signed

from .conftest import EDGE_HOST, MAILBOX_HOST, EdgeFactory

pytestmark = pytest.mark.integration

PORTS = [port for _, port in MAIL_PORTS]
EDGE_CHECKS = ["edge.smtp", "edge.submissions", "edge.submission", "edge.imap", "edge.imaps"]
TLS_CHECKS = ["tls.submissions", "tls.imaps", "tls.submission"]


def doctor(
    edge: RunningEdge, tls: TlsFiles, values: dict[str, str], ids: list[str], ca_file: str = ""
) -> dict[str, Finding]:
    """The doctor's checks ``ids`` against the edge, with MAIL_HOSTNAME the mailbox's name."""
    domain = tls.hostname.split(".", 1)[1]
    settings = from_mapping(
        {**values, "MAIL_HOSTNAME": tls.hostname, "MAIL_DOMAIN": domain}, "<test>"
    )
    options = DoctorOptions(
        edge_host=EDGE_HOST,
        port_map={port: edge.layout.listen_port(port) for port in PORTS},
        ca_file=ca_file,
        timeout=5,
    )
    ctx = DoctorContext(settings, options)
    groups = tuple(sorted({check.split(".")[0] for check in ids}))
    found = runner.run(ctx, [c for c in registry(ctx, groups) if c.id in ids])
    return {f.id: f for f in found}


def test_every_port_greets_through_caddy_l4_with_a_proxy_header(
    start_edge: EdgeFactory,
    mailbox: StandinMailbox,
    tls: TlsFiles,
    example_values: dict[str, str],
) -> None:
    edge = start_edge(mailbox.ports)
    found = doctor(edge, tls, example_values, EDGE_CHECKS)
    assert {k: f.status for k, f in found.items()} == dict.fromkeys(EDGE_CHECKS, Status.OK), found
    smtp = found["edge.smtp"].message
    assert smtp.startswith(f"127.0.0.1:{edge.layout.listen_port(25)} (public :25): 220 ")
    assert f"* OK [CAPABILITY IMAP4rev1 ID] {tls.hostname} tailwa" in found["edge.imaps"].message
    assert found["edge.imaps"].message.split(": ", 1)[1].startswith("TLSv1.")
    # each greeting crossed the edge: the mailbox saw a valid PROXY v2 header from it
    assert mailbox.wait_for(lambda seen, _: {s.port for s in seen} >= set(PORTS), 10)
    for seen in mailbox.seen:
        assert seen.error == "", seen
        assert seen.src is not None and seen.src[0] == "127.0.0.1"
        assert seen.dst == (EDGE_HOST, edge.layout.listen_port(seen.port))


def test_tls_through_the_edge_is_the_mailboxs_own_certificate(
    start_edge: EdgeFactory,
    mailbox: StandinMailbox,
    tls: TlsFiles,
    example_values: dict[str, str],
    tmp_path: Path,
) -> None:
    """caddy-l4 terminates no TLS: the doctor reads the mailbox's own certificate. The
    wire tests' one expires within a day; a 90-day self-signed one (what Stalwart serves
    before a certificate is configured) is an error unless --ca-file trusts it."""
    from cryptography import x509

    edge = start_edge(mailbox.ports)
    found = doctor(edge, tls, example_values, TLS_CHECKS, ca_file=str(tls.cert))
    expiry = x509.load_pem_x509_certificate(tls.cert.read_bytes()).not_valid_after_utc
    for check in TLS_CHECKS:
        assert found[check].status is Status.ERROR, found[check]
        assert f"certificate expires {expiry:%Y-%m-%d} (0 days)" in found[check].message

    longer = make_self_signed(tmp_path / "tls", tls.hostname, days=90)
    with StandinMailbox(longer, host=MAILBOX_HOST) as box:
        edge = start_edge(box.ports)
        untrusted = doctor(edge, longer, example_values, TLS_CHECKS)
        trusted = doctor(edge, longer, example_values, TLS_CHECKS, ca_file=str(longer.cert))
    for check in TLS_CHECKS:
        assert untrusted[check].status is Status.ERROR, untrusted[check]
        assert f"self-signed certificate (issuer {tls.hostname})" in untrusted[check].message
        assert "inv provision" in untrusted[check].advice
        # --ca-file naming that very certificate: trusted, as a private CA would be
        assert trusted[check].status is Status.OK, trusted[check]
        assert f"valid for {tls.hostname} until" in trusted[check].message
    assert "(public :587) after STARTTLS: self-signed" in untrusted["tls.submission"].message


def test_mailbox_down_behind_a_running_edge_and_no_edge_at_all(
    start_edge: EdgeFactory,
    tls: TlsFiles,
    example_values: dict[str, str],
) -> None:
    """The edge accepts and closes when its upstream is gone; a stopped edge refuses."""
    with StandinMailbox(tls) as gone:
        upstream = dict(gone.ports)
    edge = start_edge(upstream)
    found = doctor(edge, tls, example_values, EDGE_CHECKS)
    for check in EDGE_CHECKS:
        assert found[check].status is Status.ERROR, found[check]
    assert "expected '220' greeting, got" in found["edge.smtp"].message
    assert "the mailbox rejects the PROXY header" in found["edge.smtp"].advice

    edge.stop()
    found = doctor(edge, tls, example_values, EDGE_CHECKS)
    for check in EDGE_CHECKS:
        assert found[check].status is Status.ERROR, found[check]
        assert "refused the connection" in found[check].message, found[check]
        assert "is caddy-l4 running" in found[check].advice
