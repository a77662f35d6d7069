"""Doctor group outbound against real SMTP stand-ins on loopback."""

from __future__ import annotations

import pytest

from tailwart.doctor import runner
from tailwart.doctor.registry import DoctorContext, DoctorOptions, registry
from tailwart.findings import Finding, Status
from tests.support.backend_env import settings
from tests.support.backend_servers import LineServer, Pki, closed_port, line_servers

pytestmark = pytest.mark.integration


def outbound(**values: str) -> dict[str, Finding]:
    ctx = DoctorContext(settings(**values), DoctorOptions(timeout=3))
    return {f.id: f for f in runner.run(ctx, registry(ctx, ("outbound",)))}


def test_smarthost_with_starttls_passes() -> None:
    relay = LineServer("220 relay.example ESMTP", ehlo=["PIPELINING", "STARTTLS", "AUTH PLAIN"])
    with line_servers(relay):
        found = outbound(STALWART_SMARTHOST=f"127.0.0.1:{relay.port}")
    assert list(found) == ["outbound.smarthost"]
    assert found["outbound.smarthost"].status is Status.OK
    assert "220 relay.example ESMTP (STARTTLS offered)" in found["outbound.smarthost"].message


def test_smarthost_with_implicit_tls_passes(pki: Pki) -> None:
    relay = LineServer(
        "220 relay.example ESMTP", tls=pki.context("relay", ["127.0.0.1"], 90), ehlo=["AUTH PLAIN"]
    )
    with line_servers(relay):
        found = outbound(
            STALWART_SMARTHOST=f"127.0.0.1:{relay.port}", STALWART_SMARTHOST_TLS="implicit"
        )
    assert found["outbound.smarthost"].status is Status.OK
    assert "(implicit TLS)" in found["outbound.smarthost"].message


def test_smarthost_down_or_without_starttls_fails() -> None:
    found = outbound(STALWART_SMARTHOST=f"127.0.0.1:{closed_port()}")
    assert found["outbound.smarthost"].status is Status.ERROR
    assert "refused the connection" in found["outbound.smarthost"].message

    relay = LineServer("220 relay.example ESMTP", ehlo=["PIPELINING"])
    with line_servers(relay):
        found = outbound(STALWART_SMARTHOST=f"127.0.0.1:{relay.port}")
    assert found["outbound.smarthost"].status is Status.ERROR
    assert "does not offer STARTTLS" in found["outbound.smarthost"].message

    busy = LineServer("421 too busy")
    with line_servers(busy):
        found = outbound(STALWART_SMARTHOST=f"127.0.0.1:{busy.port}")
    assert "expected a 220 greeting, got '421 too busy'" in found["outbound.smarthost"].message


def test_without_smarthost_warns_and_probes_port25_target() -> None:
    mx = LineServer("220 mx.example ESMTP", ehlo=[])
    with line_servers(mx):
        found = outbound(OUTBOUND_PROBE=f"127.0.0.1:{mx.port}")
    assert found["outbound.smarthost"].status is Status.WARNING
    assert "outbound :25 is usually blocked" in found["outbound.smarthost"].message
    assert found["outbound.port25"].status is Status.OK

    found = outbound(OUTBOUND_PROBE=f"127.0.0.1:{closed_port()}")
    assert found["outbound.port25"].status is Status.ERROR
    assert "set STALWART_SMARTHOST" in found["outbound.port25"].advice

    found = outbound()
    assert found["outbound.port25"].status is Status.WARNING
    assert "OUTBOUND_PROBE is not set" in found["outbound.port25"].message
