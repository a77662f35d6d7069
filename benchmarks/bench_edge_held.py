"""Held-session benchmark: 5,000 / 10,000 / 20,000 idle IMAP sessions through the edge.

Paths, one after the other in one run: direct to the upstream, the edge with the stock
caddy-l4, the edge with the patched caddy-l4 (what ``inv build-caddy`` ships), the
patched edge with a runtime setting under test, and HAProxy (``send-proxy-v2``).

Every held session reads the IMAP greeting, then idles with a slow keepalive (``NOOP``
every KEEPALIVE seconds at a random phase, as an IDLE client re-issues IDLE). At each
level: the proxy's RSS and RSS per held connection, its file descriptors, its CPU while
the sessions idle, the kernel's slab growth per held connection (system-wide, so noisy),
and the latency of new sessions made while the others are held (median and p99 against
the same path's unloaded median). Then a short side-by-side pass (bench_edge.py's SMTP
measurements) gives latency, sessions/s and DATA throughput for the same binaries.

The held sessions live in their own process (so the prober measures the proxy, not a
busy client loop); each path dials from its own 127.x source addresses and its own
upstream port, so ephemeral ports and TIME_WAIT never run out. RLIMIT_NOFILE is raised
for this process and its children. Prints ratios against the baselines measured in the
same run and writes ``benchmarks/results/edge-held.md``; nothing here is a timed
assertion.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import random
import resource
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_edge import (  # noqa: E402
    _haproxy,
    _serve_upstream,
    conn_rate,
    cpu_seconds,
    data_throughput,
    haproxy_config,
    haproxy_version,
    latency_samples,
    machine,
    rss_kib,
)

from tailwart.edge.build import ModulePatch, _host_target, ensure_caddy, load_patch  # noqa: E402
from tailwart.edge.render import MAIL_PORTS, RUNTIME_ENV, EdgeLayout, caddy_config  # noqa: E402
from tailwart.edge.run import RunningEdge, short_tempdir  # noqa: E402
from tailwart.testing.standin import V2_SIGNATURE, free_port  # noqa: E402

EDGE_HOST = "127.0.0.1"
UPSTREAM_HOST = "127.0.0.2"
PROBE_SOURCE = "127.0.0.70"
#: the issue's levels; used when RLIMIT_NOFILE allows them (6 fds per session + slack)
LEVELS: tuple[int, ...] = (5000, 10000, 20000)
#: the levels used when this process cannot raise its hard RLIMIT_NOFILE that far
SMALL_LEVELS: tuple[int, ...] = (2500, 5000, 9500)
#: held sessions per holder process, upstream worker processes (SO_REUSEPORT)
HOLDER_MAX = 6000
UPSTREAM_WORKERS = 4
KEEPALIVE = 240.0
IDLE_WINDOW = 10.0
PROBES = 400
OPEN_CONCURRENCY = 200
TIMEOUT = 30.0
NOFILE = 1 << 20
#: side-by-side pass (SMTP, bench_edge.py's measurements), paths interleaved per round
SBS_ROUNDS = 5
SBS_LATENCY = 1000
SBS_RATE = 3500
SBS_DATA_RUNS = 3
RESULTS = ROOT / "benchmarks" / "results" / "edge-held.md"
SHIPPED = "edge patched (shipped)"
#: runtime setting measured on its own on top of the patched edge
CANDIDATE = ("GOGC", "50")
#: the other patch measured beside the pinned one: Connection.ReadFrom/WriteTo handed to
#: *net.TCPConn (splice on Linux); its sha256 and the h1: hash of the patched tree
SPLICE_PATCH = (
    "caddy-l4-v0.1.2-splice.patch",
    "d4406f008dd211f754acdca336cd74882a95f2a9a203c374e6b31124e38bcca1",
    "h1:AWoqEuI6XKC42wiuY7+lnoWQ4CQaxwAqAfbaaqK/WGw=",
)


# ---------------------------------------------------------------- upstream (own process)


class _Imap(asyncio.Protocol):
    """Greets after the PROXY v2 header (or at once), answers NOOP and LOGOUT."""

    def __init__(self, need_proxy: bool, stats: dict[str, int]) -> None:
        self.need_proxy = need_proxy
        self.stats = stats
        self.buf = b""
        self.t: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.t = transport
        if not self.need_proxy:
            transport.write(b"* OK [CAPABILITY IMAP4rev1 IDLE] bench ready\r\n")

    def data_received(self, data: bytes) -> None:
        assert self.t is not None
        self.buf += data
        if self.need_proxy:
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
            self.buf = self.buf[16 + length :]
            self.t.write(b"* OK [CAPABILITY IMAP4rev1 IDLE] bench ready\r\n")
        while b"\r\n" in self.buf:
            line, self.buf = self.buf.split(b"\r\n", 1)
            tag, _, verb = line.partition(b" ")
            verb = verb.strip().upper()
            if verb == b"NOOP":
                self.t.write(tag + b" OK NOOP completed\r\n")
            elif verb == b"LOGOUT":
                self.t.write(b"* BYE\r\n" + tag + b" OK LOGOUT completed\r\n")
                self.t.close()
                return
            else:
                self.t.write(tag + b" BAD unknown\r\n")


def raise_nofile() -> int:
    """RLIMIT_NOFILE as high as this process may set it (NOFILE, else its hard limit)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _serve_imap(plain: int, proxied: list[int], ready: Any, stop: Any) -> None:
    """A plain listener and PROXY-v2 listeners (one per proxied path), shared with the
    other workers through SO_REUSEPORT."""
    raise_nofile()

    async def main() -> None:
        stats = {"proxy": 0, "bad_proxy": 0}
        loop = asyncio.get_running_loop()
        servers = [
            await loop.create_server(
                lambda: _Imap(False, stats), UPSTREAM_HOST, plain, backlog=4096, reuse_port=True
            )
        ]
        for port in proxied:
            servers.append(
                await loop.create_server(
                    lambda: _Imap(True, stats), UPSTREAM_HOST, port, backlog=4096, reuse_port=True
                )
            )
        ready.put(True)
        while not stop.is_set():
            await asyncio.sleep(0.2)
        ready.put((stats["proxy"], stats["bad_proxy"]))

    asyncio.run(main())


# ---------------------------------------------------------------- holder (own process)


def _holder(cmds: Any, host: str, port: int, net: int, offset: int, keepalive: float) -> None:
    """Holds sessions on ``host:port`` from 127.<net>.x.y; obeys ("grow", n), ("status",),
    ("release",) sent over ``cmds`` and answers each with a dict."""
    raise_nofile()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stats = {"opened": 0, "open_failed": 0, "noop_ok": 0, "noop_failed": 0}
        writers: list[asyncio.StreamWriter] = []
        tasks: set[asyncio.Task[None]] = set()
        handlers: set[asyncio.Task[None]] = set()
        gate = asyncio.Semaphore(OPEN_CONCURRENCY)
        done = asyncio.Event()

        async def held(i: int) -> None:
            k = offset + i
            source = f"127.{net}.{k // 200}.{k % 200 + 1}"
            try:
                async with gate:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(host, port, local_addr=(source, 0)), TIMEOUT
                    )
                    line = await asyncio.wait_for(reader.readline(), TIMEOUT)
                if not line.startswith(b"* OK"):
                    raise ConnectionError(f"greeting {line!r}")
            except (TimeoutError, OSError, ConnectionError):
                stats["open_failed"] += 1
                return
            stats["opened"] += 1
            writers.append(writer)
            await asyncio.sleep(random.uniform(0, keepalive))
            n = 0
            while True:
                n += 1
                try:
                    writer.write(b"k%d NOOP\r\n" % n)
                    reply = await asyncio.wait_for(reader.readline(), TIMEOUT)
                    ok = reply.startswith(b"k%d OK" % n)
                except (TimeoutError, OSError):
                    ok = False
                stats["noop_ok" if ok else "noop_failed"] += 1
                if not ok:
                    return
                await asyncio.sleep(keepalive)

        async def grow(total: int) -> dict[str, Any]:
            t0 = time.perf_counter()
            start = stats["opened"] + stats["open_failed"]
            for i in range(start, total):
                task = asyncio.create_task(held(i))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            while stats["opened"] + stats["open_failed"] < total:
                await asyncio.sleep(0.05)
            return {**stats, "seconds": time.perf_counter() - t0}

        async def release() -> dict[str, Any]:
            for task in list(tasks):
                task.cancel()
            for w in writers:
                w.close()
            await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)
            return dict(stats)

        async def handle(cmd: tuple[Any, ...]) -> None:
            if cmd[0] == "grow":
                cmds.send(await grow(cmd[1]))
            elif cmd[0] == "status":
                cmds.send(dict(stats))
            else:
                cmds.send(await release())
                done.set()

        def readable() -> None:
            cmd = cmds.recv()
            task = loop.create_task(handle(cmd))
            handlers.add(task)
            task.add_done_callback(handlers.discard)

        loop.add_reader(cmds.fileno(), readable)
        await done.wait()

    asyncio.run(main())


class Holders:
    """Held sessions on one path, spread over processes of at most HOLDER_MAX each (every
    process stays under its RLIMIT_NOFILE)."""

    def __init__(self, host: str, port: int, net: int) -> None:
        self.host, self.port, self.net = host, port, net
        self.procs: list[tuple[Any, Any]] = []

    def _spawn(self) -> None:
        ctx = mp.get_context("spawn")
        conn, child = ctx.Pipe()
        offset = len(self.procs) * HOLDER_MAX
        proc = ctx.Process(
            target=_holder,
            args=(child, self.host, self.port, self.net, offset, KEEPALIVE),
            daemon=True,
        )
        proc.start()
        self.procs.append((conn, proc))

    def _ask_all(self, cmds: list[tuple[Any, ...]], timeout: float = 900) -> dict[str, Any]:
        for (conn, _), cmd in zip(self.procs, cmds, strict=True):
            conn.send(cmd)
        total: dict[str, Any] = {}
        for (conn, _), cmd in zip(self.procs, cmds, strict=True):
            if not conn.poll(timeout):
                raise SystemExit(f"holder did not answer {cmd[0]} within {timeout:.0f}s")
            for key, value in conn.recv().items():
                old = total.get(key, 0)
                total[key] = max(old, value) if key == "seconds" else old + value
        return total

    def grow(self, total: int) -> dict[str, Any]:
        while len(self.procs) * HOLDER_MAX < total:
            self._spawn()
        shares = [min(HOLDER_MAX, max(0, total - j * HOLDER_MAX)) for j in range(len(self.procs))]
        return self._ask_all([("grow", n) for n in shares])

    def status(self) -> dict[str, Any]:
        return self._ask_all([("status",)] * len(self.procs))

    def close(self) -> dict[str, Any]:
        try:
            return self._ask_all([("release",)] * len(self.procs))
        finally:
            for _, proc in self.procs:
                proc.join(30)
                if proc.is_alive():
                    proc.kill()


# ---------------------------------------------------------------- probes and figures


def imap_session(host: str, port: int) -> None:
    """connect → greeting → LOGOUT → tagged OK → closed."""
    with socket.create_connection((host, port), TIMEOUT, (PROBE_SOURCE, 0)) as s:
        f = s.makefile("rb")
        if not f.readline().startswith(b"* OK"):
            raise ConnectionError("no greeting")
        s.sendall(b"a LOGOUT\r\n")
        while True:
            line = f.readline()
            if not line:
                raise ConnectionError("closed before the tagged reply")
            if line.startswith(b"a OK"):
                return


def probe(host: str, port: int, count: int) -> tuple[list[float], int]:
    """Milliseconds per sequential new session; failures counted, not timed."""
    times, failed = [], 0
    for _ in range(count):
        t0 = time.perf_counter()
        try:
            imap_session(host, port)
        except OSError:
            failed += 1
            continue
        times.append((time.perf_counter() - t0) * 1000)
    return times, failed


def p99(values: list[float]) -> float:
    s = sorted(values)
    return s[max(0, int(len(s) * 0.99) - 1)] if s else float("nan")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def pipe_count(pid: int) -> int:
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("pipe:")
    return n


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def slab_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Slab:"):
            return int(line.split()[1])
    return 0


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


@dataclass
class Level:
    held: int
    open_failed: int = 0
    open_seconds: float = 0.0
    #: why the level was not run (the proxy would exceed its RLIMIT_NOFILE)
    skipped: str = ""
    rss_kib: int = 0
    fds: int = 0
    pipes: int = 0
    threads: int = 0
    idle_cpu_pct: float = float("nan")
    slab_kib: int = 0
    lat: list[float] = field(default_factory=list)
    probe_failed: int = 0
    noop_ok: int = 0
    noop_failed: int = 0


@dataclass
class PathResult:
    name: str
    what: str
    base_rss: int = 0
    base_fds: int = 0
    base_slab: int = 0
    unloaded: list[float] = field(default_factory=list)
    levels: list[Level] = field(default_factory=list)
    released: dict[str, Any] = field(default_factory=dict)


@dataclass
class Target:
    name: str
    what: str
    host: str
    port: int
    pid: int | None
    net: int


def hold_path(t: Target, levels: tuple[int, ...], limit: int) -> PathResult:
    """Unloaded probes, then each level: grow, settle, measure. A level the proxy cannot
    hold under ``limit`` file descriptors (projected from the last level) is skipped."""
    out = PathResult(t.name, t.what)
    for _ in range(30):
        imap_session(t.host, t.port)
    out.unloaded, _ = probe(t.host, t.port, PROBES)
    if t.pid:
        out.base_rss, out.base_fds = rss_kib(t.pid), fd_count(t.pid)
    out.base_slab = slab_kib()
    holder = Holders(t.host, t.port, t.net)
    per_session = 2.0
    try:
        for level in levels:
            need = out.base_fds + per_session * level
            if t.pid and need > 0.97 * limit:
                out.levels.append(
                    Level(level, skipped=f"needs ~{need:.0f} fds, RLIMIT_NOFILE is {limit}")
                )
                continue
            print(f"  {t.name}: holding {level} …", file=sys.stderr, flush=True)
            got = holder.grow(level)
            lv = Level(level, got["open_failed"], got["seconds"])
            time.sleep(2.0)
            if t.pid:
                c0, w0 = cpu_seconds(t.pid), time.monotonic()
                time.sleep(IDLE_WINDOW)
                lv.idle_cpu_pct = 100 * (cpu_seconds(t.pid) - c0) / (time.monotonic() - w0)
                lv.rss_kib, lv.fds = rss_kib(t.pid), fd_count(t.pid)
                lv.pipes, lv.threads = pipe_count(t.pid), threads(t.pid)
                per_session = max(per_session, (lv.fds - out.base_fds) / level)
            else:
                time.sleep(IDLE_WINDOW)
            lv.slab_kib = slab_kib()
            lv.lat, lv.probe_failed = probe(t.host, t.port, PROBES)
            status = holder.status()
            lv.noop_ok, lv.noop_failed = status["noop_ok"], status["noop_failed"]
            out.levels.append(lv)
    finally:
        out.released = holder.close()
    return out


# ---------------------------------------------------------------- proxies


def haproxy_maxconn() -> int:
    """Room for the largest level, within what HAProxy's RLIMIT_NOFILE allows (2 fds per
    proxied connection; HAProxy refuses to start when maxconn cannot fit)."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return min(max(LEVELS) + 5000, (limit - 200) // 2)


def start_haproxy(listen: int, upstream: int, work: Path) -> subprocess.Popen[bytes]:
    """HAProxy as a mail edge would run it: long client/server timeouts, maxconn for the
    largest level (or what the fd limit allows)."""
    maxconn = haproxy_maxconn()
    config = haproxy_config(
        listen, upstream, frontend="imap", maxconn=maxconn, timeout="30m", defaults_maxconn=True
    )
    return _haproxy(listen, upstream, work, config)


@dataclass
class EdgeSpec:
    name: str
    what: str
    binary: Path
    env: dict[str, str | None]


def start_edge(spec: EdgeSpec, upstream_port: int, work: Path, i: int) -> RunningEdge:
    layout = EdgeLayout(
        upstream_host=UPSTREAM_HOST,
        listen_host=EDGE_HOST,
        listen={port: free_port(EDGE_HOST) for _, port in MAIL_PORTS},
        upstream={port: upstream_port for _, port in MAIL_PORTS},
        admin_socket=str(work / f"admin{i}.sock"),
    )
    config = caddy_config(layout)
    edge = RunningEdge(
        spec.binary,
        layout,
        work / f"edge{i}",
        env=spec.env,
        config_text=json.dumps(config, indent=2, sort_keys=True) + "\n",
    )
    edge.start()
    return edge


# ---------------------------------------------------------------- side by side (SMTP)


@dataclass
class Sbs:
    lat: list[float] = field(default_factory=list)
    rate: list[float] = field(default_factory=list)
    mbps: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    cpu_n: int = 0


def side_by_side(specs: list[EdgeSpec], work: Path) -> tuple[dict[str, Sbs], str]:
    """bench_edge.py's latency / sessions/s / DATA for direct, each edge and HAProxy."""
    ctx = mp.get_context("spawn")
    ports: Any = ctx.Queue()
    stop = ctx.Event()
    upstream = ctx.Process(target=_serve_upstream, args=(ports, stop), daemon=True)
    upstream.start()
    plain, proxied = ports.get(timeout=30)
    edges: list[RunningEdge] = []
    procs: list[subprocess.Popen[bytes]] = []
    try:
        targets: list[tuple[str, str, int, int | None]] = [("direct", UPSTREAM_HOST, plain, None)]
        for i, spec in enumerate(specs):
            edge = start_edge(spec, proxied, work, 100 + i)
            edges.append(edge)
            assert edge.proc is not None
            targets.append((spec.name, EDGE_HOST, edge.layout.listen_port(25), edge.proc.pid))
        hport = free_port(EDGE_HOST)
        haproxy = start_haproxy(hport, proxied, work)
        procs.append(haproxy)
        targets.append(("HAProxy", EDGE_HOST, hport, haproxy.pid))
        out = {name: Sbs() for name, *_ in targets}
        load = loadavg()
        for r in range(SBS_ROUNDS):
            print(f"side by side, round {r + 1}/{SBS_ROUNDS} …", file=sys.stderr, flush=True)
            for name, host, port, _ in targets:
                out[name].lat += latency_samples(host, port, SBS_LATENCY // SBS_ROUNDS)
            for name, host, port, pid in targets:
                c0 = cpu_seconds(pid) if pid else 0.0
                out[name].rate.append(conn_rate(host, port, SBS_RATE // SBS_ROUNDS, 32))
                if pid:
                    out[name].cpu_s += cpu_seconds(pid) - c0
                    out[name].cpu_n += SBS_RATE // SBS_ROUNDS
            if r < SBS_DATA_RUNS:
                for name, host, port, _ in targets:
                    out[name].mbps.append(data_throughput(host, port))
        return out, f"{load} / {loadavg()}"
    finally:
        for edge in edges:
            edge.stop()
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        stop.set()
        ports.get(timeout=30)
        upstream.join(10)


# ---------------------------------------------------------------- report


def fmt(value: float, f: str) -> str:
    return "–" if value != value else f.format(value)  # NaN → dash


def _per_held(r: PathResult, lv: Level) -> float:
    if r.name == "direct" or lv.skipped:
        return float("nan")
    return (lv.rss_kib - r.base_rss) / lv.held


def held_tables(results: list[PathResult]) -> list[str]:
    hap = next(r for r in results if r.name == "HAProxy")
    hap_per = {lv.held: _per_held(hap, lv) for lv in hap.levels}
    hap_med = statistics.median(hap.unloaded)
    out = [
        "| path | held | failed to open | proxy RSS (MiB) | RSS per held (KiB) | per held / "
        "HAProxy | fds (pipes) | threads | idle CPU (% of a core) | slab per held (KiB, "
        "system-wide) | new session median (ms) | p99 (ms) | max (ms) | median / own "
        "unloaded | p99 / own unloaded median | median / HAProxy unloaded | keepalives ok "
        "/ failed |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        own = statistics.median(r.unloaded)
        for lv in r.levels:
            if lv.skipped:
                out.append(f"| {r.name} | {lv.held} | skipped: {lv.skipped} |" + " |" * 14)
                continue
            proxied = r.name != "direct"
            per = _per_held(r, lv)
            med = statistics.median(lv.lat) if lv.lat else float("nan")
            top = max(lv.lat) if lv.lat else float("nan")
            out.append(
                f"| {r.name} | {lv.held} | {lv.open_failed} | "
                f"{fmt(lv.rss_kib / 1024 if proxied else float('nan'), '{:.1f}')} | "
                f"{fmt(per, '{:.1f}')} | "
                f"{fmt(per / hap_per.get(lv.held, float('nan')), '{:.2f}')} | "
                + (f"{lv.fds} ({lv.pipes}) | {lv.threads} | " if proxied else "– | – | ")
                + f"{fmt(lv.idle_cpu_pct, '{:.1f}')} | "
                f"{(lv.slab_kib - r.base_slab) / lv.held:.1f} | {med:.3f} | {p99(lv.lat):.3f} | "
                f"{top:.3f} | {med / own:.2f} | {p99(lv.lat) / own:.2f} | {med / hap_med:.2f} | "
                f"{lv.noop_ok} / {lv.noop_failed}"
                + (f" (+{lv.probe_failed} probes failed)" if lv.probe_failed else "")
                + " |"
            )
    return out


def unloaded_table(results: list[PathResult]) -> list[str]:
    out = [
        "| path | what | unloaded median (ms) | unloaded p99 (ms) | proxy RSS before (MiB) "
        "| fds before |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        out.append(
            f"| {r.name} | {r.what} | {statistics.median(r.unloaded):.3f} | "
            f"{p99(r.unloaded):.3f} | "
            + (f"{r.base_rss / 1024:.1f} | {r.base_fds} |" if r.name != "direct" else "– | – |")
        )
    return out


def sbs_table(s: dict[str, Sbs]) -> list[str]:
    h = s["HAProxy"]

    def med(v: list[float]) -> float:
        return statistics.median(v) if v else float("nan")

    out = [
        "| path | median (ms) | p99 (ms) | sessions/s (32 clients) | DATA MB/s "
        "| CPU/session (ms) | median / HAProxy | p99 / HAProxy | sessions/s / HAProxy "
        "| MB/s / HAProxy |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, x in s.items():
        cpu = 1000 * x.cpu_s / x.cpu_n if x.cpu_n else float("nan")
        out.append(
            f"| {name} | {med(x.lat):.3f} | {p99(x.lat):.3f} | {med(x.rate):.0f} | "
            f"{med(x.mbps):.0f} | {fmt(cpu, '{:.3f}')} | {med(x.lat) / med(h.lat):.2f} | "
            f"{p99(x.lat) / p99(h.lat):.2f} | {med(x.rate) / med(h.rate):.2f} | "
            f"{med(x.mbps) / med(h.mbps):.2f} |"
        )
    return out


def goals(results: list[PathResult], s: dict[str, Sbs] | None, edge: str) -> list[str]:
    hap = next(r for r in results if r.name == "HAProxy")
    e = next(r for r in results if r.name == edge)
    out = []

    def line(name: str, value: str, ok: bool) -> None:
        out.append(f"- {name}: {value} — {'met' if ok else 'NOT met'}")

    ran = [lv for lv in e.levels if not lv.skipped]
    hap_ran = {lv.held: lv for lv in hap.levels if not lv.skipped}
    both = [lv for lv in ran if lv.held in hap_ran]
    if both:
        lv = both[-1]
        per, hper = _per_held(e, lv), _per_held(hap, hap_ran[lv.held])
        line(
            f"RSS per held connection ≤ 2× HAProxy (at {lv.held}, the largest level both ran)",
            f"{per:.1f} / {hper:.1f} KiB = {per / hper:.2f}",
            per <= 2 * hper,
        )
    if s is not None:
        x, h = s[edge], s["HAProxy"]
        mb = statistics.median(x.mbps) / statistics.median(h.mbps)
        lat = statistics.median(x.lat) / statistics.median(h.lat)
        rate = statistics.median(x.rate) / statistics.median(h.rate)
        line("DATA throughput ≥ 0.95× HAProxy", f"{mb:.2f}", mb >= 0.95)
        line("median session latency ≤ 1.10× HAProxy", f"{lat:.2f}", lat <= 1.10)
        line("sessions/s ≥ 0.90× HAProxy", f"{rate:.2f}", rate >= 0.90)
    top = max(lv.held for lv in e.levels)
    if not ran or ran[-1].held != top:
        reason = next((lv.skipped for lv in e.levels if lv.skipped), "not run")
        line(f"{top} held sessions with no failure", f"not measured here ({reason})", False)
    if ran:
        lv = ran[-1]
        own = statistics.median(e.unloaded)
        slowest = max(lv.lat) if lv.lat else float("nan")
        failures = lv.open_failed + lv.probe_failed + lv.noop_failed
        line(
            f"{lv.held} held sessions (largest level run): no failure, no new session slower "
            "than 2× its unloaded median",
            f"{failures} failures; slowest new session {slowest:.3f} ms = "
            f"{slowest / own:.2f}× the unloaded median {own:.3f} ms (p99 "
            f"{p99(lv.lat) / own:.2f}×, median {statistics.median(lv.lat) / own:.2f}×)",
            failures == 0 and slowest <= 2 * own,
        )
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    global IDLE_WINDOW, PROBES, SBS_ROUNDS, SBS_LATENCY, SBS_RATE, SBS_DATA_RUNS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument("--no-sbs", action="store_true", help="skip the side-by-side pass")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (markdown)")
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = raise_nofile()
    levels = LEVELS if limit >= 6 * max(LEVELS) + 1000 else SMALL_LEVELS
    if args.quick:
        levels, IDLE_WINDOW, PROBES = (300, 600), 2.0, 50
        SBS_ROUNDS, SBS_LATENCY, SBS_RATE, SBS_DATA_RUNS = 2, 100, 300, 1
    host = _host_target()
    say = lambda m: print(m, file=sys.stderr)  # noqa: E731
    pinned = load_patch()
    if pinned is None:
        raise SystemExit("caddy/pins.toml pins no caddy-l4 patch: nothing to compare")
    name, sha, tree = SPLICE_PATCH
    splice_patch = ModulePatch(ROOT / "caddy" / "patches" / name, sha, pinned.module_sum, tree)
    patched = ensure_caddy(*host, progress=say)
    stock = ensure_caddy(*host, patch=None, progress=say)
    splice = ensure_caddy(*host, patch=splice_patch, progress=say)
    runtime = " ".join(f"{k}={v}" for k, v in RUNTIME_ENV.items())
    specs = [
        EdgeSpec("edge stock", f"caddy-l4 v0.1.2 as published, {runtime}", stock.path, {}),
        EdgeSpec("edge splice", f"`{name}`, {runtime}", splice.path, {}),
        EdgeSpec(SHIPPED, f"`{pinned.path.name}` (pinned), {runtime}", patched.path, {}),
        EdgeSpec(
            f"edge patched {CANDIDATE[0]}={CANDIDATE[1]}",
            f"`{pinned.path.name}`, {runtime}, `{CANDIDATE[0]}={CANDIDATE[1]}`",
            patched.path,
            {CANDIDATE[0]: CANDIDATE[1]},
        ),
    ]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = loadavg()
    work = short_tempdir("tailwart-held-")
    ctx = mp.get_context("spawn")
    queue: Any = ctx.Queue()
    stop = ctx.Event()
    up_ports = [free_port(UPSTREAM_HOST) for _ in range(len(specs) + 2)]
    workers = [
        ctx.Process(target=_serve_imap, args=(up_ports[0], up_ports[1:], queue, stop), daemon=True)
        for _ in range(UPSTREAM_WORKERS)
    ]
    for w in workers:
        w.start()
    for _ in workers:
        queue.get(timeout=30)
    results: list[PathResult] = []
    proxied = bad = 0
    sbs: dict[str, Sbs] | None = None
    sbs_load = ""
    try:
        direct = Target("direct", "to the upstream", UPSTREAM_HOST, up_ports[0], None, 20)
        results.append(hold_path(direct, levels, limit))
        for i, spec in enumerate(specs):
            edge = start_edge(spec, up_ports[1 + i], work, i)
            try:
                assert edge.proc is not None
                port = edge.layout.listen_port(143)
                t = Target(spec.name, spec.what, EDGE_HOST, port, edge.proc.pid, 21 + i)
                results.append(hold_path(t, levels, limit))
            finally:
                edge.stop()
        hport = free_port(EDGE_HOST)
        haproxy = start_haproxy(hport, up_ports[-1], work)
        try:
            what = "send-proxy-v2, timeouts 30m"
            t = Target("HAProxy", what, EDGE_HOST, hport, haproxy.pid, 21 + len(specs))
            results.append(hold_path(t, levels, limit))
        finally:
            haproxy.terminate()
            haproxy.wait(10)
        load_held = loadavg()
        if not args.no_sbs:
            sbs, sbs_load = side_by_side(specs[:3], work)
    finally:
        stop.set()
        for _ in workers:
            got = queue.get(timeout=30)
            proxied, bad = proxied + got[0], bad + got[1]
        for w in workers:
            w.join(10)
        shutil.rmtree(work, ignore_errors=True)
    if bad:
        raise SystemExit(f"the upstream refused {bad} connections without a valid PROXY v2 header")
    lines = [
        "# Held sessions through the edge: caddy-l4 stock vs patched vs HAProxy vs direct",
        "",
        f"- machine: {machine()}; RLIMIT_NOFILE {soft}/{hard} (soft/hard) at start, "
        f"{limit} for this run and its children"
        + (
            ""
            if levels == LEVELS
            else f" (the hard limit cannot be raised here: no CAP_SYS_RESOURCE; so the levels "
            f"are {', '.join(map(str, levels))} instead of {', '.join(map(str, LEVELS))}; each "
            "proxied session needs 2 fds in the proxy, 6 in the patched edge)"
        ),
        f"- edge: caddy {patched.version} + caddy-l4 {patched.pins.caddy_l4}; stock "
        f"`{stock.path.name}` (sha256 {stock.sha256[:16]}…), splice `{splice.path.name}` "
        f"(sha256 {splice.sha256[:16]}…), shipped `{patched.path.name}` "
        f"(sha256 {patched.sha256[:16]}…, {pinned.path.name}); "
        f"config from tailwart.edge.render, runtime {runtime}",
        f"- peer: {haproxy_version()}, `send-proxy-v2`, `timeout client/server 30m`, "
        f"maxconn {haproxy_maxconn()}",
        "- upstream: an asyncio IMAP responder in its own process (greeting, NOOP, LOGOUT); "
        f"its PROXY listeners refuse a connection without a valid PROXY v2 header "
        f"({proxied} headers checked, none refused)",
        f"- held sessions: opened {OPEN_CONCURRENCY} at a time from a separate process, each "
        f"reads the greeting, then sends `NOOP` every {KEEPALIVE:.0f} s at a random phase "
        "(an IDLE client re-issues IDLE every 29 min; the period is shortened to the run's "
        f"length); levels {', '.join(map(str, levels))}, grown on one proxy process per path; "
        f"holders of ≤ {HOLDER_MAX} sessions per process, {UPSTREAM_WORKERS} upstream "
        "processes sharing the ports (SO_REUSEPORT)",
        f"- at each level, after 2 s settling: idle CPU over {IDLE_WINDOW:.0f} s (/proc "
        f"user+system), RSS and fds, then {PROBES} sequential new sessions (connect → "
        "greeting → LOGOUT) while the others stay held; unloaded = the same probes before "
        "any session is held",
        "- RSS per held = (RSS at the level − RSS before holding) / held; slab per held = "
        "growth of the kernel's Slab (/proc/meminfo) / held, system-wide (client, proxy and "
        "upstream sockets, the patched edge's splice pipes; other jobs on the machine add "
        "noise)",
        f"- load average (1 min): {load_before} before, {load_held} after the held passes"
        + (f"; side-by-side pass {sbs_load}" if sbs_load else ""),
        f"- run: {started}, `python benchmarks/bench_edge_held.py` "
        "(or `nox -s bench -- edge_held`)",
        "",
        "## Unloaded baselines (same run)",
        "",
        *unloaded_table(results),
        "",
        "## Held sessions",
        "",
        *held_tables(results),
        "",
        "Ratios > 1 mean more memory or slower than the baseline.",
        "",
    ]
    if sbs is not None:
        lines += [
            "## Side by side: the same binaries on bench_edge.py's SMTP measurements",
            "",
            f"{SBS_ROUNDS} interleaved rounds: {SBS_LATENCY} sequential sessions, {SBS_RATE} "
            f"sessions over 32 clients, {SBS_DATA_RUNS} × 100 MB DATA per path.",
            "",
            *sbs_table(sbs),
            "",
        ]
    lines += [
        "## Goals of issue 25 (shipped edge)",
        "",
        *goals(results, sbs, SHIPPED),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
