"""Two real Stalwart v0.16.18 nodes as one cluster behind the edge (see conftest.py).

Real parts: two Stalwart processes, each in its own network namespace, on one
PostgreSQL, one redis-server and one garage; Pebble and knotd for ACME; caddy-l4
(``inv edge-run``) dialling both nodes by name. Every node sees the edge from the same
address (198.18.C.1), as on a tailnet. Each node's environment is what the compose
file gives it: ``STALWART_HOSTNAME`` (its lease in the cluster) and ``STALWART_ROLE``.

The oracles are the servers' own answers: what a client reads over IMAP on the other
node, the MTA-STS policy each node serves, the certificates Pebble issued (its log),
the nodes' leases (``x:ClusterNode``) and the roles they started with (their logs).
"""

from __future__ import annotations

import contextlib
import imaplib
import json
import os
import secrets
import shutil
import smtplib
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tailwart.doctor.mailbox import cluster as doctor_cluster
from tailwart.doctor.registry import DoctorContext, DoctorOptions
from tailwart.settings import Settings, from_mapping
from tailwart.stalwart.management import login as management_login
from tailwart.stalwart.provision import first_start
from tests.live.test_stalwart_live import FIXTURES, RECORD, Acme, start_acme, start_main_caddy
from tests.support.backend_servers import Pki, port_open, stop, wait_for
from tests.support.live_world import (
    Jmap,
    MailboxNode,
    Stalwart,
    Topology,
    create_user,
    issued_for,
    live_values,
    start_backends,
    wait_until,
)
from tests.support.testkit import ROOT, need_tool, write_env

pytestmark = pytest.mark.integration

ALICE = ("alice", "alice-" + secrets.token_hex(8))
TLS = ssl.create_default_context()
TLS.check_hostname = False
TLS.verify_mode = ssl.CERT_NONE


@dataclass
class Cluster:
    topo: Topology
    base: Path
    values: dict[str, str]
    nodes: list[Stalwart]
    second: MailboxNode
    acme: Acme
    notes: list[str] = field(default_factory=list)
    edge: subprocess.Popen[bytes] | None = None
    pg_admin: str = ""

    @property
    def env_file(self) -> Path:
        return write_env(self.base / ".env", self.values)

    def settings(self) -> Settings:
        return from_mapping(self.values, "<live cluster>")

    def inv(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "invoke", "-r", str(ROOT), *args,
             "--env-file", str(self.env_file)],
            cwd=self.base,
            env={**os.environ, "PG_ADMIN_PASSWORD": self.pg_admin},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )  # fmt: skip

    def jmap(self, node: int) -> Jmap:
        return Jmap(self.nodes[node].url, *management_login(self.settings()))


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    binary = Path(os.environ["TAILWART_STALWART_BIN"])
    assert binary.is_file(), binary
    need_tool("postgres")
    topo = Topology.create()
    base = Path(tempfile.mkdtemp(prefix="tailwart-cluster-"))
    started: list[Any] = []
    made: list[Cluster] = []
    try:
        second = topo.add_node(2)
        host = topo.addr("a", 1)
        pg, redis, garage = start_backends(host, started)
        pki = Pki.create(base)
        acme = start_acme(topo, base, pki)
        started.append(acme)
        first = "stalwart.tail0000.ts.net"
        other = "stalwart-2.tail0000.ts.net"
        values = live_values(
            host,
            pg,
            redis,
            garage,
            secrets.token_hex(16),
            MAIL_DOMAIN="good.test",
            MAIL_HOSTNAME="mail.good.test",
            MAILBOX_FQDN=first,
            MAILBOX_NODES=f"{first},{other}",
            EDGE_TAILNET_ADDR=f"{topo.addr('c', 1)}/32",
            EDGE_TAILNET_ADDR6=f"{topo.edge_v6}/128",
            STALWART_MANAGEMENT_URL=f"http://{topo.addr('a', 2)}:8080",
            STALWART_MANAGEMENT_NETWORKS=(
                f"{topo.addr('a', 0)}/24,{second.addr.rsplit('.', 1)[0]}.0/24,"
                "100.64.0.0/10,fd7a:115c:a1e0::/48"
            ),
            ACME_DIRECTORY=acme.pebble.directory,
        )
        s = from_mapping(values)
        common = {
            "STALWART_RECOVERY_ADMIN": s["STALWART_RECOVERY_ADMIN"],
            "STALWART_DB_PASSWORD": s["STALWART_DB_PASSWORD"],
            "STALWART_S3_ACCESS_KEY": s["STALWART_S3_ACCESS_KEY"],
            "STALWART_S3_SECRET_KEY": s["STALWART_S3_SECRET_KEY"],
            "STALWART_PUBLIC_URL": f"https://{s['MAIL_HOSTNAME']}",
            "SSL_CERT_FILE": pki.ca_file,
        }
        config = base / "config" / "config.json"
        nodes = [
            Stalwart(
                binary,
                topo,
                config,
                {**common, "STALWART_HOSTNAME": "stalwart", "STALWART_ROLE": "primary"},
                base,
            ),
            Stalwart(
                binary,
                topo,
                config,
                {**common, "STALWART_HOSTNAME": "stalwart-2", "STALWART_ROLE": "secondary"},
                base,
                node=second,
            ),
        ]
        c = Cluster(topo, base, values, nodes, second, acme, pg_admin=pg.admin_password)
        made.append(c)
        # the edge host reaches both nodes by their MagicDNS names
        hosts = Path("/etc/netns") / topo.edge_ns / "hosts"
        hosts.write_text(hosts.read_text() + f"{second.tailnet} {other}\n")
        # the main Caddy answers http-01 for the name a later test adds (as a deploy after
        # that .env change would): rendered with it, then .env goes back to one name
        c.values["MAIL_HOSTNAME_ALIASES"] = "imap.good.test"
        start_main_caddy(c)  # type: ignore[arg-type]
        c.values["MAIL_HOSTNAME_ALIASES"] = ""
        yield c
        print("\n".join(c.notes))
    finally:
        for each in made:
            if each.edge is not None:
                stop(each.edge)
            for node in each.nodes:
                node.stop()
        for server in reversed(started):
            server.close()
        topo.close()
        if not os.environ.get("TAILWART_LIVE_KEEP"):
            shutil.rmtree(base, ignore_errors=True)


def _create_alice(c: Cluster) -> None:
    """The mail tests' user, made through the recovery admin (node 1 in recovery mode)."""
    name, _, password = c.values["STALWART_RECOVERY_ADMIN"].partition(":")
    create_user(Jmap(c.nodes[0].url, name, password), ALICE)


def _issued_for(c: Cluster, names: set[str]) -> dict[str, Any]:
    return issued_for(c.jmap(0), names)


def _pebble_issued(c: Cluster) -> int:
    """How many certificates Pebble has issued (its own log)."""
    return c.acme.pebble.log.read_text(errors="replace").count("Issued certificate serial")


def _all_logs(node: Stalwart) -> str:
    stem = f"stalwart-{node.node.netns}-" if node.node else "stalwart-"
    return "".join(
        p.read_text(errors="replace")
        for p in sorted(node.base.glob(f"{stem}*.log"))
        if p.name[len(stem) :].split(".")[0].isdigit()
    )


def _send(host: str, marker: str, port: int = 25) -> None:
    # a sender domain per message: Stalwart's seeded throttle takes 25 messages an hour
    # from one sender domain to one recipient (MtaInboundThrottle), and this test sends more
    sender = f"sender@m{marker}.outside.test"
    with smtplib.SMTP(host, port, local_hostname="client.outside.test", timeout=30) as smtp:
        smtp.sendmail(
            sender,
            ["alice@good.test"],
            f"From: {sender}\r\nTo: alice@good.test\r\n"
            f"Subject: cluster {marker}\r\n\r\nhello {marker}\r\n",
        )


def _subjects(host: str) -> set[str]:
    """Every subject in alice's INBOX, over IMAPS on ``host`` (no SEARCH: the index is filled
    in the background, by the primary alone)."""
    with imaplib.IMAP4_SSL(host, 993, ssl_context=TLS, timeout=30) as imap:
        imap.login("alice@good.test", ALICE[1])
        _, count = imap.select("INBOX")
        messages = int(count[0] or 0)
        if not messages:
            return set()
        _, data = imap.fetch(f"1:{messages}", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        out = set()
        for item in data:
            if isinstance(item, tuple):
                line = bytes(item[1]).decode(errors="replace").strip()
                out.add(line.removeprefix("Subject:").strip())
        return out


# ------------------------------------------------------------------ 1. one store, two nodes


def test_first_start_on_one_node_then_the_second_joins(cluster: Cluster) -> None:
    c = cluster
    boot = c.inv("bootstrap", "--init-layout")
    assert boot.returncode == 0, boot.stdout + boot.stderr
    lines: list[str] = []
    primary = c.nodes[0]

    class Control:
        def start(self, recovery: bool) -> None:
            primary.start(recovery=recovery)

        def stop(self) -> None:
            primary.stop()

    try:
        first_start(c.settings(), Control(), lines.append)
    finally:
        c.notes.append("first start (node 1):\n  " + "\n  ".join(lines))
    assert lines[-1] == "first start done: the server holds exactly what .env describes"
    # the cluster objects, read back with tailwart's login: Redis carries the broadcasts
    jmap = c.jmap(0)
    assert jmap.get("x:Coordinator", ["singleton"])[0]["@type"] == "Default"
    roles = {r["name"]: r for r in jmap.get("x:ClusterRole")}
    assert roles["primary"]["tasks"] == {"@type": "EnableAll"}
    assert roles["secondary"]["tasks"] == {
        "@type": "EnableSome",
        "taskTypes": {"outboundMta": True},
    }
    _issued_for(c, {"mail.good.test"})
    primary.stop()
    primary.start(recovery=True)
    _create_alice(c)
    primary.stop()
    primary.start()
    c.nodes[1].start()

    def leases() -> set[str] | None:
        found = {str(n.get("hostname")) for n in c.jmap(1).get("x:ClusterNode")}
        return found if {"stalwart", "stalwart-2"} <= found else None

    seen = wait_until(leases, "both nodes' leases in x:ClusterNode", timeout=60)
    c.notes.append(f"x:ClusterNode lists {sorted(seen)}")
    answer = c.jmap(0).call("x:ClusterNode/get", {"ids": None})
    if RECORD:  # inv doctor's mailbox.cluster reads this answer in CI
        (FIXTURES / "cluster-nodes.json").write_text(json.dumps(answer, indent=1) + "\n")
    # inv doctor's mailbox.cluster against the real leases
    found = doctor_cluster(DoctorContext(c.settings(), DoctorOptions(timeout=10)))
    assert found.status == "ok", found.message
    c.notes.append(f"mailbox.cluster: {found.message}")
    # each node started in its role (Stalwart's cluster.startup event names it)
    assert "primary" in _all_logs(c.nodes[0]).split("cluster.startup", 1)[-1][:400]
    assert "secondary" in _all_logs(c.nodes[1]).split("cluster.startup", 1)[-1][:400]


def test_mail_taken_by_one_node_is_read_on_the_other(cluster: Cluster) -> None:
    c = cluster
    one, two = (n.host for n in c.nodes)
    a, b = secrets.token_hex(6), secrets.token_hex(6)
    _send(one, a)
    _send(two, b)
    wait_until(lambda: {f"cluster {a}"} <= _subjects(two), "node 1's message on node 2")
    wait_until(lambda: {f"cluster {b}"} <= _subjects(one), "node 2's message on node 1")


def _policy(host: str) -> str:
    answer = requests.get(
        f"http://{host}:8080/.well-known/mta-sts.txt",
        headers={"Host": "mta-sts.good.test"},
        timeout=10,
    )
    return answer.text if answer.status_code == 200 else ""


def test_one_provision_apply_reaches_both_nodes(cluster: Cluster) -> None:
    c = cluster
    before = {n.host: _policy(n.host) for n in c.nodes}
    assert all("mode: testing" in text for text in before.values()), before
    c.values["MTA_STS_MODE"] = "enforce"
    applied = c.inv("provision")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    # applied through node 1 only; node 2 reloads on the coordinator's broadcast
    for node in c.nodes:
        wait_until(lambda n=node: "mode: enforce" in _policy(n.host), f"enforce on {node.host}")
    again = c.inv("provision", "--check")
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_new_name_is_ordered_once_with_both_nodes_up(cluster: Cluster) -> None:
    c = cluster
    issued = _pebble_issued(c)
    c.values["MAIL_HOSTNAME_ALIASES"] = "imap.good.test"
    applied = c.inv("provision")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    _issued_for(c, {"mail.good.test", "imap.good.test"})
    time.sleep(15)  # a second order, if a node made one, would be done by now
    assert _pebble_issued(c) == issued + 1
    c.notes.append(f"Pebble issued {_pebble_issued(c)} certificates in all (one per order)")


# ------------------------------------------------------------------ 2. behind the edge


def _start_edge(c: Cluster) -> str:
    edge_host = c.topo.addr("b", 2)
    log = (c.base / "edge.log").open("wb")
    c.edge = subprocess.Popen(
        ["ip", "netns", "exec", c.topo.edge_ns, sys.executable, "-m", "invoke", "-r", str(ROOT),
         "edge-run", "--env-file", str(c.env_file), "--listen-host", edge_host,
         "--port-offset", "0"],
        cwd=c.base,
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    wait_for(
        lambda: port_open(edge_host, 25), "the edge on :25", timeout=120, proc=c.edge,
        log=c.base / "edge.log",
    )  # fmt: skip
    return edge_host


def _sessions(node: Stalwart, client: str) -> int:
    """SMTP sessions the node took from ``client`` through the edge (PROXY v2 gave it the
    client's address; the edge's health probes come from the edge's own)."""
    lines = _all_logs(node).splitlines()
    return sum(1 for line in lines if "(smtp.ehlo)" in line and client in line)


def test_the_edge_spreads_sessions_and_a_stopped_node_loses_no_mail(cluster: Cluster) -> None:
    c = cluster
    edge = _start_edge(c)
    client = c.topo.addr("b", 1)
    before = [_sessions(n, client) for n in c.nodes]
    sent = []
    for _ in range(10):
        marker = secrets.token_hex(6)
        _send(edge, marker)
        sent.append(marker)
    spread = [_sessions(n, client) - b for n, b in zip(c.nodes, before, strict=True)]
    assert all(count >= 2 for count in spread), spread
    c.notes.append(f"10 sessions through the edge: {spread[0]} on node 1, {spread[1]} on node 2")

    # a steady stream of sessions; node 2 is killed in the middle
    results: list[tuple[float, str, bool]] = []
    errors: list[str] = []
    done = threading.Event()

    def stream() -> None:
        while not done.is_set():
            marker = secrets.token_hex(6)
            started = time.monotonic()
            try:
                _send(edge, marker)
                results.append((started, marker, True))
            except (OSError, smtplib.SMTPException) as exc:
                results.append((started, marker, False))
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
            time.sleep(0.2)

    # four clients at once: each session waits seconds on the world's DNS (SPF, iprev)
    workers = [threading.Thread(target=stream) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(3)
        killed = time.monotonic()
        proc = c.nodes[1].proc
        assert proc is not None
        proc.kill()
        time.sleep(20)
    finally:
        done.set()
        for worker in workers:
            worker.join(timeout=60)
        with contextlib.suppress(Exception):
            c.nodes[1].proc = None
    after = [r for r in results if r[0] >= killed + 10]
    failed = [r for r in results if not r[2]]
    assert after and all(ok for _, _, ok in after), (errors, results)
    accepted = {f"cluster {m}" for _, m, ok in results if ok} | {f"cluster {m}" for m in sent}
    wait_until(lambda: accepted <= _subjects(c.nodes[0].host), "every accepted message")
    late = [r[0] - killed for r in failed if r[0] >= killed]
    when = (
        f"the last started {max(late):.1f}s after the kill"
        if late
        else "all started before the kill (in flight on node 2)"
    )
    c.notes.append(
        f"node 2 killed under a stream of {len(results)} sessions (4 clients): "
        f"{len(failed)} failed, {when}; every accepted message read on node 1"
    )
    # node 2 back: it serves again after the active health check sees it
    c.nodes[1].start()
    back = _sessions(c.nodes[1], client)

    def served_again() -> bool:
        _send(edge, secrets.token_hex(6))
        return _sessions(c.nodes[1], client) > back

    wait_until(served_again, "node 2 taking sessions again", timeout=60)
