"""The node name the sidecar actually got, and the `stalwart-1` trap."""

from __future__ import annotations

import pytest

from tailwart.mailbox.identity import identity_report, parse_status
from tailwart.settings import Settings, from_mapping
from tests.support.mailbox_fakes import fixture


def settings(values: dict[str, str], **extra: str) -> Settings:
    return from_mapping({**values, **extra})


def test_reads_self_from_tailscale_status() -> None:
    node = parse_status(fixture("tailscale-status.json"))
    assert node.dns_name == "stalwart.tail1234.ts.net"
    assert node.node_name == "stalwart"
    assert node.addresses[0] == "100.101.102.103"
    assert node.tags == ("tag:stalwart",)


def test_expected_name_gives_no_warning(example_values: dict[str, str]) -> None:
    node = parse_status(fixture("tailscale-status.json"))
    info, warnings = identity_report(
        node, settings(example_values, MAILBOX_FQDN="stalwart.tail1234.ts.net")
    )
    assert info == (
        "sidecar node: stalwart.tail1234.ts.net (100.101.102.103, fd7a:115c:a1e0::6901:6667)"
    )
    assert warnings == []


def test_renamed_node_is_the_stalwart_1_trap(example_values: dict[str, str]) -> None:
    node = parse_status(fixture("tailscale-status-renamed.json"))
    info, warnings = identity_report(node, settings(example_values))
    assert "stalwart-1.tail1234.ts.net" in info
    assert len(warnings) == 1
    assert warnings[0].startswith(
        "the sidecar registered as 'stalwart-1', not MAILBOX_NODE_NAME='stalwart'"
    )
    assert "remove the old 'stalwart' machine in the Tailscale admin console" in warnings[0]


def test_renamed_node_on_headscale_names_headscale_s_fix(example_values: dict[str, str]) -> None:
    node = parse_status(fixture("tailscale-status-renamed.json"))
    _, warnings = identity_report(
        node, settings(example_values, TS_LOGIN_SERVER="https://198.18.7.2:8443")
    )
    assert len(warnings) == 1
    assert "delete the old 'stalwart' node on headscale" in warnings[0]
    assert "`headscale nodes delete --identifier <id>`" in warnings[0]
    assert "admin console" not in warnings[0]
    assert warnings[0].endswith("then `inv restart --service ts-stalwart`")


def test_fqdn_mismatch_is_reported(example_values: dict[str, str]) -> None:
    node = parse_status(fixture("tailscale-status.json"))
    _, warnings = identity_report(
        node, settings(example_values, MAILBOX_FQDN="stalwart.other.ts.net")
    )
    assert warnings == [
        "the sidecar's MagicDNS name is 'stalwart.tail1234.ts.net' but "
        "MAILBOX_FQDN='stalwart.other.ts.net': the edge dials MAILBOX_FQDN → fix MAILBOX_FQDN "
        "in .env and redeploy the edge"
    ]


def test_wrong_tag_is_reported(example_values: dict[str, str]) -> None:
    text = fixture("tailscale-status.json").replace('"tag:stalwart"', '"tag:mail"')
    _, warnings = identity_report(
        parse_status(text), settings(example_values, MAILBOX_FQDN="stalwart.tail1234.ts.net")
    )
    assert len(warnings) == 1 and "carries tags tag:mail, not tag:stalwart" in warnings[0]


def test_status_without_self_is_rejected() -> None:
    with pytest.raises(ValueError, match="no Self"):
        parse_status('{"BackendState": "NeedsLogin"}')
