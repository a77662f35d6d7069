"""``inv up / ps / restart / down`` for real: the committed compose file on a real dockerd,
the sidecar (Tailscale built from source) joining a real headscale, nothing leaving
198.18.0.0/15 (tests/support/mailbox_world.py builds and seals that world).

One stack for the whole module (it is the expensive part): the tests run in file order
and each leaves the stack as the next expects it. The capture is checked last.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tailwart.testing.standin import LISTENERS_FILE
from tests.support.mailbox_world import (
    BACKEND_NODES,
    BASE_DOMAIN,
    HS_PORT,
    INSIDE,
    World,
    run,
    world,
)
from tests.support.testkit import ROOT, inv, need_root, write_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROJECT = "twlive"
#: caddy.json's servers, as caddy-l4 names them in the health gate's report
MAIL_SERVERS = (("smtp", 25), ("submissions", 465), ("submission", 587), ("imap", 143),
                ("imaps", 993))  # fmt: skip
NODE = "stalwart"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, Path]]:
    need_root()
    from tailwart.settings.example import example_values

    with world() as w:
        key = w.preauth_key("tag:stalwart")
        values = {
            **example_values(),
            "COMPOSE_PROJECT": PROJECT,
            "MAILBOX_NODE_NAME": NODE,
            "MAILBOX_FQDN": f"{NODE}.{BASE_DOMAIN}",
            "TS_LOGIN_SERVER": w.login_server,
            "TS_OAUTH_CLIENT_SECRET": key,
            "STALWART_DB_HOST": w.hs_addr,
            "STALWART_S3_HOST": w.hs_addr,
        }
        env_file = write_env(tmp_path_factory.mktemp("live") / ".env", values)
        # inv up writes config/config.json where the committed compose file mounts it from:
        # the operator's file, not the work tree's; leave the tree as it was
        rendered = ROOT / "config" / "config.json"
        before = rendered.read_bytes() if rendered.exists() else None
        try:
            yield w, env_file
        finally:
            if before is None:
                rendered.unlink(missing_ok=True)
            else:
                rendered.write_bytes(before)


def tw(w: World, env_file: Path, *args: str, timeout: float = 400) -> str:
    done = inv(*args, f"--env-file={env_file}", env_extra=w.env, timeout=timeout)
    out = done.stdout + done.stderr
    assert done.returncode == 0, f"inv {' '.join(args)} exited {done.returncode}:\n{out[:6000]}"
    return out


def inspect(w: World, service: str, project: str = PROJECT) -> dict[str, Any]:
    name = w.docker(
        "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}",
        "--filter", f"label=com.docker.compose.service={service}",
    ).stdout.split()  # fmt: skip
    assert len(name) == 1, f"{service}: {name}"
    doc: dict[str, object] = json.loads(w.docker("inspect", name[0]).stdout)[0]
    return doc


def started_at(w: World, service: str) -> str:
    state = inspect(w, service)["State"]
    assert isinstance(state, dict)
    return str(state["StartedAt"])


#: TAILWART_RECORD_FIXTURES=1 writes what Docker and tailscaled really print here
CAPTURED = ROOT / "tests" / "fixtures" / "docker" / "captured"
INSPECT_KEEP = {
    "": ("Id", "Created", "Path", "Args", "State", "Image", "Name"),
    "Config": ("Image", "Labels"),  # never Env: it holds every secret of .env
    "HostConfig": ("NetworkMode", "RestartPolicy", "PortBindings"),
    "NetworkSettings": ("Ports",),
}


def record(w: World, env_file: Path, label: str) -> None:
    """Save the real outputs the unit tests' hand-written fixtures stand for (no secrets)."""
    import os

    if not os.environ.get("TAILWART_RECORD_FIXTURES"):
        return
    from tailwart.mailbox.compose import Compose, inspect
    from tailwart.settings import load
    from tailwart.settings.derived import compose_environment

    compose = Compose(str(env_file), PROJECT)
    env = {**w.env, **compose_environment(load(env_file))}
    CAPTURED.mkdir(parents=True, exist_ok=True)
    ps = run(compose.ps(), env=env, cwd=ROOT).stdout
    (CAPTURED / f"ps-{label}.json").write_text(ps)
    names = [json.loads(x)["Name"] for x in ps.splitlines() if x.strip()]
    docs = json.loads(run(inspect(*names), env=env).stdout)
    kept = []
    for doc in docs:
        out = {k: doc[k] for k in INSPECT_KEEP[""]}
        for part in ("Config", "HostConfig", "NetworkSettings"):
            out[part] = {k: doc[part].get(k) for k in INSPECT_KEEP[part]}
        kept.append(out)
    (CAPTURED / f"inspect-{label}.json").write_text(json.dumps(kept, indent=2) + "\n")
    status = json.loads(run(compose.tailscale_status(), env=env, cwd=ROOT).stdout)
    trimmed = {k: status.get(k) for k in ("Version", "BackendState", "MagicDNSSuffix", "Self")}
    (CAPTURED / f"tailscale-status-{label}.json").write_text(json.dumps(trimmed, indent=2) + "\n")


def test_up_joins_headscale_and_turns_healthy(stack: tuple[World, Path]) -> None:
    w, env_file = stack
    started = time.monotonic()
    out = tw(w, env_file, "up")
    w.timings["inv up"] = time.monotonic() - started
    assert "mailbox healthy after" in out
    # what headscale itself says: one node, ours, tagged, online
    nodes = [n for n in w.nodes() if n.get("given_name") == NODE or n.get("name") == NODE]
    assert len(nodes) == 1, w.nodes()
    node = nodes[0]
    assert node.get("online") is True, node
    tags = set(node.get("tags") or []) | set(node.get("forced_tags") or [])
    assert "tag:stalwart" in tags, node
    addresses = set(node.get("ip_addresses") or [])
    # inv up reports the name and addresses the sidecar got: the same ones
    line = next(x for x in out.splitlines() if x.startswith("sidecar node: "))
    assert line.startswith(f"sidecar node: {NODE}.{BASE_DOMAIN} ("), line
    assert set(re.findall(r"[0-9a-f.:]{7,}", line.split("(", 1)[1])) == addresses, (line, node)
    # no identity warning (renamed node, other MagicDNS name, wrong tag)
    assert [x for x in out.splitlines() if x.startswith("warning:") and "sidecar" in x] == []
    record(w, env_file, "healthy")
    for service in ("ts-stalwart", "stalwart"):
        state = inspect(w, service)["State"]
        assert isinstance(state, dict)
        assert state["Health"]["Status"] == "healthy", (service, state["Health"])


def test_no_host_port_and_stalwart_lives_in_the_sidecar(stack: tuple[World, Path]) -> None:
    w, _ = stack
    sidecar, stalwart = inspect(w, "ts-stalwart"), inspect(w, "stalwart")
    for doc in (sidecar, stalwart):
        host = doc["HostConfig"]
        net = doc["NetworkSettings"]
        assert isinstance(host, dict) and isinstance(net, dict)
        assert not host.get("PortBindings"), host.get("PortBindings")
        assert not any(net.get("Ports") or {}), net.get("Ports")
        assert not host.get("PublishAllPorts")
    host = stalwart["HostConfig"]
    assert isinstance(host, dict)
    assert host["NetworkMode"] == f"container:{sidecar['Id']}"


def test_ps_shows_both_healthy(stack: tuple[World, Path]) -> None:
    w, env_file = stack
    out = tw(w, env_file, "ps")
    rows = {cols[0]: cols for cols in map(str.split, out.splitlines()) if len(cols) == 5}
    images = {"ts-stalwart": inspect(w, "ts-stalwart"), "stalwart": inspect(w, "stalwart")}
    for service, doc in images.items():
        name = str(doc["Name"]).lstrip("/")
        config = doc["Config"]
        assert isinstance(config, dict)
        assert rows[service] == [service, name, "running", "healthy", config["Image"]], out
    assert (
        f"stalwart image tag: {str(images['stalwart']['Config']['Image']).rsplit(':', 1)[1]}" in out
    )


EDGE_SCRIPT = """
import imaplib, json, smtplib, sys
host = sys.argv[1]
with smtplib.SMTP(host, 25, timeout=30) as smtp:
    smtp.ehlo("client.tailwart.test")
    smtp.sendmail("alice@client.tailwart.test", ["bob@example.org"],
                  "Subject: across the tailnet\\r\\n\\r\\nhello\\r\\n")
    src = smtp.sock.getsockname()
imap = imaplib.IMAP4(host, 143, timeout=30)
greeting = imap.welcome.decode()
imap.logout()
print(json.dumps({"src": list(src), "imap": greeting}))
"""


def stand_in_events(w: World) -> list[dict[str, Any]]:
    """What the stand-in in the Stalwart slot printed: one JSON event per line."""
    name = str(inspect(w, "stalwart")["Id"])
    logs = w.docker("logs", name).stdout
    return [json.loads(x) for x in logs.splitlines() if x.startswith("{")]


def test_the_tailnet_enforces_the_snippet_merged_by_inv_acl(stack: tuple[World, Path]) -> None:
    """Before: a tailnet without rules, nothing reaches the mailbox. `inv acl --headscale`
    merges acl-snippet.hujson; then the edge reaches the mail ports, not another port
    the mailbox listens on, and an untagged node reaches nothing."""
    w, env_file = stack
    mailbox = f"{NODE}.{BASE_DOMAIN}"
    # refusals are tried on the address too: a name that does not resolve proves nothing
    address = next(a for a in live_nodes(w)[NODE]["ip_addresses"] if "." in a)
    started = time.monotonic()
    w.start_edge(w.preauth_key("tag:reverse-proxy"))
    w.timings["edge host joined"] = time.monotonic() - started
    assert not w.edge_reaches(address, 25)
    # a port the snippet does not open, listening in the sidecar's namespace
    stalwart = str(inspect(w, "stalwart")["Id"])
    listener = (
        "import socket; s = socket.socket(); s.bind(('0.0.0.0', 2222)); s.listen(8)\n"
        "while True: s.accept()[0].close()"
    )
    w.docker("exec", "-d", stalwart, "python3", "-c", listener)
    assert w.reaches(stalwart, "127.0.0.1", 2222)  # control: it listens
    w.backend_nodes()
    w.merge_snippet(env_file)
    assert "tag:reverse-proxy" in w.headscale("policy", "get").stdout
    deadline = time.monotonic() + 30
    while not w.edge_reaches(mailbox, 25):  # the new netmap reaches both nodes
        assert time.monotonic() < deadline, "the edge never got :25 after the merge"
    for port in (143, 993, 8080):
        assert w.edge_reaches(mailbox, port), port
    assert not w.edge_reaches(address, 2222)
    untagged = "member"
    w.start_node(untagged, w.preauth_key(""))
    assert not w.reaches(untagged, address, 25)
    w.docker("stop", untagged)  # a graceful stop logs the ephemeral node out


def edge_env(w: World, env_file: Path, **values: str) -> Path:
    """The stack's .env plus the edge host as EDGE_HOSTS / EDGE_ROOT (and ``values``)."""
    assert w.edge is not None
    current = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    return write_env(
        env_file.parent / "edge.env",
        {
            **current,
            "EDGE_HOSTS": f"root@{w.edge.bridge_ip}",
            "EDGE_ROOT": w.edge.root,
            **values,
        },
    )


def test_mail_crosses_the_tailnet_through_the_deployed_edge(stack: tuple[World, Path]) -> None:
    """`inv deploy-edge` puts caddy-l4 on the edge host over ssh; then client → caddy-l4 →
    MagicDNS and WireGuard → the stand-in in the sidecar's namespace; PROXY v2 carries
    the client's address."""
    w, env_file = stack
    edge = w.edge or w.start_edge(w.preauth_key("tag:reverse-proxy"))
    started = time.monotonic()
    out = w.deploy_edge(edge_env(w, env_file))
    w.timings["inv deploy-edge"] = time.monotonic() - started
    # its health gate heard the stand-in through the edge on every port (greetings)
    gate = next(x for x in out.splitlines() if "health gate: " in x)
    assert all(f"{n}:{p} ok" in gate for n, p in MAIL_SERVERS), gate
    peer_ip = edge.tailnet_ip
    sent = json.loads(w.in_world(sys.executable, "-c", EDGE_SCRIPT, edge.bridge_ip).stdout)
    client = (str(sent["src"][0]), int(sent["src"][1]))
    assert client[0] == edge.client_ip, sent
    assert "IMAP4rev1" in str(sent["imap"]), sent
    events = stand_in_events(w)
    seen = [e for e in events if e["event"] == "seen" and e["port"] in (25, 143)]
    smtp = [e for e in seen if e["port"] == 25 and e["src"] == list(client)]
    assert len(smtp) == 1, events
    # the stand-in's TCP peer is the edge's tailnet address: the hop was WireGuard
    assert smtp[0]["peer"][0] == peer_ip and smtp[0]["error"] == "", smtp
    imap = [e for e in seen if e["port"] == 143]
    assert imap and imap[-1]["src"][0] == client[0] and imap[-1]["peer"][0] == peer_ip, seen
    messages = [e for e in events if e["event"] == "message"]
    assert messages and messages[-1]["client"] == list(client), messages
    assert messages[-1]["mail_from"] == "alice@client.tailwart.test"


def test_restart_restarts_stalwart_alone(stack: tuple[World, Path]) -> None:
    w, env_file = stack
    before_sidecar, before_stalwart = started_at(w, "ts-stalwart"), started_at(w, "stalwart")
    out = tw(w, env_file, "restart")
    assert "mailbox healthy after" in out
    assert started_at(w, "ts-stalwart") == before_sidecar
    assert started_at(w, "stalwart") != before_stalwart


def through_edge(w: World) -> tuple[bool, str]:
    """One SMTP + IMAP exchange through the edge: (worked, what happened)."""
    assert w.edge is not None, "the wire test starts the edge"
    done = run(
        [
            "nsenter",
            f"--net=/run/netns/{w.dk}",
            sys.executable,
            "-c",
            EDGE_SCRIPT,
            w.edge.bridge_ip,
        ],
        check=False,
        timeout=120,
    )
    last = (done.stdout + done.stderr).strip().splitlines()[-1:]
    return done.returncode == 0, "".join(last)


def health(w: World, service: str) -> tuple[str, str]:
    state = inspect(w, service)["State"]
    assert isinstance(state, dict)
    return str(state["Status"]), str((state.get("Health") or {}).get("Status"))


def wait_healthy(w: World, service: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while health(w, service) != ("running", "healthy"):
        assert time.monotonic() < deadline, (service, health(w, service))
        time.sleep(2)


def live_nodes(w: World) -> dict[str, dict[str, Any]]:
    """headscale's nodes by name, without the backend stand-ins of the ACL test."""
    named = {str(n.get("given_name") or n.get("name")): n for n in w.nodes()}
    return {k: v for k, v in named.items() if k not in BACKEND_NODES}


def node_names(w: World) -> list[str]:
    return sorted(live_nodes(w))


def test_compose_restart_of_the_sidecar_is_the_trap(stack: tuple[World, Path]) -> None:
    """`docker compose restart ts-stalwart` (what tailwart never does) leaves the mailbox
    unreachable while Docker still calls it healthy; `inv restart --service ts-stalwart`
    brings it back."""
    w, env_file = stack
    from tailwart.mailbox.compose import Compose
    from tailwart.settings import load
    from tailwart.settings.derived import compose_environment

    settings = load(env_file)
    bare = run(
        Compose(str(env_file), PROJECT).restart("ts-stalwart"),
        env={**w.env, **compose_environment(settings)},
        check=False,
        cwd=ROOT,
        timeout=120,
    )
    assert bare.returncode == 0, bare.stderr
    wait_healthy(w, "ts-stalwart")
    # Stalwart kept the old, dead namespace: Docker's health check (loopback) still passes
    assert health(w, "stalwart") == ("running", "healthy")
    worked, what = through_edge(w)
    assert not worked, what
    # a graceful stop logged the ephemeral node out: the new one got the name back
    assert node_names(w) == ["edge", NODE]
    out = tw(w, env_file, "restart", "--service", "ts-stalwart")
    assert f"sidecar node: {NODE}.{BASE_DOMAIN} (" in out
    worked, what = through_edge(w)
    assert worked, what


def test_sigkill_of_the_sidecar_renames_the_node(stack: tuple[World, Path]) -> None:
    """SIGKILL: no logout, so headscale keeps the old ephemeral node (until its inactivity
    timeout) and the recreated sidecar registers as stalwart-1; `inv up` says so, and the
    edge, dialling MAILBOX_FQDN, reaches a dead node until the old one is deleted."""
    w, env_file = stack
    w.docker("kill", "-s", "KILL", str(inspect(w, "ts-stalwart")["Id"]))
    deadline = time.monotonic() + 30
    while health(w, "ts-stalwart")[0] == "running" and time.monotonic() < deadline:
        time.sleep(1)
    # `docker kill` counts as a manual stop: restart: unless-stopped does not revive it
    assert health(w, "ts-stalwart")[0] == "exited"
    out = tw(w, env_file, "up")
    assert f"sidecar node: {NODE}-1.{BASE_DOMAIN} (" in out, out
    assert f"the sidecar registered as '{NODE}-1', not MAILBOX_NODE_NAME='{NODE}'" in out
    assert "headscale nodes delete" in out
    nodes = live_nodes(w)
    assert set(nodes) == {"edge", NODE, f"{NODE}-1"}
    assert nodes[NODE].get("online") is not True and nodes[f"{NODE}-1"].get("online") is True
    record(w, env_file, "renamed")
    ps = tw(w, env_file, "ps")  # Docker sees nothing wrong
    assert re.search(r"^ts-stalwart\s+\S+\s+running\s+healthy", ps, re.M), ps
    worked, what = through_edge(w)
    assert not worked, what
    # the fix the warning names, on headscale
    w.headscale("nodes", "delete", "--identifier", str(nodes[NODE]["id"]), "--force")
    out = tw(w, env_file, "restart", "--service", "ts-stalwart")
    assert f"sidecar node: {NODE}.{BASE_DOMAIN} (" in out, out
    assert node_names(w) == ["edge", NODE]
    worked, what = through_edge(w)
    assert worked, what


MEMBER_993 = """
import json, socket, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
with socket.create_connection((sys.argv[1], 993), 30) as raw:
    src = list(raw.getsockname()[:2])
    with ctx.wrap_socket(raw) as tls:
        print(json.dumps({"src": src, "greeting": tls.recv(200).decode()}))
"""
EDGE_993 = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], 993), 10).close()
    print("open")
except ConnectionRefusedError:
    print("refused")
"""


def test_edge_public_ports_25_only(stack: tuple[World, Path], tmp_path: Path) -> None:
    """EDGE_PUBLIC_PORTS=25: `inv deploy-edge` narrows the edge to :25, which still carries
    PROXY v2; the edge refuses :993, and a tailnet member reaches the mailbox's :993
    directly (no PROXY header: the stand-in, given the listener objects `inv provision`
    derives, trusts only the edge there, as Stalwart does)."""
    w, env_file = stack
    from tailwart.settings import load
    from tailwart.stalwart.desired import Desired, desired_state

    edge = w.edge
    assert edge is not None
    narrow = edge_env(
        w,
        env_file,
        EDGE_PUBLIC_PORTS="25",
        EDGE_TAILNET_ADDR=f"{edge.tailnet_ip}/32",
        EDGE_TAILNET_ADDR6=f"{edge.tailnet_ip6}/128",
    )
    listeners = [
        d.fields
        for d in desired_state(load(narrow))
        if isinstance(d, Desired) and d.type.endswith("NetworkListener")
    ]
    (tmp_path / "listeners.json").write_text(json.dumps(listeners))
    stalwart = str(inspect(w, "stalwart")["Id"])
    w.docker("cp", str(tmp_path / "listeners.json"), f"{stalwart}:{LISTENERS_FILE}")
    try:
        narrowed(w, narrow)
    finally:  # no listener file left in the volume (the next test takes the stack down)
        w.docker("exec", "-u", "0", stalwart, "rm", "-f", str(LISTENERS_FILE), check=False)
        w.docker("stop", "member2", check=False)


def narrowed(w: World, narrow: Path) -> None:
    edge = w.edge
    assert edge is not None
    assert "mailbox healthy after" in tw(w, narrow, "restart")  # listeners bind at start
    out = w.deploy_edge(narrow)
    gate = next(x for x in out.splitlines() if "health gate: " in x)
    assert "smtp:25 ok" in gate and "993" not in gate and "143" not in gate, gate
    # the edge: :993 refused (caddy no longer listens), :25 still proxied with the client
    assert w.in_world(sys.executable, "-c", EDGE_993, edge.bridge_ip).stdout.strip() == "refused"
    smtp = (
        "import json, smtplib, sys\n"
        "with smtplib.SMTP(sys.argv[1], 25, timeout=30) as s:\n"
        "    s.sendmail('carol@client.test', ['bob@example.org'], 'Subject: x\\r\\n\\r\\nx')\n"
        "    print(json.dumps(list(s.sock.getsockname()[:2])))\n"
    )
    client = json.loads(w.in_world(sys.executable, "-c", smtp, edge.bridge_ip).stdout)
    # a tailnet member (untagged, owned by the user) dials the mailbox's :993 itself
    member_ip = w.start_node("member2", w.preauth_key(""))
    got = w.docker("exec", "member2", "python3", "-c", MEMBER_993, f"{NODE}.{BASE_DOMAIN}")
    sent = json.loads(got.stdout)
    assert sent["greeting"].startswith("* OK"), sent
    events = [e for e in stand_in_events(w) if e["event"] == "seen"]
    direct = [e for e in events if e["port"] == 993 and e["direct"]]
    assert len(direct) == 1, events
    assert direct[0]["peer"][0] == member_ip == sent["src"][0], (direct, member_ip, sent)
    assert direct[0]["src"] == direct[0]["peer"] and direct[0]["error"] == ""
    proxied = [e for e in events if e["port"] == 25 and e["src"] == client]
    assert len(proxied) == 1 and not proxied[0]["direct"], events
    assert proxied[0]["peer"][0] == edge.tailnet_ip


def test_down_keeps_the_volume_and_down_volumes_removes_it(stack: tuple[World, Path]) -> None:
    w, env_file = stack
    volume = f"{PROJECT}_stalwart-data"
    assert volume in w.docker("volume", "ls", "-q").stdout.split()
    tw(w, env_file, "down")
    project = f"label=com.docker.compose.project={PROJECT}"
    assert w.docker("ps", "-aq", "--filter", project).stdout.split() == []
    assert volume in w.docker("volume", "ls", "-q").stdout.split()
    tw(w, env_file, "down", "--volumes", "--yes")
    assert volume not in w.docker("volume", "ls", "-q").stdout.split()


def bootstrap_resolvers() -> set[str]:
    """The sidecar's ``dns:`` servers, as the committed compose file names them."""
    import yaml

    doc = yaml.safe_load((ROOT / "compose" / "docker-compose.yml").read_text())
    return {str(ip) for ip in doc["services"]["ts-stalwart"]["dns"]}


def test_nothing_left_198_18(stack: tuple[World, Path]) -> None:
    """The capture: nothing addressed outside 198.18.0.0/15 crossed the world's one way out
    or reached headscale's namespace. Inside the docker namespace, the only attempts to
    leave are DNS queries to the compose file's bootstrap resolvers (dropped there)."""
    w, _ = stack
    w.stop_capture()
    # controls: each capture recorded the sidecar's control traffic to headscale
    to_headscale = f"tcp and dst host {w.hs_addr} and dst port {HS_PORT}"
    for label in ("docker", "exit", "headscale"):
        assert w.read_capture(label, to_headscale), f"the {label} capture is empty"
    assert w.read_capture("edge", to_headscale), "the edge host's capture is empty"
    assert w.leaks("exit") == []
    assert w.leaks("headscale") == []
    # the edge host (its one link): only 198.18.0.0/15 (WireGuard, DERP, ssh, mail)
    assert w.leaks("edge") == []
    # inside the docker namespace (dropped there): DNS to the compose file's bootstrap
    # resolvers, and packets to tailnet addresses of a peer that left the netmap (the
    # edge dialling the SIGKILLed node), which fall off tailscale0 onto the bridge
    tailnet = "dst net 100.64.0.0/10 or dst net fd7a:115c:a1e0::/48"
    stray = w.read_capture("docker", f"(ip or ip6) and not ({INSIDE} or {tailnet})")
    resolvers = bootstrap_resolvers()
    dns = re.compile(r" > (?P<dst>[0-9.]+)\.53: ")
    other = [p for p in stray if not ((m := dns.search(p)) and m["dst"] in resolvers)]
    assert other == [], other
    names = sorted(set(re.findall(r" A{1,4}\? (\S+) ", " ".join(stray))))
    print(f"dropped inside: {len(stray)} packets of DNS to {sorted(resolvers)} for {names}")
    print("timings:", {k: round(v, 1) for k, v in w.timings.items()})
