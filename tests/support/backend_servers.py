"""Real servers for the bootstrap and doctor tests, on loopback or 198.18.0.0/15 only.

Postgres (Debian 15) runs as the ``postgres`` user with ``trust`` on loopback and
``scram-sha-256`` from 198.18.0.0/15 (the pitfall of the shared containers); the
non-loopback address lives on a veth pair this module creates and deletes.
Redis runs with ``requirepass``; Garage is the real binary from the cache; knotd
serves test zones; small threaded servers speak SMTP/IMAP greetings, with TLS
certificates made per run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import pwd
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

PG_BIN = Path("/usr/lib/postgresql/15/bin")
GARAGE_VERSION = "2.1.0"


def garage_binary(cache: Path) -> Path:
    return cache / f"garage-{GARAGE_VERSION}-debug" / "bin" / "garage"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for(
    check: Callable[[], bool],
    what: str,
    timeout: float = 30,
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{tail}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready within {timeout}s")


def port_open(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=1):
        return True


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# ------------------------------------------------------------------ network


@dataclass
class VethAddress:
    """Two addresses in 198.18.0.0/15 on a veth pair in the root namespace (a server
    listening on both is one server reached by two addresses)."""

    address: str
    link: str
    second: str = ""

    @classmethod
    def create(cls) -> VethAddress:
        pid = os.getpid()
        link = f"twbk{pid % 100000}a"
        peer = f"twbk{pid % 100000}b"
        address = f"198.19.{128 + pid % 120}.{1 + (pid // 120) % 250}"
        second = f"198.19.{248 + pid % 8}.{1 + (pid // 8) % 250}"
        subprocess.run(["ip", "link", "del", link], capture_output=True, check=False)
        subprocess.run(
            ["ip", "link", "add", link, "type", "veth", "peer", "name", peer], check=True
        )
        for one in (address, second):
            subprocess.run(["ip", "addr", "add", f"{one}/32", "dev", link], check=True)
        for name in (link, peer):
            subprocess.run(["ip", "link", "set", name, "up"], check=True)
        return cls(address, link, second)

    def delete(self) -> None:
        subprocess.run(["ip", "link", "del", self.link], capture_output=True, check=False)


# ------------------------------------------------------------------ postgres


@dataclass
class PostgresServer:
    """Postgres with the pitfall: trust on loopback and socket, SCRAM from 198.18.0.0/15."""

    tcp_host: str
    port: int
    admin_user: str
    admin_password: str
    base: Path
    proc: subprocess.Popen[bytes] | None = None
    #: a second address the same server listens on ('' for none)
    second_host: str = ""

    @classmethod
    def start(
        cls,
        tcp_host: str,
        port: int | None = None,
        second_host: str = "",
        host_auth: str = "scram-sha-256",
    ) -> PostgresServer:
        """Postgres on loopback and ``tcp_host`` (and ``second_host``); ``host_auth`` is
        the method for 198.18.0.0/15 (``password``: the cleartext a client must refuse)."""
        pw = pwd.getpwnam("postgres")
        base = Path(tempfile.mkdtemp(prefix="tailwart-pg-", dir="/tmp"))
        os.chown(base, pw.pw_uid, pw.pw_gid)
        admin_password = secrets.token_hex(16)
        pwfile = base / "pw"
        pwfile.write_text(admin_password + "\n")
        os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        pwfile.chmod(0o600)
        run_as: dict[str, Any] = {
            "user": "postgres",
            "group": "postgres",
            "extra_groups": [],
            "cwd": base,
        }
        subprocess.run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(base / "data"),
                "-U",
                "postgres",
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
            check=True,
            capture_output=True,
            **run_as,
        )
        pwfile.unlink()
        hba = base / "data" / "pg_hba.conf"
        hba.write_text(
            "# the shared-container pitfall: loopback trusts ANY password\n"
            "local all all trust\n"
            "host all all 127.0.0.1/32 trust\n"
            "host all all ::1/128 trust\n"
            f"host all all 198.18.0.0/15 {host_auth}\n"
        )
        server = cls(
            tcp_host, port or free_port(), "postgres", admin_password, base, None, second_host
        )
        listen = ",".join(["127.0.0.1", tcp_host, *([second_host] if second_host else [])])
        log = base / "postgres.log"
        with log.open("wb") as out:
            server.proc = subprocess.Popen(
                [
                    str(PG_BIN / "postgres"),
                    "-D",
                    str(base / "data"),
                    "-c",
                    f"listen_addresses={listen}",
                    "-c",
                    f"port={server.port}",
                    "-c",
                    f"unix_socket_directories={base}",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "shared_buffers=16MB",
                    "-c",
                    "max_connections=40",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                **run_as,
            )
        wait_for(lambda: port_open(tcp_host, server.port), "postgres", proc=server.proc, log=log)
        return server

    def admin(self, host: str | None = None):  # type: ignore[no-untyped-def]
        import psycopg

        return psycopg.connect(
            host=host or self.tcp_host,
            port=self.port,
            user=self.admin_user,
            password=self.admin_password,
            dbname="postgres",
            autocommit=True,
        )

    def close(self) -> None:
        if self.proc is not None:
            stop(self.proc)
        shutil.rmtree(self.base, ignore_errors=True)


# ------------------------------------------------------------------ redis


@dataclass
class RedisServer:
    port: int
    password: str
    base: Path
    proc: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"

    @classmethod
    def start(cls, binary: str, host: str = "127.0.0.1", port: int | None = None) -> RedisServer:
        base = Path(tempfile.mkdtemp(prefix="tailwart-redis-"))
        server = cls(port or free_port(), secrets.token_hex(16), base, host=host)
        conf = base / "redis.conf"  # the password stays off the command line
        conf.write_text(
            f"bind {host}\nport {server.port}\nrequirepass {server.password}\n"
            f'save ""\nappendonly no\ndatabases 32\ndir {base}\nprotected-mode yes\n'
        )
        conf.chmod(0o600)
        log = base / "redis.log"
        with log.open("wb") as out:
            server.proc = subprocess.Popen(
                [binary, str(conf)], stdout=out, stderr=subprocess.STDOUT
            )
        wait_for(lambda: port_open(host, server.port), "redis-server", proc=server.proc, log=log)
        return server

    def client(self, db: int):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis(
            host=self.host, port=self.port, db=db, password=self.password, decode_responses=True
        )

    def close(self) -> None:
        if self.proc is not None:
            stop(self.proc)
        shutil.rmtree(self.base, ignore_errors=True)


@dataclass
class SentinelSet:
    """A Redis master, its replica and three sentinels on loopback, all with passwords
    (in config files, never argv): ``redis-server --sentinel`` is Debian's redis-server
    itself. Sentinels judge a node down after a second, so a failover takes seconds."""

    binary: str
    base: Path
    master_name: str
    password: str
    sentinel_password: str
    data_ports: list[int] = field(default_factory=list)
    sentinel_ports: list[int] = field(default_factory=list)
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @classmethod
    def start(cls, binary: str, master_name: str = "mymaster") -> SentinelSet:
        base = Path(tempfile.mkdtemp(prefix="tailwart-sentinel-"))
        world = cls(binary, base, master_name, secrets.token_hex(16), secrets.token_hex(16))
        world.data_ports = [free_port(), free_port()]
        master = world.data_ports[0]
        for number, port in enumerate(world.data_ports):
            follow = f"replicaof 127.0.0.1 {master}\n" if number else ""
            world._run(
                port,
                f"bind 127.0.0.1\nport {port}\nrequirepass {world.password}\n"
                f'masterauth {world.password}\nsave ""\nappendonly no\n'
                f"dir {base}\ndbfilename dump-{port}.rdb\nrepl-diskless-sync-delay 0\n{follow}",
            )
        world.sentinel_ports = [free_port() for _ in range(3)]
        for port in world.sentinel_ports:
            world._run(
                port,
                f"bind 127.0.0.1\nport {port}\ndir {base}\n"
                f"requirepass {world.sentinel_password}\n"
                f"sentinel sentinel-pass {world.sentinel_password}\n"
                f"sentinel monitor {master_name} 127.0.0.1 {master} 2\n"
                f"sentinel auth-pass {master_name} {world.password}\n"
                f"sentinel down-after-milliseconds {master_name} 1000\n"
                f"sentinel failover-timeout {master_name} 4000\n",
                sentinel=True,
            )
        try:
            wait_for(lambda: world.all_name(master) and world.replica_synced(), "sentinels", 30)
        except BaseException:
            world.close()  # never leave servers behind a failed start
            raise
        return world

    def _run(self, port: int, text: str, sentinel: bool = False) -> None:
        conf = self.base / f"{port}.conf"  # a sentinel rewrites its own file
        conf.write_text(text)
        conf.chmod(0o600)
        log = self.base / f"{port}.log"
        argv = [self.binary, str(conf), *(["--sentinel"] if sentinel else [])]
        with log.open("wb") as out:
            self.procs[port] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        wait_for(
            lambda: port_open("127.0.0.1", port), f"redis {port}", proc=self.procs[port], log=log
        )

    def sentinel_client(self, port: int):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis(
            port=port, password=self.sentinel_password, decode_responses=True, socket_timeout=2
        )

    def data_client(self, port: int):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis(
            port=port, password=self.password, decode_responses=True, socket_timeout=2
        )

    def named(self, port: int) -> int | None:
        """The master port one sentinel names (asked with plain redis commands)."""
        reply = self.sentinel_client(port).execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name
        )
        return int(reply[1]) if reply else None

    def all_name(self, master: int) -> bool:
        """Every live sentinel names ``master``, knows the other sentinels and the replica."""
        for port in self.sentinel_ports:
            if self.procs[port].poll() is not None:
                continue
            if self.named(port) != master:
                return False
            info = self.sentinel_client(port).execute_command(
                "SENTINEL", "MASTER", self.master_name
            )
            if int(info["num-other-sentinels"]) < 2 or int(info["num-slaves"]) < 1:
                return False
        return True

    def replica_synced(self) -> bool:
        for port in self.data_ports:
            role = self.data_client(port).execute_command("ROLE")
            if role[0] == "slave" and role[3] != "connected":
                return False
        return True

    def role(self, port: int) -> str:
        return str(self.data_client(port).execute_command("ROLE")[0])

    def failover(self) -> int:
        """SENTINEL FAILOVER through the first sentinel; the new master's port once every
        sentinel names it, it answers ROLE master and the old one answers as a replica."""
        old = self.named(self.sentinel_ports[0])
        assert old is not None
        self.sentinel_client(self.sentinel_ports[0]).execute_command(
            "SENTINEL", "FAILOVER", self.master_name
        )
        (new,) = [p for p in self.data_ports if p != old]
        wait_for(lambda: self.all_name(new) and self.role(new) == "master", "failover", 30)
        # the sentinels turn the old master into a replica of the new one shortly after
        wait_for(lambda: self.role(old) == "slave", "old master demoted", 30)
        return new

    def stop(self, port: int) -> None:
        stop(self.procs[port])

    def close(self) -> None:
        for proc in self.procs.values():
            stop(proc)
        shutil.rmtree(self.base, ignore_errors=True)


# ------------------------------------------------------------------ garage


@dataclass
class GarageServer:
    s3_port: int
    admin_port: int
    admin_token: str
    region: str
    base: Path
    proc: subprocess.Popen[bytes] | None = None

    host: str = "127.0.0.1"
    rpc_port: int = 0

    @property
    def admin_url(self) -> str:
        return f"http://{self.host}:{self.admin_port}"

    @classmethod
    def start(
        cls,
        binary: Path,
        region: str = "garage",
        host: str = "127.0.0.1",
        s3_port: int | None = None,
        replication: int = 1,
        rpc_secret: str = "",
    ) -> GarageServer:
        """One node; ``replication`` and a shared ``rpc_secret`` make it a cluster member."""
        base = Path(tempfile.mkdtemp(prefix="tailwart-garage-"))
        rpc = free_port()
        server = cls(
            s3_port or free_port(),
            free_port(),
            secrets.token_hex(24),
            region,
            base,
            host=host,
            rpc_port=rpc,
        )
        conf = base / "garage.toml"
        conf.write_text(f"""\
metadata_dir = "{base}/meta"
data_dir = "{base}/data"
db_engine = "sqlite"
replication_factor = {replication}
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{rpc_secret or secrets.token_hex(32)}"

[s3_api]
s3_region = "{region}"
api_bind_addr = "{host}:{server.s3_port}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "{host}:{server.admin_port}"
admin_token = "{server.admin_token}"
""")
        conf.chmod(0o600)
        server.binary = binary
        server.run()
        return server

    binary: Path = Path("garage")

    def run(self) -> None:
        """(Re)start the process on the node's config and data."""
        log = self.base / "garage.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(self.binary), "-c", str(self.base / "garage.toml"), "server"],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            # a debug build under four workers and the cluster test can take minutes to start
            wait_for(self._status_ok, "garage", proc=self.proc, log=log, timeout=240)
        except BaseException:
            stop(self.proc)  # never leave a node behind a failed start
            raise

    def admin_get(self, endpoint: str) -> Any:
        """GET an admin API v2 endpoint with plain requests (a test oracle)."""
        import requests

        resp = requests.get(
            f"{self.admin_url}/v2/{endpoint}",
            timeout=10,
            headers={"Authorization": f"Bearer {self.admin_token}"},
        )
        resp.raise_for_status()
        return resp.json()

    @property
    def node_id(self) -> str:
        """The node's full id, as the node itself answers it."""
        (node,) = self.admin_get("GetNodeInfo?node=self")["success"]
        return str(node)

    def stop_process(self) -> None:
        """Stop the node, keeping its data (``close`` also deletes it)."""
        if self.proc is not None:
            stop(self.proc)

    def s3_client(self, key: tuple[str, str]) -> Any:
        """A boto3 S3 client for this node with ``key`` (path style; checksums only when
        required, which Garage expects)."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{self.s3_port}",
            region_name=self.region,
            aws_access_key_id=key[0],
            aws_secret_access_key=key[1],
            config=Config(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def _status_ok(self) -> bool:
        import requests

        resp = requests.get(
            f"{self.admin_url}/v2/GetClusterStatus",
            timeout=2,
            headers={"Authorization": f"Bearer {self.admin_token}"},
        )
        return resp.status_code == 200

    def close(self) -> None:
        if self.proc is not None:
            stop(self.proc)
        shutil.rmtree(self.base, ignore_errors=True)


@dataclass
class GarageCluster:
    """Garage nodes on loopback sharing one rpc_secret and ``replication``, connected to
    each other, without a layout (inv bootstrap applies it)."""

    nodes: list[GarageServer]

    @classmethod
    def start(cls, binary: Path, count: int = 3, replication: int = 3) -> GarageCluster:
        secret = secrets.token_hex(32)
        nodes: list[GarageServer] = []
        try:
            for _ in range(count):
                nodes.append(GarageServer.start(binary, replication=replication, rpc_secret=secret))
            first = nodes[0]
            peers = [f"{n.node_id}@127.0.0.1:{n.rpc_port}" for n in nodes[1:]]
            import requests

            requests.post(
                f"{first.admin_url}/v2/ConnectClusterNodes",
                json=peers,
                timeout=10,
                headers={"Authorization": f"Bearer {first.admin_token}"},
            ).raise_for_status()
            wait_for(
                lambda: (
                    sum(n["isUp"] for n in first.admin_get("GetClusterStatus")["nodes"]) == count
                ),
                "garage cluster",
            )
        except BaseException:
            for node in nodes:
                node.close()
            raise
        return cls(nodes)

    def close(self) -> None:
        for node in self.nodes:  # all at once: each may take seconds to shut down
            if node.proc is not None and node.proc.poll() is None:
                node.proc.terminate()
        for node in self.nodes:
            node.close()


# ------------------------------------------------------------------ DNS (knotd)


@dataclass
class KnotServer:
    port: int
    base: Path
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(
        cls,
        binary: str,
        zones: dict[str, str],
        host: str = "127.0.0.1",
        update_key: tuple[str, str, str] | None = None,
        update_names: tuple[str, ...] = (),
        port: int | None = None,
        whole_zone: bool = False,
    ) -> KnotServer:
        """knotd serving ``zones``; with ``update_key`` (name, algorithm, base64 secret) it
        takes RFC 2136 TXT updates signed by that key at or below ``update_names`` only
        (absolute names, e.g. _acme-challenge.mail.example.org.); ``whole_zone``: updates of
        any type anywhere in the zone and AXFR, signed by that key (inv dns)."""
        base = Path(tempfile.mkdtemp(prefix="tailwart-knot-"))
        server = cls(port or free_port(), base, host)
        (base / "zones").mkdir()
        (base / "db").mkdir()
        for name, text in zones.items():
            (base / "zones" / f"{name}.zone").write_text(text)
        zone_conf = "".join(f"  - domain: {name}\n" for name in zones)
        updates = ""
        if update_key is not None:
            key_name, algorithm, secret = update_key
            # whole_zone: any update and AXFR; else TXT updates at or below update_names
            rights = (
                "    action: [update, transfer]\n"
                if whole_zone
                else "    action: update\n"
                "    update-type: [TXT]\n"
                "    update-owner: name\n"
                "    update-owner-match: sub-or-equal\n"
                f"    update-owner-name: [{', '.join(update_names)}]\n"
            )
            updates = f"""\
key:
  - id: {key_name}
    algorithm: {algorithm}
    secret: {secret}
acl:
  - id: acme-update
    key: {key_name}
{rights}"""
        (base / "knot.conf").write_text(f"""\
server:
    rundir: "{base}"
    listen: {host}@{server.port}
{updates}log:
  - target: stderr
    any: warning
database:
    storage: "{base}/db"
template:
  - id: default
    storage: "{base}/zones"
    file: "%s.zone"
    semantic-checks: off
    zonefile-sync: -1
    journal-content: changes
{"    acl: acme-update" + chr(10) if update_key else ""}zone:
{zone_conf}""")
        log = base / "knot.log"
        argv = [binary, "-c", str(base / "knot.conf")]
        with log.open("wb") as out:
            server.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        first = next(iter(zones))
        wait_for(lambda: server.answers(first), "knotd", proc=server.proc, log=log)
        return server

    def answers(self, name: str) -> bool:
        import dns.message
        import dns.query

        query = dns.message.make_query(name + ".", "SOA")
        reply = dns.query.udp(query, self.host, port=self.port, timeout=1)
        return bool(reply.answer)

    @property
    def resolver(self) -> str:
        return f"{self.host}:{self.port}"

    def close(self) -> None:
        if self.proc is not None:
            stop(self.proc)
        shutil.rmtree(self.base, ignore_errors=True)


# ------------------------------------------------------------------ certificates


def _san(name: str) -> x509.GeneralName:
    """An IPAddress SAN for an address, a DNSName SAN for a name."""
    import ipaddress

    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


@dataclass
class Pki:
    """A CA made per run and certificates it signs, as PEM files in ``base``."""

    base: Path
    ca_key: ec.EllipticCurvePrivateKey | None = None
    ca_cert: x509.Certificate | None = None

    @classmethod
    def create(cls, base: Path) -> Pki:
        from cryptography.hazmat.primitives.serialization import Encoding

        from tests.support.testkit import self_signed_ca

        key, cert = self_signed_ca("tailwart test CA")
        pki = cls(base, key, cert)
        (base / "ca.pem").write_bytes(cert.public_bytes(Encoding.PEM))
        return pki

    @property
    def ca_file(self) -> str:
        return str(self.base / "ca.pem")

    def issue(
        self, label: str, names: list[str], days: float, self_signed: bool = False
    ) -> tuple[str, str]:
        """(cert.pem, key.pem) for ``names`` valid for ``days`` from now (negative: expired)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import (
            Encoding,
            NoEncryption,
            PrivateFormat,
        )
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
        now = dt.datetime.now(dt.UTC)
        not_after = now + dt.timedelta(days=days)
        assert self_signed or (self.ca_cert is not None and self.ca_key is not None)
        issuer = subject if self_signed or self.ca_cert is None else self.ca_cert.subject
        signer = key if self_signed or self.ca_key is None else self.ca_key
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(min(now - dt.timedelta(days=30), not_after - dt.timedelta(days=1)))
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([_san(n) for n in names]), critical=False)
            .sign(signer, hashes.SHA256())
        )
        cert_path, key_path = self.base / f"{label}.pem", self.base / f"{label}.key"
        chain = cert.public_bytes(Encoding.PEM)
        cert_path.write_bytes(chain)
        key_path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        return str(cert_path), str(key_path)

    def context(
        self, label: str, names: list[str], days: float, self_signed: bool = False
    ) -> ssl.SSLContext:
        cert, key = self.issue(label, names, days, self_signed)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        return context


# ------------------------------------------------------------------ greeting servers


@dataclass
class LineServer:
    """A threaded TCP server on loopback: optional TLS, a greeting line, minimal SMTP/IMAP."""

    greeting: str
    tls: ssl.SSLContext | None = None
    #: EHLO keywords answered (SMTP); None = hang up after the greeting's exchange
    ehlo: list[str] | None = None
    #: keep the connection open without a word until the client leaves (a hung service)
    hold: bool = False
    #: upgrade on STARTTLS with this context (SMTP: list "STARTTLS" in ``ehlo``; IMAP:
    #: a greeting starting "* OK" answers ``<tag> STARTTLS``)
    starttls: ssl.SSLContext | None = None
    host: str = "127.0.0.1"
    port: int = 0
    sock: socket.socket | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> LineServer:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((self.host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def _serve(self) -> None:
        assert self.sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            sock: socket.socket = self.tls.wrap_socket(conn, server_side=True) if self.tls else conn
            if self.greeting:
                sock.sendall(self.greeting.encode() + b"\r\n")
            if self.hold:
                conn.settimeout(60)
                while sock.recv(1024) and not self._stop.is_set():
                    pass
            if self.starttls and self.greeting.startswith("* OK"):
                self._imap_starttls(sock, self.starttls)
                return
            buf = b""
            while self.ehlo is not None:
                data = sock.recv(1024)
                if not data:
                    break
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    verb = line.strip().split(b" ")[0].upper()
                    if verb in (b"EHLO", b"HELO"):
                        lines = ["tailwart-test", *self.ehlo]
                        reply = "".join(
                            f"250{'-' if i < len(lines) - 1 else ' '}{t}\r\n"
                            for i, t in enumerate(lines)
                        )
                        sock.sendall(reply.encode())
                    elif verb == b"QUIT":
                        sock.sendall(b"221 bye\r\n")
                        return
                    elif verb == b"STARTTLS" and self.starttls and "STARTTLS" in self.ehlo:
                        sock.sendall(b"220 2.0.0 ready to start TLS\r\n")
                        sock = self.starttls.wrap_socket(sock, server_side=True)
                    else:
                        sock.sendall(b"502 not here\r\n")
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    @staticmethod
    def _imap_starttls(sock: socket.socket, context: ssl.SSLContext) -> None:
        line = sock.recv(1024).decode("ascii", "replace").strip()
        tag, _, command = line.partition(" ")
        if command.upper() != "STARTTLS":
            sock.sendall(f"{tag} BAD not here\r\n".encode())
            return
        sock.sendall(f"{tag} OK begin TLS now\r\n".encode())
        tls = context.wrap_socket(sock, server_side=True)
        while tls.recv(1024):  # until the client hangs up
            pass

    def close(self) -> None:
        self._stop.set()
        if self.sock is not None:
            self.sock.close()


@contextlib.contextmanager
def line_servers(*servers: LineServer) -> Iterator[list[LineServer]]:
    started = [s.start() for s in servers]
    try:
        yield started
    finally:
        for s in started:
            s.close()


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    return free_port()
