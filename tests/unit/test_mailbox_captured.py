"""The hand-written docker fixtures against output captured from a live stack.

``tests/fixtures/docker/captured/`` holds what Docker 20.10 (Debian's engine), Compose
v2.40.3 and tailscaled v1.90.6 on headscale v0.29.2 really printed during
``tests/integration/test_mailbox_live.py`` (``TAILWART_RECORD_FIXTURES=1``; inspect
trimmed, never ``Config.Env``). The parsers must read them, and the hand-written fixtures
the other unit tests use must have the shape the real output has.
"""

from __future__ import annotations

import json

from tailwart.mailbox import health
from tailwart.mailbox.identity import parse_status
from tests.support.mailbox_fakes import FIXTURES, fixture

CAPTURED = FIXTURES / "captured"


def captured(name: str) -> str:
    return (CAPTURED / name).read_text()


def test_the_real_ps_listing_reads_as_a_healthy_stack() -> None:
    rows = health.parse_ps(captured("ps-healthy.json"))
    assert sorted((r.service, r.state, r.health) for r in rows) == [
        ("stalwart", "running", "healthy"),
        ("ts-stalwart", "running", "healthy"),
    ]
    # the sidecar is inspected first, as the hand-written listing has it
    assert health.containers_to_inspect(rows)[0].endswith("ts-stalwart-1")


def test_hand_written_ps_lines_have_the_real_fields() -> None:
    def keys(text: str) -> set[str]:
        return {k for line in text.splitlines() if line.strip() for k in json.loads(line)}

    assert keys(fixture("ps-healthy.json")) == keys(captured("ps-healthy.json"))


def test_the_real_inspect_output_judges_ready() -> None:
    state = health.judge(health.parse_inspect(captured("inspect-healthy.json")))
    assert state.not_ready == []
    assert health.wait(lambda: state, 1, 1).verdict is health.Verdict.READY


def test_hand_written_inspect_has_the_real_health_shape() -> None:
    real = json.loads(captured("inspect-healthy.json"))
    written = json.loads(fixture("inspect-healthy.json"))
    for doc_real, doc_written in zip(real, written, strict=True):
        assert set(doc_real["State"]) <= set(doc_written["State"]) | {"Dead", "OOMKilled"}
        real_log = doc_real["State"]["Health"]["Log"][0]
        assert set(real_log) == set(doc_written["State"]["Health"]["Log"][0])
        assert "com.docker.compose.service" in doc_real["Config"]["Labels"]
        assert not doc_real["HostConfig"]["PortBindings"]


def test_the_real_tailscale_status_and_the_rename() -> None:
    node = parse_status(captured("tailscale-status-healthy.json"))
    assert (node.node_name, node.tags, node.online) == ("stalwart", ("tag:stalwart",), True)
    assert node.dns_name == "stalwart.tailwart.test"
    assert node.addresses[0].startswith("100.")
    renamed = parse_status(captured("tailscale-status-renamed.json"))
    assert (renamed.node_name, renamed.host_name) == ("stalwart-1", "stalwart")
    written = json.loads(fixture("tailscale-status.json"))["Self"]
    real = json.loads(captured("tailscale-status-healthy.json"))["Self"]
    read = {"DNSName", "HostName", "TailscaleIPs", "Tags", "Online"}
    assert read <= set(real) and read <= set(written)
