"""Edge hosts for tests and benchmarks: real OpenSSH servers in network namespaces.

Each host is a network namespace joined to the root namespace by a veth pair
(``198.18.N.1`` here, ``198.18.N.2`` there), running Debian's sshd with host and
user keys generated for this run, and its own directory standing in for the
remote filesystem root (namespaces share the disk). The upstream stand-in
listens on the root side of the veth and checks the PROXY v2 header caddy-l4
sends. Everything (processes in the namespace, sshd, caddy, namespaces) is torn
down by ``close()``, also after a failure.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tailwart.edge.hosts import HostTarget, SshOptions
from tailwart.edge.render import MAIL_PORTS, EdgeLayout

SSHD = "/usr/sbin/sshd"
PROXY_V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True)


def _free_subnets(count: int) -> list[int]:
    """Third octets N such that 198.18.N.0/24 is unused on this machine."""
    used = _run("ip", "-4", "-o", "addr").stdout
    start = 100 + os.getpid() % 100
    found: list[int] = []
    for n in list(range(start, 250)) + list(range(100, start)):
        if f"198.18.{n}." not in used:
            found.append(n)
        if len(found) == count:
            return found
    raise RuntimeError("no free 198.18.N.0/24 subnet")


@dataclass
class NetnsHost:
    """One SSH edge host inside its own network namespace."""

    index: int
    netns: str
    veth: str
    addr: str  # inside the namespace
    peer: str  # the root namespace's end of the veth
    dir: Path
    root: str  # the remote layout root (default /opt/tailwart-edge in production)
    sshd: subprocess.Popen[bytes] | None = None
    host_pubkey: str = ""

    @property
    def target(self) -> HostTarget:
        return HostTarget(self.addr, "root", 22)

    @property
    def admin_socket(self) -> str:
        return f"{self.root}/run/admin.sock"

    def ns(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run("ip", "netns", "exec", self.netns, *args, check=check)

    def pids(self) -> list[int]:
        out = _run("ip", "netns", "pids", self.netns, check=False).stdout
        return [int(p) for p in out.split()]

    def session_pids(self) -> list[int]:
        """Per-connection sshd processes (children of the listening sshd)."""
        if self.sshd is None:
            return []
        out = _run("pgrep", "-P", str(self.sshd.pid), check=False).stdout
        return [int(p) for p in out.split()]

    def cut_ssh_sessions(self) -> int:
        """Kill every live SSH connection to this host (the link drops mid-transfer)."""
        pids = self.session_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)

    def link(self, up: bool) -> None:
        _run("ip", "link", "set", self.veth, "up" if up else "down")

    def tx_bytes(self) -> int:
        """Bytes the root namespace sent to this host over the veth."""
        return int(Path(f"/sys/class/net/{self.veth}/statistics/tx_bytes").read_text())

    def caddy_pids(self) -> list[int]:
        found = []
        for pid in self.pids():
            with contextlib.suppress(OSError):
                exe = os.readlink(f"/proc/{pid}/exe")
                if exe.startswith(self.root + "/") or exe.startswith(str(self.dir)):
                    found.append(pid)
        return found

    def running_exe(self) -> str:
        pids = self.caddy_pids()
        return os.readlink(f"/proc/{pids[0]}/exe") if len(pids) == 1 else ""

    def current(self) -> str | None:
        link = Path(self.root) / "current"
        return os.readlink(link).rsplit("/", 1)[-1] if link.is_symlink() else None

    def releases(self) -> list[str]:
        rel = Path(self.root) / "releases"
        return sorted(p.name for p in rel.iterdir()) if rel.is_dir() else []

    def tcp_migrate_req(self) -> str:
        """net.ipv4.tcp_migrate_req inside the namespace (a per-namespace sysctl); "?" when
        it cannot be read."""
        read = self.ns("cat", "/proc/sys/net/ipv4/tcp_migrate_req", check=False)
        return read.stdout.strip() or "?"

    def caddy_log(self) -> str:
        path = Path(self.root) / "log" / "caddy.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def audit(self) -> list[str]:
        path = Path(self.root) / "audit.log"
        return path.read_text().splitlines() if path.exists() else []


class _EarlyClose(ConnectionError):
    pass


class Upstream:
    """The mailbox stand-in: checks the PROXY v2 header, greets, then echoes lines."""

    def __init__(self, host: str, greeting: bytes = b"220 standin.test ESMTP ready\r\n") -> None:
        self.host = host
        self.greeting = greeting
        self.ports: dict[int, int] = {}  # mail port -> upstream port
        self.sources: list[tuple[str, int]] = []
        self.errors: list[str] = []
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.accepted: dict[int, int] = {}  # mail port -> connections accepted
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def start(self, ports: Mapping[int, int] | None = None) -> dict[int, int]:
        """Listen on every mail port: on ``ports`` (mail port → port; a second node on the
        same ports), else on ports the OS picks."""
        for _, port in MAIL_PORTS:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, (ports or {}).get(port, 0)))
            sock.listen(512)
            self._socks.append(sock)
            self.ports[port] = sock.getsockname()[1]
            thread = threading.Thread(target=self._accept, args=(sock, port), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self.ports

    def describe(self) -> str:
        """Ports, what each accepted, the PROXY sources seen, the last errors, live threads."""
        with self._lock:
            errors = self.errors[-5:]
            sources = len(self.sources)
            accepted = dict(self.accepted)
        alive = sum(t.is_alive() for t in self._threads)
        return (
            f"upstream {self.host}: ports {self.ports}, accepted {accepted}, "
            f"PROXY headers {sources}, accept threads alive {alive}/{len(self._threads)}, "
            f"last errors {errors}"
        )

    def _accept(self, sock: socket.socket, port: int) -> None:
        sock.settimeout(0.5)  # a closed listener is noticed: close() does not wake accept()
        while not self._stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                if self._stop.is_set():
                    return
                # Linux hands a pending network error of the new connection to accept():
                # that connection is lost, the listener is not; keep accepting, say so
                with self._lock:
                    self.errors.append(f"{port}: accept: {exc!r}")
                time.sleep(0.01)
                continue
            conn.settimeout(None)
            with self._lock:
                self.accepted[port] = self.accepted.get(port, 0) + 1
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn, port), daemon=True).start()

    def _read(self, conn: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk and not data:
                raise _EarlyClose("closed before the PROXY header")
            if not chunk:
                raise ConnectionError(f"closed inside the PROXY header after {data!r}")
            data += chunk
        return data

    def _serve(self, conn: socket.socket, port: int) -> None:
        try:
            conn.settimeout(30)
            head = self._read(conn, 16)
            if head[:12] != PROXY_V2_SIG or head[12] != 0x21 or head[13] != 0x11:
                raise ValueError(f"not a PROXY v2 TCP4 header: {head!r}")
            (length,) = struct.unpack("!H", head[14:16])
            body = self._read(conn, length)
            src = str(ipaddress.IPv4Address(body[0:4]))
            (sport,) = struct.unpack("!H", body[8:10])
            with self._lock:
                self.sources.append((src, sport))
            conn.settimeout(None)
            greeting = b"* OK standin.test IMAP ready\r\n" if port in (143, 993) else self.greeting
            conn.sendall(greeting)
            buf = b""
            while True:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip().upper() == b"QUIT":
                        conn.sendall(b"221 bye\r\n")
                        return
                    conn.sendall(line + b"\n")
        except _EarlyClose:
            pass  # a bare TCP probe (the health gate) hung up before caddy sent the header
        except (ConnectionResetError, BrokenPipeError):
            pass  # the client left after the greeting (the health gate's TLS hello is echoed)
        except Exception as exc:
            with self._lock:
                self.errors.append(f"{port}: {exc}")
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def close(self) -> None:
        self._stop.set()
        for sock in self._socks:
            sock.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def restart(self, down: float = 1.0) -> None:
        """Stop as a restarted node does (listeners and sessions closed, connections refused
        for ``down`` seconds), then listen again on the same ports."""
        ports = dict(self.ports)
        self.close()
        for thread in self._threads:
            thread.join(timeout=2)
        time.sleep(down)
        self._stop = threading.Event()
        self._socks, self._threads = [], []
        self.start(ports)


@dataclass
class Lab:
    """Namespaced SSH hosts, keys, known_hosts and an upstream per host."""

    dir: Path
    hosts: list[NetnsHost] = field(default_factory=list)
    upstreams: list[Upstream] = field(default_factory=list)
    #: what the last failed serving() probe heard (for assertion messages)
    last_probe: str = ""

    @property
    def key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def ssh_config(self) -> Path:
        return self.dir / "ssh_config"

    def ssh_options(self, **kw: object) -> SshOptions:
        return SshOptions(
            known_hosts=self.known_hosts,
            identity=self.key,
            ssh_config=self.ssh_config,
            connect_timeout=5.0,
            **kw,  # type: ignore[arg-type]
        )

    def trust_all(self) -> None:
        self.known_hosts.write_text("".join(f"{h.addr} {h.host_pubkey}\n" for h in self.hosts))

    def layout(self, host: NetnsHost, **changes: object) -> EdgeLayout:
        """The host's edge layout: mail ports on its namespace address, dialing its upstream."""
        up = self.upstreams[host.index]
        values: dict[str, object] = {
            "upstream_host": up.host,
            "upstream": dict(up.ports),
            "admin_socket": host.admin_socket,
        }
        values.update(changes)
        return EdgeLayout(**values)  # type: ignore[arg-type]

    def explain(self) -> str:
        """Each host's sockets (ss, in its namespace), caddy processes and log tail, and
        its upstream's counters: what a failed connection test needs to say why."""
        parts = []
        for host in self.hosts:
            up = self.upstreams[host.index]
            parts += [
                f"== {host.netns} {host.addr}: caddy pids {host.caddy_pids()}, "
                f"tcp_migrate_req {host.tcp_migrate_req()}",
                host.ns("ss", "-tanpi", check=False).stdout.strip()[-6000:],
                "-- the namespace's non-zero TCP/MPTCP counters (nstat):",
                ", ".join(
                    "=".join(line.split()[:2])
                    for line in host.ns("nstat", "-as", check=False).stdout.splitlines()[1:]
                ),
                f"-- root side, to/from {host.addr}:",
                _run("ss", "-tani", "dst", host.addr, check=False).stdout.strip()[-3000:],
                _run("ss", "-tanl", "src", up.host, check=False).stdout.strip(),
                up.describe(),
                f"-- last probe: {self.last_probe or '-'}",
                "-- caddy log (tail):",
                "\n".join(host.caddy_log().splitlines()[-15:]),
            ]
        return "\n".join(parts)

    def close(self) -> None:
        for up in self.upstreams:
            up.close()
        for host in self.hosts:
            for pid in host.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if host.sshd is not None:
                with contextlib.suppress(Exception):
                    host.sshd.kill()
                    host.sshd.wait(5)
            for pid in host.caddy_pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            _run("ip", "netns", "del", host.netns, check=False)
            _run("ip", "link", "del", host.veth, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def _wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def start_sshd(
    hdir: Path, netns: str, addr: str, keys: Path
) -> tuple[subprocess.Popen[bytes], str]:
    """Debian's sshd in ``netns`` on ``addr``:22 with a host key made now, root logging in
    with the keys in ``keys/authorized_keys``; (the listening sshd, its host public key).

    `ip netns exec` execs sshd in place: the Popen pid is the listening sshd."""
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(hdir / "host_key"))
    pubkey = " ".join((hdir / "host_key.pub").read_text().split()[:2])
    cfg = hdir / "sshd_config"
    cfg.write_text(
        f"Port 22\nListenAddress {addr}\nHostKey {hdir / 'host_key'}\n"
        f"PidFile {hdir / 'sshd.pid'}\nAuthorizedKeysFile {keys / 'authorized_keys'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        "Subsystem sftp internal-sftp\nMaxStartups 100\nMaxSessions 100\nLogLevel ERROR\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    proc = subprocess.Popen(
        ["ip", "netns", "exec", netns, SSHD, "-D", "-e", "-f", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=open(hdir / "sshd.log", "wb"),  # noqa: SIM115
    )
    return proc, pubkey


def _start_host(lab: Lab, index: int, octet: int) -> NetnsHost:
    tag = f"{os.getpid() % 100000}{index}"
    hdir = lab.dir / f"h{index}"
    hdir.mkdir()
    host = NetnsHost(
        index=index,
        netns=f"twdep-{tag}",
        veth=f"twd{tag}",
        addr=f"198.18.{octet}.2",
        peer=f"198.18.{octet}.1",
        dir=hdir,
        root=str(hdir / "edge"),
    )
    lab.hosts.append(host)
    peer_in_ns = f"twp{tag}"
    _run("ip", "netns", "add", host.netns)
    _run("ip", "link", "add", host.veth, "type", "veth", "peer", "name", peer_in_ns)
    _run("ip", "link", "set", peer_in_ns, "netns", host.netns)
    _run("ip", "addr", "add", f"{host.peer}/24", "dev", host.veth)
    _run("ip", "link", "set", host.veth, "up")
    host.ns("ip", "addr", "add", f"{host.addr}/24", "dev", peer_in_ns)
    host.ns("ip", "link", "set", peer_in_ns, "up")
    host.ns("ip", "link", "set", "lo", "up")
    host.sshd, host.host_pubkey = start_sshd(hdir, host.netns, host.addr, lab.dir)
    _wait_port(host.addr, 22)
    upstream = Upstream(host.peer)
    upstream.start()
    lab.upstreams.append(upstream)
    return host


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(f"terminated by signal {signum}")


@contextlib.contextmanager
def lab(count: int = 1) -> Iterator[Lab]:
    """``count`` namespaced SSH hosts; everything is removed on exit, even after a failure."""
    the_lab = Lab(Path(tempfile.mkdtemp(prefix="twd", dir="/tmp")))
    previous = None
    if threading.current_thread() is threading.main_thread():
        # a SIGTERM (CI timeout, `timeout`) still runs the teardown below
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(the_lab.key))
        (the_lab.dir / "authorized_keys").write_text(the_lab.key.with_suffix(".pub").read_text())
        for index, octet in enumerate(_free_subnets(count)):
            _start_host(the_lab, index, octet)
        the_lab.known_hosts.write_text("")
        lines = [
            f"Host edge{h.index}\n  HostName {h.addr}\n  User root\n  Port 22\n"
            for h in the_lab.hosts
        ]
        the_lab.ssh_config.write_text("".join(lines))
        yield the_lab
    finally:
        the_lab.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


# ------------------------------------------------------------------ traffic probe


@dataclass
class ProbeResult:
    held: int
    held_alive: int
    new_ok: int
    new_failed: int
    errors: list[str]


class HeldConnections:
    """Holds ``count`` connections through the edge and keeps opening new ones meanwhile."""

    def __init__(self, host: str, port: int, count: int = 50) -> None:
        self.host, self.port, self.count = host, port, count
        self.held: list[socket.socket] = []
        self.new_ok = 0
        self.new_failed = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._progress = threading.Condition()
        self._thread = threading.Thread(target=self._churn, daemon=True)

    def _greeted(self, sock: socket.socket) -> None:
        # a bound on waiting, not a measurement: on a loaded 2-core CI machine 50 greetings
        # through the edge can queue for seconds (one timed out at 5 s in a warm CI run)
        sock.settimeout(30)
        data = b""
        while b"\n" not in data:
            chunk = sock.recv(256)
            if not chunk:
                raise ConnectionError(f"closed before the greeting ({data!r})")
            data += chunk
        if not data.startswith((b"220", b"* OK")):
            raise ConnectionError(f"unexpected greeting {data!r}")

    def __enter__(self) -> HeldConnections:
        for i in range(self.count):
            start = time.monotonic()
            sock = socket.create_connection((self.host, self.port), timeout=5)
            self.held.append(sock)  # __exit__ closes it, greeted or not
            try:
                self._greeted(sock)
            except OSError as exc:
                self.__exit__()
                raise ConnectionError(
                    f"held connection {i} of {self.count} (from port "
                    f"{sock.getsockname()[1]}): no greeting after "
                    f"{time.monotonic() - start:.1f} s: {exc!r}"
                ) from exc
        self._thread.start()
        return self

    def _churn(self) -> None:
        while not self._stop.is_set():
            try:
                with socket.create_connection((self.host, self.port), timeout=5) as sock:
                    self._greeted(sock)
                    sock.sendall(b"QUIT\r\n")
                    if not sock.recv(64).startswith(b"221"):
                        raise ConnectionError("no 221 after QUIT")
                with self._progress:
                    self.new_ok += 1
                    self._progress.notify_all()
            except Exception as exc:
                with self._progress:
                    self.new_failed += 1
                    self.errors.append(f"new connection: {exc}")
                    self._progress.notify_all()
            time.sleep(0.005)

    def wait_new(self, count: int, timeout: float = 120) -> None:
        """Wait until ``count`` more new sessions completed (or one failed): an event to
        wait on, not a duration to sleep; ``timeout`` only bounds a stuck run."""
        with self._progress:
            target = self.new_ok + count
            if not self._progress.wait_for(
                lambda: self.new_ok >= target or self.new_failed > 0, timeout
            ):
                raise AssertionError(f"no {count} new sessions within {timeout:g} s")

    def finish(self) -> ProbeResult:
        self._stop.set()
        self._thread.join(10)
        alive = 0
        for i, sock in enumerate(self.held):
            try:
                line = f"ping {i}\r\n".encode()
                sock.sendall(line)
                sock.settimeout(5)
                got = b""
                while not got.endswith(b"\n"):
                    chunk = sock.recv(64)
                    if not chunk:
                        raise ConnectionError("closed")
                    got += chunk
                if got != line:
                    raise ConnectionError(f"echo mismatch {got!r}")
                alive += 1
            except Exception as exc:
                self.errors.append(f"held connection {i}: {exc}")
        return ProbeResult(len(self.held), alive, self.new_ok, self.new_failed, self.errors)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for sock in self.held:
            sock.close()
