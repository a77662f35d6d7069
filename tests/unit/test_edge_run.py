"""Moving the rendered edge onto local ports for `inv edge-run` (pure parts)."""

from __future__ import annotations

import json

import pytest

from tailwart.edge.render import EdgeLayout, caddy_json
from tailwart.edge.run import caddy_env, local_layout, parse_port_map
from tailwart.errors import UsageError

BASE = EdgeLayout(upstream_host="stalwart.tail1234.ts.net")


def listens(layout: EdgeLayout) -> dict[str, list[str]]:
    servers = json.loads(caddy_json(layout))["apps"]["layer4"]["servers"]
    return {name: server["listen"] for name, server in servers.items()}


def test_offset_moves_every_port_and_keeps_the_upstream() -> None:
    layout = local_layout(BASE, admin_socket="/tmp/x/admin.sock")
    assert listens(layout) == {
        "smtp": ["127.0.0.1:10025"],
        "submissions": ["127.0.0.1:10465"],
        "submission": ["127.0.0.1:10587"],
        "imap": ["127.0.0.1:10143"],
        "imaps": ["127.0.0.1:10993"],
    }
    doc = json.loads(caddy_json(layout))
    smtp = doc["apps"]["layer4"]["servers"]["smtp"]["routes"][0]["handle"][0]
    assert smtp["upstreams"] == [{"dial": ["stalwart.tail1234.ts.net:25"]}]
    assert smtp["proxy_protocol"] == "v2"
    assert doc["admin"] == {"listen": "unix//tmp/x/admin.sock"}


def test_explicit_ports_override_the_offset_and_upstream_host_can_change() -> None:
    layout = local_layout(
        BASE,
        listen_host="",
        port_offset=0,
        ports=parse_port_map("25=2525, 993=2993"),
        upstream_host="127.0.0.2",
        admin_socket="/tmp/a.sock",
    )
    got = listens(layout)
    assert got["smtp"] == [":2525"] and got["imaps"] == [":2993"] and got["imap"] == [":143"]
    assert layout.upstream_host == "127.0.0.2"


def test_bad_port_maps_are_reported_together() -> None:
    with pytest.raises(UsageError) as err:
        parse_port_map("25=2525,abc,26=1,465=70000")
    text = str(err.value)
    assert err.value.exit_code == 2
    assert "'abc'" in text and "26 is not a mail port" in text and "outside 1..65535" in text
    assert "'25=2525'" not in text  # the valid item is not blamed


def test_an_offset_past_65535_is_refused() -> None:
    with pytest.raises(UsageError, match=r"outside 1\.\.65535"):
        local_layout(BASE, port_offset=65000, admin_socket="/tmp/a.sock")


def test_caddy_keeps_its_state_in_the_work_dir(tmp_path: object) -> None:
    from pathlib import Path

    env = caddy_env(Path("/tmp/w"))
    assert env["XDG_DATA_HOME"] == "/tmp/w/data" and env["XDG_CONFIG_HOME"] == "/tmp/w/config"
    assert "CADDY_ADMIN" not in env


def test_the_unit_and_local_runs_start_caddy_with_one_scheduler_thread() -> None:
    """GOMAXPROCS=1 (measured in benchmarks/results/edge.md) in both places caddy starts."""
    import shlex
    from pathlib import Path

    from tailwart.edge.unit import render_unit

    assert caddy_env(Path("/tmp/w"))["GOMAXPROCS"] == "1"
    (line,) = [ln for ln in render_unit().splitlines() if ln.startswith("Environment=")]
    words = dict(w.split("=", 1) for w in shlex.split(line.removeprefix("Environment=")))
    assert words == {
        "XDG_DATA_HOME": "/var/lib/tailwart-edge",
        "XDG_CONFIG_HOME": "/var/lib/tailwart-edge/config",
        "GOMAXPROCS": "1",
    }
