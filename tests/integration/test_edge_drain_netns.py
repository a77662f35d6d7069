"""inv drain / undrain over SSH: a real sshd edge host in a network namespace, two nodes.

Real parts: OpenSSH, Fabric, the caddy-l4 binary ensure_caddy builds, deployed the way
deploy-edge does it (supervised mode); two PROXY-v2-checking stand-in nodes on the root
side of the host's veth (its peer address and a second one on the same ports). Which
node served a session is read from the nodes' own records.
"""

from __future__ import annotations

import io
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tailwart.edge.binaries import BinaryProvider, built_binary_provider
from tailwart.edge.deploy_release import deploy, drain_nodes
from tailwart.edge.drain import DrainRefused, drained_text
from tailwart.edge.targets import DeployOptions, HostJob
from tailwart.paths import cache_dir
from tests.support.netns_hosts import HeldConnections, Lab, NetnsHost, Upstream, lab
from tests.support.testkit import explain_on_failure, need_root, need_tool

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class World:
    lab: Lab
    host: NetnsHost
    a: Upstream
    b: Upstream
    job: HostJob
    opts: DeployOptions
    binary: BinaryProvider

    def run(self, node: str, *, drain: bool) -> str:
        out = io.StringIO()
        drain_nodes([self.job], self.opts, node, drain=drain, out=out)
        return out.getvalue()

    def sessions(self, up: Upstream) -> int:
        """Sessions the node served: PROXY v2 headers it read (health checks send none)."""
        return len(up.sources)

    def drained_file(self) -> str:
        path = Path(self.host.root) / "drained"
        return path.read_text() if path.exists() else ""


@pytest.fixture(scope="module")
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    need_root()
    need_tool("sshd")
    need_tool("ip")
    binary = built_binary_provider(out_dir=cache_dir("deploy-test-bin"))
    binary("linux", "amd64")  # build or reuse now
    with lab(1) as the_lab:
        the_lab.trust_all()
        explain_on_failure(request.node, the_lab.explain)
        host, a = the_lab.hosts[0], the_lab.upstreams[0]
        second = host.peer.rsplit(".", 1)[0] + ".3"  # the veth goes, and its address with it
        subprocess.run(["ip", "addr", "add", f"{second}/32", "dev", host.veth], check=True)
        b = Upstream(second)
        b.start(a.ports)
        try:
            layout = the_lab.layout(host, upstream_hosts=(a.host, b.host))
            job = HostJob(host.target, layout, host.root)
            opts = DeployOptions(ssh=the_lab.ssh_options(), progress=False, health_timeout=5.0)
            deploy([job], opts, binary, out=io.StringIO())
            yield World(the_lab, host, a, b, job, opts, binary)
        finally:
            b.close()


def wait_for(what: str, condition: object, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_drain_holds_50_sessions_and_undrain_restores(world: World) -> None:
    with HeldConnections(world.host.addr, 143, 50) as probe:
        probe.wait_new(10)
        assert world.sessions(world.b) > 0 and world.sessions(world.a) > 0
        pid = world.host.caddy_pids()
        dry = io.StringIO()
        drain_nodes([world.job], _dry(world.opts), world.b.host, drain=True, out=dry)
        assert f"drain {world.b.host}: reload, config only" in dry.getvalue()
        assert world.drained_file() == ""  # the dry run changed nothing
        out = world.run(world.b.host, drain=True)
        on_b = world.sessions(world.b)
        probe.wait_new(20)  # new sessions after the reload: none reaches B
        outcome = probe.finish()
    assert "reload through the admin socket" in out and "binary     no upload (reuse" in out
    assert world.host.caddy_pids() == pid  # reloaded, never restarted
    assert world.sessions(world.b) == on_b
    assert outcome.held == 50 and outcome.held_alive == 50, outcome.errors[:5]
    assert outcome.new_failed == 0, outcome.errors[:5]
    assert world.drained_file() == drained_text([world.b.host])
    assert any(f"action=drain:{world.b.host}" in line for line in world.host.audit())

    # a later deploy-edge keeps B drained: nothing to change
    redeploy = deploy([world.job], world.opts, world.binary, out=io.StringIO())
    assert redeploy[0].status == "unchanged"

    # the last serving node is refused (exit 2), and nothing changes
    with pytest.raises(DrainRefused, match="would leave no mailbox node serving"):
        world.run(world.a.host, drain=True)
    assert world.drained_file() == drained_text([world.b.host])

    world.run(world.b.host, drain=False)
    assert world.drained_file() == drained_text([])
    before = world.sessions(world.b)
    with HeldConnections(world.host.addr, 25, 0) as probe:
        probe.wait_new(10)
        probe.finish()
    wait_for("B takes sessions again after the undrain", lambda: world.sessions(world.b) > before)


class StandinStack:
    """A node's stack for the rolling restart: its restart stops the stand-in node and
    starts it again (connections refused meanwhile), as a Stalwart restart does."""

    def __init__(self, node: Upstream, restarted: list[str]) -> None:
        from tailwart.mailbox.nodes import Node

        self.node, self.restarted = node, restarted
        self.where = Node(node.host, node.host, "")

    def refuse_if_broken(self, checks: object) -> list[object]:
        return []

    def restart(self, service: str, **_: object) -> None:
        self.restarted.append(self.node.host)
        self.node.restart(down=1.0)


def test_a_rolling_restart_under_a_stream_of_sessions_refuses_none(world: World) -> None:
    """inv restart's roll (mailbox/fleet.py) over both nodes, with inv drain's own code path
    at the real edge, while new SMTP sessions keep opening: none is refused, each node is
    down for a second in its turn, both serve again at the end."""
    from tailwart.mailbox.fleet import Fleet, Roll

    restarted: list[str] = []
    lines: list[str] = []
    stacks = [StandinStack(world.a, restarted), StandinStack(world.b, restarted)]
    fleet = Fleet(stacks, clustered=True, out=lines.append)  # type: ignore[arg-type]

    def drain(node: str) -> None:
        world.run(node, drain=True)

    def undrain(node: str) -> None:
        world.run(node, drain=False)

    roll = Roll(drain, undrain, grace=0.5)
    before = (world.sessions(world.a), world.sessions(world.b))
    with HeldConnections(world.host.addr, 25, 0) as probe:
        probe.wait_new(10)
        fleet.restart(roll=roll)
        probe.wait_new(20)
        outcome = probe.finish()
    assert restarted == [world.a.host, world.b.host], lines
    assert outcome.new_failed == 0, outcome.errors[:5]
    assert outcome.new_ok >= 30
    assert lines[-1] == f"rolling restart done: {world.a.host}, {world.b.host}, one at a time"
    assert world.drained_file() == drained_text([])
    # both nodes took sessions of the stream
    assert world.sessions(world.a) > before[0] and world.sessions(world.b) > before[1]


def _dry(opts: DeployOptions) -> DeployOptions:
    from dataclasses import replace

    return replace(opts, dry_run=True)
