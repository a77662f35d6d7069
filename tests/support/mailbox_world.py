"""A sealed world for the mailbox: our own dockerd, locally built images, a real headscale.

Nothing here can reach past 198.18.0.0/15:

- ``dockerd`` (Debian's docker.io) runs inside a network namespace of its own, so its
  bridges, its iptables chains and every container live there, never in the root
  namespace. Its bridge (``--bip``) and address pools are in 198.19.0.0/16. That
  namespace has no default route; iptables drops anything forwarded (or sent) to an
  address outside 198.18.0.0/15, and IPv6 forwarding is dropped outright.
- headscale runs in a second namespace, joined to the docker one by a veth pair
  (198.18.N.1 ↔ 198.18.N.2): MagicDNS on, its own embedded DERP server, no external
  DERP map, no update check, no log upload. Two TCP listeners beside it stand in for
  the Postgres and Garage ports the sidecar's health check probes.
- The edge host (``start_edge``) is a third namespace, joined to the docker one by a
  veth pair, with no default route: Debian's sshd and tailscaled (kernel TUN, joined
  with an edge-tagged key, MagicDNS through 100.100.100.100); ``inv deploy-edge`` puts
  caddy-l4 there over ssh.
- tcpdump records the namespaces for the whole run (the edge host's link from its
  start); ``leaks()`` lists every packet addressed outside 198.18.0.0/15 (and loopback /
  link-local).

Images are made without a registry and tagged exactly as .env pins them: a Debian base
(debootstrap by scripts/setup/55-docker.sh, ``docker import``ed), the Tailscale image
(containerboot, tailscaled, tailscale built from the Go module at TS_IMAGE's version,
laid out as the official image has them), and the stand-in mailbox in the Stalwart slot.
dockerd's data root is kept in the tool cache, so warm runs reuse the images; each image
carries a label with the hash of its inputs and is rebuilt only when they change.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.testkit import ROOT, TOOL_CACHE, need, need_tool, self_signed_ca, write_env

HEADSCALE_VERSION = "v0.29.2"  # keep equal to scripts/setup/40-policy.sh
HEADSCALE = TOOL_CACHE / "tools" / f"headscale-{HEADSCALE_VERSION}" / "headscale"
COMPOSE_VERSION = "v2.40.3"  # keep equal to scripts/setup/50-mailbox.sh
COMPOSE = TOOL_CACHE / "tools" / f"compose-{COMPOSE_VERSION}" / "docker-compose"
IMAGES = TOOL_CACHE / "images"
DOCKER_DATA = TOOL_CACHE / "docker" / "data"
#: the docker namespace's own addresses (bridge and compose networks)
DOCKER_BIP = "198.19.0.1/24"
DOCKER_POOL = "base=198.19.64.0/18,size=24"
DOCKER_NETS = "198.19.0.0/16"
BASE_DOMAIN = "tailwart.test"
USER = "ops"
#: offline nodes standing for the shared backends in the policy's tests
BACKEND_NODES = ("postgres", "redis", "garage")
LABEL = "org.tailwart.test-inputs"
HS_PORT = 8443
#: the test tailnet's own CA (kept across runs: the Tailscale image trusts it)
CA_DIR = TOOL_CACHE / "tailnet-ca"
#: what may appear as a destination in the captures
INSIDE = (
    "dst net 198.18.0.0/15 or dst net 127.0.0.0/8 or dst net 224.0.0.0/24"
    " or dst host 255.255.255.255 or dst net fe80::/10 or dst net ff00::/8"
    " or dst net fd7a:7477:6172::/64 or dst host ::1"
)
POLICY = """{
  // the test tailnet before `inv acl --headscale`: one user owns every tag the snippet
  // names; no rule yet, so nothing reaches anything over the tailnet
  "tagOwners": {
    "tag:stalwart": ["ops@"],
    "tag:reverse-proxy": ["ops@"],
    "tag:postgres": ["ops@"],
    "tag:redis": ["ops@"],
    "tag:garage": ["ops@"],
  },
  "acls": [],
  // tailscaled's captive-portal probe otherwise also asks controlplane.tailscale.com and
  // login.tailscale.com, whatever the login server (seen in this module's capture)
  "nodeAttrs": [{"target": ["*"], "attr": ["disable-captive-portal-detection"]}],
}
"""


def run(
    args: Sequence[str], env: Mapping[str, str] | None = None, check: bool = True, **kw: object
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        list(args), capture_output=True, text=True, env=dict(env) if env else None, **kw
    )  # type: ignore[call-overload]
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done  # type: ignore[no-any-return]


def ts_version() -> str:
    from tailwart.settings.contract import BY_NAME

    default = BY_NAME["TS_IMAGE"].default or ""
    return default.rsplit(":", 1)[1]


def ts_binaries() -> Path:
    return TOOL_CACHE / "tools" / f"tailscale-{ts_version()}"


def base_tarball() -> Path | None:
    found = sorted(IMAGES.glob("debian-bookworm-*.tar"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def _free_octet() -> int:
    used = run(["ip", "-4", "-o", "addr"]).stdout + " ".join(
        run(["ip", "-all", "netns", "exec", "ip", "-4", "-o", "addr"], check=False).stdout.split()
    )
    start = 20 + os.getpid() % 60
    for n in list(range(start, 100)) + list(range(20, start)):
        if f"198.18.{n}." not in used:
            return n
    raise RuntimeError("no free 198.18.N.0/24")


def test_ca() -> tuple[Path, Path]:
    """The test tailnet's CA (certificate, key), made once and kept in the tool cache."""
    from cryptography.hazmat.primitives import serialization

    cert, key = CA_DIR / "ca.crt", CA_DIR / "ca.key"
    if cert.is_file() and key.is_file():
        return cert, key
    CA_DIR.mkdir(parents=True, exist_ok=True)
    private, made = self_signed_ca("tailwart test tailnet CA", path_length=0)
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key.chmod(0o600)
    cert.write_bytes(made.public_bytes(serialization.Encoding.PEM))
    return cert, key


def issue_leaf(ip: str, cert_path: Path, key_path: Path) -> None:
    """A server certificate for ``ip`` (IP SAN), signed by the test CA."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert_path, ca_key_path = test_ca()
    ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    private = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    made = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)]))
        .issuer_name(ca_cert.subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(made.public_bytes(serialization.Encoding.PEM))


def _sha256_files(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Edge:
    """The edge host: a network namespace with Debian's sshd and tailscaled (kernel TUN),
    joined to the docker namespace by a veth pair; caddy-l4 arrives by ``inv deploy-edge``.
    Other tailnet hosts (``start_host``) are made the same way, sshd optional."""

    name: str  #: its tailnet node name (and hostname)
    netns: str
    bridge_ip: str  #: where clients (and ssh) reach it: its end of the veth
    client_ip: str  #: the docker namespace's end: the address a client there dials from
    tailnet_ip: str  #: the edge node's 100.x address
    tailnet_ip6: str
    dir: Path  #: keys, known_hosts, ssh_config, tailscaled's state, the releases (EDGE_ROOT)

    @property
    def root(self) -> str:
        return str(self.dir / "edge")

    @property
    def ssh_flags(self) -> tuple[str, ...]:
        return (
            *("--known-hosts", str(self.dir / "known_hosts")),
            *("--identity", str(self.dir / "id_ed25519")),
            *("--ssh-config", str(self.dir / "ssh_config")),
        )


@dataclass
class World:
    """Everything one test module needs; ``close()`` stops and removes all of it."""

    tmp: Path
    octet: int = field(default_factory=_free_octet)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    netns: list[str] = field(default_factory=list)
    captures: dict[str, Path] = field(default_factory=dict)
    tcpdumps: list[subprocess.Popen[bytes]] = field(default_factory=list)
    lock: io.TextIOWrapper | None = None
    timings: dict[str, float] = field(default_factory=dict)
    edge: Edge | None = None
    #: /etc/netns/<name>/ directories made for `ip netns exec` (resolv.conf), removed at close
    etc_netns: list[Path] = field(default_factory=list)
    #: a real Stalwart binary (the live suite's): the Stalwart slot gets an image made from
    #: it instead of the stand-in
    stalwart_bin: Path | None = None
    #: MagicDNS extra records (name → IPv4 inside 198.18.0.0/15) headscale hands every node
    dns_records: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------ names

    @property
    def dk(self) -> str:
        return f"twdk{os.getpid()}"

    @property
    def hs(self) -> str:
        return f"twhs{os.getpid()}"

    @property
    def hs_addr(self) -> str:
        return f"198.18.{self.octet}.2"

    @property
    def gw_addr(self) -> str:
        return f"198.18.{self.octet}.1"

    @property
    def login_server(self) -> str:
        return f"https://{self.hs_addr}:{HS_PORT}"

    @property
    def socket(self) -> Path:
        return self.tmp / "exec" / "docker.sock"

    @property
    def env(self) -> dict[str, str]:
        """The environment for the docker CLI and ``inv``: our daemon, our compose plugin."""
        return {
            **os.environ,
            "DOCKER_HOST": f"unix://{self.socket}",
            "DOCKER_CONFIG": str(self.tmp / "docker-config"),
        }

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["docker", *args], env=self.env, check=check, timeout=300)

    def ns(self, netns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["ip", "netns", "exec", netns, *args], check=check)

    def headscale(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run([str(HEADSCALE), "-c", str(self.tmp / "hs" / "config.yaml"), *args], timeout=60)

    # ------------------------------------------------------------ lifecycle

    def open(self) -> World:
        started = time.monotonic()
        DOCKER_DATA.mkdir(parents=True, exist_ok=True)
        # one dockerd per data root: a second run waits here for the first
        self.lock = (DOCKER_DATA.parent / "lock").open("w")
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        self._namespaces()
        self._capture()
        self._dockerd()
        self._guard()
        self.timings["engine"] = time.monotonic() - started
        started = time.monotonic()
        self.build_images()
        self.timings["images"] = time.monotonic() - started
        started = time.monotonic()
        self._headscale()
        self._backends()
        self.timings["headscale"] = time.monotonic() - started
        return self

    def _namespaces(self) -> None:
        for name in (self.dk, self.hs):
            run(["ip", "netns", "add", name])
            self.netns.append(name)
            run(["ip", "-n", name, "link", "set", "lo", "up"])
        self._veth(self.hs, f"twd{self.octet}", f"twh{self.octet}", self.gw_addr, self.hs_addr)
        # headscale answers the containers; nothing else is routed anywhere
        run(["ip", "-n", self.hs, "route", "add", DOCKER_NETS, "via", self.gw_addr])

    def _veth(self, ns: str, ours: str, theirs: str, our_addr: str, their_addr: str) -> None:
        """A veth pair from the docker namespace (``ours``, ``our_addr``/24) to ``ns``
        (``theirs``, ``their_addr``/24), both ends up."""
        run(["ip", "link", "add", ours, "netns", self.dk, "type", "veth",
             "peer", "name", theirs, "netns", ns])  # fmt: skip
        run(["ip", "-n", self.dk, "addr", "add", f"{our_addr}/24", "dev", ours])
        run(["ip", "-n", ns, "addr", "add", f"{their_addr}/24", "dev", theirs])
        for netns, dev in ((self.dk, ours), (ns, theirs)):
            run(["ip", "-n", netns, "link", "set", dev, "up"])

    def _capture(self, points: Mapping[str, tuple[str, str]] | None = None) -> None:
        """tcpdump from the start: everything inside the docker namespace (bridges, veth), its
        one way out (the veth to headscale), and the headscale namespace; or ``points``
        (label → namespace, interface) started later."""
        points = points or {
            "docker": (self.dk, "any"),
            "exit": (self.dk, f"twd{self.octet}"),
            "headscale": (self.hs, "any"),
        }
        for label, (netns, iface) in points.items():
            pcap = self.tmp / f"{label}.pcap"
            log = (self.tmp / f"{label}.tcpdump.log").open("wb")
            proc = subprocess.Popen(
                [
                    *("ip", "netns", "exec", netns, need_tool("tcpdump"), "-i", iface, "-nn"),
                    *("-U", "-s", "128", "-w", str(pcap)),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            self.procs.append(proc)
            self.tcpdumps.append(proc)
            self.captures[label] = pcap
        deadline = time.monotonic() + 20
        while not all(
            b"listening on" in (self.tmp / f"{label}.tcpdump.log").read_bytes() for label in points
        ):
            if time.monotonic() > deadline:
                raise AssertionError("tcpdump did not start")
            time.sleep(0.1)

    def _dockerd(self) -> None:
        dockerd = need_tool("dockerd")
        (self.tmp / "exec").mkdir()
        plugins = self.tmp / "docker-config" / "cli-plugins"
        plugins.mkdir(parents=True)
        (plugins / "docker-compose").symlink_to(COMPOSE)
        log = (self.tmp / "dockerd.log").open("wb")
        # nsenter, not `ip netns exec`: that remounts /sys and hides the cgroup hierarchy
        proc = subprocess.Popen(
            [
                *("nsenter", f"--net=/run/netns/{self.dk}", dockerd),
                *("--data-root", str(DOCKER_DATA), "--exec-root", str(self.tmp / "exec")),
                *("-H", f"unix://{self.socket}", "--pidfile", str(self.tmp / "dockerd.pid")),
                *("--bip", DOCKER_BIP, "--default-address-pool", DOCKER_POOL),
                *("--ip-masq=false", "--userland-proxy=false", "--log-level=warn"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        deadline = time.monotonic() + 60
        while self.docker("info", "--format", "{{.ServerVersion}}", check=False).returncode:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    "dockerd did not start:\n" + (self.tmp / "dockerd.log").read_text()[-3000:]
                )
            time.sleep(0.3)
        # the data root outlives runs (image cache): drop what an interrupted run left
        ids = self.docker("ps", "-aq").stdout.split()
        if ids:
            self.docker("rm", "-f", *ids)
        self.prune_volumes()
        self.docker("network", "prune", "-f")

    def prune_volumes(self) -> None:
        """Every unused volume, named ones too: ``--all`` needs API 1.42 (Docker 23); on an
        older daemon (Debian's 20.10) the CLI refuses it, and plain prune takes them all."""
        if self.docker("volume", "prune", "-f", "--all", check=False).returncode:
            self.docker("volume", "prune", "-f")

    def _guard(self) -> None:
        """Inside the docker namespace: nothing is forwarded or sent outside 198.18.0.0/15."""
        for chain in ("FORWARD", "OUTPUT"):
            extra = ["!", "-o", "lo"] if chain == "OUTPUT" else []
            self.ns(self.dk, "iptables", "-I", chain, "1", *extra, "!", "-d", "198.18.0.0/15",
                    "-j", "DROP")  # fmt: skip
        self.ns(self.dk, "ip6tables", "-P", "FORWARD", "DROP")
        routes = self.ns(self.dk, "ip", "route", "show", "default").stdout.strip()
        assert routes == "", f"the docker namespace has a default route: {routes}"

    # ------------------------------------------------------------ images

    def build_images(self) -> None:
        from tailwart.settings.contract import BY_NAME

        tarball = base_tarball()
        need(tarball is not None, "no base image tarball (scripts/setup/55-docker.sh)")
        assert tarball is not None
        bins = ts_binaries()
        names = ("containerboot", "tailscaled", "tailscale")
        need(
            all((bins / n).is_file() for n in names),
            f"tailscale binaries missing in {bins} (scripts/setup/55-docker.sh)",
        )
        base = f"tailwart-test/base:{tarball.stem.rsplit('-', 1)[1]}"
        if self.docker("image", "inspect", base, check=False).returncode:
            self.docker("import", str(tarball), base)
        ca_cert, _ = test_ca()
        self._derived(
            BY_NAME["TS_IMAGE"].default or "",
            base,
            key=_sha256_files(*(bins / n for n in names), ca_cert),
            files={
                **{f"usr/local/bin/{n}": bins / n for n in names},
                # the test control plane's CA, beside the system's (as a private PKI would be)
                "etc/ssl/certs/tailwart-test-ca.pem": ca_cert,
            },
            links={"tailscale/run.sh": "/usr/local/bin/containerboot"},
            changes=[
                'ENTRYPOINT ["/usr/local/bin/containerboot"]',
                # no log server exists here: tailscaled's own switch, not a compose change
                "ENV TS_NO_LOGS_NO_SUPPORT=true",
            ],
        )
        if self.stalwart_bin is not None:
            self._stalwart_image(BY_NAME["STALWART_IMAGE"].default or "", base, self.stalwart_bin)
            self.docker("image", "prune", "-f")
            return
        sources = sorted((ROOT / "src" / "tailwart").rglob("*.py"))
        self._derived(
            BY_NAME["STALWART_IMAGE"].default or "",
            base,
            key=_sha256_files(*sources),
            files={f"opt/tailwart/{p.relative_to(ROOT / 'src')}": p for p in sources},
            links={},
            changes=[
                'ENTRYPOINT ["python3", "-m", "tailwart.testing.standin"]',
                "ENV PYTHONPATH=/opt/tailwart PYTHONUNBUFFERED=1",
            ],
        )
        self.docker("image", "prune", "-f")  # what a rebuild left untagged

    def _derived(
        self,
        tag: str,
        base: str,
        key: str,
        files: Mapping[str, Path],
        links: Mapping[str, str],
        changes: Sequence[str],
    ) -> None:
        """``tag`` = ``base`` + files, built with create / cp / commit (no builder, no registry)."""
        key = self._stamp(tag, base, key, changes)
        if not key:
            return
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, path in files.items():
                tar.add(str(path), arcname=name)
            for name, target in links.items():
                info = tarfile.TarInfo(name)
                info.type, info.linkname = tarfile.SYMTYPE, target
                tar.addfile(info)
        self._commit(tag, base, key, buf.getvalue(), changes)

    def _stamp(self, tag: str, base: str, content: str, changes: Sequence[str]) -> str:
        """The label key of ``tag`` made from ``base``, ``content`` (a digest of what goes in)
        and ``changes``; "" when ``tag`` already carries it (nothing to build)."""
        key = hashlib.sha256(f"{base} {content} {changes}".encode()).hexdigest()[:16]
        got = self.docker(
            "image", "inspect", "--format", "{{json .Config.Labels}}", tag, check=False
        )
        if got.returncode == 0 and (json.loads(got.stdout) or {}).get(LABEL) == key:
            return ""
        return key

    def _commit(
        self,
        tag: str,
        base: str,
        key: str,
        layer: bytes,
        changes: Sequence[str],
        archive: bool = False,
    ) -> None:
        """``tag`` = ``base`` + the tar ``layer`` (owners kept with ``archive``) + ``changes``."""
        container = self.docker("create", base, "/bin/true").stdout.strip()
        try:
            done = subprocess.run(
                ["docker", "cp", *(["-a"] if archive else []), "-", f"{container}:/"],
                input=layer,
                env=self.env,
                capture_output=True,
                check=False,
            )
            assert done.returncode == 0, done.stderr.decode()
            args = [arg for change in [*changes, f"LABEL {LABEL}={key}"] for arg in ("-c", change)]
            self.docker("commit", *args, container, tag)
        finally:
            self.docker("rm", "-f", container, check=False)

    def _stalwart_image(self, tag: str, base: str, binary: Path) -> None:
        """The Stalwart slot from a real binary, laid out as the official v0.16 image is
        (reference/stalwart-0.16.md §5): /usr/local/bin/stalwart with
        cap_net_bind_service, user and group stalwart (2000:2000) owning /etc/stalwart and
        /var/lib/stalwart (declared volumes), WORKDIR /var/lib/stalwart, the entrypoint
        reading /etc/stalwart/config.json; curl (the health check's) is in the base.
        Made on every change of the binary; never pushed anywhere, never committed."""
        changes = [
            'ENTRYPOINT ["/usr/local/bin/stalwart"]',
            'CMD ["--config", "/etc/stalwart/config.json"]',
            "WORKDIR /var/lib/stalwart",
            'VOLUME ["/etc/stalwart", "/var/lib/stalwart"]',
            "EXPOSE 443 25 110 587 465 143 993 995 4190 8080",
        ]
        key = self._stamp(tag, base, _sha256_files(binary), changes)
        if not key:
            return
        passwd = self.docker("run", "--rm", "--network", "none", "--entrypoint", "cat", base,
                             "/etc/passwd", "/etc/group").stdout  # fmt: skip
        users = [x for x in passwd.splitlines() if x.count(":") == 6]
        groups = [x for x in passwd.splitlines() if x.count(":") == 3]
        users.append("stalwart:x:2000:2000:stalwart:/var/lib/stalwart:/usr/sbin/nologin")
        groups.append("stalwart:x:2000:")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, text in (("etc/passwd", users), ("etc/group", groups)):
                data = ("\n".join(text) + "\n").encode()
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
            for name in ("etc/stalwart", "var/lib/stalwart"):
                info = tarfile.TarInfo(name)
                info.type, info.mode = tarfile.DIRTYPE, 0o750
                info.uid = info.gid = 2000
                info.uname = info.gname = "stalwart"
                tar.addfile(info)
            info = tar.gettarinfo(str(binary), arcname="usr/local/bin/stalwart")
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = 0o755
            # setcap cap_net_bind_service=+ep: a VFS_CAP_REVISION_2 record, effective bit set
            info.pax_headers = {
                "SCHILY.xattr.security.capability": (
                    b"\x01\x00\x00\x02\x00\x04\x00\x00" + b"\x00" * 12
                ).decode("latin-1")
            }
            with binary.open("rb") as fh:
                tar.addfile(info, fh)
        self._commit(tag, base, key, buf.getvalue(), changes, archive=True)

    # ------------------------------------------------------------ headscale and backends

    def _headscale(self) -> None:
        need(
            HEADSCALE.is_file(), f"headscale not built at {HEADSCALE} (scripts/setup/40-policy.sh)"
        )
        hs = self.tmp / "hs"
        hs.mkdir()
        (hs / "policy.hujson").write_text(POLICY)
        issue_leaf(self.hs_addr, hs / "tls.crt", hs / "tls.key")
        (hs / "config.yaml").write_text(f"""
server_url: {self.login_server}
listen_addr: {self.hs_addr}:{HS_PORT}
tls_cert_path: {hs}/tls.crt
tls_key_path: {hs}/tls.key
metrics_listen_addr: 127.0.0.1:0
grpc_listen_addr: 127.0.0.1:0
grpc_allow_insecure: false
noise:
  private_key_path: {hs}/noise_private.key
prefixes:
  v4: 100.64.0.0/10
  v6: fd7a:115c:a1e0::/48
  allocation: sequential
derp:
  server:
    enabled: true
    region_id: 999
    region_code: tailwart
    region_name: tailwart test DERP
    verify_clients: true
    stun_listen_addr: {self.hs_addr}:3478
    private_key_path: {hs}/derp_server_private.key
    automatically_add_embedded_derp_region: true
    ipv4: {self.hs_addr}
  urls: []
  paths: []
  auto_update_enabled: false
disable_check_updates: true
ephemeral_node_inactivity_timeout: 30m
database:
  type: sqlite
  sqlite:
    path: {hs}/db.sqlite
    write_ahead_log: true
log:
  level: info
  format: text
policy:
  mode: database
dns:
  magic_dns: true
  base_domain: {BASE_DOMAIN}
  override_local_dns: false
  nameservers:
    global: []
{self._extra_records()}unix_socket: {hs}/headscale.sock
unix_socket_permission: "0770"
logtail:
  enabled: false
""")
        log = (hs / "headscale.log").open("wb")
        proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.hs,
                str(HEADSCALE),
                "-c",
                str(hs / "config.yaml"),
                "serve",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=hs,
            env={"PATH": os.environ.get("PATH", ""), "HOME": str(hs)},
        )
        self.procs.append(proc)
        deadline = time.monotonic() + 60
        while not (hs / "headscale.sock").exists() or self._port_closed(self.hs_addr, HS_PORT):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("headscale did not start:\n" + self.headscale_log()[-3000:])
            time.sleep(0.2)
        self.headscale("users", "create", USER)
        self.headscale("policy", "set", "-f", str(hs / "policy.hujson"))

    def _extra_records(self) -> str:
        if not self.dns_records:
            return ""
        lines = ["  extra_records:"]
        for name, ip in self.dns_records.items():
            lines += [f"    - name: {name}", "      type: A", f"      value: {ip}"]
        return "\n".join(lines) + "\n"

    def _port_closed(self, host: str, port: int) -> bool:
        probe = f"import socket; socket.create_connection(({host!r}, {port}), 1).close()"
        return self.ns(self.hs, sys.executable, "-c", probe, check=False).returncode != 0

    def headscale_log(self) -> str:
        return (self.tmp / "hs" / "headscale.log").read_text(errors="replace")

    def preauth_key(self, tags: str) -> str:
        """An ephemeral reusable key; tagged with ``tags``, or owned by the user when empty."""
        users = json.loads(self.headscale("users", "list", "-o", "json").stdout)
        uid = next(u["id"] for u in users if u["name"] == USER)
        made = self.headscale(
            "preauthkeys", "create", "--user", str(uid), "--ephemeral", "--reusable",
            *(["--tags", tags] if tags else []), "--expiration", "2h", "-o", "json",
        )  # fmt: skip
        key: str = json.loads(made.stdout)["key"]
        return key

    def nodes(self) -> list[dict[str, Any]]:
        listed = json.loads(self.headscale("nodes", "list", "-o", "json").stdout or "[]")
        return list(listed or [])

    def _backends(self) -> None:
        """TCP listeners where the sidecar's health check looks for Postgres and Garage."""
        code = (
            "import socket, threading\n"
            "def serve(port):\n"
            "    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            f"    s.bind(({self.hs_addr!r}, port)); s.listen(64)\n"
            "    while True:\n"
            "        c, _ = s.accept(); c.close()\n"
            "for p in (5432, 3900):\n"
            "    threading.Thread(target=serve, args=(p,), daemon=True).start()\n"
            "threading.Event().wait()\n"
        )
        proc = subprocess.Popen(["ip", "netns", "exec", self.hs, sys.executable, "-c", code])
        self.procs.append(proc)
        deadline = time.monotonic() + 20
        while self._port_closed(self.hs_addr, 5432) or self._port_closed(self.hs_addr, 3900):
            if time.monotonic() > deadline:
                raise AssertionError("the backend listeners did not start")
            time.sleep(0.2)

    def backend_link(self) -> str:
        """A veth from the docker namespace to the root one, for real backends running on the
        host (Postgres, redis-server, garage bound to the returned 198.18.N.1): what the
        containers send there leaves masqueraded as 198.18.N.2 (the root namespace gets no
        route to the docker networks) and is recorded as the "backends" capture."""
        octet = _free_octet()
        host, here = f"198.18.{octet}.1", f"198.18.{octet}.2"
        ours, theirs = f"twb{octet}", f"twc{octet}"
        run(["ip", "link", "add", ours, "netns", self.dk, "type", "veth", "peer", "name", theirs])
        run(["ip", "-n", self.dk, "addr", "add", f"{here}/24", "dev", ours])
        run(["ip", "addr", "add", f"{host}/24", "dev", theirs])
        run(["ip", "-n", self.dk, "link", "set", ours, "up"])
        run(["ip", "link", "set", theirs, "up"])
        for way in ("-i", "-o"):
            self.ns(self.dk, "iptables", "-I", "FORWARD", "2", way, ours, "-j", "ACCEPT")
        self.ns(self.dk, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", ours,
                "-j", "MASQUERADE")  # fmt: skip
        self._capture({"backends": (self.dk, ours)})
        return host

    # ------------------------------------------------------------ the edge on the tailnet

    def in_world(
        self, *args: str, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """A command in the docker namespace (a client on the world's side of the bridges)."""
        return run(
            ["nsenter", f"--net=/run/netns/{self.dk}", *args],
            env={**os.environ, **(env or {})},
            timeout=120,
        )

    @property
    def ca_cert(self) -> Path:
        return test_ca()[0]

    def start_node(self, name: str, key: str) -> str:
        """A tailnet node ``name`` in a container of the Tailscale image (kernel networking,
        MagicDNS), joined with ``key``; returns its tailnet IPv4 address."""
        from tailwart.settings.contract import BY_NAME

        if self.docker("network", "inspect", "twnodes", check=False).returncode:
            self.docker("network", "create", "--subnet", "198.19.200.0/24", "twnodes")
        self.docker(
            "run", "-d", "--name", name, "--network", "twnodes", "--hostname", name,
            "--device", "/dev/net/tun:/dev/net/tun", "--cap-add", "NET_ADMIN",
            "--cap-add", "NET_RAW", "--init",
            # its bootstrap resolver stays inside the world (nothing answers there)
            "--dns", self.hs_addr,
            "-e", f"TS_AUTHKEY={key}", "-e", f"TS_HOSTNAME={name}",
            "-e", f"TS_EXTRA_ARGS=--login-server={self.login_server}",
            "-e", "TS_ACCEPT_DNS=true", "-e", "TS_AUTH_ONCE=true", "-e", "TS_USERSPACE=false",
            BY_NAME["TS_IMAGE"].default or "",
        )  # fmt: skip
        deadline = time.monotonic() + 90
        while True:
            got = self.docker(
                "exec", name, "tailscale", "--socket=/tmp/tailscaled.sock", "ip", "-4", check=False
            )
            if got.returncode == 0 and got.stdout.strip():
                return got.stdout.strip()
            if time.monotonic() > deadline:
                logs = self.docker("logs", name, check=False)
                raise AssertionError(
                    f"{name} did not join:\n" + (logs.stdout + logs.stderr)[-3000:]
                )
            time.sleep(1)

    def reaches(self, container: str, host: str, port: int) -> bool:
        """Whether a TCP connection from ``container`` to ``host:port`` opens within 5 s."""
        code = f"import socket; socket.create_connection(({host!r}, {port}), 5).close()"
        return self.docker("exec", container, "python3", "-c", code, check=False).returncode == 0

    def backend_nodes(self) -> None:
        """Nodes for the snippet's backend tags (its tests need addresses to resolve), made with
        headscale's debug CLI: registered, tagged, never online."""
        self.offline_nodes({name: f"tag:{name}" for name in BACKEND_NODES})

    def offline_nodes(self, tags: Mapping[str, str]) -> None:
        """Nodes named as ``tags``' keys, each tagged with its value (registered through
        headscale's debug CLI, never online)."""
        import uuid

        for name in tags:
            auth_id = "hskey-authreq-" + uuid.uuid4().hex[:24]
            self.headscale("debug", "create-node", "--user", USER, "--name", name, "--key", auth_id)
            self.headscale("auth", "register", "--user", USER, "--auth-id", auth_id)
        ids = {str(n.get("name")): n["id"] for n in self.nodes()}
        for name, tag in tags.items():
            self.headscale("nodes", "tag", "-i", str(ids[name]), "-t", tag)

    def api_key(self) -> str:
        made = self.headscale("apikeys", "create", "--expiration", "2h")
        return made.stdout.strip().splitlines()[-1]

    def merge_snippet(self, env_file: Path) -> None:
        """`inv acl --headscale` from the docker namespace, with ``env_file``'s values plus
        headscale's URL and a fresh API key: acl-snippet.hujson merged into the policy."""
        acl_env = write_env(
            env_file.parent / "acl.env",
            {
                **dict(line.split("=", 1) for line in env_file.read_text().splitlines()),
                "HEADSCALE_URL": self.login_server,
                "HEADSCALE_API_KEY": self.api_key(),
            },
        )
        merged = self.in_world(
            sys.executable, "-m", "invoke", "-r", str(ROOT), "acl", "--headscale",
            f"--snippet={ROOT / 'acl-snippet.hujson'}", f"--env-file={acl_env}",
            env={"REQUESTS_CA_BUNDLE": str(self.ca_cert)},
        )  # fmt: skip
        assert "policy updated" in merged.stdout, merged.stdout + merged.stderr

    def start_edge(self, key: str) -> Edge:
        """The edge host on the tailnet: a namespace joined to the docker one (198.18.M.2 ↔
        198.18.M.1) with routes to headscale and the containers only (no default route),
        Debian's sshd, and tailscaled (kernel TUN, MagicDNS by 100.100.100.100) joined
        with ``key``. caddy-l4 is not there yet: ``deploy_edge`` puts it there."""
        self.edge = self.start_host("edge", key, ssh=True)
        return self.edge

    def start_host(self, name: str, key: str, ssh: bool = False) -> Edge:
        """A tailnet host ``name`` as the edge host is made (``start_edge``), with sshd only
        if ``ssh``; its link is recorded as the capture ``name``."""
        from tests.support.netns_hosts import start_sshd

        octet = _free_octet()
        ns = f"tw{name[:2]}{os.getpid()}"
        here, there = f"198.18.{octet}.2", f"198.18.{octet}.1"
        home = self.tmp / f"{name}-host"
        (home / "ts").mkdir(parents=True)
        # `ip netns exec` bind-mounts this over /etc/resolv.conf for sshd, caddy, probes:
        # names resolve through tailscaled's MagicDNS resolver (it never writes the file)
        etc = Path("/etc/netns") / ns
        etc.mkdir(parents=True, exist_ok=False)
        self.etc_netns.append(etc)
        (etc / "resolv.conf").write_text("nameserver 100.100.100.100\n")
        run(["ip", "netns", "add", ns])
        self.netns.append(ns)
        veth_dk, veth_ed = f"twe{octet}", f"twf{octet}"
        self._veth(ns, veth_dk, veth_ed, there, here)
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        for net in (f"{self.hs_addr}/32", DOCKER_NETS):
            run(["ip", "-n", ns, "route", "add", net, "via", there])
        run(["ip", "-n", self.hs, "route", "add", f"198.18.{octet}.0/24", "via", self.gw_addr])
        # dockerd's FORWARD policy drops what is not its own; the 198.18/15 guard stays first
        for way in ("-i", "-o"):
            self.ns(self.dk, "iptables", "-I", "FORWARD", "2", way, veth_dk, "-j", "ACCEPT")
        routes = self.ns(ns, "ip", "route", "show", "default").stdout.strip()
        assert routes == "", f"the {name} namespace has a default route: {routes}"
        # everything the host sends or receives crosses this veth: recorded from now on
        self._capture({name: (ns, veth_ed)})
        if ssh:  # a key for this run, root logs in with it
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / "id_ed25519")])
            (home / "authorized_keys").write_text((home / "id_ed25519.pub").read_text())
            sshd, host_key = start_sshd(home, ns, here, home)
            self.procs.append(sshd)
            (home / "known_hosts").write_text(f"{here} {host_key}\n")
            (home / "ssh_config").write_text(f"Host {here}\n  User root\n")
        # tailscaled: no log upload, state under the test's tmp, trusting the test CA
        ts = home / "ts"
        sock = ts / "tailscaled.sock"
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(ts),
            "SSL_CERT_FILE": str(self.ca_cert),
        }
        log = (ts / "tailscaled.log").open("wb")
        self.procs.append(
            subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    str(ts_binaries() / "tailscaled"),
                    "--no-logs-no-support",
                    f"--statedir={ts}",
                    f"--socket={sock}",
                    "--tun=tailscale0",
                    "--port=41641",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        )
        key_file = ts / "authkey"
        key_file.write_text(key)
        key_file.chmod(0o600)
        cli = [str(ts_binaries() / "tailscale"), f"--socket={sock}"]
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert time.monotonic() < deadline, (ts / "tailscaled.log").read_text()[-3000:]
            time.sleep(0.1)
        joined = run(
            [
                *cli,
                "up",
                f"--login-server={self.login_server}",
                f"--auth-key=file:{key_file}",
                f"--hostname={name}",
                "--accept-dns=false",
                "--timeout=60s",
            ],
            check=False,
            timeout=90,
            env=env,
        )
        assert joined.returncode == 0, joined.stderr + (ts / "tailscaled.log").read_text()[-3000:]
        key_file.unlink()
        ip4 = run([*cli, "ip", "-4"]).stdout.strip()
        ip6 = run([*cli, "ip", "-6"]).stdout.strip()
        return Edge(name, ns, here, there, ip4, ip6, home)

    def edge_reaches(self, host: str, port: int) -> bool:
        """Whether a TCP connection from the edge host to ``host:port`` opens within 5 s
        (a name resolves as caddy's would: MagicDNS)."""
        assert self.edge is not None
        code = f"import socket; socket.create_connection(({host!r}, {port}), 5).close()"
        done = self.ns(self.edge.netns, sys.executable, "-c", code, check=False)
        return done.returncode == 0

    def deploy_edge(self, env_file: Path) -> str:
        """`inv deploy-edge` from the docker namespace (the operator's side of the world) to
        the edge host, with the caddy-l4 binary tailwart builds; returns what it printed."""
        from tests.support.testkit import built_caddy

        assert self.edge is not None
        caddy = built_caddy(self.tmp / "caddy-bin")
        done = run(
            [
                "nsenter",
                f"--net=/run/netns/{self.dk}",
                sys.executable,
                "-m",
                "invoke",
                "-r",
                str(ROOT),
                "deploy-edge",
                f"--env-file={env_file}",
                *self.edge.ssh_flags,
                f"--binary={caddy}",
                "--health-timeout=30",
            ],
            check=False,
            timeout=300,
            cwd=env_file.parent,
        )
        out = done.stdout + done.stderr
        assert done.returncode == 0, f"inv deploy-edge exited {done.returncode}:\n{out[-6000:]}"
        return out

    # ------------------------------------------------------------ the capture

    def stop_capture(self) -> None:
        for proc in self.tcpdumps:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)

    def read_capture(self, label: str, bpf: str) -> list[str]:
        """Packets of one capture (docker, exit, headscale) matching ``bpf``, one line each."""
        pcap = self.captures[label]
        if not pcap.exists() or not pcap.stat().st_size:
            return []
        out = run(["tcpdump", "-nn", "-r", str(pcap), bpf], check=False)
        return [line for line in out.stdout.splitlines() if line.strip()]

    def leaks(self, label: str) -> list[str]:
        """Packets of one capture addressed outside 198.18.0.0/15, loopback and link scope."""
        return self.read_capture(label, f"(ip or ip6) and not ({INSIDE})")

    # ------------------------------------------------------------ teardown

    def close(self) -> None:
        with contextlib.suppress(Exception):
            ids = self.docker("ps", "-aq", check=False).stdout.split()
            for cid in ids:  # kept beside the captures for a failure's post-mortem
                logs = self.docker("logs", "-t", cid, check=False)
                (self.tmp / f"container-{cid[:12]}.log").write_text(logs.stdout + logs.stderr)
            if ids:
                self.docker("rm", "-f", *ids, check=False)
            self.prune_volumes()
            self.docker("network", "prune", "-f", check=False)
        for proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        for name in self.netns:
            # anything a container left behind in the namespace dies with it
            for pid in run(["ip", "netns", "pids", name], check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            run(["ip", "netns", "del", name], check=False)
        for path in self.etc_netns:
            shutil.rmtree(path, ignore_errors=True)
        # logs, captures and the exec root go too, unless kept for a post-mortem
        keep = os.environ.get("TAILWART_KEEP_WORLD")
        shutil.rmtree(self.tmp / "exec" if keep else self.tmp, ignore_errors=True)
        if self.lock is not None:
            self.lock.close()


@contextlib.contextmanager
def world(
    stalwart_bin: Path | None = None, dns_records: Mapping[str, str] | None = None
) -> Iterator[World]:
    """A running world; everything it started is stopped afterwards, also after a failure.
    With ``stalwart_bin``, the Stalwart slot's image is made from that binary;
    ``dns_records`` are extra MagicDNS names (headscale's ``dns.extra_records``)."""
    for tool in ("dockerd", "docker", "tcpdump", "iptables", "nsenter"):
        need_tool(tool)
    need(COMPOSE.is_file(), f"compose not built at {COMPOSE} (scripts/setup/50-mailbox.sh)")
    need(Path("/dev/net/tun").exists(), "no /dev/net/tun")
    tmp = Path(tempfile.mkdtemp(prefix="twmbx"))
    made = World(tmp, stalwart_bin=stalwart_bin, dns_records=dict(dns_records or {}))
    try:
        yield made.open()
    finally:
        made.stop_capture()
        made.close()
