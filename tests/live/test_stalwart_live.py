"""The whole story against a real Stalwart v0.16.18 (see conftest.py), in order.

Real parts: the Stalwart binary in a network namespace, Debian's PostgreSQL (SCRAM over
a veth), redis-server, the garage binary, caddy-l4 (inv edge-run) in its own
namespace, aiosmtpd relays with STARTTLS. The test's own reads and the drift it makes
go through plain JMAP requests, not tailwart's client.
"""

from __future__ import annotations

import imaplib
import json
import os
import re
import secrets
import shutil
import smtplib
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tailwart import clock
from tailwart.settings import Settings, from_mapping
from tailwart.stalwart.management import login as management_login
from tailwart.stalwart.provision import first_start
from tailwart.stalwart.record import ENV_VAR
from tailwart.stalwart.record import placeholder as scrubbed
from tailwart.stalwart.versions import CURRENT
from tests.support.backend_servers import (
    GarageServer,
    KnotServer,
    Pki,
    PostgresServer,
    RedisServer,
    port_open,
    stop,
    wait_for,
)
from tests.support.doc_samples import check_sample
from tests.support.live_world import (
    Jmap,
    Stalwart,
    Topology,
    create_user,
    issued_for,
    live_values,
    start_backends,
    wait_until,
)
from tests.support.testkit import ROOT, Pebble, built_caddy, need_tool, write_env

pytestmark = pytest.mark.integration
FIXTURES = ROOT / "tests" / "fixtures" / "stalwart-0.16.18"
RECORD = os.environ.get("TAILWART_LIVE_RECORD") == "1"
LISTENERS = {
    "smtp": 25,
    "submissions": 465,
    "submission": 587,
    "imap": 143,
    "imaps": 993,
    "http": 8080,
}


@dataclass
class World:
    topo: Topology
    base: Path
    values: dict[str, str]
    stalwart: Stalwart
    pki: Pki
    pg: PostgresServer
    redis: RedisServer
    garage: GarageServer
    jmap: Jmap
    record_dir: Path
    acme: Acme
    notes: list[str] = field(default_factory=list)
    phase: int = 0
    edge: subprocess.Popen[bytes] | None = None

    @property
    def env_file(self) -> Path:
        return write_env(self.base / ".env", self.values)

    def settings(self) -> Settings:
        return from_mapping(self.values, "<live>")

    def inv(self, *args: str, phase: str | None = None) -> subprocess.CompletedProcess[str]:
        """``inv`` as an operator runs it, in the world's directory (config/ lands there)."""
        extra = {"PG_ADMIN_PASSWORD": self.pg.admin_password}
        if phase is not None:
            extra[ENV_VAR] = str(self.next_recording(phase, args))
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "invoke",
                "-r",
                str(ROOT),
                *args,
                "--env-file",
                str(self.env_file),
            ],
            cwd=self.base,
            env={**os.environ, **extra},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def next_recording(self, phase: str, args: tuple[str, ...]) -> Path:
        self.phase += 1
        path = self.record_dir / f"{self.phase:02d}-{phase}.jsonl"
        meta = {
            "args": list(args),
            "env": scrub_values(self.values),
            # the replay runs at this clock (a certificate's days left, expiry warnings)
            "recorded_at": clock.utc_stamp(),
        }
        (self.record_dir / f"{self.phase:02d}-{phase}.meta.json").write_text(
            json.dumps(meta, indent=1, sort_keys=True) + "\n"
        )
        return path

    def finish_recording(self, result: subprocess.CompletedProcess[str]) -> None:
        """Add the task's exit code and output to the phase recorded last."""
        meta_path = sorted(self.record_dir.glob(f"{self.phase:02d}-*.meta.json"))[-1]
        meta = json.loads(meta_path.read_text())
        meta["exit"] = result.returncode
        meta["stdout"] = result.stdout.splitlines()
        meta_path.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


@dataclass
class Acme:
    """The certificate side of the world: Pebble (in the root namespace, on the operator
    side), knotd authoritative for good.test (mail → the edge; RFC 2136 updates with a
    TSIG key), and the edge host's main Caddy serving the rendered caddy/jmap.caddy."""

    pebble: Pebble
    knot: KnotServer
    tsig: tuple[str, str, str]
    caddy: subprocess.Popen[bytes] | None = None

    def root(self, base: Path) -> Path:
        path = base / "pebble-root.pem"
        if not path.exists():
            path.write_text(self.pebble.root_pem())
        return path

    def close(self) -> None:
        if self.caddy is not None:
            stop(self.caddy)
        self.pebble.close()
        self.knot.close()


ZONE = """$ORIGIN good.test.
$TTL 60
@ IN SOA ns1 hostmaster 1 3600 600 86400 60
@ IN NS ns1
ns1 IN A {dns}
mail IN A {edge}
imap IN A {edge}
"""


def start_acme(topo: Topology, base: Path, pki: Pki) -> Acme:
    """knotd on the mailbox's resolver address (:53), Pebble beside it with a certificate
    for that address from the world's CA (Stalwart trusts it through SSL_CERT_FILE)."""
    import base64

    host = topo.addr("a", 1)
    tsig = ("tailwart-acme", "hmac-sha256", base64.b64encode(secrets.token_bytes(32)).decode())
    names = (
        "_acme-challenge.mail.good.test.",
        "_acme-challenge.imap.good.test.",
        "_domainkey.good.test.",
    )
    knot = KnotServer.start(
        need_tool("knotd"),
        {"good.test": ZONE.format(dns=host, edge=topo.addr("b", 2))},
        host=host,
        update_key=tsig,
        update_names=names,
        port=53,
    )
    cert, key = pki.issue("pebble", [host], days=30)
    pebble = Pebble(
        base / "pebble",
        host=host,
        http_port=80,
        dns_server=f"{host}:53",
        cert=Path(cert),
        key=Path(key),
        ca=Path(pki.ca_file),
    )
    return Acme(pebble, knot, tsig)


def start_main_caddy(world: World) -> None:
    """The edge host's main Caddy (the one that owns :80/:443) with the rendered JMAP vhost
    imported unchanged; its own certificate from its local CA (no ACME traffic of its own)."""
    rendered = world.inv("render")
    assert rendered.returncode == 0, rendered.stderr
    caddy = built_caddy(world.base / "caddy-bin")
    main = world.base / "main.caddy"
    main.write_text(
        "{\n"
        f"\tadmin unix/{world.base}/main-caddy.sock\n"
        f"\tstorage file_system {world.base}/main-caddy\n"
        "\tlocal_certs\n"
        "\tskip_install_trust\n"
        f"\tdefault_bind {world.topo.addr('b', 2)}\n"
        "}\n"
        f"import {world.base}/caddy/jmap.caddy\n"
    )
    # the edge reaches the mailbox's MagicDNS name over its link (no tailnet in this world)
    hosts = Path("/etc/netns") / world.topo.edge_ns / "hosts"
    hosts.write_text(
        hosts.read_text() + f"{world.topo.addr('c', 2)} {world.values['MAILBOX_FQDN']}\n"
    )
    log = (world.base / "main-caddy.log").open("wb")
    world.acme.caddy = subprocess.Popen(
        ["ip", "netns", "exec", world.topo.edge_ns, str(caddy), "run", "--config", str(main),
         "--adapter", "caddyfile"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={"PATH": "/usr/bin:/bin", "HOME": str(world.base)},
    )  # fmt: skip
    wait_for(
        lambda: port_open(world.topo.addr("b", 2), 80),
        "the main Caddy on :80",
        timeout=60,
        proc=world.acme.caddy,
        log=world.base / "main-caddy.log",
    )


def nets(items: Any) -> set[Any]:
    from ipaddress import ip_network

    return {ip_network(i, strict=False) for i in items}


def scrub_values(values: dict[str, str]) -> dict[str, str]:
    import base64

    from tailwart.settings.contract import BY_NAME

    out = {}
    for key, value in values.items():
        if key in BY_NAME and BY_NAME[key].secret:
            if key == "STALWART_RECOVERY_ADMIN":
                value = f"admin:{scrubbed(key + '_PASSWORD')}"
            elif key == "ACME_DNS_TSIG_SECRET":  # the contract wants base64 there
                value = base64.b64encode(scrubbed(key).encode()).decode()
            else:
                value = scrubbed(key)
        out[key] = value
    return out


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    binary = Path(os.environ["TAILWART_STALWART_BIN"])
    assert binary.is_file(), binary
    need_tool("postgres")
    topo = Topology.create()
    base = Path(tempfile.mkdtemp(prefix="tailwart-live-"))
    started: list[Any] = []
    made: list[World] = []
    try:
        host = topo.addr("a", 1)
        pg, redis, garage = start_backends(host, started)
        pki = Pki.create(base)
        acme = start_acme(topo, base, pki)
        started.append(acme)
        admin_password = secrets.token_hex(16)
        values = live_values(
            host,
            pg,
            redis,
            garage,
            admin_password,
            MAIL_DOMAIN="good.test",
            MAIL_HOSTNAME="mail.good.test",
            EDGE_TAILNET_ADDR=f"{topo.addr('c', 1)}/32",
            EDGE_TAILNET_ADDR6=f"{topo.edge_v6}/128",
            STALWART_MANAGEMENT_URL=f"http://{topo.addr('a', 2)}:8080",
            # the operator's and the mailbox's link stands for the tailnet here; the
            # tailnet's own ranges stay in (a PROXY client claiming 100.64.x is "inside")
            STALWART_MANAGEMENT_NETWORKS=(
                f"{topo.addr('a', 0)}/24,100.64.0.0/10,fd7a:115c:a1e0::/48"
            ),
            # STALWART_TLS=acme-http (the default) against this world's Pebble
            ACME_DIRECTORY=acme.pebble.directory,
            # Stalwart's Prometheus endpoint on (inv doctor's stalwart group)
            STALWART_METRICS_PASSWORD=secrets.token_hex(16),
        )
        s = from_mapping(values)
        env = {
            "STALWART_RECOVERY_ADMIN": s["STALWART_RECOVERY_ADMIN"],
            "STALWART_DB_PASSWORD": s["STALWART_DB_PASSWORD"],
            "STALWART_S3_ACCESS_KEY": s["STALWART_S3_ACCESS_KEY"],
            "STALWART_S3_SECRET_KEY": s["STALWART_S3_SECRET_KEY"],
            "STALWART_SMARTHOST_PASSWORD": "relay-" + secrets.token_hex(8),
            "STALWART_PUBLIC_URL": f"https://{s['MAIL_HOSTNAME']}",
            # the relays' and Pebble's certificates come from this CA
            "SSL_CERT_FILE": pki.ca_file,
            # what compose passes in every mode (empty unless acme-dns): the acme-dns phase
            # switches mode without recreating the process
            "ACME_DNS_TSIG_SECRET": acme.tsig[2],
            "STALWART_METRICS_PASSWORD": s["STALWART_METRICS_PASSWORD"],
        }
        stalwart = Stalwart(binary, topo, base / "config" / "config.json", env, base)
        record_dir = base / "recorded"
        record_dir.mkdir()
        w = World(
            topo,
            base,
            values,
            stalwart,
            pki,
            pg,
            redis,
            garage,
            Jmap(stalwart.url, *management_login(s)),
            record_dir,
            acme,
        )
        made.append(w)
        start_main_caddy(w)
        yield w
        if RECORD:
            FIXTURES.mkdir(parents=True, exist_ok=True)
            for path in sorted(record_dir.iterdir()):
                shutil.copy(path, FIXTURES / path.name)
    finally:
        for each in made:
            if each.edge is not None:
                stop(each.edge)
            each.stalwart.stop()
        for server in reversed(started):
            server.close()
        topo.close()
        if not os.environ.get("TAILWART_LIVE_KEEP"):
            shutil.rmtree(base, ignore_errors=True)


def recovery_jmap(world: World) -> Jmap:
    name, _, password = world.values["STALWART_RECOVERY_ADMIN"].partition(":")
    return Jmap(world.stalwart.url, name, password)


ALICE = ("alice", "alice-" + secrets.token_hex(8))


def _create_alice(world: World) -> None:
    """The mail tests' user, created once through the recovery admin (tailwart's own login
    may not create accounts)."""
    create_user(recovery_jmap(world), ALICE)


# ------------------------------------------------------------------ 1. backends and first start


def test_bootstrap_creates_the_backends(world: World) -> None:
    result = world.inv("bootstrap", "--init-layout")
    assert result.returncode == 0, result.stdout + result.stderr
    rendered = world.inv("render")
    assert rendered.returncode == 0, rendered.stderr
    config = json.loads((world.base / "config" / "config.json").read_text())
    assert config["authSecret"] == {
        "@type": "EnvironmentVariable",
        "variableName": "STALWART_DB_PASSWORD",
    }


def test_first_start_from_an_empty_store(world: World) -> None:
    lines: list[str] = []

    class Control:
        recovery = False

        def start(self, recovery: bool) -> None:
            self.recovery = recovery
            world.stalwart.start(recovery=recovery)

        def stop(self) -> None:
            world.stalwart.stop()

    path = world.next_recording("first-start", ("first-start",))
    os.environ[ENV_VAR] = str(path)
    try:
        first_start(world.settings(), Control(), lines.append)
    except Exception:
        print("\n".join(lines))
        raise
    finally:
        del os.environ[ENV_VAR]
    world.notes.append("first start:\n  " + "\n  ".join(lines))
    assert lines[-1] == "first start done: the server holds exactly what .env describes"
    check_sample("first-start", "\n".join(lines))  # docs/guides/provisioning.md

    listeners = {o["name"]: o for o in world.jmap.get(CURRENT.listener)}
    assert set(listeners) == set(LISTENERS)
    edge = nets([f"{world.topo.addr('c', 1)}/32", f"{world.topo.edge_v6}/128"])
    for name, obj in listeners.items():
        # the server stores a host network without its prefix: 198.18.C.1, not /32
        assert nets(obj["overrideProxyTrustedNetworks"]) == edge, name
    system = world.jmap.get(CURRENT.system, ["singleton"])[0]
    assert system["proxyTrustedNetworks"] == {} and system["defaultHostname"] == "mail.good.test"
    assert world.jmap.get(CURRENT.blob_store, ["singleton"])[0]["@type"] == "S3"
    assert world.jmap.get(CURRENT.memory_store, ["singleton"])[0]["@type"] == "Redis"
    for port in LISTENERS.values():
        assert world.stalwart.port_open(port), port
    for port in (995, 4190, 443):
        assert not world.stalwart.port_open(port), port


def test_second_run_changes_nothing(world: World) -> None:
    # --check judges the served certificate too: wait for Stalwart's first ACME order
    _issued_for(world, {"mail.good.test"})
    # the test's own user, made in a recovery window of the test's (tailwart's login may
    # not create accounts), once the certificate is issued: a restart during an ACME order
    # leaves it locked for an hour
    world.stalwart.stop()
    world.stalwart.start(recovery=True)
    _create_alice(world)
    world.stalwart.stop()
    world.stalwart.start()
    check = world.inv("provision", "--check", phase="check-clean")
    world.finish_recording(check)
    assert check.returncode == 0, check.stdout + check.stderr
    check_sample("provision-check-clean", check.stdout)  # docs/guides/tls.md
    again = world.inv("provision", phase="apply-clean")
    world.finish_recording(again)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "no changes: the server holds exactly what .env describes"


# ------------------------------------------------------------------ 2. what the defects were


def test_no_symmetric_signing_key_is_published(world: World) -> None:
    keys = requests.get(f"{world.stalwart.url}/auth/jwks.json", timeout=10).json()["keys"]
    assert keys and all(k.get("kty") != "oct" and "k" not in k for k in keys)


def test_jmap_session_advertises_the_public_url(world: World) -> None:
    session = requests.get(
        f"{world.stalwart.url}/jmap/session", auth=world.jmap.auth, timeout=10
    ).json()
    assert session["apiUrl"] == "https://mail.good.test/jmap/"


def in_edge_ns(world: World, script: str) -> subprocess.CompletedProcess[str]:
    """Run a Python snippet from the edge's namespace (its address is the trusted one)."""
    return subprocess.run(
        ["ip", "netns", "exec", world.topo.edge_ns, sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _http_via_proxy(world: World, claimed: str, path: str) -> str:
    """GET ``path`` from the edge's address with a PROXY v2 header claiming ``claimed``."""
    request = f"GET {path} HTTP/1.1\r\nHost: mail.good.test\r\nConnection: close\r\n\r\n"
    return _via_proxy(world, claimed, request.encode())


def test_admin_and_management_paths_refused_to_internet_clients(world: World) -> None:
    # through the edge's address, as the JMAP vhost forwards a public client
    assert " 403 " in _http_via_proxy(world, "203.0.113.5", "/api/schema") + " "
    assert " 403 " in _http_via_proxy(world, "203.0.113.5", "/admin/") + " "
    # a tailnet client is let through to authentication
    assert " 403 " not in _http_via_proxy(world, "100.64.1.1", "/api/schema") + " "
    # JMAP itself stays reachable for internet clients
    assert " 403 " not in _http_via_proxy(world, "203.0.113.5", "/jmap/session") + " "


def _via_proxy(world: World, claimed: str, request: bytes) -> str:
    """Send ``request`` to :8080 from the edge's address behind a PROXY v2 header claiming
    ``claimed`` (what the JMAP vhost does for a public client); the status line back."""
    from ipaddress import ip_address

    src = ip_address(claimed).packed
    dst = ip_address(world.topo.addr("c", 2)).packed
    header = (
        b"\r\n\r\n\x00\r\nQUIT\n"
        + bytes([0x21, 0x11, 0, 12])
        + src
        + dst
        + (4321).to_bytes(2, "big")
        + (8080).to_bytes(2, "big")
    )
    script = (
        "import socket\n"
        f"s=socket.create_connection(('{world.topo.addr('c', 2)}',8080),timeout=10)\n"
        f"s.sendall({header + request!r})\n"
        "data=s.recv(200)\n"
        "print((data.decode(errors='replace').splitlines() or ['(closed)'])[0])\n"
    )
    return in_edge_ns(world, script).stdout.strip() or "(no answer)"


def _jmap_post(user: str, password: str, method: str = "x:Domain/get") -> bytes:
    """POST /jmap with Basic credentials: an x: call, or Core/echo (any user may)."""
    import base64

    args: dict[str, Any] = {} if method == "Core/echo" else {"ids": None}
    using = ["urn:ietf:params:jmap:core"] + ([] if method == "Core/echo" else ["urn:stalwart:jmap"])
    body = json.dumps({"using": using, "methodCalls": [[method, args, "t"]]}).encode()
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return (
        "POST /jmap HTTP/1.1\r\nHost: mail.good.test\r\nConnection: close\r\n"
        f"Authorization: Basic {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def test_management_login_works_from_the_tailnet_only(world: World) -> None:
    user, password = management_login(world.settings())
    name, _, recovery = world.values["STALWART_RECOVERY_ADMIN"].partition(":")
    # an internet client, as the JMAP vhost forwards it: refused by the credential itself
    # (seen live: Stalwart answers 403 for a valid credential outside its allowedIps, 401
    # for a login that does not exist, as the recovery admin outside recovery mode)
    assert " 403 " in _via_proxy(world, "203.0.113.5", _jmap_post(user, password)) + " "
    assert " 401 " in _via_proxy(world, "203.0.113.5", _jmap_post(name, recovery)) + " "
    # a tailnet client through the same path: the management login works
    assert " 200 " in _via_proxy(world, "100.64.1.1", _jmap_post(user, password)) + " "
    # from the operator's host: the management login works, the recovery admin is gone
    assert world.jmap.status() == 200
    assert recovery_jmap(world).status() == 401
    # and the running server never received it
    assert world.stalwart.proc is not None
    environ = Path(f"/proc/{world.stalwart.proc.pid}/environ").read_bytes().split(b"\0")
    assert not [v for v in environ if v.startswith(b"STALWART_RECOVERY_ADMIN=")]


def test_failed_logins_ban_the_clients_address_never_the_edges(world: World) -> None:
    guesser, other = "203.0.113.66", "203.0.113.67"
    alice = f"{ALICE[0]}@good.test"
    assert " 200 " in _via_proxy(world, guesser, _jmap_post(alice, ALICE[1], "Core/echo")) + " "
    seen = [
        _via_proxy(world, guesser, _jmap_post(alice, f"guess-{i}", "Core/echo")) for i in range(12)
    ]
    assert seen[0].split()[1] == "401", seen
    # the guesser is banned: even alice's right password no longer works from there
    banned = _via_proxy(world, guesser, _jmap_post(alice, ALICE[1], "Core/echo"))
    assert " 200 " not in banned + " ", (seen, banned)
    world.notes.append(f"ban: guesses from {guesser} answered {seen}; then {banned!r}")
    # the edge's own address is not: another client through it signs in
    assert " 200 " in _via_proxy(world, other, _jmap_post(alice, ALICE[1], "Core/echo")) + " "
    assert world.jmap.status() == 200


def test_doctor_finds_the_management_login_refused_through_the_vhost(world: World) -> None:
    root = world.base / "main-caddy" / "pki" / "authorities" / "local" / "root.crt"
    result = world.inv(
        "doctor",
        "--only",
        "mailbox,management",
        "--edge",
        world.topo.addr("b", 2),
        "--ca-file",
        str(root),
        "--json",
    )
    found = {f["id"]: f for f in json.loads(result.stdout)["findings"]}
    assert found["management.internet"]["status"] == "ok", result.stdout + result.stderr
    world.notes.append(f"doctor management: {found['management.internet']['message']}")
    # the real server's readiness over the tailnet path (GET /healthz/ready)
    (node,) = [f for name, f in found.items() if name.startswith("mailbox.")]
    assert node["status"] == "ok", node
    world.notes.append(f"doctor mailbox: {node['message']}")


# ------------------------------------------------------------------ 3. mail through the real edge


def test_mail_through_the_edge_keeps_the_client_address(world: World) -> None:
    edge_log = (world.base / "edge.log").open("wb")
    world.edge = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            world.topo.edge_ns,
            sys.executable,
            "-m",
            "invoke",
            "-r",
            str(ROOT),
            "edge-run",
            "--env-file",
            str(world.env_file),
            "--listen-host",
            world.topo.addr("b", 2),
            "--port-offset",
            "0",
            "--upstream-host",
            world.topo.addr("c", 2),
        ],
        cwd=world.base,
        stdout=edge_log,
        stderr=subprocess.STDOUT,
    )
    edge_host = world.topo.addr("b", 2)
    wait_for(
        lambda: port_open(edge_host, 25),
        "the edge on :25",
        timeout=120,
        proc=world.edge,
        log=world.base / "edge.log",
    )
    marker = secrets.token_hex(8)
    with smtplib.SMTP(edge_host, 25, local_hostname="client.outside.test", timeout=60) as smtp:
        smtp.sendmail(
            "sender@outside.test",
            ["alice@good.test"],
            "From: sender@outside.test\r\nTo: alice@good.test\r\n"
            f"Subject: live {marker}\r\n\r\nhello {marker}\r\n",
        )
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE

    def fetch() -> bytes | None:
        with imaplib.IMAP4_SSL(edge_host, 993, ssl_context=context, timeout=30) as imap:
            imap.login("alice@good.test", ALICE[1])
            _, count = imap.select("INBOX")
            messages = int(count[0] or 0)
            if messages == 0:
                return None
            # no SEARCH: it reads the full-text index, which Stalwart fills in the background
            _, data = imap.fetch(f"1:{messages}", "(RFC822)")
            for item in data:
                if isinstance(item, tuple) and f"live {marker}".encode() in item[1]:
                    return bytes(item[1])
            return None

    message = wait_until(fetch, "the message in alice's INBOX over IMAPS through the edge")
    received = message.split(b"\r\n\r\n")[0].decode(errors="replace")
    client = world.topo.addr("b", 1)
    assert f"[{client}]" in received or f"({client})" in received or client in received, received
    assert world.topo.addr("c", 1) not in received  # never the edge's own address
    world.notes.append(f"Received header through the edge names {client}")

    # JMAP reads it back too (as alice)
    alice = ("alice@good.test", ALICE[1])
    session = requests.get(f"{world.stalwart.url}/jmap/session", auth=alice, timeout=30).json()
    account = session["primaryAccounts"]["urn:ietf:params:jmap:mail"]
    body = {
        "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
        "methodCalls": [
            ["Email/query", {"accountId": account}, "q"],
            [
                "Email/get",
                {
                    "accountId": account,
                    "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                    "properties": ["subject"],
                },
                "g",
            ],
        ],
    }
    result = requests.post(
        f"{world.stalwart.url}/jmap", json=body, auth=("alice@good.test", ALICE[1]), timeout=30
    ).json()
    subjects = [e["subject"] for e in result["methodResponses"][1][1]["list"]]
    assert f"live {marker}" in subjects, result


# ------------------------------------------------------------------ 3b. certificates (ACME)


def _issued_for(world: World, names: set[str]) -> dict[str, Any]:
    return issued_for(world.jmap, names)


def _served(world: World, port: int, root: Path, starttls: str = "") -> dict[str, Any]:
    """The certificate a client verifying against Pebble's root sees through the edge."""
    from cryptography import x509

    from tailwart.doctor.wire import greet

    context = ssl.create_default_context(cafile=str(root))
    got = greet(
        world.topo.addr("b", 2),
        port,
        30,
        tls=True,
        sni="mail.good.test",
        context=context,
        starttls=starttls,
    )
    assert got.cert_der is not None
    cert = x509.load_der_x509_certificate(got.cert_der)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {"serial": cert.serial_number, "names": set(sans.get_values_for_type(x509.DNSName))}


def test_acme_http_certificate_from_pebble_verified_through_the_edge(world: World) -> None:
    """acme-http (the default): Pebble's http-01 request crossed the main Caddy's JMAP vhost
    to Stalwart; a client through the edge verifies the chain against Pebble's root."""
    issued = _issued_for(world, {"mail.good.test"})
    assert "Pebble" in str(issued.get("issuer")), issued.get("issuer")
    root = world.acme.root(world.base)
    seen = {port: _served(world, port, root) for port in (465, 993)}
    seen.update({587: _served(world, 587, root, "smtp"), 143: _served(world, 143, root, "imap")})
    assert all(c["names"] == {"mail.good.test"} for c in seen.values()), seen
    caddy_log = (world.base / "main-caddy.log").read_text()
    assert "acme-challenge" not in caddy_log or "error" not in caddy_log.lower()
    doctor = world.inv(
        "doctor", "--only", "tls", "--edge", world.topo.addr("b", 2), "--ca-file", str(root)
    )
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert doctor.stdout.count("ok ") >= 4, doctor.stdout
    world.notes.append("acme-http: " + doctor.stdout.strip().splitlines()[0])


def test_acme_dns_reissues_with_a_new_name_and_is_served_without_a_restart(world: World) -> None:
    """acme-dns with knotd (RFC 2136, TSIG) and one more name: inv provision passes the
    domain through Manual so Stalwart orders at once; the listeners pick the new
    certificate up while the process keeps running."""
    import dns.message
    import dns.query

    root = world.acme.root(world.base)
    before = _served(world, 993, root)
    pid = world.stalwart.proc.pid if world.stalwart.proc else None
    key_name, algorithm, secret = world.acme.tsig
    world.values.update(
        STALWART_TLS="acme-dns",
        ACME_DNS_SERVER=world.acme.knot.host,
        ACME_DNS_PORT=str(world.acme.knot.port),
        ACME_DNS_TSIG_KEY=key_name,
        ACME_DNS_TSIG_ALGORITHM=algorithm,
        ACME_DNS_TSIG_SECRET=secret,
        MAIL_HOSTNAME_ALIASES="imap.good.test",
    )
    change = world.inv("provision", phase="acme-dns")
    world.finish_recording(change)
    assert change.returncode == 0, change.stdout + change.stderr
    assert '(via {"@type": "Manual"})' in change.stdout, change.stdout
    check_sample("provision-acme-dns", change.stdout)  # docs/guides/tls.md
    issued = _issued_for(world, {"mail.good.test", "imap.good.test"})
    assert "Pebble" in str(issued.get("issuer"))

    # the challenge (and Stalwart's DKIM keys) went into knotd by RFC 2136: knot bumps the
    # zone's serial on every update it accepts
    def serial() -> int:
        query = dns.message.make_query("good.test.", "SOA")
        answer = dns.query.udp(query, world.acme.knot.host, port=world.acme.knot.port, timeout=5)
        return int(answer.answer[0][0].serial) if answer.answer else 0

    assert serial() > 1
    after = wait_until(
        lambda: (c := _served(world, 993, root))["serial"] != before["serial"] and c,
        "the new certificate on 993 through the edge",
        timeout=60,
    )
    assert after["names"] == {"mail.good.test", "imap.good.test"}
    assert _served(world, 465, root)["names"] == after["names"]
    assert world.stalwart.proc is not None and world.stalwart.proc.pid == pid  # no restart
    check = world.inv("provision", "--check")
    assert check.returncode == 0, check.stdout + check.stderr


# ------------------------------------------------------------------ 4. outbound through relays


@dataclass
class Relay:
    """aiosmtpd on the operator side, as the smarthost: records what it was told."""

    name: str
    starttls: bool
    login: bool
    host: str
    port: int = 0
    envelopes: list[tuple[str, list[str], bool, str | None]] = field(default_factory=list)
    #: each message as it was received (headers and body)
    messages: list[bytes] = field(default_factory=list)
    ehlos: list[str] = field(default_factory=list)
    ehlo_times: list[float] = field(default_factory=list)
    auths: list[str] = field(default_factory=list)
    controller: Any = None

    #: serve a self-signed certificate (not from the CA Stalwart trusts)
    untrusted: bool = False

    def start(self, pki: Pki, password: str) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        relay = self

        class Handler:
            async def handle_EHLO(
                self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
            ) -> list[str]:
                relay.ehlos.append(hostname)
                relay.ehlo_times.append(time.monotonic())
                session.host_name = hostname  # aiosmtpd leaves this to a new-style hook
                return responses

            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                login = session.auth_data.login.decode() if session.auth_data else None
                relay.envelopes.append(
                    (envelope.mail_from, list(envelope.rcpt_tos), session.ssl is not None, login)
                )
                relay.messages.append(bytes(envelope.original_content or envelope.content))
                return "250 OK relayed"

        def authenticator(
            server: Any, session: Any, envelope: Any, mechanism: str, data: Any
        ) -> AuthResult:
            ok = isinstance(data, LoginPassword) and data.password.decode() == password
            relay.auths.append(mechanism)
            return AuthResult(success=ok, handled=False, auth_data=data)

        kwargs: dict[str, Any] = {}
        if self.starttls:
            kwargs["tls_context"] = pki.context(
                f"relay-{self.name}", [self.host], 30, self_signed=self.untrusted
            )
            kwargs["require_starttls"] = True
        if self.login:
            kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=True)
        from tests.support.backend_servers import free_port

        self.port = free_port(self.host)
        self.controller = Controller(Handler(), hostname=self.host, port=self.port, **kwargs)
        self.controller.start()

    def close(self) -> None:
        if self.controller is not None:
            self.controller.stop()


def _submit(world: World, marker: str) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP(
        world.topo.addr("b", 2), 587, local_hostname="laptop.test", timeout=60
    ) as smtp:
        smtp.starttls(context=context)
        smtp.login("alice@good.test", ALICE[1])
        smtp.sendmail(
            "alice@good.test",
            ["bob@far.test"],
            "From: alice@good.test\r\nTo: bob@far.test\r\n"
            f"Subject: out {marker}\r\n\r\nout {marker}\r\n",
        )


def _use_relay(
    world: World, relay: Relay | None, login: bool, phase: str
) -> subprocess.CompletedProcess[str]:
    for key in ("STALWART_SMARTHOST", "STALWART_SMARTHOST_USER", "STALWART_SMARTHOST_PASSWORD"):
        world.values.pop(key, None)
    if relay is not None:
        world.values["STALWART_SMARTHOST"] = f"{relay.host}:{relay.port}"
        world.values["STALWART_SMARTHOST_TLS"] = "starttls"
        if login:
            world.values["STALWART_SMARTHOST_USER"] = "mailer"
            world.values["STALWART_SMARTHOST_PASSWORD"] = world.stalwart.env[
                "STALWART_SMARTHOST_PASSWORD"
            ]
    result = world.inv("provision", "--restart", "never", phase=phase)
    world.finish_recording(result)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def relays(world: World) -> Iterator[dict[str, Relay]]:
    host = world.topo.addr("a", 1)
    password = world.stalwart.env["STALWART_SMARTHOST_PASSWORD"]
    made = {
        "login": Relay("login", starttls=True, login=True, host=host),
        "open": Relay("open", starttls=True, login=False, host=host),
        "plain": Relay("plain", starttls=False, login=False, host=host),
        "untrusted": Relay("untrusted", starttls=True, login=True, host=host, untrusted=True),
    }
    for relay in made.values():
        relay.start(world.pki, password)
    yield made
    for relay in made.values():
        relay.close()


def test_relay_with_login_over_verified_starttls(world: World, relays: dict[str, Relay]) -> None:
    relay = relays["login"]
    out = _use_relay(world, relay, login=True, phase="relay-login")
    assert "create  x:MtaRoute smarthost" in out.stdout
    _submit(world, marker := secrets.token_hex(6))
    got = wait_until(lambda: relay.envelopes, "the relay with login receives the message", 90)
    assert got[0][:4] == ("alice@good.test", ["bob@far.test"], True, "mailer")
    assert relay.auths  # it authenticated, after STARTTLS (auth_require_tls)
    assert marker  # the message went out authenticated, over TLS, to the relay


def test_relay_without_login_gets_no_auth(world: World, relays: dict[str, Relay]) -> None:
    relay = relays["open"]
    out = _use_relay(world, relay, login=False, phase="relay-open")
    assert "update  x:MtaRoute smarthost" in out.stdout
    _submit(world, secrets.token_hex(6))
    got = wait_until(lambda: relay.envelopes, "the relay without login receives the message", 90)
    assert got[0][2] is True and got[0][3] is None  # TLS, and no AUTH was sent
    assert relay.auths == []


def test_relay_without_starttls_is_refused(world: World, relays: dict[str, Relay]) -> None:
    relay = relays["plain"]
    _use_relay(world, relay, login=True, phase="relay-plain")
    _submit(world, secrets.token_hex(6))
    wait_until(lambda: relay.ehlos, "Stalwart connects to the plain relay", 90)
    time.sleep(5)
    assert relay.envelopes == [] and relay.auths == []  # no password, no mail in clear


def test_relay_certificate_is_verified_on_every_attempt(
    world: World, relays: dict[str, Relay]
) -> None:
    relay = relays["untrusted"]
    _use_relay(world, relay, login=True, phase="relay-untrusted")
    _submit(world, secrets.token_hex(6))
    # the first attempt fails verification; upstream's default strategy would retry with
    # "invalid-tls" (any certificate): tailwart's one strategy must fail the retry too
    wait_until(lambda: relay.ehlo_times, "a first attempt at the relay", 60)
    first = relay.ehlo_times[0]
    # the next attempt at this relay (2 minutes later) follows a TLS error here
    wait_until(lambda: relay.ehlo_times[-1] - first > 60, "a retry to the relay", 240)
    time.sleep(3)
    assert relay.envelopes == [] and relay.auths == []


def _scrape(world: World, password: str) -> requests.Response:
    return requests.get(
        f"{world.stalwart.url}/metrics/prometheus",
        auth=("prometheus", password),
        timeout=30,
    )


def test_doctor_reads_stalwarts_metrics_and_the_queue_behind_refusing_relays(
    world: World, relays: dict[str, Relay], tmp_path: Path
) -> None:
    """After the relay tests, the messages the plain and the untrusted relay could not take
    wait in the queue, deferred: the doctor's stalwart group must say so, with the numbers
    the server itself gives (its endpoint read here with requests and prometheus_client,
    its queue with this test's own JMAP client)."""
    from prometheus_client.parser import text_string_to_metric_families

    password = world.values["STALWART_METRICS_PASSWORD"]
    assert _scrape(world, "wrong-" + password).status_code == 401
    answer = _scrape(world, password)
    assert answer.status_code == 200, answer.status_code
    families = {f.name: f for f in text_string_to_metric_families(answer.text)}
    rescheduled = families["queue_rescheduled"].samples[0].value
    assert rescheduled >= 1 and families["auth_failed"].samples[0].value >= 1
    if RECORD:
        (world.record_dir / "metrics.prom").write_text(answer.text)
        # the domain's computed zone (its DKIM keys are public): inv dns reads it
        domain = world.jmap.call(
            f"{CURRENT.domain}/get", {"ids": None, "properties": ["name", "dnsZoneFile"]}
        )
        (world.record_dir / "domain-zone.json").write_text(json.dumps(domain, indent=1) + "\n")
    # never through the public vhost, whoever the client claims to be
    assert " 403 " in _http_via_proxy(world, "203.0.113.5", "/metrics/prometheus") + " "
    query = world.jmap.call(
        f"{CURRENT.queued_message}/query", {"calculateTotal": True, "limit": 200}
    )
    queued = query["total"]
    assert queued >= 1  # the plain relay's and the untrusted relay's messages
    if RECORD:  # the real answers the unit tests serve (ids and times are not secrets)
        got = world.jmap.call(
            f"{CURRENT.queued_message}/get", {"ids": query["ids"], "properties": ["createdAt"]}
        )
        answers = {f"{CURRENT.queued_message}/query": query, f"{CURRENT.queued_message}/get": got}
        (world.record_dir / "queue.json").write_text(json.dumps(answers, indent=1) + "\n")
    world.values["DOCTOR_LIMITS"] = "queue=0,deferred=0"
    world.values["DOCTOR_HISTORY_DIR"] = str(tmp_path / "history")
    try:
        first = world.inv("doctor", "--only", "stalwart", "--record")
        table = first.stdout
        assert first.returncode == 0, table + first.stderr  # warnings only
        queue_line = rf"WARN +stalwart\.queue +{queued} messages in the outbound queue: over 0"
        assert re.search(queue_line, table), table
        deferred = re.search(r"WARN +stalwart\.deferred +(\d+) deliveries since Stalwart", table)
        assert deferred and int(deferred.group(1)) >= rescheduled, table
        assert re.search(r"ok +stalwart\.metrics ", table) and "stalwart.store" in table
        assert password not in table + first.stderr
        files = list((tmp_path / "history").glob("doctor-*.json"))
        assert len(files) == 1 and '"queue_rescheduled"' in files[0].read_text()
        # the next run judges the counters' increase since the recorded one
        again = world.inv("doctor", "--only", "stalwart")
        assert again.returncode == 0, again.stdout + again.stderr
        assert re.search(r"ok +stalwart\.auth +0 logins since the run recorded", again.stdout)
        _report_reaches_alice_and_the_webhook(world)
    finally:
        for key in ("DOCTOR_LIMITS", "DOCTOR_HISTORY_DIR", *REPORT_KEYS):
            world.values.pop(key, None)


REPORT_KEYS = ("DOCTOR_REPORT_TO", "DOCTOR_SMTP_USER", "DOCTOR_SMTP_PASSWORD", "DOCTOR_WEBHOOK_URL")


def _report_reaches_alice_and_the_webhook(world: World) -> None:
    """``--report-to mail,webhook``: the report goes in through the real Stalwart's submission
    port on the edge (STARTTLS, the Pebble certificate verified for mail.good.test, which
    this host's /etc/hosts, in a mount namespace of its own, points at the edge) and is read
    back from alice's INBOX over IMAPS; the webhook gets the same report as JSON."""
    import http.server
    import threading

    posted: list[dict[str, Any]] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            posted.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    edge_host = world.topo.addr("b", 2)
    world.values.update(
        DOCTOR_REPORT_TO="alice@good.test",
        DOCTOR_SMTP_USER="alice@good.test",
        DOCTOR_SMTP_PASSWORD=ALICE[1],
        DOCTOR_WEBHOOK_URL=f"http://127.0.0.1:{hook.server_address[1]}/hook",
    )
    hosts = world.base / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n{edge_host} mail.good.test\n")
    try:
        sent = subprocess.run(
            [
                "unshare",
                "-m",
                "sh",
                "-c",
                'mount --bind "$0" /etc/hosts && exec "$@"',
                str(hosts),
                sys.executable,
                "-m",
                "invoke",
                "-r",
                str(ROOT),
                "doctor",
                "--only",
                "stalwart",
                "--report-to",
                "mail,webhook",
                "--ca-file",
                str(world.acme.root(world.base)),
                "--env-file",
                str(world.env_file),
            ],
            cwd=world.base,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        hook.shutdown()
        hook.server_close()
    said = sent.stdout + sent.stderr
    assert sent.returncode == 0, said
    assert "report: mailed to alice@good.test through mail.good.test:587" in said
    assert ALICE[1] not in said
    assert len(posted) == 1 and posted[0]["mail"] == {"delivered": True, "error": ""}, posted
    subject = posted[0]["subject"]
    assert subject.startswith("tailwart doctor on mail.good.test: ")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE

    def fetch() -> bytes | None:
        """The report from any of alice's folders, found by its decoded Subject (a long
        one is folded, a non-ASCII one encoded)."""
        import email
        import email.policy

        with imaplib.IMAP4_SSL(edge_host, 993, ssl_context=context, timeout=30) as imap:
            imap.login("alice@good.test", ALICE[1])
            _, folders = imap.list()
            for line in folders:
                name = line.decode().rsplit(' "/" ', 1)[-1] if isinstance(line, bytes) else ""
                _, count = imap.select(name or "INBOX", readonly=True)
                messages = int(count[0] or 0)
                if not messages:
                    continue
                _, data = imap.fetch(f"1:{messages}", "(RFC822)")
                for item in data:
                    if not isinstance(item, tuple):
                        continue
                    parsed = email.message_from_bytes(item[1], policy=email.policy.default)
                    if str(parsed["subject"]) == subject:
                        world.notes.append(f"the doctor's report arrived in {name}")
                        return bytes(item[1])
            return None

    message = wait_until(fetch, "the doctor's report in alice's mailbox", 90)
    assert b"stalwart.queue" in message and ALICE[1].encode() not in message


# ------------------------------------------------------------------ 5. drift, restart-class change


def _greets_unproxied_from_edge(world: World) -> bool:
    """Whether Stalwart greets a connection from the edge's address that sends no PROXY header."""
    script = (
        "import socket\n"
        f"s=socket.create_connection(('{world.topo.addr('c', 2)}',25),timeout=5)\n"
        "s.settimeout(3)\n"
        "try:\n    print(s.recv(100).decode(errors='replace')[:3])\n"
        "except Exception:\n    print('none')\n"
    )
    out = in_edge_ns(world, script)
    return out.stdout.strip() == "220"


def test_drift_made_in_the_api_is_detected_and_repaired(world: World) -> None:
    _use_relay(world, None, login=False, phase="relay-none")
    smtp = world.jmap.by_name(CURRENT.listener, "smtp")
    world.jmap.call(
        f"{CURRENT.listener}/set", {"update": {smtp["id"]: {"overrideProxyTrustedNetworks": {}}}}
    )
    check = world.inv("provision", "--check", phase="drift-check")
    world.finish_recording(check)
    assert check.returncode == 1
    assert "update  x:NetworkListener smtp  (needs a Stalwart restart)" in check.stdout
    repair = world.inv("provision", "--restart", "never", phase="drift-repair")
    world.finish_recording(repair)
    assert repair.returncode == 3, repair.stdout + repair.stderr
    assert "  update x:NetworkListener smtp" in repair.stdout.splitlines()
    world.stalwart.restart()
    assert nets(
        world.jmap.by_name(CURRENT.listener, "smtp")["overrideProxyTrustedNetworks"]
    ) == nets([f"{world.topo.addr('c', 1)}/32", f"{world.topo.edge_v6}/128"])
    final = world.inv("provision", "--check")
    assert final.returncode == 0, final.stdout


def test_restart_class_change_takes_effect_after_the_restart(world: World) -> None:
    assert not _greets_unproxied_from_edge(world)  # trusted: a PROXY header is demanded
    original = world.values["EDGE_TAILNET_ADDR"]
    world.values["EDGE_TAILNET_ADDR"] = f"{world.topo.addr('c', 3)}/32"
    change = world.inv("provision", "--restart", "never", phase="restart-change")
    world.finish_recording(change)
    assert change.returncode == 3, change.stdout + change.stderr
    assert not _greets_unproxied_from_edge(world)  # written, not yet live
    world.stalwart.restart()
    assert _greets_unproxied_from_edge(world)  # the edge's address is no longer trusted
    world.values["EDGE_TAILNET_ADDR"] = original
    back = world.inv("provision", "--restart", "never")
    assert back.returncode == 3
    world.stalwart.restart()
    assert not _greets_unproxied_from_edge(world)
    assert world.inv("provision", "--check").returncode == 0


def test_rotate_management_changes_the_password_and_the_old_one_stops(world: World) -> None:
    old = world.values["STALWART_MANAGEMENT_PASSWORD"]
    env_file = world.env_file
    result = world.inv("rotate-management")
    assert result.returncode == 0, result.stdout + result.stderr
    world.notes.append("rotate-management:\n  " + "\n  ".join(result.stdout.splitlines()))
    from dotenv import dotenv_values

    new = str(dotenv_values(env_file)["STALWART_MANAGEMENT_PASSWORD"])
    assert new != old and old not in result.stdout + result.stderr
    assert new not in result.stdout + result.stderr
    assert not env_file.with_name(env_file.name + ".rotating").exists()
    user = world.jmap.auth[0]
    assert Jmap(world.stalwart.url, user, old).status() == 401
    world.values["STALWART_MANAGEMENT_PASSWORD"] = new
    world.jmap = Jmap(world.stalwart.url, user, new)
    assert world.jmap.status() == 200
    # the credential keeps its tailnet-only restriction
    assert " 403 " in _via_proxy(world, "203.0.113.5", _jmap_post(user, new)) + " "
    check = world.inv("provision", "--check")
    assert check.returncode == 0, check.stdout + check.stderr


#: the live zone's name server (ns1.good.test), at :53
NS1 = "127.0.53.250"
DNS_ZONES = {
    "good.test": """$ORIGIN good.test.
$TTL 60
@ IN SOA ns1 hostmaster 1 3600 600 86400 60
@ IN NS ns1
ns1 IN A 127.0.53.250
www IN A 198.18.7.80
""",
    # the smarthost's own SPF, which SPF_INCLUDE names
    "relay.test": """$ORIGIN relay.test.
$TTL 60
@ IN SOA ns1 hostmaster 1 3600 600 86400 60
@ IN NS ns1
ns1 IN A 127.0.0.1
_spf IN TXT "v=spf1 ip4:198.18.0.0/15 -all"
""",
}


def test_dns_publishes_the_real_dkim_keys_and_a_message_sent_verifies(
    world: World, relays: dict[str, Relay]
) -> None:
    """``inv dns`` reads the real server's DKIM keys and publishes them (RFC 2136 + TSIG, a
    knotd of its own); a message alice submits through the edge leaves through the open
    relay signed, and dkimpy verifies every signature against what knotd answers."""
    import base64

    import dkim
    import dns.message
    import dns.query

    key = ("tailwart-dns", "hmac-sha256", base64.b64encode(secrets.token_bytes(32)).decode())
    # at :53 of a loopback address of its own: the zone's NS, which inv doctor asks
    knot = KnotServer.start(
        need_tool("knotd"), DNS_ZONES, host=NS1, port=53, update_key=key, whole_zone=True
    )
    relay = relays["open"]
    saved = dict(world.values)
    try:
        for name in ("STALWART_SMARTHOST_USER", "STALWART_SMARTHOST_PASSWORD"):
            world.values.pop(name, None)
        world.values.update(
            STALWART_SMARTHOST=f"{relay.host}:{relay.port}", STALWART_SMARTHOST_TLS="starttls"
        )
        provisioned = world.inv("provision", "--restart", "never")
        assert provisioned.returncode == 0, provisioned.stdout + provisioned.stderr
        world.values.update(
            DNS_SERVER=NS1,
            DNS_PORT="53",
            DNS_TSIG_KEY=key[0],
            DNS_TSIG_ALGORITHM=key[1],
            DNS_TSIG_SECRET=key[2],
            DNS_RESOLVER=f"{NS1}:53",
            SPF_INCLUDE="_spf.relay.test",
            EDGE_PUBLIC_ADDRESSES=world.topo.addr("b", 2),
            DNS_REPORT_TO="postmaster@good.test",
        )
        published = world.inv("dns")
        said = published.stdout + published.stderr
        assert published.returncode == 0, said
        assert key[2] not in said and world.values["STALWART_MANAGEMENT_PASSWORD"] not in said
        checked = world.inv("dns", "--check")
        assert checked.returncode == 0, checked.stdout + checked.stderr

        def txt(name: str) -> list[bytes]:
            query = dns.message.make_query(name, "TXT")
            answer = dns.query.udp(query, NS1, port=53, timeout=5)
            return [b"".join(rd.strings) for rrset in answer.answer for rd in rrset]

        assert txt("www.good.test") == []  # the operator's A record: no TXT made there
        assert txt("good.test")[0] == b"v=spf1 include:_spf.relay.test -all"
        before = len(relay.messages)
        _submit(world, marker := secrets.token_hex(6))
        message = wait_until(
            lambda: next((m for m in relay.messages[before:] if marker.encode() in m), None),
            "the signed message at the open relay",
            120,
        )
        signatures = message.count(b"DKIM-Signature:")
        assert signatures >= 1, message[:2000]

        def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
            found = txt(name.decode().rstrip("."))
            return found[0] if found else b""

        def verifies(raw: bytes, index: int) -> bool:
            try:
                return bool(dkim.DKIM(raw).verify(idx=index, dnsfunc=dnsfunc))
            except dkim.ValidationError:  # dkimpy raises on a body hash mismatch
                return False

        assert all(verifies(message, index) for index in range(signatures))
        # the verifier can say no: the same message with its body changed fails each one
        tampered = message.replace(f"out {marker}".encode(), b"out forged")
        assert not any(verifies(tampered, index) for index in range(signatures))
        world.notes.append(f"inv dns published the DKIM keys; {signatures} signature(s) verified")
        _doctor_sees_the_zone_and_the_documents(world)
    finally:
        world.values.clear()
        world.values.update(saved)
        restored = world.inv("provision", "--restart", "never")
        assert restored.returncode == 0, restored.stdout + restored.stderr
        knot.close()


def _edge_document(world: World, host: str, path: str) -> tuple[int, str, bytes]:
    """GET https://host/path from the edge's main Caddy, by SNI, verified against its
    local CA: a client of the test's own (ssl + http.client), not the doctor's."""
    import http.client
    import socket

    root = world.base / "main-caddy" / "pki" / "authorities" / "local" / "root.crt"
    context = ssl.create_default_context(cafile=str(root))
    raw = socket.create_connection((world.topo.addr("b", 2), 443), timeout=10)
    with context.wrap_socket(raw, server_hostname=host) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.getheader("Content-Type", ""), response.read()


def _doctor_sees_the_zone_and_the_documents(world: World) -> None:
    """The documents the records promise, read through the edge (recorded for CI's
    replay), then inv doctor's zone group: every record as published, both documents."""
    documents = {
        "mta-sts": ("mta-sts.good.test", "/.well-known/mta-sts.txt"),
        "autoconfig": (
            "autoconfig.good.test",
            "/mail/config-v1.1.xml?emailaddress=postmaster%40good.test",
        ),
    }
    got = {name: _edge_document(world, *where) for name, where in documents.items()}
    status, media, policy = got["mta-sts"]
    assert status == 200 and media.startswith("text/plain"), got["mta-sts"]
    lines = policy.decode().splitlines()
    assert "mx: mail.good.test" in lines and "mode: testing" in lines, policy
    assert f"max_age: {world.settings()['MTA_STS_MAX_AGE']}" in lines, policy
    status, media, config = got["autoconfig"]
    assert status == 200, got["autoconfig"]
    ports = sorted(int(p) for p in re.findall(rb"<port>(\d+)</port>", config))
    public = sorted(int(p) for p in world.settings()["EDGE_PUBLIC_PORTS"].split(",") if p != "25")
    assert ports == public, config  # no POP3 (995): inv provision advertises what the edge opens
    if RECORD:
        for name, (status, media, body) in got.items():
            (world.record_dir / f"{name}.json").write_text(
                json.dumps(
                    {"status": status, "content_type": media, "body": body.decode()}, indent=1
                )
                + "\n"
            )
    root = world.base / "main-caddy" / "pki" / "authorities" / "local" / "root.crt"
    result = world.inv(
        "doctor", "--only", "zone", "--edge", world.topo.addr("b", 2), "--ca-file", str(root),
        "--json",
    )  # fmt: skip
    found = {f["id"]: f for f in json.loads(result.stdout)["findings"]}
    assert {k: f["status"] for k, f in found.items()} == dict.fromkeys(found, "ok"), found
    assert len(found) == 12, found
    world.notes.append(f"doctor zone: {found['zone.dkim']['message']}")
    world.notes.append(f"doctor zone: {found['zone.mta-sts-policy']['message']}")
    world.notes.append(f"doctor zone: {found['zone.autoconfig']['message']}")


def test_blobs_live_in_garage_and_the_summary(world: World) -> None:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://{world.garage.host}:{world.garage.s3_port}",
        aws_access_key_id=world.values["STALWART_S3_ACCESS_KEY"],
        aws_secret_access_key=world.values["STALWART_S3_SECRET_KEY"],
        region_name="garage",
    )
    listed = s3.list_objects_v2(Bucket=world.values.get("STALWART_S3_BUCKET", "stalwart-mail"))
    assert listed.get("KeyCount", 0) > 0
    print("\n".join(world.notes))
