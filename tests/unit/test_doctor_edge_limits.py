"""``inv doctor``'s edge.limits: registered with EDGE_HOSTS, one finding for every host,
skipped (and saying why) when the operator's SSH login does not work.

HOME points at an empty directory in each test: the check's SSH login reads the
operator's ~/.ssh (known_hosts, keys, config), never the real one here.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tailwart.doctor import runner
from tailwart.doctor.edge import host_limits, limits_finding
from tailwart.doctor.registry import DoctorContext, DoctorOptions, registry
from tailwart.edge.limits import HostLimits, judge
from tailwart.findings import Status
from tailwart.settings import from_mapping
from tailwart.settings.example import example_values

FINE = HostLimits(
    nofile="Max open files            1048576              1048576              files",
    somaxconn="4096",
    port_range="1024 65535",
    file_max="9223372036854775807",
    nr_open="1048576",
)
LOW = HostLimits(**{**FINE.__dict__, "port_range": "40000 40999"})


@pytest.fixture(autouse=True)
def empty_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return home


def ctx(**values: str) -> DoctorContext:
    settings = from_mapping({**example_values(), **values})
    return DoctorContext(settings, DoctorOptions(timeout=3))


def test_edge_limits_runs_only_with_edge_hosts() -> None:
    assert "edge.limits" not in [c.id for c in registry(ctx(), ("edge",))]
    ids = [c.id for c in registry(ctx(EDGE_HOSTS="root@127.0.0.1:1"), ("edge",))]
    assert ids[-1] == "edge.limits" and ids[:-1] == [
        "edge.smtp",
        "edge.submissions",
        "edge.submission",
        "edge.imap",
        "edge.imaps",
    ]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_ssh_login_that_does_not_work_is_a_skip_that_says_why() -> None:
    port = _closed_port()
    check = ctx(EDGE_HOSTS=f"root@127.0.0.1:{port}")
    [found] = runner.run(check, [c for c in registry(check, ("edge",)) if c.id == "edge.limits"])
    assert found.status is Status.WARNING
    assert found.message.startswith(f"skipped root@127.0.0.1:{port}: ")
    assert "cannot connect over SSH" in found.message
    assert "inv edge-status" in found.advice
    assert found.value is None  # nothing was measured


def test_a_broken_ssh_setup_is_a_skip_too(empty_home: Path) -> None:
    (empty_home / ".ssh").mkdir()
    (empty_home / ".ssh" / "known_hosts").write_text("this is not a known_hosts line\n")
    found = host_limits(ctx(EDGE_HOSTS="root@127.0.0.1:22"))
    assert found.status is Status.WARNING
    assert found.message.startswith("skipped: --known-hosts ")
    assert "line 1: not a known_hosts entry" in found.message


def test_one_finding_for_every_host_measured_by_the_tightest() -> None:
    fine = judge(FINE, 5000, systemd=True, pid=1)
    low = judge(LOW, 5000, systemd=True, pid=2)
    both = limits_finding([("e1", fine), ("e2", fine)], 5000)
    assert both.status is Status.OK
    assert (
        both.message == "e1, e2: fine for EDGE_MAX_SESSIONS=5000 (the limits allow 64512 sessions)"
    )
    assert (both.value, both.limit, both.unit) == (64512, 5000, "sessions")

    capped = limits_finding([("e1", fine), ("e2", low), ("e3", "cannot connect")], 5000)
    assert capped.status is Status.WARNING
    assert capped.message.startswith("e2: local ports: net.ipv4.ip_local_port_range 40000 40999")
    assert capped.message.endswith(" | skipped e3: cannot connect")
    assert 'sysctl -w net.ipv4.ip_local_port_range="1024 65535"' in capped.advice
    assert (capped.value, capped.limit) == (1000, 5000)

    partly = limits_finding([("e1", fine), ("e3", "host key changed")], 5000)
    assert partly.status is Status.WARNING
    assert partly.message.startswith("skipped e3: host key changed | e1: fine for")
