"""Edge deploy, pure parts: targets, plans, exact remote command lines (fabric.testing)."""

from __future__ import annotations

import contextlib
import io
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fabric.testing.base import Command, MockRemote

from tailwart.edge import commands as rc
from tailwart.edge.binaries import fixed_binary_provider
from tailwart.edge.commands import Layout, parse_probe
from tailwart.edge.deploy_release import deploy_host
from tailwart.edge.hosts import HostTarget, SshOptions, parse_target, parse_targets
from tailwart.edge.plan import (
    Action,
    LocalRelease,
    RemoteRelease,
    RemoteState,
    make_plan,
    release_id,
)
from tailwart.edge.render import MAIL_PORTS, EdgeLayout, caddy_json
from tailwart.edge.report import HostResult, report
from tailwart.edge.rollout import rollout
from tailwart.edge.targets import DeployOptions, HostJob
from tailwart.errors import UsageError
from tests.support.testkit import inv

ROOT = Path(__file__).resolve().parents[2]
L = Layout(root="/opt/tailwart-edge", admin_socket="/run/tailwart-edge/admin.sock")
ENV = (
    "env XDG_CONFIG_HOME=/opt/tailwart-edge/state/config "
    "XDG_DATA_HOME=/opt/tailwart-edge/state/data GOMAXPROCS=1"
)

# ------------------------------------------------------------------ targets


def test_targets_parse_user_host_port_alias_and_ipv6() -> None:
    assert parse_target("root@edge1.example.org:2222") == HostTarget(
        "edge1.example.org", "root", 2222
    )
    assert parse_target("edge-alias") == HostTarget("edge-alias")
    assert parse_target("admin@[2001:db8::5]:22") == HostTarget("2001:db8::5", "admin", 22)
    assert parse_target("admin@[2001:db8::5]:22").label == "admin@[2001:db8::5]:22"


def test_targets_report_every_bad_entry_at_once() -> None:
    with pytest.raises(UsageError) as err:
        parse_targets(["root@ok.example", "bad host", "x@y:99999", "root@ok.example"])
    text = str(err.value)
    assert err.value.exit_code == 2
    assert "3 problem(s); nothing was changed" in text
    assert "'bad host'" in text and "99999" in text and "given twice" in text


def test_targets_fall_back_to_edge_hosts_and_need_one() -> None:
    assert parse_targets([], "a@h1, b@h2:2") == [HostTarget("h1", "a"), HostTarget("h2", "b", 2)]
    assert parse_targets(["c@h3"], "a@h1") == [HostTarget("h3", "c")]
    with pytest.raises(UsageError, match="no edge host"):
        parse_targets([], "")


# ------------------------------------------------------------------ plans

BIN_A, BIN_B = "a" * 64, "b" * 64
CONFIG_1 = caddy_json(EdgeLayout(upstream_host="mailbox.example.ts.net"))
CONFIG_2 = caddy_json(EdgeLayout(upstream_host="mailbox2.example.ts.net"))


def local(binary: str = BIN_A, config: str = CONFIG_1) -> LocalRelease:
    return LocalRelease("/tmp/caddy", binary, 52_000_000, config, "v2.11.9")


def rel(binary: str, config: str, activated: float) -> RemoteRelease:
    from tailwart.edge.plan import sha256_text

    cs = sha256_text(config)
    return RemoteRelease(release_id(binary, cs), binary, cs, activated)


def installed(binary: str = BIN_A, config: str = CONFIG_1, *extra: RemoteRelease) -> RemoteState:
    cur = rel(binary, config, 100.0)
    return RemoteState("linux", "amd64", False, (cur, *extra), cur.id, config, 4242, cur.id)


def test_release_id_is_stable_and_depends_on_both_hashes() -> None:
    assert local().id == release_id(BIN_A, local().config_sha256)
    assert local().id == local().id
    assert local(BIN_B).id != local().id
    assert local(config=CONFIG_2).id != local().id


def test_plan_first_install_uploads_binary_and_config() -> None:
    empty = RemoteState("linux", "amd64", False)
    plan = make_plan("h", local(), empty, mode="supervised", keep=5)
    assert plan.action is Action.FIRST_INSTALL
    assert [(u.name, u.source) for u in plan.uploads] == [
        ("binary", "upload"),
        ("caddy.json", "upload"),
    ]
    assert plan.bytes_to_send == 52_000_000 + len(CONFIG_1)
    text = plan.render()
    assert "first install" in text and "binary     upload, 49.6 MiB" in text
    assert "config:  new caddy.json, 121 lines" in text


def test_plan_identical_release_is_a_no_op() -> None:
    plan = make_plan("h", local(), installed(), mode="supervised", keep=5)
    assert plan.action is Action.NONE and not plan.changes
    assert plan.uploads == () and plan.bytes_to_send == 0 and plan.config_diff == ""
    assert "nothing to do" in plan.render()


def test_plan_config_only_reloads_and_reuses_the_binary() -> None:
    state = installed()
    plan = make_plan("h", local(config=CONFIG_2), state, mode="supervised", keep=5)
    assert plan.action is Action.RELOAD
    assert plan.uploads[0].source == f"reuse {state.current}"
    assert plan.bytes_to_send == len(CONFIG_2)
    assert '-                        "mailbox.example.ts.net:25"' in plan.config_diff
    assert '+                        "mailbox2.example.ts.net:25"' in plan.config_diff
    assert "established sessions survive" in plan.render()


def test_plan_new_binary_announces_a_restart() -> None:
    plan = make_plan("h", local(BIN_B), installed(), mode="supervised", keep=5)
    assert plan.action is Action.RESTART
    assert plan.uploads[0].source == "upload"
    assert "RESTART" in plan.render() and "dropped" in plan.render()


def test_plan_kept_release_switches_without_upload_and_unknown_binary_restarts() -> None:
    old = rel(BIN_A, CONFIG_2, 50.0)
    plan = make_plan("h", local(config=CONFIG_2), installed(BIN_A, CONFIG_1, old), mode="x", keep=5)
    assert plan.uploads == () and plan.action is Action.RELOAD
    stranger = RemoteState("linux", "amd64", False, (), "gone", "", 99, None)
    plan = make_plan("h", local(), stranger, mode="supervised", keep=5)
    assert plan.action is Action.RESTART and "unknown binary" in plan.render()


def test_plan_prunes_all_but_the_most_recently_active() -> None:
    olds = [rel(BIN_A, f"{{}}{i}", float(i)) for i in range(1, 6)]
    state = installed(BIN_A, CONFIG_1, *olds)
    plan = make_plan("h", local(config=CONFIG_2), state, mode="supervised", keep=3)
    # kept: the new one, the current one (activated 100) and the newest old one (5)
    assert set(plan.prune) == {o.id for o in olds[:4]}


def test_plan_never_prunes_the_release_whose_binary_still_runs() -> None:
    olds = [rel(BIN_A, f"{{}}{i}", float(i)) for i in range(1, 6)]
    cur = rel(BIN_A, CONFIG_1, 100.0)
    # reloaded many times: the process still runs the binary of the oldest release
    state = RemoteState("linux", "amd64", False, (cur, *olds), cur.id, CONFIG_1, 7, olds[0].id)
    plan = make_plan("h", local(config=CONFIG_2), state, mode="supervised", keep=2)
    assert plan.action is Action.RELOAD
    assert olds[0].id not in plan.prune and set(plan.prune) == {o.id for o in olds[1:]}
    # after a restart the old process is gone: its release may go
    plan = make_plan("h", local(BIN_B, CONFIG_2), state, mode="supervised", keep=2)
    assert plan.action is Action.RESTART and olds[0].id in plan.prune


def test_plan_systemd_first_install_installs_the_unit() -> None:
    empty = RemoteState("linux", "amd64", True)
    plan = make_plan("h", local(), empty, mode="systemd", keep=5, unit_sha256="u" * 64)
    assert plan.install_unit and "tailwart-edge.service" in plan.render()
    done = RemoteState(
        "linux",
        "amd64",
        True,
        installed().releases,
        installed().current,
        CONFIG_1,
        7,
        installed().current,
        True,
        "u" * 64,
    )
    assert not make_plan("h", local(), done, mode="systemd", keep=5, unit_sha256="u" * 64).changes


MIGRATE_LINE = "  sysctl:  set net.ipv4.tcp_migrate_req=1 (reload hand-over without resets)"
PERSIST_LINE = (
    "  sysctl:  persist net.ipv4.tcp_migrate_req = 1 in /etc/sysctl.d/60-tailwart-edge.conf"
)


def test_plan_sets_tcp_migrate_req_when_it_brings_the_edge_up_and_it_is_not_1() -> None:
    from dataclasses import replace

    zero = replace(installed(), tcp_migrate_req="0")
    plan = make_plan("h", local(config=CONFIG_2), zero, mode="supervised", keep=5)
    assert plan.action is Action.RELOAD and plan.set_migrate_req and not plan.persist_sysctl
    lines = plan.render().splitlines()
    assert MIGRATE_LINE in lines and PERSIST_LINE not in lines
    # already 1: nothing to set, nothing said
    one = replace(installed(), tcp_migrate_req="1")
    plan = make_plan("h", local(config=CONFIG_2), one, mode="supervised", keep=5)
    assert not plan.set_migrate_req and "sysctl" not in plan.render()
    # nothing to bring up: the deploy stays a probe, whatever the value
    plan = make_plan("h", local(), zero, mode="supervised", keep=5)
    assert plan.action is Action.NONE and not plan.set_migrate_req and not plan.changes


def test_plan_systemd_persists_tcp_migrate_req_in_a_sysctl_drop_in() -> None:
    empty = RemoteState("linux", "amd64", True, tcp_migrate_req="0")
    plan = make_plan("h", local(), empty, mode="systemd", keep=5, unit_sha256="u" * 64)
    assert plan.action is Action.FIRST_INSTALL and plan.set_migrate_req and plan.persist_sysctl
    lines = plan.render().splitlines()
    assert MIGRATE_LINE in lines and PERSIST_LINE in lines
    # already 1 at run time (set by hand): only the drop-in is missing
    one = RemoteState("linux", "amd64", True, tcp_migrate_req="1")
    plan = make_plan("h", local(), one, mode="systemd", keep=5, unit_sha256="u" * 64)
    assert plan.persist_sysctl and not plan.set_migrate_req
    # the drop-in is there: nothing to write
    done = RemoteState("linux", "amd64", True, tcp_migrate_req="1", sysctl_dropin=True)
    plan = make_plan("h", local(), done, mode="systemd", keep=5, unit_sha256="u" * 64)
    assert not plan.persist_sysctl and "sysctl" not in plan.render()


def test_plan_warns_when_the_kernel_has_no_tcp_migrate_req() -> None:
    old_kernel = RemoteState("linux", "amd64", True, tcp_migrate_req="missing")
    plan = make_plan("h", local(), old_kernel, mode="systemd", keep=5, unit_sha256="u" * 64)
    assert plan.action is Action.FIRST_INSTALL
    assert not plan.set_migrate_req and not plan.persist_sysctl
    assert (
        "  warning: the host has no net.ipv4.tcp_migrate_req (kernel < 5.14): a reload may "
        "reset connections queued on the old listener; deploying anyway"
    ) in plan.render().splitlines()


# ------------------------------------------------------------------ probe parsing

PROBE_OUT = """os Linux x86_64
systemd no
current releases/abc
release abc binary_sha256=aa config_sha256=cc version=v2.11.9 created=t by=me activated=1700.5
release old binary_sha256=bb config_sha256=dd version=v2.11.8 created=t by=me activated=1600
lock holder=alice@laptop since=2026-01-01T00:00:00Z message="x" token=t1
running 4242 /opt/tailwart-edge/releases/abc/caddy
tcp_migrate_req 0
sysctl_dropin yes
--- current caddy.json ---
{"x": 1}
"""


def test_probe_output_parses_into_state() -> None:
    st = parse_probe(PROBE_OUT, L)
    assert (st.goos, st.goarch, st.systemd) == ("linux", "amd64", False)
    assert st.current == "abc" and st.running_pid == 4242 and st.running_release == "abc"
    assert [r.id for r in st.releases] == ["abc", "old"]
    assert st.previous() is not None and st.previous().id == "old"  # type: ignore[union-attr]
    assert st.lock is not None and st.lock.startswith("holder=alice@laptop")
    assert st.current_config == '{"x": 1}\n'
    assert (st.tcp_migrate_req, st.sysctl_dropin) == ("0", True)
    assert parse_probe("tcp_migrate_req missing\n", L).tcp_migrate_req == "missing"


def test_probe_reads_tcp_migrate_req_and_the_drop_in() -> None:
    probe = rc.probe_command(L)
    assert (
        'echo "tcp_migrate_req $(cat /proc/sys/net/ipv4/tcp_migrate_req 2>/dev/null '
        '|| echo missing)"; [ -f /etc/sysctl.d/60-tailwart-edge.conf ] && '
        'echo "sysctl_dropin yes"; '
    ) in probe


def test_status_shows_tcp_migrate_req_or_warns() -> None:
    from dataclasses import replace

    from tailwart.edge.status import HostStatus

    def line(value: str) -> list[str]:
        text = HostStatus("h", replace(installed(), tcp_migrate_req=value), "v2.11.9").render()
        return [x for x in text.splitlines() if "tcp_migrate_req" in x]

    assert line("1") == ["  tcp_migrate_req: 1"]
    assert line("0") == [
        "  tcp_migrate_req: 0: WARNING: a reload may reset connections queued on the old "
        "listener; the next deploy that brings the edge up sets it to 1"
    ]
    assert line("missing") == [
        "  tcp_migrate_req: WARNING: not available (kernel < 5.14): a reload may reset "
        "connections queued on the old listener"
    ]


# ------------------------------------------------------------------ exact command lines


def test_lock_and_unlock_commands() -> None:
    assert rc.lock_command(L, "holder=me\ntoken=t") == (
        "if mkdir -p /opt/tailwart-edge && mkdir /opt/tailwart-edge/lock 2>/dev/null; "
        "then printf '%s\\n' 'holder=me\ntoken=t' > /opt/tailwart-edge/lock/info && "
        'echo acquired; else echo "held $(tr "\\n" " " < /opt/tailwart-edge/lock/info '
        '2>/dev/null)"; fi'
    )
    assert "rm -rf /opt/tailwart-edge/lock && mkdir /opt/tailwart-edge/lock;" in rc.lock_command(
        L, "i", force=True
    )
    assert rc.unlock_command(L, "t1") == (
        "grep -qx token=t1 /opt/tailwart-edge/lock/info 2>/dev/null && "
        "rm -rf /opt/tailwart-edge/lock; true"
    )


def _children(pid: int) -> list[str]:
    """Command names of ``pid``'s children (from /proc)."""
    names = []
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
            if fields.get("PPid", "").strip() == str(pid):
                names.append(fields.get("Name", "").strip())
    return names


def test_settle_waits_for_the_shell_the_switch_recorded(tmp_path: Path) -> None:
    """After a dropped link the recovery must not race the reload the dropped command still
    runs: settle_command (real sh) returns only once the recorded shell has exited."""
    layout = Layout(root=str(tmp_path))
    (tmp_path / "lock").mkdir()
    go = tmp_path / "go"
    # a shell that records itself the way switch_command does, then keeps running
    switching = subprocess.Popen(
        ["sh", "-c", f"echo $$ > {tmp_path}/lock/pid; while [ ! -e {go} ]; do sleep 0.01; done"]
    )
    reaper = threading.Thread(target=switching.wait)  # as init would: no zombie stays
    reaper.start()
    pid_file = tmp_path / "lock" / "pid"
    try:
        while not (pid_file.exists() and pid_file.read_text().strip()):
            assert switching.poll() is None
            time.sleep(0.005)
        settle = subprocess.Popen(["sh", "-c", rc.settle_command(layout)])
        while "sleep" not in _children(settle.pid):  # the settle loop is waiting
            assert settle.poll() is None, "settle returned while the switching shell ran"
            time.sleep(0.005)
        assert switching.poll() is None
        go.touch()
        assert settle.wait(30) == 0
        reaper.join(30)
        assert switching.returncode == 0
        assert not pid_file.exists()
    finally:
        go.touch()
        reaper.join()
    # nothing recorded (the link dropped before the switch): returns at once, exit 0
    assert subprocess.run(["sh", "-c", rc.settle_command(layout)]).returncode == 0


def test_release_install_and_switch_commands() -> None:
    inc = "/opt/tailwart-edge/releases/.incoming-r1"
    assert rc.prepare_command(L, "r1") == (
        "mkdir -p /opt/tailwart-edge/releases /opt/tailwart-edge/run /opt/tailwart-edge/log "
        "/opt/tailwart-edge/state && rm -rf /opt/tailwart-edge/releases/.incoming-* && "
        f"mkdir {inc}"
    )
    assert rc.reuse_binary_command(L, "r1", "r0") == (
        f"ln /opt/tailwart-edge/releases/r0/caddy {inc}/caddy 2>/dev/null || "
        f"cp -p /opt/tailwart-edge/releases/r0/caddy {inc}/caddy"
    )
    assert rc.install_release_command(L, "r1", "aa", "cc") == (
        f"cd {inc} && printf %s 'aa  caddy\ncc  caddy.json\n' | sha256sum --check --strict "
        f"--quiet && chmod 755 caddy && {{ {ENV} {inc}/caddy validate --config "
        f"{inc}/caddy.json 2>&1 || {{ rm -rf /opt/tailwart-edge/releases/.incoming-*; exit 3; }}; "
        f"}} && mv -T {inc} /opt/tailwart-edge/releases/r1"
    )
    # a binary hard-linked from a kept release was verified when it arrived: config only
    assert rc.verify_command(L, "r1", "aa", "cc", binary=False) == (
        f"cd {inc} && printf %s 'cc  caddy.json\n' | sha256sum --check --strict --quiet && "
        "chmod 755 caddy"
    )
    assert rc.switch_command(L, "r1") == (
        "echo $$ > /opt/tailwart-edge/lock/pid 2>/dev/null; "
        "ln -sfn releases/r1 /opt/tailwart-edge/.current.new && "
        "mv -T /opt/tailwart-edge/.current.new /opt/tailwart-edge/current && "
        "date +%s.%N > /opt/tailwart-edge/releases/r1/activated"
    )


def test_supervised_start_reload_restart_commands() -> None:
    cur = "/opt/tailwart-edge/current"
    start = (
        "mkdir -p /run/tailwart-edge /opt/tailwart-edge/run /opt/tailwart-edge/log && "
        f"cd /opt/tailwart-edge && {ENV} {cur}/caddy start --config {cur}/caddy.json "
        "--pidfile /opt/tailwart-edge/run/caddy.pid >> /opt/tailwart-edge/log/caddy.log 2>&1 "
        "< /dev/null"
    )
    assert rc.start_command(L, "supervised") == start
    assert rc.reload_command(L, "supervised") == (
        f"{ENV} {cur}/caddy reload --config {cur}/caddy.json "
        "--address unix//run/tailwart-edge/admin.sock --force 2>&1"
    )
    wait = (
        "for i in $(seq 100); do kill -0 77 2>/dev/null || break; sleep 0.05; done; "
        "! kill -0 77 2>/dev/null"
    )
    assert rc.restart_command(L, "supervised", 77) == (
        f"{ENV} {cur}/caddy stop --address unix//run/tailwart-edge/admin.sock >/dev/null 2>&1; "
        f"{wait} || {{ kill 77; {wait}; }}; rm -f /opt/tailwart-edge/run/caddy.pid && {start}"
    )


def test_systemd_commands() -> None:
    assert rc.start_command(L, "systemd") == "systemctl start tailwart-edge"
    assert rc.reload_command(L, "systemd") == "systemctl reload tailwart-edge"
    assert rc.restart_command(L, "systemd", 9) == "systemctl restart tailwart-edge"
    assert rc.enable_command() == "systemctl enable --now tailwart-edge"
    assert rc.install_unit_commands("/opt/tailwart-edge/.unit.new") == [
        "id -u tailwart-edge >/dev/null 2>&1 || useradd --system --no-create-home "
        "--home-dir /var/lib/tailwart-edge --shell /usr/sbin/nologin tailwart-edge",
        "mv -f /opt/tailwart-edge/.unit.new /etc/systemd/system/tailwart-edge.service && "
        "chmod 644 /etc/systemd/system/tailwart-edge.service && systemctl daemon-reload",
    ]


def test_tcp_migrate_req_commands() -> None:
    assert rc.migrate_req_command(runtime=True, persist=False) == (
        "sysctl -w net.ipv4.tcp_migrate_req=1"
    )
    tmp = "/etc/sysctl.d/.60-tailwart-edge.conf.new"
    assert rc.migrate_req_command(runtime=True, persist=True) == (
        "mkdir -p /etc/sysctl.d && printf '%s\\n' '# tailwart edge: reloads hand queued "
        "connections to the new listener' 'net.ipv4.tcp_migrate_req = 1' "
        f"> {tmp} && chmod 644 {tmp} && mv -f {tmp} /etc/sysctl.d/60-tailwart-edge.conf && "
        "sysctl -w net.ipv4.tcp_migrate_req=1"
    )
    assert rc.migrate_req_command(runtime=False, persist=True).endswith(
        "/etc/sysctl.d/60-tailwart-edge.conf"
    )


def test_finish_command_audits_prunes_and_unlocks() -> None:
    assert rc.finish_command(L, "line x", "t1", ("old1", "old2")) == (
        'printf "%s from=%s\\n" \'line x\' "${SSH_CLIENT%% *}" >> /opt/tailwart-edge/audit.log; '
        "rm -rf /opt/tailwart-edge/releases/old1 /opt/tailwart-edge/releases/old2; "
        "grep -qx token=t1 /opt/tailwart-edge/lock/info 2>/dev/null && "
        "rm -rf /opt/tailwart-edge/lock; true"
    )


# ------------------------------------------------------------------ whole host flows, mocked SSH


@pytest.fixture
def listeners() -> Iterator[dict[int, int]]:
    """Loopback listeners standing in for the edge's public ports (the health gate dials them).

    Each answers like a mailbox behind a working edge: a greeting first (the gate asks
    for the upstream's answer by default).
    """
    socks = []
    ports = {}
    stop = threading.Event()

    def serve(sock: socket.socket) -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"220 stand-in ESMTP\r\n")

    threads = []
    for _, port in MAIL_PORTS:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        socks.append(sock)
        ports[port] = sock.getsockname()[1]
        threads.append(threading.Thread(target=serve, args=(sock,), daemon=True))
        threads[-1].start()
    yield ports
    stop.set()
    for thread in threads:
        thread.join(1)
    for sock in socks:
        sock.close()


@contextlib.contextmanager
def mocked_ssh(enable_sftp: bool = False) -> Iterator[MockRemote]:
    """fabric.testing's MockRemote; afterwards every expected command must have run, in order.

    (Its own safety check also pins paramiko's connect() kwargs, which we extend with
    timeouts, so the per-command half of it is applied here.)
    """
    mock = MockRemote(enable_sftp=enable_sftp)
    try:
        yield mock
        for session in mock.sessions:
            opened = session.client.get_transport.return_value.open_session.call_count
            assert opened == len(session.commands), (opened, session.commands)
            for channel, command in zip(session.channels, session.commands, strict=True):
                command.expect_execution(channel=channel)
            session.client.connect.assert_called_once()
            kwargs = session.client.connect.call_args.kwargs
            assert (kwargs["hostname"], kwargs["username"], kwargs["port"]) == (
                session.host,
                session.user,
                session.port,
            )
    finally:
        mock.stop()


def _probe_out(rid: str, binary_sha: str, config: str, cfg_sha: str, migrate: str = "1") -> bytes:
    return (
        "os Linux x86_64\nsystemd no\n"
        f"current releases/{rid}\n"
        f"release {rid} binary_sha256={binary_sha} config_sha256={cfg_sha} version=v2.11.9 "
        "created=t by=me activated=100\n"
        f"running 4242 /opt/tailwart-edge/releases/{rid}/caddy\n"
        f"tcp_migrate_req {migrate}\n"
        f"--- current caddy.json ---\n{config}"
    ).encode()


def _job_and_binary(tmp_path: Path, ports: dict[int, int], upstream: str) -> tuple[HostJob, Path]:
    binary = tmp_path / "caddy"
    binary.write_bytes(b"\x7fELF not really caddy")
    layout = EdgeLayout(upstream_host=upstream, listen_host="127.0.0.1", listen=ports)
    return HostJob(HostTarget("127.0.0.1", "root", 22), layout), binary


def _opts(tmp_path: Path) -> DeployOptions:
    ssh = SshOptions(known_hosts=tmp_path / "known_hosts", identity=None)
    return DeployOptions(ssh=ssh, progress=False, health_timeout=2)


def test_noop_deploy_runs_only_the_probe(tmp_path: Path, listeners: dict[int, int]) -> None:
    job, binary = _job_and_binary(tmp_path, listeners, "mailbox.example.ts.net")
    provider = fixed_binary_provider(binary)
    lb = provider("linux", "amd64")
    rel_ = LocalRelease(str(binary), lb.sha256, lb.size, caddy_json(job.layout))
    probe = _probe_out(rel_.id, lb.sha256, rel_.config, rel_.config_sha256)
    with mocked_ssh() as mock:
        mock.expect(
            host="127.0.0.1",
            user="root",
            port=22,
            commands=[Command(rc.probe_command(L), out=probe)],
        )
        result = deploy_host(job, _opts(tmp_path), provider, out=io.StringIO())
    assert result.status == "unchanged", result.detail
    assert result.commands == [rc.probe_command(L)]
    assert result.bytes_sent == 0


def test_config_change_runs_lock_stage_switch_reload_finish(
    tmp_path: Path, listeners: dict[int, int]
) -> None:
    job, binary = _job_and_binary(tmp_path, listeners, "mailbox2.example.ts.net")
    provider = fixed_binary_provider(binary)
    lb = provider("linux", "amd64")
    old_cfg = caddy_json(EdgeLayout("mailbox.example.ts.net", "127.0.0.1", listeners))
    from tailwart.edge.plan import sha256_text

    old = LocalRelease(str(binary), lb.sha256, lb.size, old_cfg)
    new = LocalRelease(str(binary), lb.sha256, lb.size, caddy_json(job.layout))
    probe = _probe_out(old.id, lb.sha256, old_cfg, sha256_text(old_cfg))
    out = io.StringIO()
    with mocked_ssh(enable_sftp=True) as mock:
        mock.expect(
            host="127.0.0.1",
            user="root",
            port=22,
            enable_sftp=True,
            commands=[
                Command(rc.probe_command(L), out=probe),
                Command(None, out=b"acquired\n" + probe),  # lock + probe (token is random)
                Command(
                    rc.prepare_command(L, new.id)
                    + " && "
                    + rc.reuse_binary_command(L, new.id, old.id)
                ),
                Command(
                    rc.install_release_command(
                        L, new.id, lb.sha256, new.config_sha256, uploaded=False
                    )
                ),
                Command(rc.switch_command(L, new.id) + " && " + rc.reload_command(L, "supervised")),
                Command(None),  # audit + unlock
            ],
        )
        result = deploy_host(job, _opts(tmp_path), provider, out=out)
    assert result.status == "deployed", result.detail
    assert result.action == "reload"
    assert result.bytes_sent < 10_000  # the config and the meta file, no binary bytes
    mock.sessions[0].sftp.put.assert_not_called()
    assert result.commands[1].startswith(rc.lock_command(L, "x").split(" then ")[0])
    last = result.commands[-1]
    assert last.startswith('printf "%s from=%s\\n" \'')
    assert f"action=deploy release={new.id} result=ok:reload" in last
    assert "grep -qx token=" in last and last.endswith("rm -rf /opt/tailwart-edge/lock; true")
    assert "reload through the admin socket" in out.getvalue()


@pytest.mark.parametrize(
    ("migrate", "sysctl", "said"),
    [
        ("0", Command("sysctl -w net.ipv4.tcp_migrate_req=1"), "net.ipv4.tcp_migrate_req=1: "),
        ("1", None, ""),
        ("missing", None, "warning: the host has no net.ipv4.tcp_migrate_req (kernel < 5.14)"),
        (
            "0",
            Command(
                "sysctl -w net.ipv4.tcp_migrate_req=1",
                err=b"sysctl: permission denied on key 'net.ipv4.tcp_migrate_req'\n",
                exit=255,
            ),
            "warning: the host refused net.ipv4.tcp_migrate_req=1 (sysctl: permission denied",
        ),
    ],
    ids=["0-sets-it", "1-nothing", "missing-warns", "refused-warns"],
)
def test_reload_sets_tcp_migrate_req_first_or_warns_and_carries_on(
    tmp_path: Path, listeners: dict[int, int], migrate: str, sysctl: Command | None, said: str
) -> None:
    job, binary = _job_and_binary(tmp_path, listeners, "mailbox2.example.ts.net")
    provider = fixed_binary_provider(binary)
    lb = provider("linux", "amd64")
    old_cfg = caddy_json(EdgeLayout("mailbox.example.ts.net", "127.0.0.1", listeners))
    from tailwart.edge.plan import sha256_text

    old = LocalRelease(str(binary), lb.sha256, lb.size, old_cfg)
    new = LocalRelease(str(binary), lb.sha256, lb.size, caddy_json(job.layout))
    probe = _probe_out(old.id, lb.sha256, old_cfg, sha256_text(old_cfg), migrate)
    switch = rc.switch_command(L, new.id) + " && " + rc.reload_command(L, "supervised")
    out = io.StringIO()
    with mocked_ssh(enable_sftp=True) as mock:
        mock.expect(
            host="127.0.0.1",
            user="root",
            port=22,
            enable_sftp=True,
            commands=[
                Command(rc.probe_command(L), out=probe),
                Command(None, out=b"acquired\n" + probe),
                Command(None),  # prepare + reuse the binary
                Command(None),  # verify + validate + publish
                *([sysctl] if sysctl else []),
                Command(switch),
                Command(None),  # audit + unlock
            ],
        )
        result = deploy_host(job, _opts(tmp_path), provider, out=out)
    assert result.status == "deployed", result.detail
    assert result.commands[4] == (sysctl.cmd if sysctl else switch)
    assert sum("sysctl -w" in c for c in result.commands) == (1 if sysctl else 0)
    text = out.getvalue()
    assert said in text
    if not said:  # already 1: not a word about it
        assert "tcp_migrate_req" not in text
    assert (MIGRATE_LINE in text.splitlines()) == (migrate == "0")


def test_systemd_first_install_installs_the_unit_and_enables_it(
    tmp_path: Path, listeners: dict[int, int]
) -> None:
    from tailwart.edge.unit import render_unit

    job, binary = _job_and_binary(tmp_path, listeners, "mailbox.example.ts.net")
    provider = fixed_binary_provider(binary)
    lb = provider("linux", "amd64")
    new = LocalRelease(str(binary), lb.sha256, lb.size, caddy_json(job.layout))
    probe = (
        b"os Linux aarch64\nsystemd yes\ncurrent \ntcp_migrate_req 0\n--- current caddy.json ---\n"
    )
    with mocked_ssh(enable_sftp=True) as mock:
        mock.expect(
            host="127.0.0.1",
            user="root",
            port=22,
            enable_sftp=True,
            commands=[
                Command(rc.probe_command(L), out=probe),
                Command(None, out=b"acquired\n" + probe),
                Command(rc.prepare_command(L, new.id)),
                Command(rc.install_release_command(L, new.id, lb.sha256, new.config_sha256)),
                Command(rc.migrate_req_command(runtime=True, persist=True)),
                Command("mkdir -p /opt/tailwart-edge"),
                Command(" && ".join(rc.install_unit_commands("/opt/tailwart-edge/.unit.new"))),
                Command(rc.switch_command(L, new.id) + " && systemctl enable --now tailwart-edge"),
                Command(None),
            ],
        )
        result = deploy_host(job, _opts(tmp_path), provider, out=io.StringIO())
        sftp = mock.sessions[0].sftp
    assert result.status == "deployed", result.detail
    assert result.action == "first-install" and result.plan is not None
    assert result.plan.mode == "systemd" and result.plan.install_unit
    assert result.plan.set_migrate_req and result.plan.persist_sysctl
    sftp.put.assert_called_once()
    assert sftp.put.call_args.args[1] == f"/opt/tailwart-edge/releases/.incoming-{new.id}/caddy"
    unit_upload = [c for c in sftp.putfo.call_args_list if c.args[1].endswith(".unit.new")]
    assert unit_upload[0].args[0].getvalue().decode() == render_unit()


def test_held_lock_refuses_and_names_the_holder(tmp_path: Path, listeners: dict[int, int]) -> None:
    job, binary = _job_and_binary(tmp_path, listeners, "mailbox2.example.ts.net")
    provider = fixed_binary_provider(binary)
    lb = provider("linux", "amd64")
    old_cfg = caddy_json(EdgeLayout("mailbox.example.ts.net", "127.0.0.1", listeners))
    from tailwart.edge.plan import sha256_text

    old = LocalRelease(str(binary), lb.sha256, lb.size, old_cfg)
    probe = _probe_out(old.id, lb.sha256, old_cfg, sha256_text(old_cfg))
    held = b'held holder=alice@laptop since=2026-01-01T00:00:00Z message="hotfix" token=zz\n'
    with mocked_ssh() as mock:
        mock.expect(
            host="127.0.0.1",
            user="root",
            port=22,
            commands=[Command(rc.probe_command(L), out=probe), Command(None, out=held + probe)],
        )
        result = deploy_host(job, _opts(tmp_path), provider, out=io.StringIO())
    assert result.status == "failed"
    assert "locked by holder=alice@laptop" in result.detail and 'message="hotfix"' in result.detail
    assert "token=zz" not in result.detail and "--force-unlock" in result.detail
    assert len(result.commands) == 2  # nothing after the refused lock


def test_rollout_stops_at_the_first_failure_and_reports() -> None:
    jobs = [HostJob(HostTarget(f"h{i}"), EdgeLayout("m")) for i in range(3)]
    ran: list[str] = []

    def one(job: HostJob) -> HostResult:
        ran.append(job.target.host)
        ok = job.target.host != "h1"
        return HostResult(
            str(job.target),
            "deployed" if ok else "failed",
            "r",
            "reload",
            detail="" if ok else "boom",
        )

    results = rollout(jobs, one)
    assert ran == ["h0", "h1"]
    assert [r.status for r in results] == ["deployed", "failed", "skipped"]
    text = report(results)
    assert "h1" in text and "boom" in text and "not attempted" in text


# ------------------------------------------------------------------ systemd unit


def test_unit_follows_dist_conventions_and_passes_systemd_analyze(tmp_path: Path) -> None:
    from tailwart.edge.unit import render_unit

    root = tmp_path / "edge"
    (root / "releases" / "r1").mkdir(parents=True)
    exe = root / "releases" / "r1" / "caddy"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    (root / "current").symlink_to("releases/r1")
    text = render_unit(str(root))
    for line in (
        "Type=notify",
        "User=tailwart-edge",
        f'ExecStart="{root}/current/caddy" run --environ --config "{root}/current/caddy.json"',
        f'ExecReload="{root}/current/caddy" reload --config "{root}/current/caddy.json" --force',
        "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_BIND_SERVICE",
        "RuntimeDirectory=tailwart-edge",
        "TimeoutStopSec=5s",
        "LimitNOFILE=1048576",
        "ProtectSystem=full",
        "WantedBy=multi-user.target",
    ):
        assert line in text.splitlines(), line
    analyze = Path("/usr/bin/systemd-analyze")
    from tests.support.testkit import need

    need(analyze.exists(), "systemd-analyze is not installed (scripts/setup/20-deploy.sh)")
    unit = tmp_path / "tailwart-edge.service"
    unit.write_text(text)
    proc = subprocess.run(
        [str(analyze), "verify", "--man=no", str(unit)], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "tailwart-edge" not in proc.stdout + proc.stderr, (
        proc.stdout + proc.stderr
    )
    # the verifier does catch a broken unit (so the pass above means something)
    bad = tmp_path / "broken.service"
    bad.write_text(text.replace(f'ExecStart="{root}', 'ExecStart="/nonexistent'))
    proc = subprocess.run(
        [str(analyze), "verify", "--man=no", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode != 0 and "is not executable" in proc.stdout + proc.stderr


def test_unit_refuses_an_admin_socket_outside_run() -> None:
    from tailwart.edge.unit import render_unit

    with pytest.raises(ValueError, match="/run/"):
        render_unit(admin_socket="/tmp/admin.sock")


# ------------------------------------------------------------------ the tasks, bad input


def _inv(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return inv(*args, cwd=cwd, timeout=120)


def test_deploy_edge_bad_hosts_exit_2_listing_every_problem(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    from tests.support.testkit import write_env

    env = write_env(tmp_path / ".env", example_values)
    proc = _inv(
        "deploy-edge",
        "--env-file",
        str(env),
        "--host",
        "bad host",
        "--host",
        "x@y:70000",
        "--identity",
        str(tmp_path / "missing-key"),
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert "'bad host'" in proc.stderr and "70000" in proc.stderr
    assert "--identity" in proc.stderr and "no such file" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("running 42x /opt/tailwart-edge/releases/abc/caddy", "running process id is not a number"),
        ("running \x1b[31m", "running process id is not a number"),
        ("release abc binary_sha256=aa activated=yesterday", "activation time is not a number"),
    ],
)
def test_a_garbled_probe_line_names_the_host_and_the_line(line: str, says: str) -> None:
    from tailwart.edge.commands import GarbledProbe
    from tailwart.errors import OperationError

    text = PROBE_OUT.replace("running 4242 /opt/tailwart-edge/releases/abc/caddy", line, 1)
    if line.startswith("release"):
        text = PROBE_OUT.replace(PROBE_OUT.splitlines()[3], line, 1)
    with pytest.raises(GarbledProbe) as caught:
        parse_probe(text, L, "root@edge1")
    message = str(caught.value)
    assert isinstance(caught.value, OperationError)  # exit 1, never a traceback
    assert message.startswith("root@edge1: the probe's answer is garbled: ")
    assert says in message and repr(line) in message and "\x1b" not in message


def test_a_stalled_link_during_edge_status_is_that_hosts_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from types import SimpleNamespace

    from tailwart.edge import status as st
    from tailwart.edge.remote import LinkStalled

    closed: list[bool] = []

    class Stalling:
        label = "root@edge1"

        def __init__(self, *args: object) -> None:
            pass

        def run(self, *args: object, **kwargs: object) -> object:
            raise LinkStalled("root@edge1: probe: nothing moved for 60 s")

        def close(self) -> None:
            closed.append(True)

    monkeypatch.setattr(st, "connect", lambda *a: object())
    monkeypatch.setattr(st, "Remote", Stalling)
    job = SimpleNamespace(target="root@edge1", remote_layout=L, layout=None)
    opts = SimpleNamespace(ssh=SimpleNamespace(io_timeout=60))
    found = st.status_host(job, opts)  # type: ignore[arg-type]
    assert found.state is None and closed == [True]
    assert found.error == "root@edge1: the SSH link failed: probe: nothing moved for 60 s"
