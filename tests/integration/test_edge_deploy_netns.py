"""deploy-edge, rollback-edge, edge-status against real sshd hosts in network namespaces.

Real parts: OpenSSH servers (keys made per run), Fabric/paramiko, the caddy-l4
binaries ensure_caddy builds (two pins, for the binary-change scenario), a
PROXY-v2-checking upstream on the root side of each veth. Hosts have no
systemd, so the supervised mode (caddy start/reload/stop + pidfile) runs here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tailwart.doctor.edge import host_limits
from tailwart.doctor.registry import DoctorContext, DoctorOptions
from tailwart.edge.binaries import BinaryProvider, built_binary_provider
from tailwart.edge.deploy_release import deploy
from tailwart.edge.report import HostResult
from tailwart.edge.rollback import rollback
from tailwart.edge.rollout import DeployError
from tailwart.edge.status import status
from tailwart.edge.targets import DeployOptions, HostJob
from tailwart.findings import Status
from tailwart.paths import cache_dir
from tailwart.settings import from_mapping
from tests.support.doc_samples import check_sample
from tests.support.netns_hosts import HeldConnections, Lab, NetnsHost, lab
from tests.support.testkit import explain_on_failure, need_root, need_tool

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
#: a second pin caddy-l4 v0.1.2 accepts (caddy >= v2.11.4), for the binary-change scenario
ALT_CADDY = "v2.11.8"


# ------------------------------------------------------------------ fixtures


def _provider(caddy: str | None = None) -> BinaryProvider:
    from tailwart.edge.build import load_pins

    pins = load_pins()
    if caddy:
        pins = dataclasses.replace(pins, caddy=caddy)
    provide = built_binary_provider(pins=pins, out_dir=cache_dir("deploy-test-bin"))
    provide("linux", "amd64")  # build or reuse now, outside any timing
    return provide


@pytest.fixture(scope="session")
def binary() -> BinaryProvider:
    """caddy-l4 at the repo's pins (ensure_caddy: reused from build-caddy's cache)."""
    need_root()
    return _provider()


@pytest.fixture(scope="session")
def alt_binary() -> BinaryProvider:
    """caddy-l4 built from another caddy pin: a genuinely different binary."""
    need_root()
    return _provider(ALT_CADDY)


def _lab(count: int, node: pytest.Item) -> Iterator[Lab]:
    need_root()
    need_tool("sshd")
    need_tool("ip")
    with lab(count) as the_lab:
        the_lab.trust_all()
        explain_on_failure(node, the_lab.explain)
        yield the_lab


@pytest.fixture
def lab1(request: pytest.FixtureRequest) -> Iterator[Lab]:
    yield from _lab(1, request.node)


@pytest.fixture
def lab3(request: pytest.FixtureRequest) -> Iterator[Lab]:
    yield from _lab(3, request.node)


def _opts(the_lab: Lab, **kw: object) -> DeployOptions:
    ssh_kw = {k: kw.pop(k) for k in ("accept_new_host_key",) if k in kw}
    kw.setdefault("health_timeout", 5.0)
    return DeployOptions(
        ssh=the_lab.ssh_options(**ssh_kw),
        progress=False,
        **kw,  # type: ignore[arg-type]
    )


def _job(the_lab: Lab, host: NetnsHost, **layout: object) -> HostJob:
    return HostJob(host.target, the_lab.layout(host, **layout), host.root)


def run_deploy(
    jobs: list[HostJob], opts: DeployOptions, provider: BinaryProvider
) -> tuple[list[HostResult], str, bool]:
    """(results, printed output, ok) of one rollout."""
    out = io.StringIO()
    try:
        return deploy(jobs, opts, provider, out=out), out.getvalue(), True
    except DeployError as exc:
        return exc.results, out.getvalue(), False  # type: ignore[return-value]


def greet(host: NetnsHost, port: int = 25) -> bytes:
    """Connect through the edge and return the upstream's greeting."""
    with socket.create_connection((host.addr, port), timeout=5) as sock:
        sock.settimeout(5)
        data = b""
        while b"\n" not in data:
            chunk = sock.recv(256)
            if not chunk:
                break
            data += chunk
        return data


def serving(the_lab: Lab, host: NetnsHost, port: int = 25) -> bool:
    """The edge forwards ``port`` with a PROXY v2 header naming our address as the client."""
    up = the_lab.upstreams[host.index]
    before, errors_before = len(up.sources), len(up.errors)
    try:
        heard = greet(host, port)
    except OSError as exc:
        heard = repr(exc).encode()
    # only this session's errors count: an earlier probe's (a health gate that gave
    # up under load) says nothing about whether the edge serves now
    fresh_errors = up.errors[errors_before:]
    fresh = up.sources[before:]
    ok = heard.startswith((b"220", b"* OK")) and any(s[0] == host.peer for s in fresh)
    if not ok or fresh_errors:
        the_lab.last_probe = f"heard {heard[:60]!r}, new sources {fresh}, errors {fresh_errors}"
    return ok and not fresh_errors


MIGRATE_PLAN = "sysctl:  set net.ipv4.tcp_migrate_req=1 (reload hand-over without resets)"


def load_count(host: NetnsHost) -> int:
    """Config loads the running caddy logged (one per start or reload)."""
    return host.caddy_log().count('"msg":"load complete"') + host.caddy_log().count(
        "serving initial configuration"
    )


# ------------------------------------------------------------------ scenarios


@contextlib.contextmanager
def port_taken(netns: str, port: int) -> Iterator[None]:
    """Another process listens on ``port`` inside ``netns`` for the duration."""
    squatter = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            netns,
            sys.executable,
            "-c",
            f"import socket,time; s=socket.socket(); s.bind(('0.0.0.0', {port})); s.listen(); "
            "print('up', flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert squatter.stdout is not None and squatter.stdout.readline().strip() == "up"
        yield
    finally:
        squatter.kill()
        squatter.wait()


def test_first_deploy_verifies_host_key_and_serves(lab1: Lab, binary: BinaryProvider) -> None:
    host = lab1.hosts[0]
    lab1.known_hosts.write_text("")
    jobs = [_job(lab1, host)]
    assert host.tcp_migrate_req() == "0"  # a new namespace starts with the kernel's default

    results, out, ok = run_deploy(jobs, _opts(lab1), binary)
    assert not ok and results[0].status == "failed"
    fp = subprocess.run(
        ["ssh-keygen", "-lf", str(host.dir / "host_key.pub")], capture_output=True, text=True
    ).stdout.split()[1]
    assert "unknown host key ssh-ed25519 " + fp in results[0].detail
    assert "--accept-new-host-key" in results[0].detail
    assert not Path(host.root).exists(), "nothing may change on a host we do not trust"
    assert host.tcp_migrate_req() == "0"

    results, out, ok = run_deploy(jobs, _opts(lab1, accept_new_host_key=True), binary)
    assert ok, out
    assert host.addr in lab1.known_hosts.read_text()
    res = results[0]
    assert (res.status, res.action) == ("deployed", "first-install")
    assert "first install" in out and "caddy validate: ok" in out
    assert MIGRATE_PLAN in out and "net.ipv4.tcp_migrate_req=1: reloads hand" in out
    assert host.tcp_migrate_req() == "1"
    assert host.current() == res.release and host.releases() == [res.release]
    assert host.running_exe() == f"{host.root}/releases/{res.release}/caddy"
    assert serving(lab1, host, 25) and serving(lab1, host, 143) and serving(lab1, host, 587)
    # the Go runtime settings of the systemd unit hold in the supervised mode too
    environ = Path(f"/proc/{host.caddy_pids()[0]}/environ").read_bytes().split(b"\0")
    assert b"GOMAXPROCS=1" in environ
    assert not (Path(host.root) / "lock").exists()
    audit = host.audit()
    assert len(audit) == 1 and f"release={res.release} result=ok:first-install" in audit[0]
    assert audit[0].endswith(f"from={host.peer}")

    # an SSH config alias works too (HostName/User from the config), and a known key is reused
    alias = HostJob(
        dataclasses.replace(host.target, host="edge0", user=None, port=None),
        lab1.layout(host),
        host.root,
    )
    results, out, ok = run_deploy([alias], _opts(lab1), binary)
    assert ok and results[0].status == "unchanged", out


def test_noop_redeploy_sends_no_binary_bytes_and_does_not_reload(
    lab1: Lab, binary: BinaryProvider
) -> None:
    host = lab1.hosts[0]
    jobs = [_job(lab1, host)]
    assert run_deploy(jobs, _opts(lab1), binary)[2]
    pid, loads, audit = host.caddy_pids(), load_count(host), host.audit()
    size = os.path.getsize(binary("linux", "amd64").path)

    tx = host.tx_bytes()
    results, out, ok = run_deploy(jobs, _opts(lab1), binary)
    sent_on_wire = host.tx_bytes() - tx

    assert ok and results[0].status == "unchanged" and results[0].action == "none", out
    assert "nothing to do" in out
    assert results[0].bytes_sent == 0
    assert sent_on_wire < 64 * 1024 < size  # every byte the veth carried: SSH chatter only
    assert len(results[0].commands) == 1 and "reload" not in results[0].commands[0]
    assert host.caddy_pids() == pid and load_count(host) == loads  # no reload, no restart
    assert host.audit() == audit  # a no-op takes no lock and writes nothing


def test_config_change_reloads_with_zero_failed_connections(
    lab1: Lab, binary: BinaryProvider
) -> None:
    host = lab1.hosts[0]
    opts = _opts(lab1, keep=2)
    first = run_deploy([_job(lab1, host)], opts, binary)[0][0]
    pid = host.caddy_pids()
    # two config changes first: with keep=2 the first release is pruned from the list of
    # switch targets, but never the one whose binary the reloaded process still runs
    for port in (20001, 20002):
        res = run_deploy([_job(lab1, host, listen={993: port})], opts, binary)[0][0]
        assert res.action == "reload" and host.caddy_pids() == pid
    assert first.release in host.releases() and len(host.releases()) == 3
    up = dict(lab1.upstreams[0].ports)
    up[993] = up[143]  # the imaps server now dials another upstream port: config only
    job = _job(lab1, host, upstream=up)

    with HeldConnections(host.addr, 25, 50) as probe:
        probe.wait_new(5)  # new sessions flow before the reload...
        results, out, ok = run_deploy([job], opts, binary)
        probe.wait_new(5)  # ...and after it
        outcome = probe.finish()

    assert ok, out
    res = results[0]
    assert res.action == "reload" and "established sessions survive" in out
    assert "binary     no upload (reuse" in out and "config diff:" in out
    assert res.bytes_sent < 10_000
    assert outcome.held == 50 and outcome.held_alive == 50, outcome.errors[:5]
    assert outcome.new_failed == 0 and outcome.new_ok >= 10, outcome.errors[:5]
    assert host.caddy_pids() == pid  # the same process: reloaded, not restarted
    assert host.current() == res.release and "pruned 1 old release(s)" in out
    assert first.release in host.releases() and len(host.releases()) == 3
    check_sample("deploy-reload", out)  # docs/guides/edge.md


def test_binary_change_restarts_and_keeps_the_old_release_then_rollback(
    lab1: Lab,
    binary: BinaryProvider,
    alt_binary: BinaryProvider,
    example_values: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = lab1.hosts[0]
    old = run_deploy([_job(lab1, host)], _opts(lab1), binary)[0][0]
    old_pid = host.caddy_pids()

    results, out, ok = run_deploy([_job(lab1, host)], _opts(lab1), alt_binary)
    assert ok, out
    new = results[0]
    assert new.action == "restart" and "RESTART: the binary changes" in out
    assert "binary     upload" in out
    assert host.caddy_pids() != old_pid
    assert host.running_exe() == f"{host.root}/releases/{new.release}/caddy"
    version = subprocess.run([host.running_exe(), "version"], capture_output=True, text=True).stdout
    assert version.startswith(ALT_CADDY)
    assert serving(lab1, host), lab1.last_probe
    assert old.release in host.releases()  # kept for rollback

    out_buf = io.StringIO()
    try:  # 1000 sessions: 3024 open files, what any host allows
        status([_job(lab1, host, max_sessions=1000)], _opts(lab1), out=out_buf)
    except DeployError:
        pytest.fail(f"edge-status says not serving:\n{out_buf.getvalue()}")
    assert f"current release: {new.release}" in out_buf.getvalue()
    assert "  tcp_migrate_req: 1\n" in out_buf.getvalue()
    soft = soft_nofile(host.caddy_pids()[0])
    assert (
        f"  limits:          fine for EDGE_MAX_SESSIONS=1000: open files {soft} (needs 3024), "
        in out_buf.getvalue()
    )
    assert (
        f"running:         pid {host.caddy_pids()[0]}, {ALT_CADDY}, the current binary"
        in out_buf.getvalue()
    )
    check_sample("edge-status", out_buf.getvalue())  # docs/guides/edge.md

    out_buf = io.StringIO()
    back = rollback([_job(lab1, host)], _opts(lab1), out=out_buf)
    assert back[0].status == "ok" and back[0].release == old.release, out_buf.getvalue()
    assert "RESTART" in out_buf.getvalue()
    assert host.current() == old.release
    assert host.running_exe() == f"{host.root}/releases/{old.release}/caddy"
    assert serving(lab1, host)
    assert "action=rollback" in host.audit()[-1] and f"release={old.release}" in host.audit()[-1]
    check_sample("rollback", out_buf.getvalue())  # docs/guides/edge.md

    limits_cap_the_edge(lab1, host, example_values, tmp_path, monkeypatch)


def soft_nofile(pid: int) -> int:
    """The soft open-files limit of process ``pid``, read here from /proc."""
    line = next(
        x for x in Path(f"/proc/{pid}/limits").read_text().splitlines() if "open files" in x
    )
    return int(line.split()[3])


def limits_cap_the_edge(
    the_lab: Lab,
    host: NetnsHost,
    values: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """EDGE_MAX_SESSIONS above what a real host allows: the running caddy's own open-files
    limit, and a port range and backlog narrowed inside the host's network namespace
    (both sysctls are per namespace). edge-status and inv doctor's edge.limits say so,
    naming the key, the values the host holds and the fix."""
    pid = host.caddy_pids()[0]
    soft = soft_nofile(pid)
    planned = min(soft, 1_000_000)  # two open files per session: more than caddy may open
    host.ns("sysctl", "-qw", "net.ipv4.ip_local_port_range=40000 40999", "net.core.somaxconn=128")

    out = io.StringIO()
    status([_job(the_lab, host, max_sessions=planned)], _opts(the_lab), out=out)  # serving
    text = out.getvalue()
    lines = text.splitlines()
    head = next(i for i, x in enumerate(lines) if x.startswith("  limits:"))
    assert lines[head].endswith(f"problem(s) for EDGE_MAX_SESSIONS={planned}"), text
    caps = "\n".join(lines[head:])
    assert (
        f"    open files: caddy (pid {pid}) may open {soft}, EDGE_MAX_SESSIONS={planned} "
        f"needs {2 * planned + 1024} (2 per session + 1024): it holds at most "
        f"{(soft - 1024) // 2} sessions\n      fix: the supervised start raises it" in caps
    ), text
    assert (
        "    local ports: net.ipv4.ip_local_port_range 40000 40999 holds 1000 sessions toward "
        f"each mailbox address:port, fewer than EDGE_MAX_SESSIONS={planned}\n"
        '      fix: sysctl -w net.ipv4.ip_local_port_range="1024 65535"; ' in caps
    ), text
    assert "    accept backlog: net.core.somaxconn 128 (Go asks for it" in caps, text
    check_sample("edge-status-limits", text)  # docs/guides/edge.md

    # inv doctor logs in as the operator does (~/.ssh: a HOME made for this test)
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    shutil.copy(the_lab.key, home / ".ssh" / "id_ed25519")
    shutil.copy(the_lab.known_hosts, home / ".ssh" / "known_hosts")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    settings = from_mapping(
        dict(
            values,
            EDGE_HOSTS=f"root@{host.addr}",
            EDGE_ROOT=host.root,
            EDGE_MAX_SESSIONS=str(planned),
        )
    )
    found = host_limits(DoctorContext(settings, DoctorOptions(timeout=10)))
    assert found.status is Status.WARNING, found
    assert found.message.startswith(f"root@{host.addr}: open files: caddy (pid {pid})"), found
    assert "local ports: net.ipv4.ip_local_port_range 40000 40999" in found.message
    file_max = int(Path("/proc/sys/fs/file-max").read_text())
    allowed = min((soft - 1024) // 2, 1000, (file_max - 1024) // 2)
    assert (found.value, found.limit, found.unit) == (allowed, planned, "sessions")


def two_releases(
    the_lab: Lab, host: NetnsHost, binary: BinaryProvider
) -> tuple[HostResult, HostResult]:
    """Deploy release A (the mail ports), then B (smtp on 2525 instead of 25): B serves."""
    a = run_deploy([_job(the_lab, host)], _opts(the_lab), binary)[0][0]
    b = run_deploy([_job(the_lab, host, listen={25: 2525})], _opts(the_lab), binary)[0][0]
    assert host.current() == b.release and serving(the_lab, host, 2525)
    return a, b


def test_rollback_of_a_config_change_reloads_and_to_picks_a_release(
    lab1: Lab, binary: BinaryProvider
) -> None:
    host = lab1.hosts[0]
    a, b = two_releases(lab1, host, binary)
    pid = host.caddy_pids()

    out = io.StringIO()
    plan = rollback([_job(lab1, host)], _opts(lab1, dry_run=True), out=out)
    assert plan[0].status == "planned" and host.current() == b.release
    assert f"rollback {b.release} -> {a.release}: reload" in out.getvalue()

    rollback([_job(lab1, host)], _opts(lab1), out=io.StringIO())
    assert host.current() == a.release and host.caddy_pids() == pid
    assert serving(lab1, host, 25) and not serving(lab1, host, 2525)

    rollback([_job(lab1, host)], _opts(lab1), to=b.release, out=io.StringIO())
    assert host.current() == b.release and serving(lab1, host, 2525)

    with pytest.raises(DeployError) as err:
        rollback([_job(lab1, host)], _opts(lab1), to="nope", out=io.StringIO())
    assert "no release 'nope'" in err.value.results[0].detail  # type: ignore[attr-defined]


def test_invalid_config_is_refused_before_the_switch(lab1: Lab, binary: BinaryProvider) -> None:
    host = lab1.hosts[0]
    good = run_deploy([_job(lab1, host)], _opts(lab1), binary)[0][0]
    pid = host.caddy_pids()

    results, _, ok = run_deploy([_job(lab1, host, listen={25: 99999})], _opts(lab1), binary)
    assert not ok and results[0].status == "failed"
    assert "caddy validate refused the new config; nothing was switched" in results[0].detail
    assert "99999" in results[0].detail
    assert host.current() == good.release and host.releases() == [good.release]
    assert not list(Path(host.root, "releases").glob(".incoming-*"))
    assert host.caddy_pids() == pid and serving(lab1, host)
    assert not Path(host.root, "lock").exists()
    assert "result=failed" in host.audit()[-1]


def test_health_gate_failure_rolls_back(lab1: Lab, binary: BinaryProvider) -> None:
    host = lab1.hosts[0]
    good = run_deploy([_job(lab1, host)], _opts(lab1), binary)[0][0]
    # a port already taken on the host: validate cannot see it, the load on the host fails
    with port_taken(host.netns, 2600):
        results, out, ok = run_deploy([_job(lab1, host, listen={25: 2600})], _opts(lab1), binary)
    assert not ok and results[0].status == "rolled-back", out
    assert "address already in use" in results[0].detail
    assert f"rolled back to {good.release} (reload): serving" in results[0].detail
    assert host.current() == good.release and serving(lab1, host, 25)

    # and a gate that needs the greeting: the new config dials a dead upstream port
    dead = socket.socket()
    dead.bind((host.peer, 0))
    dead_port = dead.getsockname()[1]
    dead.close()
    up = dict(lab1.upstreams[0].ports)
    up[25] = dead_port
    results, out, ok = run_deploy(
        [_job(lab1, host, upstream=up)], _opts(lab1, health_timeout=3), binary
    )  # the gate asks for the greeting by default
    assert not ok and results[0].status == "rolled-back", out
    assert "health gate failed: smtp:25 FAILED" in results[0].detail
    assert host.current() == good.release and serving(lab1, host, 25)
    assert "result=rolled-back" in host.audit()[-1]


def test_an_edge_that_cannot_resolve_its_upstream_fails_the_default_gate(
    lab1: Lab, binary: BinaryProvider
) -> None:
    """Issue 14: caddy accepts TCP on every port even when it cannot resolve the mailbox
    (a name with a trailing newline, a typo): only hearing the upstream through the edge
    tells. The opt-out (--no-check-greeting) shows the TCP-only gate would have passed."""
    host = lab1.hosts[0]
    good = run_deploy([_job(lab1, host)], _opts(lab1), binary)[0][0]
    assert good.status == "deployed", good.detail
    unresolvable = {"upstream_host": "mailbox.tailnet.invalid"}
    results, out, ok = run_deploy(
        [_job(lab1, host, **unresolvable)], _opts(lab1, health_timeout=3), binary
    )
    assert not ok and results[0].status == "rolled-back", out
    detail = results[0].detail
    for name in ("smtp:25", "submissions:465", "submission:587", "imap:143", "imaps:993"):
        assert f"{name} FAILED" in detail, detail
    assert host.current() == good.release and serving(lab1, host, 25)

    tcp_only = run_deploy(
        [_job(lab1, host, **unresolvable)],
        _opts(lab1, health_timeout=3, check_greeting=False),
        binary,
    )
    assert tcp_only[2] and tcp_only[0][0].status == "deployed", tcp_only[1]
    assert not serving(lab1, host, 25)  # "deployed", yet mail is down: why it is not the default


@contextlib.contextmanager
def at_upload_bytes(limit: int, action: Callable[[], object]) -> Iterator[threading.Event]:
    """Run ``action`` from inside the caddy upload once ``limit`` bytes went out.

    The SFTP client calls its progress callback after each write, so the action lands
    mid-upload however loaded the machine is: no watcher thread racing the transfer.
    The event is set once the action ran.
    """
    import paramiko

    done = threading.Event()
    real = paramiko.SFTPClient.put

    def put(
        self: paramiko.SFTPClient,
        localpath: str,
        remotepath: str,
        callback: Callable[[int, int], object] | None = None,
        confirm: bool = True,
    ) -> paramiko.SFTPAttributes:
        def hooked(sent: int, total: int) -> None:
            if sent >= limit and not done.is_set() and remotepath.endswith("/caddy"):
                action()
                done.set()
            if callback is not None:
                callback(sent, total)

        return real(self, localpath, remotepath, hooked, confirm)

    paramiko.SFTPClient.put = put
    try:
        yield done
    finally:
        paramiko.SFTPClient.put = real


def test_link_cut_mid_upload_leaves_nothing_half_installed(
    lab1: Lab, binary: BinaryProvider, alt_binary: BinaryProvider
) -> None:
    host = lab1.hosts[0]
    old = run_deploy([_job(lab1, host)], _opts(lab1), alt_binary)[0][0]
    pid = host.caddy_pids()
    releases = Path(host.root, "releases")
    with at_upload_bytes(8 << 20, host.cut_ssh_sessions) as cut:  # kill SSH at 8 MiB
        results, out, ok = run_deploy([_job(lab1, host)], _opts(lab1), binary)
    assert cut.is_set(), "the upload never reached 8 MiB"
    res = results[0]
    assert not ok and res.status == "failed", out
    assert "SSH link lost" in res.detail
    assert "reconnected: partial upload discarded, lock released" in res.detail
    assert 0 < res.bytes_sent < os.path.getsize(binary("linux", "amd64").path)
    assert host.current() == old.release and host.releases() == [old.release]
    assert not list(releases.glob(".incoming-*")) and not Path(host.root, "lock").exists()
    assert host.caddy_pids() == pid and serving(lab1, host)

    results, out, ok = run_deploy([_job(lab1, host)], _opts(lab1), binary)
    assert ok and results[0].status == "deployed" and results[0].action == "restart", out
    assert host.current() == results[0].release and serving(lab1, host)


def _reloading(host: NetnsHost) -> bool:
    """A ``caddy reload`` client runs inside the host's namespace."""
    for pid in host.pids():
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if len(argv) > 1 and argv[1] == b"reload":
                return True
    return False


@contextlib.contextmanager
def cut_after_switch(host: NetnsHost, away_from: str) -> Iterator[threading.Event]:
    """Kill the SSH link while the command that switched ``current`` away from ``away_from``
    is still running on the host; the event is set once that happened.

    The running caddy is stopped (SIGSTOP), so the ``caddy reload`` after the switch waits
    on its admin socket. The link is cut on two events seen on the host (``current``
    moved, the reload runs), and caddy continues only once a new SSH session (the
    recovery's) has arrived: the orphaned reload lands while the recovery is under way.
    """
    pids = host.caddy_pids()
    assert len(pids) == 1, pids
    cut = threading.Event()
    done = threading.Event()

    def cutter() -> None:
        killed: set[int] = set()
        while not done.is_set() and not killed:
            if host.current() != away_from and _reloading(host):
                killed = set(host.session_pids())
                if killed and host.cut_ssh_sessions():
                    cut.set()
            time.sleep(0.005)
        while not done.is_set() and not set(host.session_pids()) - killed:
            time.sleep(0.005)
        os.kill(pids[0], signal.SIGCONT)

    os.kill(pids[0], signal.SIGSTOP)
    watcher = threading.Thread(target=cutter)
    watcher.start()
    try:
        yield cut
    finally:
        done.set()
        watcher.join()
        os.kill(pids[0], signal.SIGCONT)


def answers(host: NetnsHost, port: int) -> bool:
    """A client of the edge on ``port`` hears the mailbox stand-in's greeting."""
    try:
        return greet(host, port).startswith(b"220")
    except OSError:
        return False


def live_ports(host: NetnsHost) -> set[int]:
    """The ports the running caddy's config listens on, from its admin API (in the netns)."""
    config = json.loads(
        host.ns("curl", "-sf", "--unix-socket", host.admin_socket, "http://x/config/").stdout
    )
    servers = config["apps"]["layer4"]["servers"].values()
    return {int(addr.rsplit(":", 1)[1]) for server in servers for addr in server["listen"]}


def test_link_cut_after_the_switch_of_a_deploy_brings_the_previous_release_back(
    lab1: Lab, binary: BinaryProvider
) -> None:
    host = lab1.hosts[0]
    old = run_deploy([_job(lab1, host)], _opts(lab1), binary)[0][0]
    pid = host.caddy_pids()
    assert old.status == "deployed" and serving(lab1, host, 25)

    with cut_after_switch(host, old.release) as cut:
        results, out, ok = run_deploy([_job(lab1, host, listen={25: 2525})], _opts(lab1), binary)
    assert cut.is_set(), f"the deploy ended before the link was cut:\n{out}"
    new = results[0]
    assert not ok and new.status == "rolled-back", out
    assert "SSH link lost" in new.detail and "lock released" in new.detail, new.detail
    assert new.release != old.release
    # the host itself: the previous release is current and serving, the lock is gone
    assert host.current() == old.release
    assert host.caddy_pids() == pid
    assert live_ports(host) == {25, 465, 587, 143, 993}
    assert answers(host, 25) and not answers(host, 2525)
    assert not Path(host.root, "lock").exists()
    assert not list(Path(host.root, "releases").glob(".incoming-*"))
    last = host.audit()[-1]
    assert f"action=deploy release={new.release} result=rolled-back" in last, last

    results, out, ok = run_deploy([_job(lab1, host, listen={25: 2525})], _opts(lab1), binary)
    assert ok and results[0].status == "deployed", out
    assert host.current() == results[0].release and answers(host, 2525)


def test_link_cut_after_the_switch_of_a_rollback_brings_the_previous_release_back(
    lab1: Lab, binary: BinaryProvider
) -> None:
    host = lab1.hosts[0]
    a, b = two_releases(lab1, host, binary)
    pid = host.caddy_pids()

    out = io.StringIO()
    with cut_after_switch(host, b.release) as cut, pytest.raises(DeployError) as err:
        rollback([_job(lab1, host)], _opts(lab1), out=out)
    assert cut.is_set(), f"the rollback ended before the link was cut:\n{out.getvalue()}"
    res = err.value.results[0]
    assert isinstance(res, HostResult)
    assert res.status == "rolled-back" and res.release == a.release, out.getvalue()
    assert "SSH link lost" in res.detail and "lock released" in res.detail, res.detail
    # the host itself: the release current before the rollback serves, the lock is gone
    assert host.current() == b.release
    assert host.caddy_pids() == pid
    assert live_ports(host) == {2525, 465, 587, 143, 993}
    assert answers(host, 2525) and not answers(host, 25)
    assert not Path(host.root, "lock").exists()
    last = host.audit()[-1]
    assert f"action=rollback release={a.release} result=rolled-back" in last, last

    back = rollback([_job(lab1, host)], _opts(lab1), out=io.StringIO())
    assert back[0].status == "ok" and host.current() == a.release and answers(host, 25)


def test_link_down_mid_upload_fails_within_the_timeout_and_force_unlock_recovers(
    lab1: Lab, binary: BinaryProvider, alt_binary: BinaryProvider
) -> None:
    host = lab1.hosts[0]
    old = run_deploy([_job(lab1, host)], _opts(lab1), alt_binary)[0][0]
    releases = Path(host.root, "releases")
    ssh = dataclasses.replace(lab1.ssh_options(), io_timeout=3.0, connect_timeout=2.0)
    opts = dataclasses.replace(_opts(lab1), ssh=ssh)
    # the link silently stops carrying packets at 8 MiB
    try:
        with at_upload_bytes(8 << 20, lambda: host.link(False)) as down:
            results, out, ok = run_deploy([_job(lab1, host)], opts, binary)
    finally:
        host.link(True)
    assert down.is_set(), "the upload never reached 8 MiB"
    res = results[0]
    assert not ok and res.status == "failed" and "SSH link lost" in res.detail, out
    # ended by the I/O watchdog (3 s here), not by TCP's retransmission timeout (about
    # 15 minutes): the watchdog's own words say it fired
    assert "nothing moved for 3 s" in res.detail, res.detail
    assert "the lock stays held" in res.detail and "--force-unlock" in res.detail
    # the partial upload stays in its .incoming dir: never a release, never current
    assert host.current() == old.release
    assert [r for r in host.releases() if not r.startswith(".incoming-")] == [old.release]
    assert serving(lab1, host)

    results, out, ok = run_deploy([_job(lab1, host)], _opts(lab1), binary)
    assert not ok and "deploy refused: locked by holder=" in results[0].detail
    results, out, ok = run_deploy([_job(lab1, host)], _opts(lab1, force_unlock=True), binary)
    assert ok and results[0].status == "deployed", out
    assert not list(releases.glob(".incoming-*")) and serving(lab1, host)


def test_concurrent_deploy_is_refused_by_the_lock(lab1: Lab, binary: BinaryProvider) -> None:
    host = lab1.hosts[0]
    releases = Path(host.root, "releases")
    first: list[tuple[list[HostResult], str, bool]] = []
    t = threading.Thread(
        target=lambda: first.append(
            run_deploy([_job(lab1, host)], _opts(lab1, message="release 42"), binary)
        )
    )
    t.start()
    deadline = time.monotonic() + 60
    while not list(releases.glob(".incoming-*/caddy")) and time.monotonic() < deadline:
        time.sleep(0.005)
    second = run_deploy([_job(lab1, host)], _opts(lab1), binary)
    t.join()

    assert first[0][2] and first[0][0][0].status == "deployed", first[0][1]
    results, out, ok = second
    assert not ok and results[0].status == "failed"
    assert "deploy refused: locked by holder=" in results[0].detail
    assert 'message="release 42"' in results[0].detail
    assert host.releases() == [first[0][0][0].release]

    # a dead deploy's lock: refused until --force-unlock
    Path(host.root, "lock").mkdir()
    Path(host.root, "lock", "info").write_text("holder=ghost@gone\nsince=then\ntoken=dead\n")
    job = _job(lab1, host, listen={25: 2525})
    results, out, ok = run_deploy([job], _opts(lab1), binary)
    assert not ok and "locked by holder=ghost@gone" in results[0].detail
    results, out, ok = run_deploy([job], _opts(lab1, force_unlock=True), binary)
    assert ok and results[0].status == "deployed", out
    assert not Path(host.root, "lock").exists() and serving(lab1, host, 2525)
    assert "lock=forced(was:holder=ghost@gone since=then)" in host.audit()[-1]


def test_two_hosts_second_fails_third_untouched(lab3: Lab, binary: BinaryProvider) -> None:
    jobs = [_job(lab3, h) for h in lab3.hosts]
    results, out, ok = run_deploy(jobs, _opts(lab3, parallel=2), binary)
    assert ok and [r.status for r in results] == ["deployed"] * 3, out
    old = [r.release for r in results]  # per host: each dials its own upstream
    h0, h1, h2 = lab3.hosts

    new_jobs = [_job(lab3, h, listen={25: 2600}) for h in lab3.hosts]
    with port_taken(h1.netns, 2600):
        results, out, ok = run_deploy(new_jobs, _opts(lab3), binary)
    assert not ok
    assert [r.status for r in results] == ["deployed", "rolled-back", "skipped"], out
    assert h0.current() == results[0].release != old[0] and serving(lab3, h0, 2600)
    assert h1.current() == old[1] and serving(lab3, h1, 25)
    assert h2.current() == old[2] and serving(lab3, h2, 25) and h2.releases() == [old[2]]
    assert results[2].bytes_sent == 0 and results[2].commands == []
    report = out[out.index("deploy report:") :]
    assert "rolled-back" in report and "address already in use" in report
    assert "not attempted: an earlier host failed" in report


def test_cli_dry_run_prints_the_plan_and_changes_nothing(
    lab1: Lab, binary: BinaryProvider, tmp_path: Path, example_values: dict[str, str]
) -> None:
    from tests.support.testkit import write_env

    host = lab1.hosts[0]
    # one more session than the namespace's ephemeral ports hold
    low, high = map(int, host.ns("sysctl", "-n", "net.ipv4.ip_local_port_range").stdout.split())
    planned = high - low + 2
    values = dict(
        example_values,
        EDGE_HOSTS=f"root@{host.addr}",
        EDGE_ROOT=host.root,
        EDGE_MAX_SESSIONS=str(planned),
    )
    env = write_env(tmp_path / ".env", values)
    common = [
        "--env-file",
        str(env),
        "--known-hosts",
        str(lab1.known_hosts),
        "--identity",
        str(lab1.key),
        "--ssh-config",
        str(lab1.ssh_config),
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", "-r", str(ROOT), "deploy-edge", "--dry-run", *common],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"root@{host.addr}: release " in proc.stdout and "(supervised mode)" in proc.stdout
    assert "first install" in proc.stdout and "binary     upload, " in proc.stdout
    assert "dry run report:" in proc.stdout and "planned" in proc.stdout
    assert MIGRATE_PLAN in proc.stdout
    check_sample("deploy-dry-run", proc.stdout)  # docs/guides/edge.md
    assert not Path(host.root).exists()  # no lock, no directory, nothing
    assert host.tcp_migrate_req() == "0"

    # --check: the same plan, exit 1 because the host is not in step, nothing touched
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "invoke",
            "-r",
            str(ROOT),
            "deploy-edge",
            "--check",
            "--json",
            *common,
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "--check" in proc.stderr and "nothing was changed" in proc.stderr
    assert [h["host"] for h in json.loads(proc.stdout)["hosts"]] == [f"root@{host.addr}"]
    assert not Path(host.root).exists()

    proc = subprocess.run(
        [sys.executable, "-m", "invoke", "-r", str(ROOT), "edge-status", *common],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 1 and "NOT RUNNING" in proc.stdout
    assert "tcp_migrate_req: 0: WARNING: a reload may reset connections" in proc.stdout
    assert f" problem(s) for EDGE_MAX_SESSIONS={planned}\n" in proc.stdout
    assert (
        f"    local ports: net.ipv4.ip_local_port_range {low} {high} holds {planned - 1} "
        f"sessions toward each mailbox address:port, fewer than EDGE_MAX_SESSIONS={planned}"
    ) in proc.stdout
    assert "    not judged: open files of the running caddy: the edge is not running" in (
        proc.stdout
    )
    assert "edge not serving" in proc.stderr and "Traceback" not in proc.stderr
