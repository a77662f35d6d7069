"""Several mailbox nodes: each node's command lines and environment, --node, the refusals,
and the rolling restart's order (drain → restart → healthy → undrain, node after node)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from invoke.runners import Result

from tailwart.checks import CheckContext
from tailwart.checks.run import collect
from tailwart.edge.hosts import HostTarget, SshOptions
from tailwart.errors import OperationError, UsageError
from tailwart.findings import Finding
from tailwart.mailbox import remote_config
from tailwart.mailbox.errors import MailboxError, NodeRefused, RollStopped
from tailwart.mailbox.fleet import Fleet, Roll, open_fleet, roll_for
from tailwart.settings import from_mapping
from tailwart.settings.derived import compose_environment
from tailwart.settings.example import example_settings, example_values
from tailwart.settings.load import validate
from tests.support.mailbox_fakes import (
    BASE,
    COMPOSE_VERSION,
    DAEMON,
    INSPECT,
    PS,
    STATUS,
    FakeClock,
    fixture,
    work_tree,
    write_env,
)
from tests.support.testkit import inv

FIRST = "stalwart.tail1234.ts.net"
SECOND = "stalwart-2.tail1234.ts.net"
ENGINE_A = "unix:///run/docker-a.sock"
ENGINE_B = "ssh://deploy@mail-b.example.net:2222"
UP = f"{BASE} up -d"
RESTART = f"{BASE} restart stalwart"
DRY_RUN = "dry run: nothing runs. The docker commands, in order:"
REMOTE = "/var/lib/tailwart/config.json"


def cluster_values(**extra: str) -> dict[str, str]:
    return {
        **example_values(),
        "MAILBOX_NODES": f"{FIRST},{SECOND}",
        "MAILBOX_DOCKER_HOSTS": f"{ENGINE_A},{ENGINE_B}",
        **extra,
    }


def compose_checks(ctx: CheckContext) -> list[Finding]:
    return collect(ctx, ("compose_rules",))


def status(dns_name: str) -> str:
    """``tailscale status --json`` of a sidecar that registered as ``dns_name``."""
    return json.dumps(
        {
            "Self": {
                "DNSName": dns_name + ".",
                "HostName": dns_name.split(".", 1)[0],
                "TailscaleIPs": ["100.101.102.104"],
                "Tags": ["tag:stalwart"],
                "Online": True,
            }
        }
    )


@dataclass
class Docker:
    """A scripted docker: each command line answers from ``script`` (a list is consumed in
    order, per engine), and every call lands in ``timeline`` with its DOCKER_HOST."""

    script: dict[str, Any]
    timeline: list[tuple[str, ...]] = field(default_factory=list)
    envs: list[dict[str, str]] = field(default_factory=list)
    consumed: dict[tuple[str, str], int] = field(default_factory=dict)

    def run(self, command: str, **kwargs: Any) -> Result:
        env = kwargs.get("env") or {}
        engine = env.get("DOCKER_HOST", "")
        self.timeline.append(("docker", engine, command))
        self.envs.append(env)
        answer = self.script.get(command)
        if answer is None:
            raise AssertionError(f"unexpected docker command: {command}")
        if isinstance(answer, dict):
            answer = answer[engine]
        if isinstance(answer, list):
            n = self.consumed.get((engine, command), 0)
            self.consumed[(engine, command)] = n + 1
            answer = answer[min(n, len(answer) - 1)]
        return answer  # type: ignore[no-any-return]


class Output:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, text: str) -> None:
        self.lines.extend(text.split("\n"))


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return work_tree(tmp_path, monkeypatch)


@pytest.fixture
def uploads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """The config.json uploads to ssh:// nodes, recorded instead of made (integration
    tests upload for real)."""
    made: list[tuple[str, str]] = []

    def fake(
        target: HostTarget, text: str, options: SshOptions, path: str = REMOTE
    ) -> remote_config.Upload:
        made.append((str(target), path))
        return remote_config.Upload(str(target), path, changed=True)

    monkeypatch.setattr(remote_config, "upload_config", fake)
    return made


def fleet(
    tree: Path, c: Any, values: dict[str, str], out: Output, node: str = ""
) -> tuple[Fleet, FakeClock]:
    write_env(tree / ".env", values)
    clock = FakeClock()
    made = open_fleet(
        c,
        ".env",
        False,
        node,
        root=tree,
        out=out,
        err=out,
        clock=clock.clock,
        sleep=clock.sleep,
        ssh=SshOptions(known_hosts=tree / "no-known-hosts"),
    )
    made.sleep = clock.sleep
    return made, clock


def healthy_script() -> dict[str, Any]:
    return {
        DAEMON: Result("28.2.2\n"),
        COMPOSE_VERSION: Result("2.40.3\n"),
        UP: Result(""),
        RESTART: Result(""),
        PS: Result(fixture("ps-healthy.json")),
        INSPECT: Result(fixture("inspect-healthy.json")),
        STATUS: {ENGINE_A: Result(status(FIRST)), ENGINE_B: Result(status(SECOND))},
    }


# ---------------------------------------------------------------- identity per node


def test_each_node_gets_its_name_role_engine_and_config_source() -> None:
    from tailwart.mailbox.compose import Runner
    from tailwart.mailbox.nodes import nodes_of

    settings = from_mapping(cluster_values())
    first, second = (Runner.for_node(None, settings, n).env for n in nodes_of(settings))  # type: ignore[arg-type]
    picked = ("MAILBOX_NODE_NAME", "STALWART_HOSTNAME", "STALWART_ROLE", "STALWART_CONFIG_FILE")
    assert {k: first[k] for k in (*picked, "DOCKER_HOST")} == {
        "MAILBOX_NODE_NAME": "stalwart",
        "STALWART_HOSTNAME": "stalwart",
        "STALWART_ROLE": "primary",
        "STALWART_CONFIG_FILE": "",
        "DOCKER_HOST": "unix:///run/docker-a.sock",
    }
    assert {k: second[k] for k in (*picked, "DOCKER_HOST")} == {
        "MAILBOX_NODE_NAME": "stalwart-2",
        "STALWART_HOSTNAME": "stalwart-2",
        "STALWART_ROLE": "secondary",
        "STALWART_CONFIG_FILE": "/var/lib/tailwart/config.json",
        "DOCKER_HOST": "ssh://deploy@mail-b.example.net:2222",
    }
    # everything else is the same .env for both
    same = set(first) - {*picked, "DOCKER_HOST"}
    assert {k: first[k] for k in same} == {k: second[k] for k in same}


def test_one_node_is_todays_environment_plus_its_hostname_and_an_empty_role() -> None:
    settings = example_settings()
    env = compose_environment(settings)
    today = {
        **settings.values,
        "STALWART_PUBLIC_URL": "https://mail.example.org",
        "STALWART_RECOVERY_MODE": "",
        "STALWART_RECOVERY_ADMIN_IN_RECOVERY": "",
    }
    added = {k: v for k, v in env.items() if k not in today}
    assert added == {
        "STALWART_HOSTNAME": "stalwart",
        "STALWART_ROLE": "",
        "STALWART_CONFIG_FILE": "",
    }
    assert {k: env[k] for k in today} == today
    assert "DOCKER_HOST" not in env


def test_the_committed_compose_file_passes_the_node_identity_to_stalwart() -> None:
    import yaml

    root = Path(__file__).resolve().parents[2]
    doc = yaml.safe_load((root / "compose" / "docker-compose.yml").read_text())
    env = doc["services"]["stalwart"]["environment"]
    assert env["STALWART_HOSTNAME"] == "${STALWART_HOSTNAME:?run through inv up}"
    assert env["STALWART_ROLE"] == "${STALWART_ROLE:-}"
    volumes = doc["services"]["stalwart"]["volumes"]
    assert "${STALWART_CONFIG_FILE:-../config/config.json}:/etc/stalwart/config.json:ro" in volumes


# ---------------------------------------------------------------- the key's validation


def _errors(**values: str) -> list[str]:
    merged = {**example_values(), **values}
    _, problems = validate([(k, v, None) for k, v in merged.items()])
    return [str(p) for p in problems if p.level == "error"]


@pytest.mark.parametrize(
    ("hosts", "words"),
    [
        ("tcp://mail-b:2375", "is not ssh://[user@]host[:port] or unix:///path"),
        ("ssh://deploy@mail-b/srv", "nothing after the host"),
        ("ssh://-oProxyCommand=x", "ssh:// has a host that is not"),
        ("ssh://deploy@mail-b:99999", "port"),
        ("unix://run/docker.sock", "must be an absolute path"),
        ("unix:///run/../docker.sock", "'.' or '..'"),
        ("mail-b.example.net", "is not ssh://"),
        ("", ""),  # the key's own empty value: the local engine
    ],
    ids=[
        "tcp",
        "ssh-path",
        "ssh-option",
        "ssh-port",
        "unix-relative",
        "unix-dotdot",
        "bare",
        "empty",
    ],
)
def test_bad_endpoints_are_refused_naming_the_key(hosts: str, words: str) -> None:
    errors = _errors(MAILBOX_DOCKER_HOSTS=hosts)
    mine = [e for e in errors if "MAILBOX_DOCKER_HOSTS" in e]
    if not words:
        assert mine == []
        return
    assert len(mine) == 1, errors
    assert words in mine[0]


@pytest.mark.parametrize(
    ("nodes", "hosts", "words"),
    [
        (f"{FIRST},{SECOND}", ENGINE_A, "lists 1 docker endpoint(s) for 2 mailbox node(s)"),
        ("", f"{ENGINE_A},{ENGINE_B}", "lists 2 docker endpoint(s) for 1 mailbox node(s)"),
        (f"{FIRST},{SECOND}", f"{ENGINE_A},{ENGINE_B}", ""),
        ("", ENGINE_B, ""),
    ],
)
def test_one_endpoint_per_node(nodes: str, hosts: str, words: str) -> None:
    errors = _errors(MAILBOX_NODES=nodes, MAILBOX_DOCKER_HOSTS=hosts)
    mine = [e for e in errors if "MAILBOX_DOCKER_HOSTS" in e]
    expected = f"{words}; expected one per MAILBOX_NODES entry, in the same order"
    assert mine == ([f"error: MAILBOX_DOCKER_HOSTS: {expected}"] if words else [])


def test_two_nodes_of_one_name_are_refused() -> None:
    errors = _errors(MAILBOX_NODES=f"{FIRST},stalwart.other.ts.net")
    assert any("MAILBOX_NODES" in e and "first labels must differ" in e for e in errors), errors


def test_a_bad_endpoint_exits_2_through_inv_check(tmp_path: Path) -> None:
    env = write_env(
        tmp_path / ".env", cluster_values(MAILBOX_DOCKER_HOSTS=f"{ENGINE_A},tcp://b:2375")
    )
    result = inv("up", "--dry-run", "--env-file", str(env), cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "MAILBOX_DOCKER_HOSTS" in result.stderr
    assert "endpoint 2 is not ssh://" in result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- --node and refusals


def test_node_by_fqdn_or_first_label_any_case(tree: Path) -> None:
    for wanted in (SECOND, "stalwart-2", "STALWART-2", SECOND.upper()):
        made, _ = fleet(tree, Docker({}), cluster_values(), Output(), wanted)
        assert [s.where.fqdn for s in made.stacks] == [SECOND]
    made, _ = fleet(tree, Docker({}), cluster_values(), Output())
    assert [s.where.fqdn for s in made.stacks] == [FIRST, SECOND]


def test_an_unknown_node_is_refused_listing_the_nodes(tree: Path) -> None:
    docker = Docker({})
    with pytest.raises(NodeRefused) as raised:
        fleet(tree, docker, cluster_values(), Output(), "stalwart-3")
    assert raised.value.exit_code == 2
    assert str(raised.value) == (
        "refused, no docker command was run:\n"
        "  --node 'stalwart-3' is not a mailbox node; the nodes are: "
        "stalwart.tail1234.ts.net, stalwart-2.tail1234.ts.net"
    )
    assert docker.timeline == []


def test_several_nodes_without_docker_hosts_are_refused(tree: Path) -> None:
    docker = Docker({})
    values = cluster_values(MAILBOX_DOCKER_HOSTS="")
    for node in ("", "stalwart-2"):
        with pytest.raises(NodeRefused) as raised:
            fleet(tree, docker, values, Output(), node)
        assert raised.value.exit_code == 2
        assert "MAILBOX_DOCKER_HOSTS is empty but MAILBOX_NODES lists 2 nodes" in str(raised.value)
    assert docker.timeline == []


def test_unknown_node_and_missing_hosts_are_reported_at_once(tree: Path) -> None:
    with pytest.raises(NodeRefused) as raised:
        fleet(tree, Docker({}), cluster_values(MAILBOX_DOCKER_HOSTS=""), Output(), "nope")
    assert "--node 'nope'" in str(raised.value)
    assert "MAILBOX_DOCKER_HOSTS is empty" in str(raised.value)


@pytest.mark.parametrize("task", ["up", "down", "ps", "logs", "restart"])
def test_the_refusals_exit_2_through_the_tasks_and_run_no_docker(tmp_path: Path, task: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "docker-ran"
    stub = bin_dir / "docker"
    stub.write_text(f"#!/bin/sh\ntouch {marker}\nexit 99\n")
    stub.chmod(0o755)
    env = write_env(tmp_path / ".env", cluster_values(MAILBOX_DOCKER_HOSTS=""))
    result = inv(
        task,
        "--node",
        "stalwart-9",
        "--env-file",
        str(env),
        cwd=tmp_path,
        timeout=60,
        env_extra={"PATH": f"{bin_dir}:/usr/bin:/bin"},
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--node 'stalwart-9' is not a mailbox node" in result.stderr
    assert "MAILBOX_DOCKER_HOSTS is empty" in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists()


# ---------------------------------------------------------------- up / ps / logs


def test_up_dry_run_prints_each_nodes_commands_and_engine(tree: Path) -> None:
    docker = Docker({})
    out = Output()
    made, _ = fleet(tree, docker, cluster_values(), out)
    made.up(dry_run=True, timeout=90, checks=compose_checks)
    assert docker.timeline == []
    plan = out.lines[out.lines.index(f"== node {FIRST} (docker: {ENGINE_A}), role primary") :]
    assert [line for line in plan if not line.startswith("    ")] == [
        f"== node {FIRST} (docker: {ENGINE_A}), role primary",
        DRY_RUN,
        f"  (each with DOCKER_HOST={ENGINE_A})",
        f"  {DAEMON}",
        f"  {COMPOSE_VERSION}",
        f"  {UP}",
        "  then, every few seconds for up to 90s until both are healthy:",
        "  then, to report the node name the sidecar got:",
        f"== node {SECOND} (docker: {ENGINE_B}), role secondary",
        DRY_RUN,
        f"  (each with DOCKER_HOST={ENGINE_B})",
        f"  {DAEMON}",
        f"  {COMPOSE_VERSION}",
        "  then config/config.json is uploaded to "
        "deploy@mail-b.example.net:2222:/var/lib/tailwart/config.json",
        f"  {UP}",
        "  then, every few seconds for up to 90s until both are healthy:",
        "  then, to report the node name the sidecar got:",
    ]


def test_up_starts_the_nodes_one_after_another_each_healthy_first(
    tree: Path, uploads: list[tuple[str, str]]
) -> None:
    docker = Docker(healthy_script())
    out = Output()
    made, _ = fleet(tree, docker, cluster_values(), out)
    made.up(timeout=60, checks=compose_checks)
    per_node = [DAEMON, COMPOSE_VERSION, UP, PS, INSPECT, STATUS]
    assert docker.timeline == [
        *(("docker", ENGINE_A, c) for c in per_node),
        *(("docker", ENGINE_B, c) for c in per_node),
    ]
    assert uploads == [("deploy@mail-b.example.net:2222", REMOTE)]
    up_b = docker.envs[8]
    assert up_b["DOCKER_HOST"] == ENGINE_B
    assert up_b["MAILBOX_NODE_NAME"] == "stalwart-2"
    assert up_b["STALWART_ROLE"] == "secondary"
    assert f"sidecar node: {SECOND} (100.101.102.104)" in out.lines
    assert not any(line.startswith("warning: the sidecar") for line in out.lines), out.lines
    # secrets travel in the environment only
    settings = from_mapping(cluster_values())
    for _, _, command in docker.timeline:
        assert settings["STALWART_DB_PASSWORD"] not in command


def test_a_node_that_stays_unhealthy_stops_up_before_the_next(
    tree: Path, uploads: list[tuple[str, str]]
) -> None:
    script = healthy_script()
    script[PS] = {ENGINE_A: Result(fixture("ps-unhealthy.json")), ENGINE_B: script[PS]}
    script[INSPECT] = {
        ENGINE_A: Result(fixture("inspect-unhealthy.json")),
        ENGINE_B: script[INSPECT],
    }
    script[f"{BASE} logs --no-color --tail 30 stalwart"] = Result("boom\n")
    docker = Docker(script)
    made, _ = fleet(tree, docker, cluster_values(), Output())
    with pytest.raises(MailboxError):
        made.up(timeout=20, checks=compose_checks)
    assert {engine for _, engine, _ in docker.timeline} == {ENGINE_A}
    assert uploads == []


def test_ps_and_logs_show_each_node_under_its_header(tree: Path) -> None:
    logs = f"{BASE} logs --no-color"
    script = {**healthy_script(), logs: Result("")}
    docker = Docker(script)
    out = Output()
    made, _ = fleet(tree, docker, cluster_values(), out)
    made.ps()
    headers = [line for line in out.lines if line.startswith("== node")]
    assert headers == [
        f"== node {FIRST} (docker: {ENGINE_A}), role primary",
        f"== node {SECOND} (docker: {ENGINE_B}), role secondary",
    ]
    made.logs()
    assert [(e, c) for _, e, c in docker.timeline if c == logs] == [
        (ENGINE_A, logs),
        (ENGINE_B, logs),
    ]
    with pytest.raises(UsageError, match="--follow follows one node: add --node"):
        made.logs(follow=True)


def test_one_node_prints_no_header(tree: Path) -> None:
    docker = Docker(healthy_script())
    out = Output()
    made, _ = fleet(tree, docker, example_values(), out)
    made.ps()
    assert not any(line.startswith("== node") for line in out.lines)
    assert {engine for _, engine, _ in docker.timeline} == {""}


# ---------------------------------------------------------------- the rolling restart


@dataclass
class Edge:
    """drain / undrain fakes writing into the docker timeline."""

    timeline: list[tuple[str, ...]]
    fail_on: tuple[str, str] | None = None

    def drain(self, node: str) -> None:
        self._step("drain", node)

    def undrain(self, node: str) -> None:
        self._step("undrain", node)

    def _step(self, what: str, node: str) -> None:
        self.timeline.append((what, node))
        if self.fail_on == (what, node):
            raise OperationError(f"{what} of {node}: edge1.example.net: health gate failed")


def key_events(timeline: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """Drains, undrains, the restarts and health polls (with their engine)."""
    keep = {RESTART: "restart", PS: "health"}
    events: list[tuple[str, ...]] = []
    for event in timeline:
        if event[0] != "docker":
            events.append(event)
        elif event[2] in keep:
            events.append((keep[event[2]], event[1]))
    return events


def test_the_roll_drains_restarts_awaits_and_undrains_one_node_at_a_time(
    tree: Path, uploads: list[tuple[str, str]]
) -> None:
    docker = Docker(healthy_script())
    edge = Edge(docker.timeline)
    out = Output()
    made, clock = fleet(tree, docker, cluster_values(), out)
    made.restart(timeout=60, checks=compose_checks, roll=Roll(edge.drain, edge.undrain, grace=7))
    assert key_events(docker.timeline) == [
        ("drain", FIRST),
        ("restart", ENGINE_A),
        ("health", ENGINE_A),
        ("undrain", FIRST),
        ("drain", SECOND),
        ("restart", ENGINE_B),
        ("health", ENGINE_B),
        ("undrain", SECOND),
    ]
    assert clock.slept == [7, 7]
    assert uploads == [("deploy@mail-b.example.net:2222", REMOTE)]
    assert out.lines[-1] == f"rolling restart done: {FIRST}, {SECOND}, one at a time"


def test_a_failed_restart_stops_the_roll_with_that_node_drained(
    tree: Path, uploads: list[tuple[str, str]]
) -> None:
    script = healthy_script()
    script[RESTART] = {ENGINE_A: Result(""), ENGINE_B: Result("", exited=1)}
    script[PS] = {ENGINE_A: script[PS], ENGINE_B: Result(fixture("ps-healthy.json"))}
    docker = Docker(script)
    edge = Edge(docker.timeline)
    made, _ = fleet(tree, docker, cluster_values(), Output())
    with pytest.raises(RollStopped) as raised:
        made.restart(timeout=60, checks=compose_checks, roll=Roll(edge.drain, edge.undrain))
    assert raised.value.exit_code == 1
    message = str(raised.value)
    assert message.startswith(f"rolling restart stopped at {SECOND}: the restart failed:")
    assert f"{SECOND} stays drained at the edge → fix it, `inv restart --node {SECOND}`" in message
    assert f"restarted before it: {FIRST}; not touched: none" in message
    events = key_events(docker.timeline)
    # the failure report polls the node once more
    assert events[-3:] == [("drain", SECOND), ("restart", ENGINE_B), ("health", ENGINE_B)]
    assert ("undrain", SECOND) not in events


def test_a_failed_first_node_leaves_the_others_untouched(tree: Path) -> None:
    script = healthy_script()
    script[PS] = {ENGINE_A: Result(fixture("ps-unhealthy.json")), ENGINE_B: script[PS]}
    script[INSPECT] = {
        ENGINE_A: Result(fixture("inspect-unhealthy.json")),
        ENGINE_B: script[INSPECT],
    }
    script[f"{BASE} logs --no-color --tail 30 stalwart"] = Result("boom\n")
    docker = Docker(script)
    edge = Edge(docker.timeline)
    made, _ = fleet(tree, docker, cluster_values(), Output())
    with pytest.raises(RollStopped) as raised:
        made.restart(timeout=20, checks=compose_checks, roll=Roll(edge.drain, edge.undrain))
    assert f"not touched: {SECOND}" in str(raised.value)
    assert "mailbox not healthy after 20s" in str(raised.value)
    assert {e for _, e, _ in (t for t in docker.timeline if t[0] == "docker")} == {ENGINE_A}
    assert [t for t in docker.timeline if t[0] != "docker"] == [("drain", FIRST)]


def test_a_failed_drain_restarts_nothing_on_that_node(tree: Path) -> None:
    docker = Docker(healthy_script())
    edge = Edge(docker.timeline, fail_on=("drain", FIRST))
    made, _ = fleet(tree, docker, cluster_values(), Output())
    with pytest.raises(RollStopped, match=f"stopped at {FIRST}: the drain failed") as raised:
        made.restart(timeout=60, checks=compose_checks, roll=Roll(edge.drain, edge.undrain))
    assert f"{FIRST} was not restarted; some edge hosts may have drained it" in str(raised.value)
    assert f"not touched: {SECOND}" in str(raised.value)
    assert [t for t in docker.timeline if t[0] == "docker"] == []


def test_a_failed_undrain_stops_the_roll(tree: Path) -> None:
    docker = Docker(healthy_script())
    edge = Edge(docker.timeline, fail_on=("undrain", FIRST))
    made, _ = fleet(tree, docker, cluster_values(), Output())
    with pytest.raises(RollStopped, match=f"stopped at {FIRST}: the undrain failed"):
        made.restart(timeout=60, checks=compose_checks, roll=Roll(edge.drain, edge.undrain))
    assert ("drain", SECOND) not in docker.timeline


def test_no_drain_rolls_without_touching_the_edge(
    tree: Path, uploads: list[tuple[str, str]]
) -> None:
    docker = Docker(healthy_script())
    made, clock = fleet(tree, docker, cluster_values(), Output())
    roll = roll_for(from_mapping(cluster_values()), None, no_drain=True)  # type: ignore[arg-type]
    made.restart(timeout=60, checks=compose_checks, roll=roll)
    assert key_events(docker.timeline) == [
        ("restart", ENGINE_A),
        ("health", ENGINE_A),
        ("restart", ENGINE_B),
        ("health", ENGINE_B),
    ]
    assert clock.slept == []


@pytest.mark.parametrize("grace", [-1.0, 3601.0, float("nan")])
def test_a_bad_drain_grace_is_bad_input(grace: float) -> None:
    with pytest.raises(UsageError, match="--drain-grace"):
        roll_for(from_mapping(cluster_values()), None, grace=grace)  # type: ignore[arg-type]


def test_the_roll_dry_run_names_each_drain_and_runs_nothing(tree: Path) -> None:
    docker = Docker({})
    out = Output()
    made, _ = fleet(tree, docker, cluster_values(), out)
    made.restart(dry_run=True, timeout=60, checks=compose_checks, roll=Roll(grace=5))
    assert docker.timeline == []
    steps = [
        line
        for line in out.lines
        if line.startswith(("== node", "drain ", "wait ", "undrain ", f"  {BASE}"))
    ]
    assert steps == [
        f"== node {FIRST} (docker: {ENGINE_A}), role primary",
        f"drain {FIRST} at every edge host (as `inv drain --node {FIRST}`)",
        "wait 5s for sessions in flight to finish",
        f"  {RESTART}",
        f"undrain {FIRST} at every edge host (as `inv undrain --node {FIRST}`)",
        f"== node {SECOND} (docker: {ENGINE_B}), role secondary",
        f"drain {SECOND} at every edge host (as `inv drain --node {SECOND}`)",
        "wait 5s for sessions in flight to finish",
        f"  {RESTART}",
        f"undrain {SECOND} at every edge host (as `inv undrain --node {SECOND}`)",
    ]


def test_restart_of_one_named_node_is_a_plain_restart(tree: Path) -> None:
    docker = Docker(healthy_script())
    edge = Edge(docker.timeline)
    made, _ = fleet(tree, docker, cluster_values(), Output(), "stalwart")
    made.restart(timeout=60, checks=compose_checks, roll=Roll(edge.drain, edge.undrain))
    assert key_events(docker.timeline) == [("restart", ENGINE_A), ("health", ENGINE_A)]


# ---------------------------------------------------------------- config.json upload


def test_an_unreachable_node_fails_the_upload_naming_it(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    config = tmp_path / "ssh_config"
    config.write_text("")
    options = SshOptions(known_hosts=known, ssh_config=config, connect_timeout=2.0)
    with pytest.raises(MailboxError) as raised:
        remote_config.upload_config(HostTarget("127.0.0.1", "deploy", 1), "{}", options)
    assert raised.value.exit_code == 1
    assert str(raised.value).startswith(
        "cannot place config.json at deploy@127.0.0.1:1:/var/lib/tailwart/config.json: "
    )


def test_the_roll_leaves_a_node_the_operator_had_drained_drained(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A drain that changes nothing on every edge host means the node was drained before
    the roll: the roll restarts it but does not undrain it."""
    from types import SimpleNamespace

    import tailwart.edge.deploy_release as release
    from tailwart.edge.report import HostResult
    from tailwart.mailbox.fleet import edge_roll

    calls: list[tuple[str, bool]] = []
    status = {"stalwart.tail1234.ts.net": "unchanged", "stalwart-2.tail1234.ts.net": "deployed"}

    def drain_nodes(jobs: Any, options: Any, node: str, *, drain: bool) -> list[HostResult]:
        calls.append((node, drain))
        return [HostResult("edge-1", status[node] if drain else "deployed")]

    monkeypatch.setattr(release, "drain_nodes", drain_nodes)
    targets = SimpleNamespace(jobs=[], ssh=None, keep=3)
    edge = SimpleNamespace(targets=lambda *a, **k: targets)
    roll = edge_roll(SimpleNamespace(), edge)  # type: ignore[arg-type]
    for node in status:
        roll.drain(node)
        roll.undrain(node)
    assert calls == [
        ("stalwart.tail1234.ts.net", True),
        ("stalwart-2.tail1234.ts.net", True),
        ("stalwart-2.tail1234.ts.net", False),
    ]
    assert "stalwart.tail1234.ts.net was drained before the roll" in capsys.readouterr().out
