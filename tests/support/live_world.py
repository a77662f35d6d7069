"""The live world: a real Stalwart in a network namespace, real backends, a real edge.

Topology (every address in 198.18.0.0/15 or a ULA on links this module creates)::

    root ns (operator, client, backends, relay)
      198.18.A.1 ──veth── 198.18.A.2  mailbox ns: stalwart (no default route)
      198.18.B.1 ──veth── 198.18.B.2  edge ns: caddy-l4 (inv edge-run)
                          198.18.C.1 ──veth── 198.18.C.2 (edge → mailbox, fd00:7477:C::/64)

The operator reaches the management API from 198.18.A.1 (never a PROXY source); the
edge reaches Stalwart from 198.18.C.1 (its "tailnet address"); a mail client connects
to the edge from 198.18.B.1, the address Stalwart must see through PROXY v2.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.support.backend_servers import (
    GarageServer,
    PostgresServer,
    RedisServer,
    garage_binary,
    port_open,
    stop,
    wait_for,
)
from tests.support.netns_hosts import _free_subnets
from tests.support.testkit import TOOL_CACHE, need_tool


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True)


@dataclass
class Topology:
    tag: str
    a: int
    b: int
    c: int
    made: list[str] = field(default_factory=list)
    extra_ns: list[str] = field(default_factory=list)

    @property
    def mailbox_ns(self) -> str:
        return f"twl{self.tag}m"

    @property
    def edge_ns(self) -> str:
        return f"twl{self.tag}e"

    def addr(self, net: str, host: int) -> str:
        return f"198.18.{getattr(self, net)}.{host}"

    @property
    def edge_v6(self) -> str:
        return f"fd00:7477:{self.c:x}::1"

    @classmethod
    def create(cls) -> Topology:
        a, b, c = _free_subnets(3)
        topo = cls(str(os.getpid() % 100000), a, b, c)
        for ns in (topo.mailbox_ns, topo.edge_ns):
            run("ip", "netns", "add", ns)
            topo.made.append(ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
            # DNS inside the namespaces: an address where nothing answers (fails fast)
            etc = Path("/etc/netns") / ns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "resolv.conf").write_text(f"nameserver {topo.addr('a', 1)}\n")
            # names Stalwart's default settings resolve while building its configuration
            # (a failed lookup fails ReloadSettings): point them at the operator side
            (etc / "hosts").write_text(
                f"127.0.0.1 localhost\n{topo.addr('a', 1)} public.pyzor.org\n"
            )
        topo._pair("a", None, topo.mailbox_ns)
        topo._pair("b", None, topo.edge_ns)
        topo._pair("c", topo.edge_ns, topo.mailbox_ns)
        # IPv6 on the edge→mailbox link (the edge's /128 is trusted too)
        run(
            "ip", "-n", topo.edge_ns, "addr", "add", f"{topo.edge_v6}/64", "dev", f"twl{topo.tag}c1"
        )
        run(
            "ip",
            "-n",
            topo.mailbox_ns,
            "addr",
            "add",
            f"fd00:7477:{c:x}::2/64",
            "dev",
            f"twl{topo.tag}c2",
            "nodad",
        )
        return topo

    def _pair(self, net: str, left_ns: str | None, right_ns: str) -> None:
        left, right = f"twl{self.tag}{net}1", f"twl{self.tag}{net}2"
        run("ip", "link", "add", left, "type", "veth", "peer", "name", right)
        self.made.append(left)
        if left_ns:
            run("ip", "link", "set", left, "netns", left_ns)
        run("ip", "link", "set", right, "netns", right_ns)
        lcmd = ["ip", "-n", left_ns] if left_ns else ["ip"]
        run(*lcmd, "addr", "add", f"{self.addr(net, 1)}/24", "dev", left)
        run(*lcmd, "link", "set", left, "up")
        run("ip", "-n", right_ns, "addr", "add", f"{self.addr(net, 2)}/24", "dev", right)
        run("ip", "-n", right_ns, "link", "set", right, "up")

    def add_node(self, index: int) -> MailboxNode:
        """Another mailbox namespace: its own link to the operator side (198.18.N.0/24, a
        route to the backends' subnet), and a link from the edge on which the edge speaks
        from its one tailnet address (198.18.C.1) and the node has 198.18.C.<index + 1>,
        as every node sees the same edge address on a tailnet."""
        # the edge's link (c) is not seen from the root namespace: skip it by hand
        n = next(x for x in _free_subnets(8) if x not in (self.a, self.b, self.c))
        ns = f"twl{self.tag}m{index}"
        run("ip", "netns", "add", ns)
        self.extra_ns.append(ns)
        run("ip", "-n", ns, "link", "set", "lo", "up")
        etc = Path("/etc/netns") / ns
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(f"nameserver {self.addr('a', 1)}\n")
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n{self.addr('a', 1)} public.pyzor.org\n")
        left, right = f"twl{self.tag}n{index}1", f"twl{self.tag}n{index}2"
        run("ip", "link", "add", left, "type", "veth", "peer", "name", right)
        self.made.append(left)
        run("ip", "link", "set", right, "netns", ns)
        run("ip", "addr", "add", f"198.18.{n}.1/24", "dev", left)
        run("ip", "link", "set", left, "up")
        run("ip", "-n", ns, "addr", "add", f"198.18.{n}.2/24", "dev", right)
        run("ip", "-n", ns, "link", "set", right, "up")
        run("ip", "-n", ns, "route", "add", f"{self.addr('a', 0)}/24", "via", f"198.18.{n}.1")
        # edge side: no address of its own; the edge reaches the node from 198.18.C.1
        left, right = f"twl{self.tag}e{index}1", f"twl{self.tag}e{index}2"
        run("ip", "link", "add", left, "type", "veth", "peer", "name", right)
        self.made.append(left)
        run("ip", "link", "set", left, "netns", self.edge_ns)
        run("ip", "link", "set", right, "netns", ns)
        tailnet = self.addr("c", index + 1)
        run("ip", "-n", self.edge_ns, "link", "set", left, "up")
        run("ip", "-n", self.edge_ns, "route", "add", f"{tailnet}/32", "dev", left,
            "src", self.addr("c", 1))  # fmt: skip
        run("ip", "-n", ns, "addr", "add", f"{tailnet}/24", "dev", right)
        run("ip", "-n", ns, "link", "set", right, "up")
        return MailboxNode(ns, f"198.18.{n}.2", tailnet)

    def close(self) -> None:
        for ns in self.extra_ns:
            for pid in run("ip", "netns", "pids", ns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            run("ip", "netns", "del", ns, check=False)
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
        for ns in (self.mailbox_ns, self.edge_ns):
            pids = run("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        for name in self.made:
            if name.startswith("twl") and not name.endswith(("m", "e")):
                run("ip", "link", "del", name, check=False)
        for ns in (self.mailbox_ns, self.edge_ns):
            run("ip", "netns", "del", ns, check=False)
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)


@dataclass(frozen=True)
class MailboxNode:
    """A further mailbox namespace: the operator reaches it at ``addr``, the edge at
    ``tailnet``."""

    netns: str
    addr: str
    tailnet: str


@dataclass
class Stalwart:
    """The real server, started in the mailbox namespace with a given environment."""

    binary: Path
    topo: Topology
    config: Path
    env: dict[str, str]
    base: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    #: another node's namespace and operator-side address (default: the first node's)
    node: MailboxNode | None = None

    @property
    def netns(self) -> str:
        return self.node.netns if self.node else self.topo.mailbox_ns

    @property
    def host(self) -> str:
        return self.node.addr if self.node else self.topo.addr("a", 2)

    @property
    def url(self) -> str:
        return f"http://{self.host}:8080"

    @property
    def log(self) -> Path:
        name = f"-{self.node.netns}" if self.node else ""
        return self.base / f"stalwart{name}-{self.starts}.log"

    def start(self, recovery: bool = False) -> None:
        self.starts += 1
        # as the compose file does: the recovery admin only while in recovery mode
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.base), **self.env}
        if recovery:
            env["STALWART_RECOVERY_MODE"] = "1"
        else:
            env.pop("STALWART_RECOVERY_ADMIN", None)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    self.netns,
                    str(self.binary),
                    "--config",
                    str(self.config),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.base,
            )
        wait_for(self.ready, "stalwart", timeout=120, proc=self.proc, log=self.log)

    def ready(self) -> bool:
        return requests.get(f"{self.url}/healthz/ready", timeout=2).status_code == 200

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def port_open(self, port: int) -> bool:
        try:
            return port_open(self.host, port)
        except OSError:
            return False


class Jmap:
    """The test's own JMAP calls (drift, accounts, reads): plain requests, not tailwart's client."""

    def __init__(self, url: str, user: str, password: str) -> None:
        self.url, self.auth = url, (user, password)

    def _post(self, method: str, args: dict[str, Any], using: tuple[str, ...] = ()) -> Any:
        body = {
            "using": ["urn:ietf:params:jmap:core", "urn:stalwart:jmap", *using],
            "methodCalls": [[method, args, "t"]],
        }
        return requests.post(
            f"{self.url}/jmap",
            data=json.dumps(body),
            auth=self.auth,
            timeout=30,
            headers={"Content-Type": "application/json"},
        )

    def call(self, method: str, args: dict[str, Any], using: tuple[str, ...] = ()) -> Any:
        response = self._post(method, args, using)
        response.raise_for_status()
        name, result, _ = response.json()["methodResponses"][0]
        assert name != "error", result
        return result

    def status(self, method: str = "x:Domain/get") -> int:
        """The HTTP status of one ``x:`` call (401 when the login is refused)."""
        return int(self._post(method, {"ids": None}).status_code)

    def get(self, type_name: str, ids: list[str] | None = None) -> list[dict[str, Any]]:
        return list(self.call(f"{type_name}/get", {"ids": ids})["list"])

    def by_name(self, type_name: str, name: str) -> dict[str, Any]:
        return next(o for o in self.get(type_name) if o.get("name") == name)


def create_user(admin: Jmap, user: tuple[str, str], domain: str = "good.test") -> None:
    """A mail user in ``domain``, made through the recovery admin (tailwart's own login
    may not create accounts); nothing when it exists."""
    if any(a.get("name") == user[0] for a in admin.get("x:Account")):
        return
    found = admin.by_name("x:Domain", domain)
    created = admin.call(
        "x:Account/set",
        {
            "create": {
                "a": {
                    "@type": "User",
                    "name": user[0],
                    "domainId": found["id"],
                    "credentials": {"0": {"@type": "Password", "secret": user[1]}},
                    # explicit: an account made in recovery mode gets no default role
                    "roles": {"@type": "User"},
                }
            }
        },
    )
    assert "a" in created.get("created", {}), created


def issued_for(jmap: Jmap, names: set[str], timeout: float = 180) -> dict[str, Any]:
    """The certificate Stalwart holds for exactly ``names``, once it has one."""

    def found() -> dict[str, Any] | None:
        for cert in jmap.get("x:Certificate"):
            if set(cert.get("subjectAlternativeNames") or {}) == names:
                return cert
        return None

    cert: dict[str, Any] = wait_until(found, f"a certificate for {sorted(names)}", timeout)
    return cert


def wait_until(check: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            last = check()
            if last:
                return last
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")


def start_backends(
    host: str, started: list[Any], *, standard_ports: bool = False
) -> tuple[PostgresServer, RedisServer, GarageServer]:
    """Debian's PostgreSQL, redis-server and garage on ``host``, each appended to ``started``
    as it comes up (the caller stops them). ``standard_ports``: 5432, 6379 and S3 on 3900,
    the ports acl-snippet.hujson opens to tag:stalwart; else free ports."""
    pg = PostgresServer.start(host, port=5432 if standard_ports else None)
    started.append(pg)
    redis = RedisServer.start(
        need_tool("redis-server"), host=host, port=6379 if standard_ports else None
    )
    started.append(redis)
    garage = GarageServer.start(
        garage_binary(TOOL_CACHE), host=host, s3_port=3900 if standard_ports else None
    )
    started.append(garage)
    return pg, redis, garage


def live_values(
    host: str,
    pg: PostgresServer,
    redis: RedisServer,
    garage: GarageServer,
    admin_password: str,
    **more: str,
) -> dict[str, str]:
    """.env values for a real Stalwart on the backends running at ``host`` (fresh secrets
    for its role and S3 key, Redis DB 5), the recovery admin, and ``more``."""
    from tests.support.backend_env import values

    return values(
        STALWART_RECOVERY_ADMIN=f"admin:{admin_password}",
        STALWART_MANAGEMENT_PASSWORD=secrets.token_hex(24),
        STALWART_DB_HOST=host,
        STALWART_DB_PORT=str(pg.port),
        STALWART_DB_PASSWORD=secrets.token_hex(16),
        PG_ADMIN_USER=pg.admin_user,
        STALWART_REDIS_HOST=host,
        STALWART_REDIS_PORT=str(redis.port),
        STALWART_REDIS_DB="5",
        STALWART_REDIS_PASSWORD=redis.password,
        STALWART_S3_HOST=host,
        STALWART_S3_PORT=str(garage.s3_port),
        STALWART_S3_REGION=garage.region,
        STALWART_S3_ACCESS_KEY="GK" + secrets.token_hex(12),
        STALWART_S3_SECRET_KEY=secrets.token_hex(32),
        GARAGE_ADMIN_URL=garage.admin_url,
        GARAGE_ADMIN_TOKEN=garage.admin_token,
        **more,
    )
