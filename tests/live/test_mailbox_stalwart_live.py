"""The committed compose file with the REAL Stalwart v0.16.18 in the sidecar's namespace.

The Docker world of tests/support/mailbox_world.py (its own dockerd sealed in a network
namespace, headscale, the Tailscale image built from source, the edge host on the
tailnet), with the Stalwart slot's image made from the live suite's binary
(``World._stalwart_image``: never committed, never pushed) and real backends on the host
(Debian's PostgreSQL, redis-server, garage) behind a veth from the docker namespace.
``inv first-start`` and ``inv provision`` reach the management API over the tailnet from
an operator's host (a tailnet member); mail goes client → caddy-l4 (``inv deploy-edge``)
→ WireGuard → Stalwart.
STALWART_TLS=files (a test CA's certificate): no ACME order is ever attempted.

One stack for the module; the tests run in file order; the capture is checked last.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dotenv import dotenv_values

from tailwart.settings import Settings, from_mapping
from tailwart.settings.derived import compose_environment, recovery_values
from tailwart.stalwart.management import login as management_login
from tests.integration.test_mailbox_live import MAIL_SERVERS, edge_env, tw
from tests.integration.test_mailbox_live import inspect as inspect_service
from tests.support.backend_servers import Pki, PostgresServer
from tests.support.live_world import live_values, start_backends
from tests.support.mailbox_world import BASE_DOMAIN, HS_PORT, INSIDE, Edge, World, run, world
from tests.support.testkit import ROOT, need_root, need_tool, write_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROJECT = "twreal"
NODE = "stalwart"
MAILBOX = f"{NODE}.{BASE_DOMAIN}"
#: where MagicDNS points public.pyzor.org: an unused address of the test range
PYZOR = "198.18.255.254"
ALICE = ("alice", "alice-" + secrets.token_hex(8))
#: the listeners inv provision makes (name → port), as the direct live suite checks them
LISTENERS = {"smtp": 25, "submissions": 465, "submission": 587, "imap": 143, "imaps": 993,
             "http": 8080}  # fmt: skip


def inspect(w: World, service: str) -> dict[str, Any]:
    return inspect_service(w, service, PROJECT)


@dataclass
class Real:
    w: World
    edge: Edge
    operator: Edge
    env_file: Path
    pg: PostgresServer
    admin_password: str
    base: Path

    def inv_as_operator(self, *args: str, timeout: float = 600) -> str:
        """``inv`` on the operator's host (a tailnet member: the management URL's MagicDNS
        name resolves and routes over WireGuard), with the world's docker socket."""
        done = run(
            [
                *("ip", "netns", "exec", self.operator.netns, sys.executable, "-m", "invoke"),
                *("-r", str(ROOT), *args, f"--env-file={self.env_file}"),
            ],
            env=self.w.env,
            check=False,
            timeout=timeout,
            cwd=ROOT,
        )
        out = done.stdout + done.stderr
        assert done.returncode == 0, (
            f"inv {' '.join(args)} exited {done.returncode}:\n{out[-6000:]}"
        )
        return out

    def py_as_operator(self, code: str, *args: str) -> Any:
        """A Python snippet on the operator's host; its stdout is JSON."""
        done = self.w.ns(self.operator.netns, sys.executable, "-c", code, *args, check=False)
        assert done.returncode == 0, done.stdout + done.stderr[-3000:]
        return json.loads(done.stdout)

    def settings(self) -> Settings:
        return from_mapping({k: v or "" for k, v in dotenv_values(self.env_file).items()})

    def jmap(self, method: str, args: dict[str, Any], admin: bool = False) -> Any:
        """One management call over the tailnet, as tailwart's management login (or, in a
        recovery window, the recovery admin); plain HTTP, not tailwart's client."""
        user, password = (
            ("admin", self.admin_password) if admin else management_login(self.settings())
        )
        return self.py_as_operator(JMAP, f"http://{MAILBOX}:8080", user, password, method,
                               json.dumps(args))  # fmt: skip

    def recovery_window(self) -> None:
        """Stalwart recreated in recovery mode with the recovery admin, as inv first-start's
        first step does (the test's own accounts need it: tailwart's login may not create
        any); ready over the tailnet."""
        settings = self.settings()
        env = {**os.environ, **self.w.env, **compose_environment(settings)}
        env.update(recovery_values(settings))
        done = run(
            ["docker", "compose", "--env-file", str(self.env_file), "-f",
             str(ROOT / "compose" / "docker-compose.yml"), "-p", PROJECT, "up", "-d",
             "--force-recreate", "stalwart"],
            env=env, cwd=ROOT, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            done = self.w.ns(self.operator.netns, "curl", "-fsS", "-o", "/dev/null",
                             f"http://{MAILBOX}:8080/healthz/ready", check=False)  # fmt: skip
            if done.returncode == 0:
                return
            time.sleep(2)
        raise AssertionError("Stalwart in recovery mode did not become ready")


JMAP = """
import json, sys, urllib.request, base64
url, user, password, method, args = sys.argv[1:]
body = {"using": ["urn:ietf:params:jmap:core", "urn:stalwart:jmap"],
        "methodCalls": [[method, json.loads(args), "t"]]}
auth = base64.b64encode(f"{user}:{password}".encode()).decode()
req = urllib.request.Request(url + "/jmap", json.dumps(body).encode(),
    {"Content-Type": "application/json", "Authorization": "Basic " + auth})
name, result, _ = json.load(urllib.request.urlopen(req, timeout=30))["methodResponses"][0]
assert name != "error", result
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Real]:
    need_root()
    binary = Path(os.environ["TAILWART_STALWART_BIN"])
    assert binary.is_file(), binary
    need_tool("postgres")
    base = tmp_path_factory.mktemp("real")
    # a name Stalwart's default settings resolve while building its configuration (a failed
    # lookup fails every reload, seen live): MagicDNS answers it with an address inside
    # the world where nothing listens, since the world has no DNS beyond the tailnet's
    with world(stalwart_bin=binary, dns_records={"public.pyzor.org": PYZOR}) as w:
        host = w.backend_link()
        servers: list[Any] = []
        try:
            # on the ports acl-snippet.hujson opens to tag:stalwart (inv check holds them)
            pg, redis, garage = start_backends(host, servers, standard_ports=True)
            # STALWART_TLS=files: a certificate of a test CA, readable by the image's user
            cert, key = Pki.create(base).issue("mail", ["mail.good.test"], days=2)
            for path in (cert, key):
                os.chown(path, 2000, 2000)
                os.chmod(path, 0o600)
            edge = w.start_edge(w.preauth_key("tag:reverse-proxy"))
            admin_password = secrets.token_hex(16)
            values = live_values(
                host,
                pg,
                redis,
                garage,
                admin_password,
                COMPOSE_PROJECT=PROJECT,
                MAILBOX_NODE_NAME=NODE,
                MAILBOX_FQDN=MAILBOX,
                TS_LOGIN_SERVER=w.login_server,
                TS_OAUTH_CLIENT_SECRET=w.preauth_key("tag:stalwart"),
                EDGE_TAILNET_ADDR=f"{edge.tailnet_ip}/32",
                EDGE_TAILNET_ADDR6=f"{edge.tailnet_ip6}/128",
                STALWART_MANAGEMENT_URL=f"http://{MAILBOX}:8080",
                STALWART_TLS="files",
                STALWART_TLS_CERT_FILE=cert,
                STALWART_TLS_KEY_FILE=key,
                # never used with files; and if it were, nothing answers there
                ACME_DIRECTORY=f"https://{host}:9/directory",
            )
            env_file = write_env(base / ".env", values)
            # the operator: a tailnet member (untagged, owned by the user) of its own
            operator = w.start_host("operator", w.preauth_key(""))
            yield Real(w, edge, operator, env_file, pg, admin_password, base)
        finally:
            for server in reversed(servers):
                server.close()


def test_bootstrap_and_the_acl(real: Real) -> None:
    """`inv bootstrap` makes the role, database, bucket, key and layout on the real backends;
    `inv acl --headscale` merges the snippet (the edge may reach the mail ports and :8080)."""
    w = real.w
    out = run(
        [sys.executable, "-m", "invoke", "-r", str(ROOT), "bootstrap", "--init-layout",
         f"--env-file={real.env_file}"],
        env={**os.environ, "PG_ADMIN_PASSWORD": real.pg.admin_password},
        check=False, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    w.backend_nodes()
    # headscale's policy check wants every tag the snippet names to resolve: the sidecar
    # joins later (first-start needs the ACL first), so an offline stand-by holds the tag
    w.offline_nodes({"standby": "tag:stalwart"})
    w.merge_snippet(real.env_file)
    # the operator's host is a member: the snippet's member rule lets it reach :8080 (seen
    # live before that rule: the edge alone could, and Stalwart demands a PROXY header from
    # the edge there once the listeners are provisioned, so nobody could provision)
    policy = w.headscale("policy", "get").stdout
    assert '"tag:stalwart:465,587,143,993,8080"' in policy, policy


def test_first_start_over_the_tailnet(real: Real) -> None:
    """`inv first-start` from the operator's host: compose starts the sidecar (it joins headscale,
    turns healthy on the real backends) and the real Stalwart in recovery mode, then
    normally; every step reaches the management API by MagicDNS over WireGuard."""
    started = time.monotonic()
    out = real.inv_as_operator("first-start")
    real.w.timings["inv first-start"] = time.monotonic() - started
    # (the checks' warnings follow on stderr)
    assert "first start done: the server holds exactly what .env describes" in out.splitlines()
    # the test's own reads (plain JMAP over the tailnet): what the real server now holds
    listeners = {o["name"]: o for o in real.jmap("x:NetworkListener/get", {"ids": None})["list"]}
    assert set(listeners) == set(LISTENERS), listeners
    for name, obj in listeners.items():
        trusted = set(obj["overrideProxyTrustedNetworks"])
        # the server stores a host network without its prefix
        assert trusted == {real.edge.tailnet_ip, real.edge.tailnet_ip6}, (name, trusted)
    blob = real.jmap("x:BlobStore/get", {"ids": ["singleton"]})["list"][0]
    assert blob["@type"] == "S3", blob
    memory = real.jmap("x:InMemoryStore/get", {"ids": ["singleton"]})["list"][0]
    assert memory["@type"] == "Redis", memory


def test_up_with_the_real_stalwart(real: Real) -> None:
    """`inv up` (from the operator's side): the sidecar is on headscale, both containers
    healthy, Stalwart runs the image made from the binary, as 2000:2000, in the sidecar's
    namespace, with no host port."""
    w = real.w
    started = time.monotonic()
    out = tw(w, real.env_file, "up")
    w.timings["inv up"] = time.monotonic() - started
    assert "mailbox healthy after" in out
    assert f"sidecar node: {MAILBOX} (" in out, out
    node = next(n for n in w.nodes() if n.get("given_name") == NODE)
    assert node.get("online") is True, node
    assert "tag:stalwart" in set(node.get("tags") or []) | set(node.get("forced_tags") or [])
    sidecar, stalwart = inspect(w, "ts-stalwart"), inspect(w, "stalwart")
    for doc in (sidecar, stalwart):
        assert doc["State"]["Health"]["Status"] == "healthy", doc["State"]["Health"]
        assert not doc["HostConfig"].get("PortBindings")
    assert stalwart["HostConfig"]["NetworkMode"] == f"container:{sidecar['Id']}"
    from tailwart.settings.contract import BY_NAME

    assert stalwart["Config"]["Image"] == BY_NAME["STALWART_IMAGE"].default
    # the recovery admin reaches Stalwart only in recovery mode: empty in a normal start
    env = dict(item.partition("=")[::2] for item in stalwart["Config"]["Env"])
    assert env.get("STALWART_RECOVERY_ADMIN", "") == "", "the recovery admin is in the container"
    # the real binary, the official layout: pid 1 is stalwart with the config path
    cid = str(stalwart["Id"])
    cmdline = w.docker("exec", cid, "cat", "/proc/1/cmdline").stdout.split("\0")
    assert cmdline[:3] == ["/usr/local/bin/stalwart", "--config", "/etc/stalwart/config.json"]
    assert w.docker("exec", cid, "id", "-u").stdout.strip() == "2000"
    owners = w.docker("exec", cid, "stat", "-c", "%u:%g %n", "/etc/stalwart",
                      "/var/lib/stalwart").stdout.split("\n")  # fmt: skip
    assert [x.split()[0] for x in owners if x] == ["2000:2000", "2000:2000"], owners
    cap = w.docker("exec", cid, "python3", "-c", "import os; print(os.getxattr("
                   "'/usr/local/bin/stalwart', 'security.capability').hex())").stdout  # fmt: skip
    assert cap.strip()[8:16] == "00040000", cap  # CAP_NET_BIND_SERVICE permitted
    # the same server answers over the tailnet (readiness from the operator's host)
    ready = real.py_as_operator(
        "import json, sys, urllib.request\n"
        "print(json.dumps(urllib.request.urlopen(sys.argv[1], timeout=10).status))",
        f"http://{MAILBOX}:8080/healthz/ready",
    )
    assert ready == 200


def test_provision_again_changes_nothing(real: Real) -> None:
    out = real.inv_as_operator("provision")
    assert "no changes: the server holds exactly what .env describes" in out, out


SEND = """
import json, smtplib, sys
host, marker = sys.argv[1:]
with smtplib.SMTP(host, 25, local_hostname="client.outside.test", timeout=60) as smtp:
    smtp.sendmail("sender@outside.test", ["alice@good.test"],
        "From: sender@outside.test\\r\\nTo: alice@good.test\\r\\n"
        f"Subject: live {marker}\\r\\n\\r\\nhello {marker}\\r\\n")
    print(json.dumps(list(smtp.sock.getsockname()[:2])))
"""
FETCH = """
import imaplib, json, ssl, sys, time
host, password, marker = sys.argv[1:]
ctx = ssl.create_default_context()
ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
deadline = time.monotonic() + 60
while True:
    with imaplib.IMAP4_SSL(host, 993, ssl_context=ctx, timeout=30) as imap:
        imap.login("alice@good.test", password)
        _, count = imap.select("INBOX")
        n = int(count[0] or 0)
        found = []
        if n:
            _, data = imap.fetch(f"1:{n}", "(RFC822.HEADER)")
            found = [i[1].decode(errors="replace") for i in data
                     if isinstance(i, tuple) and f"live {marker}".encode() in i[1]]
    if found or time.monotonic() > deadline:
        print(json.dumps(found))
        break
    time.sleep(1)
"""


def test_mail_through_the_edge_across_the_tailnet(real: Real) -> None:
    """`inv deploy-edge` puts caddy-l4 on the edge host; its health gate hears the real
    Stalwart on every port across the tailnet. A message from a client address arrives in
    alice's INBOX (read back over IMAPS through the edge) with the client's address in
    its Received header, never the edge's tailnet address."""
    w, edge = real.w, real.edge
    started = time.monotonic()
    out = w.deploy_edge(edge_env(w, real.env_file))
    w.timings["inv deploy-edge"] = time.monotonic() - started
    gate = next(x for x in out.splitlines() if "health gate: " in x)
    assert all(f"{n}:{p} ok" in gate for n, p in MAIL_SERVERS), gate
    domain = next(
        d for d in real.jmap("x:Domain/get", {"ids": None})["list"] if d.get("name") == "good.test"
    )
    account = {
        "@type": "User",
        "name": ALICE[0],
        "domainId": domain["id"],
        "credentials": {"0": {"@type": "Password", "secret": ALICE[1]}},
        # explicit: an account made in recovery mode gets no default role
        "roles": {"@type": "User"},
    }
    # the recovery window: the test's user, then a normal start again (inv up recreates
    # Stalwart without the recovery admin)
    real.recovery_window()
    created = real.jmap("x:Account/set", {"create": {"a": account}}, admin=True)
    assert "a" in created.get("created", {}), created
    tw(w, real.env_file, "up")
    assert inspect(w, "stalwart")["Config"]["Env"].count("STALWART_RECOVERY_ADMIN=") == 1
    marker = secrets.token_hex(8)
    client = json.loads(w.in_world(sys.executable, "-c", SEND, edge.bridge_ip, marker).stdout)
    assert client[0] == edge.client_ip, client
    found = json.loads(
        w.in_world(sys.executable, "-c", FETCH, edge.bridge_ip, ALICE[1], marker).stdout
    )
    assert len(found) == 1, found
    headers = found[0].split("\r\n\r\n")[0]
    received = next(h for h in re.split(r"\r\n(?=\S)", headers) if h.startswith("Received:"))
    assert re.search(rf"(?<![\d.]){re.escape(edge.client_ip)}(?!\d)", received), received
    print("the first Received header:", " ".join(received.split()))
    assert edge.tailnet_ip not in headers, headers  # never the edge's own address


def test_nothing_left_198_18(real: Real) -> None:
    """The capture: nothing addressed outside 198.18.0.0/15 crossed the world's ways out
    (to headscale, to the backends on the host) or the edge's and the operator's links."""
    w = real.w
    w.stop_capture()
    to_headscale = f"tcp and dst host {w.hs_addr} and dst port {HS_PORT}"
    for label in ("exit", "headscale", "edge", "operator"):
        assert w.read_capture(label, to_headscale), f"the {label} capture is empty"
    to_pg = f"tcp and dst port {real.pg.port}"
    assert w.read_capture("backends", to_pg), "the backends capture has no Postgres traffic"
    for label in ("exit", "headscale", "edge", "operator", "backends"):
        assert w.leaks(label) == [], label
    # inside the docker namespace, dropped there by its guard: only DNS queries
    tailnet = "dst net 100.64.0.0/10 or dst net fd7a:115c:a1e0::/48"
    stray = w.read_capture("docker", f"(ip or ip6) and not ({INSIDE} or {tailnet})")
    dns = re.compile(r" > [0-9a-f.:]+\.53: ")
    assert [p for p in stray if not dns.search(p)] == [], stray
    names = sorted(set(re.findall(r" A{1,4}\? (\S+) ", " ".join(stray))))
    print(f"dropped inside: {len(stray)} packets of DNS for {names}")
    print("timings:", {k: round(v, 1) for k, v in w.timings.items()})
