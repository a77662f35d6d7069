"""Edge benchmark: SMTP through caddy-l4 vs direct to the upstream vs through HAProxy.

All on loopback, in one run, bounded loops:

- session latency (connect → 220 → EHLO → QUIT), median and p99;
- connection rate with 32 concurrent clients;
- throughput of a 100 MB DATA transfer.

The upstream is a lean SMTP responder in its own process (so the proxy, not a slow
upstream, is what differs between paths). Its PROXY-aware listener refuses a
connection without a valid PROXY v2 header, so the edge and HAProxy
(``send-proxy-v2``) pay the same protocol cost. Prints a table of ratios with the
machine description and writes it to ``benchmarks/results/edge.md``.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import platform
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tailwart.edge.build import _host_target, ensure_caddy  # noqa: E402
from tailwart.edge.render import (  # noqa: E402
    MAIL_PORTS,
    RUNTIME_ENV,
    EdgeLayout,
    caddy_config,
)
from tailwart.edge.run import RunningEdge, short_tempdir  # noqa: E402
from tailwart.testing.standin import V2_SIGNATURE, free_port  # noqa: E402

EDGE_HOST = "127.0.0.1"
UPSTREAM_HOST = "127.0.0.2"
LATENCY_SESSIONS = 2100
WARMUP_SESSIONS = 30
RATE_CLIENTS = 32
MANY_CLIENTS = 200
RATE_SESSIONS = 7000
DATA_MB = 100
DATA_RUNS = 5
ROUNDS = 7
HOLD_CONNS = 500
HOLD_SECONDS = 10.0
HOLD_RATE_SESSIONS = 3500
PROFILE_SECONDS = 5
#: runtime settings measured one at a time against the untuned edge (name, value)
CANDIDATE_ENV: tuple[tuple[str, str], ...] = (
    ("GOMAXPROCS", "1"),
    ("GOGC", "400"),
)
TIMEOUT = 30.0
RESULTS = ROOT / "benchmarks" / "results" / "edge.md"


# ---------------------------------------------------------------- the upstream (own process)


class _Upstream(asyncio.Protocol):
    """Minimal SMTP: 220, EHLO, MAIL, RCPT, DATA (terminator scan), QUIT."""

    def __init__(self, need_proxy: bool, stats: dict[str, int]) -> None:
        self.need_proxy = need_proxy
        self.stats = stats
        self.buf = b""
        self.in_data = False
        self.tail = b""
        self.t: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.t = transport
        if not self.need_proxy:
            transport.write(b"220 bench.upstream ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        assert self.t is not None
        if self.need_proxy:
            self.buf += data
            if len(self.buf) < 16:
                return
            (length,) = struct.unpack("!H", self.buf[14:16])
            if self.buf[:12] != V2_SIGNATURE or self.buf[12] != 0x21:
                self.stats["bad_proxy"] += 1
                self.t.close()
                return
            if len(self.buf) < 16 + length:
                return
            self.stats["proxy"] += 1
            self.need_proxy = False
            data, self.buf = self.buf[16 + length :], b""
            self.t.write(b"220 bench.upstream ESMTP\r\n")
        if self.in_data:
            self._data(data)
            return
        self.buf += data
        while b"\r\n" in self.buf and not self.in_data:
            line, self.buf = self.buf.split(b"\r\n", 1)
            verb = line[:4].upper()
            if verb == b"EHLO":
                self.t.write(b"250-bench.upstream\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                self.t.write(b"250 OK\r\n")
            elif verb == b"DATA":
                self.t.write(b"354 go ahead\r\n")
                self.in_data, rest, self.buf = True, self.buf, b""
                if rest:
                    self._data(rest)
            elif verb == b"QUIT":
                self.t.write(b"221 bye\r\n")
                self.t.close()
            else:
                self.t.write(b"500 what\r\n")

    def _data(self, data: bytes) -> None:
        assert self.t is not None
        joined = self.tail + data
        self.stats["data_bytes"] += len(data)
        if joined.endswith(b"\r\n.\r\n"):
            self.in_data = False
            self.tail = b""
            self.t.write(b"250 OK queued\r\n")
        else:
            self.tail = joined[-4:]


def _serve_upstream(ports: Any, stop: Any) -> None:
    async def main() -> None:
        stats = {"proxy": 0, "bad_proxy": 0, "data_bytes": 0}
        loop = asyncio.get_running_loop()
        plain = await loop.create_server(
            lambda: _Upstream(False, stats), UPSTREAM_HOST, 0, backlog=1024
        )
        proxied = await loop.create_server(
            lambda: _Upstream(True, stats), UPSTREAM_HOST, 0, backlog=1024
        )
        ports.put((plain.sockets[0].getsockname()[1], proxied.sockets[0].getsockname()[1]))
        while not stop.is_set():
            await asyncio.sleep(0.1)
        ports.put((stats["proxy"], stats["bad_proxy"]))

    asyncio.run(main())


# ---------------------------------------------------------------- clients


def _read_reply(sock: socket.socket, buf: bytearray) -> bytes:
    """One complete SMTP reply (possibly multi-line)."""
    while True:
        idx = buf.find(b"\r\n")
        while idx >= 0:
            line = bytes(buf[: idx + 2])
            if len(line) >= 4 and line[3:4] == b" ":
                del buf[: idx + 2]
                return line
            del buf[: idx + 2]
            idx = buf.find(b"\r\n")
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-reply")
        buf += chunk


def session(host: str, port: int, source: str = "127.0.0.60") -> None:
    """connect → 220 → EHLO → QUIT → closed."""
    with socket.create_connection((host, port), TIMEOUT, source_address=(source, 0)) as s:
        buf = bytearray()
        assert _read_reply(s, buf).startswith(b"220")
        s.sendall(b"EHLO bench.client\r\n")
        assert _read_reply(s, buf).startswith(b"250")
        s.sendall(b"QUIT\r\n")
        assert _read_reply(s, buf).startswith(b"221")


def latency_samples(host: str, port: int, count: int) -> list[float]:
    """Milliseconds per sequential session, ``count`` of them."""
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        session(host, port)
        times.append((time.perf_counter() - t0) * 1000)
    return times


async def _async_session(host: str, port: int, source: str) -> None:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, local_addr=(source, 0)), TIMEOUT
    )
    try:

        async def reply() -> bytes:
            while True:
                line = await asyncio.wait_for(reader.readline(), TIMEOUT)
                if not line:
                    raise ConnectionError("closed mid-reply")
                if line[3:4] == b" ":
                    return line

        assert (await reply()).startswith(b"220")
        writer.write(b"EHLO bench.client\r\n")
        assert (await reply()).startswith(b"250")
        writer.write(b"QUIT\r\n")
        assert (await reply()).startswith(b"221")
    finally:
        writer.close()
        await writer.wait_closed()


def conn_rate(host: str, port: int, sessions: int, clients: int) -> float:
    """Sessions per second with ``clients`` concurrent clients."""

    async def main() -> float:
        left = sessions

        async def worker(i: int) -> None:
            nonlocal left
            source = f"127.0.1.{i + 1}"  # spread source addresses: no ephemeral port exhaustion
            while left > 0:
                left -= 1
                await _async_session(host, port, source)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        return sessions / (time.perf_counter() - t0)

    return asyncio.run(main())


_LINE = (b"x" * 996) + b"\r\n"
_CHUNK = _LINE * 1024  # ~1 MB


def data_throughput(host: str, port: int) -> float:
    """MB/s of one DATA transfer of DATA_MB (DATA → 250 after the final dot)."""
    with socket.create_connection((host, port), TIMEOUT, ("127.0.0.61", 0)) as s:
        buf = bytearray()
        _read_reply(s, buf)
        for command in (
            b"EHLO bench.client",
            b"MAIL FROM:<a@bench.test>",
            b"RCPT TO:<b@bench.test>",
        ):
            s.sendall(command + b"\r\n")
            assert _read_reply(s, buf).startswith(b"250")
        s.sendall(b"DATA\r\n")
        assert _read_reply(s, buf).startswith(b"354")
        total = 0
        t0 = time.perf_counter()
        while total < DATA_MB * 1024 * 1024:
            s.sendall(_CHUNK)
            total += len(_CHUNK)
        s.sendall(b".\r\n")
        assert _read_reply(s, buf).startswith(b"250")
        rate = total / (1024 * 1024) / (time.perf_counter() - t0)
        s.sendall(b"QUIT\r\n")
        _read_reply(s, buf)
    return rate


# ---------------------------------------------------------------- HAProxy


def _haproxy_binary() -> str:
    binary = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
    if not binary:
        raise SystemExit("haproxy is not installed (scripts/setup/10-edge.sh installs it)")
    return binary


def haproxy_config(
    listen: int,
    upstream: int,
    *,
    frontend: str = "smtp",
    maxconn: int = 8192,
    timeout: str = "60s",
    defaults_maxconn: bool = False,
) -> str:
    """HAProxy as the baseline edge: one TCP frontend, PROXY v2 to the upstream."""
    limit = f"  maxconn {maxconn}\n" if defaults_maxconn else ""
    return (
        f"global\n  maxconn {maxconn}\n"
        f"defaults\n  mode tcp\n{limit}  timeout connect 5s\n  timeout client {timeout}\n"
        f"  timeout server {timeout}\n"
        f"frontend {frontend}\n  bind {EDGE_HOST}:{listen}\n  default_backend mailbox\n"
        f"backend mailbox\n  server m1 {UPSTREAM_HOST}:{upstream} send-proxy-v2\n"
    )


def _haproxy(
    listen: int, upstream: int, work: Path, config: str | None = None
) -> subprocess.Popen[bytes]:
    """Start HAProxy with ``config`` (default: ``haproxy_config``) and wait for it to listen."""
    cfg = work / "haproxy.cfg"
    cfg.write_text(config or haproxy_config(listen, upstream))
    proc = subprocess.Popen(
        [_haproxy_binary(), "-db", "-q", "-f", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    for _ in range(100):
        try:
            socket.create_connection((EDGE_HOST, listen), 1).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("haproxy did not start")


# ---------------------------------------------------------------- process figures


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a whole process (all threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


PERF_EVENTS = ("task-clock", "context-switches", "cpu-migrations", "cycles", "instructions")


class PerfStat:
    """``perf stat -p PID`` around one phase; counters summed over phases."""

    def __init__(self) -> None:
        self.binary = shutil.which("perf")
        self.totals: dict[str, float] = {}
        self.unsupported: set[str] = set()
        self.proc: subprocess.Popen[str] | None = None

    def start(self, pid: int) -> None:
        if not self.binary:
            return
        self.proc = subprocess.Popen(
            [self.binary, "stat", "-x", ",", "-e", ",".join(PERF_EVENTS), "-p", str(pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.3)  # attached to every thread before the phase starts

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
        for line in err.splitlines():
            parts = line.split(",")
            if len(parts) < 3 or parts[2] not in PERF_EVENTS:
                continue
            if parts[0].startswith("<not"):
                self.unsupported.add(parts[2])
                continue
            try:
                self.totals[parts[2]] = self.totals.get(parts[2], 0.0) + float(parts[0])
            except ValueError:
                continue


# ---------------------------------------------------------------- caddy's pprof


def admin_get(admin_socket: str, path: str, timeout: float) -> bytes:
    """GET on caddy's admin endpoint (a unix socket)."""
    import http.client

    class UnixConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(admin_socket)
            self.sock = sock

    conn = UnixConnection("localhost", timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"admin {path}: HTTP {resp.status}")
        return body
    finally:
        conn.close()


def profile_edge(target: Target, admin_socket: str, out_dir: Path) -> dict[str, str]:
    """CPU and allocation profiles of caddy while 32 clients run sessions through it."""
    import threading

    out_dir.mkdir(parents=True, exist_ok=True)
    got: dict[str, bytes] = {}

    def fetch(kind: str, path: str) -> None:
        got[kind] = admin_get(admin_socket, path, PROFILE_SECONDS + 30)

    threads = [
        threading.Thread(target=fetch, args=(k, p))
        for k, p in (
            ("cpu", f"/debug/pprof/profile?seconds={PROFILE_SECONDS}"),
            ("allocs", f"/debug/pprof/allocs?seconds={PROFILE_SECONDS}"),
        )
    ]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(0.3)
    # every session inside the profile's window: per-session figures are exact
    deadline = t0 + PROFILE_SECONDS - 0.5
    sessions = 0
    while time.monotonic() < deadline:
        conn_rate(target.host, target.port, 200, RATE_CLIENTS)
        sessions += 200
    for t in threads:
        t.join()
    go = shutil.which("go") or "/usr/local/go/bin/go"
    tops: dict[str, str] = {"sessions": str(sessions)}
    if not Path(go).exists():  # the raw profiles are still written below
        go = ""
    if "cpu" in got and go:
        cpu_path = out_dir / "edge-cpu.pb.gz"
        cpu_path.write_bytes(got["cpu"])
        out = subprocess.run(
            [go, "tool", "pprof", "-top", "-cum", "-nodecount=400", str(cpu_path)],
            capture_output=True,
            text=True,
            check=False,
        )
        tops["per session"] = "\n".join(attribution(out.stdout, sessions))
    for kind, data in got.items():
        path = out_dir / f"edge-{kind}.pb.gz"
        path.write_bytes(data)
        views = {
            "cpu": [("flat", ["-top"]), ("cum", ["-top", "-cum"])],
            "allocs": [("alloc_space", ["-top", "-sample_index=alloc_space"])],
        }[kind]
        for view, flags in views if go else []:
            out = subprocess.run(
                [go, "tool", "pprof", *flags, "-nodecount=22", str(path)],
                capture_output=True,
                text=True,
                check=False,
            )
            tops[f"{kind} {view}"] = (out.stdout or out.stderr).strip()
    return tops


#: where a session's CPU goes: (what, pprof function, flat or cum)
ATTRIBUTION: tuple[tuple[str, str, str], ...] = (
    ("all of caddy's CPU", "", "total"),
    ("accepting (TCPListener.Accept)", "net.(*TCPListener).Accept", "cum"),
    ("layer4 connection setup (WrapConnection)", "layer4.WrapConnection", "cum"),
    ("dialing the upstream + PROXY header (dialPeers)", "l4proxy.(*Handler).dialPeers", "cum"),
    ("upstream → client copy (proxy.func1, io.Copy)", "l4proxy.(*Handler).proxy.func1", "cum"),
    ("client → upstream copy (proxy.func2, tee)", "l4proxy.(*Handler).proxy.func2", "cum"),
    ("closing sockets (netFD.Close)", "net.(*netFD).Close", "cum"),
    ("all syscalls (kernel side, flat)", "internal/runtime/syscall/linux.Syscall6", "flat"),
    ("garbage collector (gcBgMarkWorker)", "runtime.gcBgMarkWorker", "cum"),
    ("malloc (mallocgc)", "runtime.mallocgc", "cum"),
    ("scheduler (runtime.schedule)", "runtime.schedule", "cum"),
)


def _ms(text: str) -> float:
    for unit, scale in (("ms", 1.0), ("us", 0.001), ("µs", 0.001), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * scale
    return float(text)


def attribution(top_cum: str, sessions: int) -> list[str]:
    """Table rows: CPU µs per session for the functions of ATTRIBUTION."""
    total = 0.0
    rows: dict[str, tuple[float, float]] = {}
    for line in top_cum.splitlines():
        if "Total samples" in line:
            total = _ms(line.split("Total samples = ")[1].split()[0])
        parts = line.split()
        if len(parts) >= 6 and parts[1].endswith("%") and parts[4].endswith("%"):
            rows[" ".join(parts[5:])] = (_ms(parts[0]), _ms(parts[3]))
    out = [
        "| where | CPU per session (µs) | share of caddy's CPU |",
        "| --- | ---: | ---: |",
    ]
    for what, func, kind in ATTRIBUTION:
        if kind == "total":
            ms = total
        else:
            found = [v for name, v in rows.items() if name.endswith(func)]
            ms = (found[0][0] if kind == "flat" else found[0][1]) if found else 0.0
        share = ms / total if total else float("nan")
        out.append(f"| {what} | {1000 * ms / sessions:.1f} | {share:.0%} |")
    return out


# ---------------------------------------------------------------- held connections


def hold_run(targets: list[Target]) -> dict[str, tuple[list[float], float, int]]:
    """HOLD_CONNS clients per path open a session, read the 220 and hold it (at least
    HOLD_SECONDS, on every path at once) while RATE_CLIENTS others run sessions, the
    paths interleaved in ROUNDS rounds. Per path: (sessions/s per round, KiB of the
    proxy's RSS per held connection, connections held)."""

    async def main() -> dict[str, tuple[list[float], float, int]]:
        held: dict[str, list[asyncio.StreamWriter]] = {t.name: [] for t in targets}
        before = {t.name: rss_kib(t.pid) for t in targets if t.pid}

        async def hold(k: int, t: Target, i: int) -> None:
            source = f"127.{10 + k}.{i // 250}.{i % 250 + 1}"
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(t.host, t.port, local_addr=(source, 0)), TIMEOUT
            )
            line = await asyncio.wait_for(reader.readline(), TIMEOUT)
            if not line.startswith(b"220"):
                raise ConnectionError(f"held session on {t.name} got {line!r}")
            held[t.name].append(writer)

        t0 = time.monotonic()
        for k, t in enumerate(targets):
            await asyncio.gather(*(hold(k, t, i) for i in range(HOLD_CONNS)))
        await asyncio.sleep(0.5)
        per_conn = {
            t.name: (rss_kib(t.pid) - before[t.name]) / len(held[t.name]) for t in targets if t.pid
        }
        rates: dict[str, list[float]] = {t.name: [] for t in targets}
        for _ in range(ROUNDS):
            for t in targets:
                left = HOLD_RATE_SESSIONS // ROUNDS

                async def worker(i: int, t: Target = t) -> None:
                    nonlocal left
                    while left > 0:
                        left -= 1
                        await _async_session(t.host, t.port, f"127.0.1.{i + 1}")

                t1 = time.perf_counter()
                await asyncio.gather(*(worker(i) for i in range(RATE_CLIENTS)))
                rates[t.name].append((HOLD_RATE_SESSIONS // ROUNDS) / (time.perf_counter() - t1))
        await asyncio.sleep(max(0.0, HOLD_SECONDS - (time.monotonic() - t0)))
        writers = [w for ws in held.values() for w in ws]
        for w in writers:
            w.close()
        await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)
        return {
            t.name: (rates[t.name], per_conn.get(t.name, float("nan")), len(held[t.name]))
            for t in targets
        }

    return asyncio.run(main())


# ---------------------------------------------------------------- the run


@dataclass
class Target:
    name: str
    host: str
    port: int
    pid: int | None = None  # the proxy process (None: direct to the upstream)


@dataclass
class Samples:
    lat: list[list[float]] = field(default_factory=list)  # per round, ms
    rate: list[float] = field(default_factory=list)
    rate_many: list[float] = field(default_factory=list)
    mbps: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    cpu_sessions: int = 0
    perf: PerfStat = field(default_factory=PerfStat)
    hold: tuple[float, float, int] | None = None
    hold_rates: list[float] = field(default_factory=list)

    def all_lat(self) -> list[float]:
        return sorted(x for r in self.lat for x in r)

    def median(self) -> float:
        return statistics.median(self.all_lat())

    def p99(self) -> float:
        t = self.all_lat()
        return t[max(0, int(len(t) * 0.99) - 1)]

    def cpu_ms(self) -> float:
        """CPU ms per session of the 32-client rounds: perf's task-clock where perf
        counts, else /proc's user + system time (10 ms ticks)."""
        if not self.cpu_sessions:
            return float("nan")
        if "task-clock" in self.perf.totals:
            return self.perf.totals["task-clock"] / self.cpu_sessions
        return 1000 * self.cpu_s / self.cpu_sessions


def measure(targets: list[Target], *, full: bool) -> dict[str, Samples]:
    """Every metric for every path, interleaved: round r measures each path in turn."""
    out = {t.name: Samples() for t in targets}
    for t in targets:
        for _ in range(WARMUP_SESSIONS):
            session(t.host, t.port)
    if full:
        print(
            f"holding {HOLD_CONNS} sessions on every path, {RATE_CLIENTS} clients beside …",
            file=sys.stderr,
            flush=True,
        )
        for name, (rates, per_conn, count) in hold_run(targets).items():
            out[name].hold_rates = rates
            out[name].hold = (statistics.median(rates), per_conn, count)
    for r in range(ROUNDS):
        print(f"round {r + 1}/{ROUNDS} …", file=sys.stderr, flush=True)
        for t in targets:
            out[t.name].lat.append(latency_samples(t.host, t.port, LATENCY_SESSIONS // ROUNDS))
        for t in targets:
            s = out[t.name]
            n = RATE_SESSIONS // ROUNDS
            if t.pid:
                s.perf.start(t.pid)
                c0 = cpu_seconds(t.pid)
            s.rate.append(conn_rate(t.host, t.port, n, RATE_CLIENTS))
            if t.pid:
                s.cpu_s += cpu_seconds(t.pid) - c0
                s.cpu_sessions += n
                s.perf.stop()
        if full:
            for t in targets:
                n = RATE_SESSIONS // ROUNDS
                out[t.name].rate_many.append(conn_rate(t.host, t.port, n, MANY_CLIENTS))
        if r < DATA_RUNS:
            for t in targets:
                out[t.name].mbps.append(data_throughput(t.host, t.port))
    return out


@dataclass
class EdgeVariant:
    name: str
    what: str
    env: dict[str, str | None]
    config: dict[str, Any]


def edge_variants(layout: EdgeLayout, *, all_candidates: bool) -> list[EdgeVariant]:
    """The edge as landed (no tuning), each tuning candidate alone, and the shipped edge."""
    shipped = caddy_config(layout)
    landed = {k: v for k, v in shipped.items() if k != "logging"}
    untuned_env: dict[str, str | None] = {name: None for name in RUNTIME_ENV}
    out = [EdgeVariant("edge (as landed)", "no tuning", untuned_env, landed)]
    if all_candidates:
        for name, value in CANDIDATE_ENV:
            out.append(
                EdgeVariant(
                    f"edge {name}={value}",
                    f"`{name}={value}` alone",
                    {**untuned_env, name: value},
                    landed,
                )
            )
        # the layer4 loggers at ERROR into a discarding sink; the default log keeps INFO
        # (RunningEdge waits for its "serving initial configuration" line)
        quiet = {
            **landed,
            "logging": {
                "logs": {
                    "default": {"exclude": ["layer4"]},
                    "layer4": {
                        "level": "ERROR",
                        "include": ["layer4"],
                        "writer": {"output": "discard"},
                    },
                }
            },
        }
        out.append(
            EdgeVariant("edge log=ERROR", "layer4 logs at ERROR, discarded", untuned_env, quiet)
        )
    out.append(EdgeVariant("edge (shipped)", "render.py + unit/run.py as committed", {}, shipped))
    return out


def run_pass(built: Any, *, pin: bool, full: bool, profile_dir: Path) -> dict[str, Any]:
    """Start upstream, HAProxy and every edge variant; measure; stop everything."""
    cpus = sorted(os.sched_getaffinity(0))
    if pin:
        os.sched_setaffinity(0, {cpus[-1]})  # proxies start on the last CPU
    work = short_tempdir("tailwart-bench-")
    ctx = mp.get_context("spawn")
    ports: Any = ctx.Queue()
    stop = ctx.Event()
    procs: list[Any] = []
    upstream = ctx.Process(target=_serve_upstream, args=(ports, stop), daemon=True)
    edges: list[RunningEdge] = []
    try:
        haproxy_port = free_port(EDGE_HOST)
        layouts: list[tuple[EdgeVariant, EdgeLayout]] = []
        if pin:  # the upstream runs beside the clients
            os.sched_setaffinity(0, {cpus[0]})
        upstream.start()
        if pin:
            os.sched_setaffinity(0, {cpus[-1]})
        plain_port, proxy_port = ports.get(timeout=30)
        base = EdgeLayout(
            upstream_host=UPSTREAM_HOST,
            listen_host=EDGE_HOST,
            listen={port: free_port(EDGE_HOST) for _, port in MAIL_PORTS},
            upstream={port: proxy_port for _, port in MAIL_PORTS},
            admin_socket=str(work / "admin0.sock"),
        )
        for i, variant in enumerate(edge_variants(base, all_candidates=full and not pin)):
            layout = replace(
                base,
                listen={port: free_port(EDGE_HOST) for _, port in MAIL_PORTS},
                admin_socket=str(work / f"admin{i}.sock"),
            )
            variant.config = {
                **variant.config,
                "admin": {"listen": f"unix/{layout.admin_socket}"},
                "apps": caddy_config(layout)["apps"],
            }
            layouts.append((variant, layout))
        haproxy = _haproxy(haproxy_port, proxy_port, work)
        procs.append(haproxy)
        targets = [Target("direct", UPSTREAM_HOST, plain_port)]
        for i, (variant, layout) in enumerate(layouts):
            edge = RunningEdge(
                built.path,
                layout,
                work / f"edge{i}",
                env=variant.env,
                config_text=json.dumps(variant.config, indent=2, sort_keys=True) + "\n",
            )
            edges.append(edge)
            edge.start()
            assert edge.proc is not None
            targets.append(Target(variant.name, EDGE_HOST, layout.listen_port(25), edge.proc.pid))
        targets.append(Target("HAProxy", EDGE_HOST, haproxy_port, haproxy.pid))
        if pin:
            os.sched_setaffinity(0, {cpus[0]})  # clients beside the upstream
        load_before = _loadavg()
        samples = measure(targets, full=full)
        profiles: dict[str, str] = {}
        if full:
            shipped = next(i for i, t in enumerate(targets) if t.name == "edge (shipped)")
            print("profiling the shipped edge …", file=sys.stderr, flush=True)
            profiles = profile_edge(
                targets[shipped],
                layouts[shipped - 1][1].admin_socket,
                profile_dir,
            )
        load_after = _loadavg()
    finally:
        os.sched_setaffinity(0, set(cpus))
        for edge in edges:
            edge.stop()
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        stop.set()
        proxied, bad = ports.get(timeout=30) if upstream.pid is not None else (0, 0)
        upstream.join(10)
        shutil.rmtree(work, ignore_errors=True)
    if bad:
        raise SystemExit(f"the upstream refused {bad} connections without a valid PROXY v2 header")
    return {
        "targets": targets,
        "samples": samples,
        "profiles": profiles,
        "load": (load_before, load_after),
        "proxied": proxied,
        "variants": {v.name: v.what for v, _ in layouts},
    }


# ---------------------------------------------------------------- report


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} × {cpu}, Linux {platform.release()}, Python {platform.python_version()}"
    )


def haproxy_version() -> str:
    out = subprocess.run(
        [_haproxy_binary(), "-v"], capture_output=True, text=True, check=False
    ).stdout
    return out.split(" - ")[0].replace("HAProxy version ", "HAProxy ").strip()


def _loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def _spread(values: list[float], f: str) -> str:
    return f"{f.format(min(values))}–{f.format(max(values))}" if values else "–"


def main_table(s: dict[str, Samples], edge: str) -> list[str]:
    d, e, h, u = s["direct"], s[edge], s["HAProxy"], s["edge (as landed)"]

    def med(x: Samples, attr: str) -> float:
        values: list[float] = getattr(x, attr)
        return statistics.median(values) if values else float("nan")

    rows: list[tuple[str, Any, str, bool]] = [
        ("session latency, median (ms)", Samples.median, "{:.3f}", True),
        ("session latency, p99 (ms)", Samples.p99, "{:.3f}", True),
        (
            f"sessions/s, {RATE_CLIENTS} concurrent clients",
            lambda x: med(x, "rate"),
            "{:.0f}",
            True,
        ),
        (
            f"sessions/s, {MANY_CLIENTS} concurrent clients",
            lambda x: med(x, "rate_many"),
            "{:.0f}",
            True,
        ),
        (
            f"sessions/s, {RATE_CLIENTS} clients while {HOLD_CONNS} sessions are held",
            lambda x: x.hold[0] if x.hold else float("nan"),
            "{:.0f}",
            True,
        ),
        (f"DATA throughput, {DATA_MB} MB (MB/s)", lambda x: med(x, "mbps"), "{:.0f}", True),
        ("proxy CPU per session (ms, 32 clients)", Samples.cpu_ms, "{:.3f}", False),
        (
            "proxy RSS per held connection (KiB)",
            lambda x: x.hold[1] if x.hold else float("nan"),
            "{:.1f}",
            False,
        ),
    ]
    out = [
        "| metric | direct | edge (shipped) | HAProxy | edge (as landed) | edge/direct "
        "| edge/HAProxy | as landed/HAProxy |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, get, f, with_direct in rows:
        dv, ev, hv, uv = get(d), get(e), get(h), get(u)
        dcol = f.format(dv) if with_direct else "–"
        ed = f"{ev / dv:.2f}" if with_direct else "–"
        out.append(
            f"| {name} | {dcol} | {f.format(ev)} | {f.format(hv)} | {f.format(uv)} | {ed} | "
            f"{ev / hv:.2f} | {uv / hv:.2f} |"
        )
    return out


def goals(s: dict[str, Samples]) -> list[str]:
    e, h, d = s["edge (shipped)"], s["HAProxy"], s["direct"]
    checks = [
        ("median latency ≤ 1.10× HAProxy", e.median() / h.median(), lambda r: r <= 1.10),
        ("p99 latency ≤ 1.25× HAProxy", e.p99() / h.p99(), lambda r: r <= 1.25),
        (
            "sessions/s (32 clients) ≥ 0.90× HAProxy",
            statistics.median(e.rate) / statistics.median(h.rate),
            lambda r: r >= 0.90,
        ),
        (
            "DATA throughput ≥ 0.95× direct",
            statistics.median(e.mbps) / statistics.median(d.mbps),
            lambda r: r >= 0.95,
        ),
    ]
    return [
        f"- {name}: {ratio:.2f} — {'met' if ok(ratio) else 'NOT met'}" for name, ratio, ok in checks
    ]


def spread_table(s: dict[str, Samples]) -> list[str]:
    out = [
        f"| path | latency median per round (ms) | p99 per round (ms) | sessions/s per round "
        f"({RATE_CLIENTS} clients) | sessions/s per round ({MANY_CLIENTS} clients) "
        f"| sessions/s per round ({HOLD_CONNS} held) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, x in s.items():
        meds = [statistics.median(r) for r in x.lat]
        p99s = [sorted(r)[max(0, int(len(r) * 0.99) - 1)] for r in x.lat]
        out.append(
            f"| {name} | {_spread(meds, '{:.3f}')} | {_spread(p99s, '{:.3f}')} | "
            f"{_spread(x.rate, '{:.0f}')} | {_spread(x.rate_many, '{:.0f}')} | "
            f"{_spread(x.hold_rates, '{:.0f}')} |"
        )
    return out


def candidates_table(s: dict[str, Samples], what: dict[str, str]) -> list[str]:
    base = s["edge (as landed)"]

    def cell(value: float, ref: float, f: str) -> str:
        return f"{f.format(value)} ({value / ref:.2f})"

    def med(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    nan = float("nan")
    out = [
        "Each cell: the figure (its ratio to the edge as landed, same run).",
        "",
        f"| edge variant | what | median (ms) | p99 (ms) | sessions/s ({RATE_CLIENTS}) | "
        f"sessions/s ({MANY_CLIENTS}) | sessions/s ({HOLD_CONNS} held) | MB/s "
        "| CPU/session (ms) | RSS per held connection (KiB) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, x in s.items():
        if not name.startswith("edge"):
            continue
        out.append(
            f"| {name} | {what.get(name, '')} | {cell(x.median(), base.median(), '{:.3f}')} | "
            f"{cell(x.p99(), base.p99(), '{:.3f}')} | "
            f"{cell(med(x.rate), med(base.rate), '{:.0f}')} | "
            f"{cell(med(x.rate_many), med(base.rate_many), '{:.0f}')} | "
            f"{cell(med(x.hold_rates), med(base.hold_rates), '{:.0f}')} | "
            f"{cell(med(x.mbps), med(base.mbps), '{:.0f}')} | "
            f"{cell(x.cpu_ms(), base.cpu_ms(), '{:.3f}')} | "
            f"{cell(x.hold[1] if x.hold else nan, base.hold[1] if base.hold else nan, '{:.1f}')} |"
        )
    return out


def perf_table(s: dict[str, Samples]) -> list[str]:
    out = [
        "| proxy | task-clock per session (ms) | context switches per session "
        "| CPU migrations per session |",
        "| --- | ---: | ---: | ---: |",
    ]
    unsupported: set[str] = set()
    for name, x in s.items():
        if not x.cpu_sessions or not x.perf.totals:
            continue
        t, n = x.perf.totals, x.cpu_sessions
        unsupported |= x.perf.unsupported
        out.append(
            f"| {name} | {t.get('task-clock', float('nan')) / n:.3f} | "
            f"{t.get('context-switches', float('nan')) / n:.2f} | "
            f"{t.get('cpu-migrations', float('nan')) / n:.3f} |"
        )
    if unsupported:
        out += [
            "",
            f"`perf stat` reports {', '.join(sorted(unsupported))} as `<not supported>`: this "
            "VM exposes no hardware performance counters, so cycles and instructions per "
            "session cannot be measured here; task-clock (CPU time) is the software "
            "equivalent.",
        ]
    return out


def pinned_table(s: dict[str, Samples]) -> list[str]:
    h = s["HAProxy"]
    out = [
        f"| path | median (ms) | p99 (ms) | sessions/s ({RATE_CLIENTS} clients) | MB/s "
        "| CPU/session (ms) | median/HAProxy | p99/HAProxy | sessions/s / HAProxy "
        "| MB/s / direct |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    direct = statistics.median(s["direct"].mbps)
    for name, x in s.items():
        r = statistics.median(x.rate)
        mb = statistics.median(x.mbps)
        out.append(
            f"| {name} | {x.median():.3f} | {x.p99():.3f} | {r:.0f} | {mb:.0f} | "
            f"{x.cpu_ms():.3f} | {x.median() / h.median():.2f} | {x.p99() / h.p99():.2f} | "
            f"{r / statistics.median(h.rate):.2f} | {mb / direct:.2f} |"
        )
    return out


def profile_section(profiles: dict[str, str]) -> list[str]:
    out = [
        f"Taken through caddy's admin endpoint (`/debug/pprof/profile` and "
        f"`/debug/pprof/allocs?seconds={PROFILE_SECONDS}` on the admin unix socket) while "
        f"{RATE_CLIENTS} clients ran {profiles.get('sessions', '?')} sessions through the "
        "shipped edge; raw profiles in `benchmarks/results/edge-profiles/` "
        "(`go tool pprof -top <file>`).",
        "",
    ]
    if "per session" in profiles:
        out += [
            "Where a session's CPU goes in caddy (from the CPU profile: the function's "
            "samples / sessions run while profiling; cumulative, so rows overlap):",
            "",
            *profiles["per session"].splitlines(),
            "",
        ]
    for key in ("cpu flat", "cpu cum", "allocs alloc_space"):
        text = profiles.get(key)
        if not text:
            continue
        lines = [ln for ln in text.splitlines() if not ln.startswith(("File:", "Build ID:"))]
        out += [f"`go tool pprof -top` ({key}):", "", "```", *lines, "```", ""]
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    global LATENCY_SESSIONS, RATE_SESSIONS, DATA_MB, DATA_RUNS, ROUNDS
    global HOLD_CONNS, HOLD_SECONDS, HOLD_RATE_SESSIONS, PROFILE_SECONDS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument("--no-pin", action="store_true", help="skip the CPU-pinned pass")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (markdown)")
    args = parser.parse_args(argv)
    if args.quick:
        LATENCY_SESSIONS, RATE_SESSIONS, DATA_MB, DATA_RUNS, ROUNDS = 60, 300, 10, 1, 3
        HOLD_CONNS, HOLD_SECONDS, HOLD_RATE_SESSIONS, PROFILE_SECONDS = 100, 2.0, 200, 2
    built = ensure_caddy(*_host_target(), progress=lambda m: print(m, file=sys.stderr))
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    profile_dir = args.out.parent / "edge-profiles"
    main_pass = run_pass(built, pin=False, full=True, profile_dir=profile_dir)
    pinned = None
    if not args.no_pin and len(os.sched_getaffinity(0)) >= 2:
        print("CPU-pinned pass …", file=sys.stderr, flush=True)
        pinned = run_pass(built, pin=True, full=False, profile_dir=profile_dir)
    s: dict[str, Samples] = main_pass["samples"]
    env = " ".join(f"`{k}={v}`" for k, v in RUNTIME_ENV.items()) or "none"
    lines = [
        "# Edge benchmark: caddy-l4 vs direct vs HAProxy (loopback)",
        "",
        f"- machine: {machine()}",
        f"- edge: caddy {built.version} + caddy-l4 {built.pins.caddy_l4} "
        f"(`{built.path.name}`, sha256 {built.sha256[:16]}…), config from "
        f"tailwart.edge.render; shipped runtime environment: {env}",
        f"- peer: {haproxy_version()} (Debian package), `send-proxy-v2`, default threads",
        "- upstream: a lean asyncio SMTP responder in its own process; its PROXY listener "
        "refuses connections without a valid PROXY v2 header "
        f"({main_pass['proxied']} headers checked, none refused)",
        f"- latency: {LATENCY_SESSIONS} sequential sessions (connect → 220 → EHLO → QUIT) "
        f"after {WARMUP_SESSIONS} warm-up; rate: {RATE_SESSIONS} sessions over "
        f"{RATE_CLIENTS} and over {MANY_CLIENTS} concurrent asyncio clients; throughput: "
        f"{DATA_MB} MB DATA, median of {DATA_RUNS}; every path interleaved in {ROUNDS} rounds "
        "so background load hits all alike",
        f"- held sessions: on every path at once, {HOLD_CONNS} clients each open a session, "
        f"read the 220 and hold it (≥ {HOLD_SECONDS:.0f} s) while {RATE_CLIENTS} others run "
        f"{HOLD_RATE_SESSIONS} sessions per path, interleaved in {ROUNDS} rounds; memory per "
        "held connection = the proxy's RSS delta / held connections",
        f"- load average (1 min) before/after: {main_pass['load'][0]} / {main_pass['load'][1]}"
        + (f" (pinned pass: {pinned['load'][0]} / {pinned['load'][1]})" if pinned else ""),
        f"- run: {started}, `python benchmarks/bench_edge.py` (or `nox -s bench -- edge`)",
        "- what caddy-l4 itself costs, a minimal reproduction and the change that would fix "
        "it: `benchmarks/results/edge-caddy-l4.md` (`benchmarks/repro_l4_copy.py`)",
        "",
        "## Side by side (unpinned: clients, upstream and proxy share both cores)",
        "",
        *main_table(s, "edge (shipped)"),
        "",
        "Ratios: latency, CPU and memory > 1 mean worse than the baseline; rates and "
        "throughput > 1 mean better.",
        "",
        "Goals of issue 16 (shipped edge):",
        "",
        *goals(s),
        "",
        "## Spread of the interleaved rounds (min–max of the per-round figures)",
        "",
        *spread_table(s),
        "",
        "## Tuning candidates, each alone against the edge as landed (same run)",
        "",
        *candidates_table(s, main_pass["variants"]),
        "",
        "## perf stat during the 32-client rounds",
        "",
        *perf_table(s),
        "",
    ]
    if pinned:
        cpus = sorted(os.sched_getaffinity(0))
        lines += [
            f"## CPU-pinned pass (taskset-style affinity: proxies on CPU {cpus[-1]}, clients "
            f"and upstream on CPU {cpus[0]})",
            "",
            "Each proxy gets one whole core to itself and the load generator the other, so "
            "neither proxy's threads compete with the Python clients; Go sizes GOMAXPROCS and "
            "HAProxy its thread count from the affinity (1 each).",
            "",
            *pinned_table(pinned["samples"]),
            "",
            "Goals of issue 16 in the pinned pass (shipped edge):",
            "",
            *goals(pinned["samples"]),
            "",
        ]
    if main_pass["profiles"]:
        lines += ["## Profiles of the shipped edge", "", *profile_section(main_pass["profiles"])]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
