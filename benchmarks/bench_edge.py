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
import multiprocessing as mp
import os
import platform
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tailwart.edge.build import _host_target, ensure_caddy  # noqa: E402
from tailwart.edge.render import MAIL_PORTS, EdgeLayout  # noqa: E402
from tailwart.edge.run import RunningEdge, short_tempdir  # noqa: E402
from tailwart.edge.standin import V2_SIGNATURE, free_port  # noqa: E402

EDGE_HOST = "127.0.0.1"
UPSTREAM_HOST = "127.0.0.2"
LATENCY_SESSIONS = 600
WARMUP_SESSIONS = 30
RATE_CLIENTS = 32
RATE_SESSIONS = 3000
DATA_MB = 100
DATA_RUNS = 3
ROUNDS = 3
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


def conn_rate(host: str, port: int, sessions: int) -> float:
    """Sessions per second with RATE_CLIENTS concurrent clients."""

    async def main() -> float:
        left = sessions

        async def worker(i: int) -> None:
            nonlocal left
            source = f"127.0.1.{i + 1}"  # spread source addresses: no ephemeral port exhaustion
            while left > 0:
                left -= 1
                await _async_session(host, port, source)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(RATE_CLIENTS)))
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


def _haproxy(listen: int, upstream: int, work: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
    if not binary:
        raise SystemExit("haproxy is not installed (scripts/setup/10-edge.sh installs it)")
    cfg = work / "haproxy.cfg"
    cfg.write_text(
        "global\n  maxconn 8192\n"
        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n"
        "  timeout server 60s\n"
        f"frontend smtp\n  bind {EDGE_HOST}:{listen}\n  default_backend mailbox\n"
        f"backend mailbox\n  server m1 {UPSTREAM_HOST}:{upstream} send-proxy-v2\n"
    )
    proc = subprocess.Popen(
        [binary, "-db", "-q", "-f", str(cfg)],
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


# ---------------------------------------------------------------- report


@dataclass
class Figures:
    median_ms: float
    p99_ms: float
    rate: float
    mbps: float


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
    binary = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin") or "haproxy"
    out = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False).stdout
    return out.split(" - ")[0].replace("HAProxy version ", "HAProxy ").strip()


def table(fig: dict[str, Figures]) -> list[str]:
    d, e, h = fig["direct"], fig["edge"], fig["haproxy"]
    rows = [
        ("session latency, median (ms)", d.median_ms, e.median_ms, h.median_ms, "{:.3f}"),
        ("session latency, p99 (ms)", d.p99_ms, e.p99_ms, h.p99_ms, "{:.3f}"),
        (f"sessions/s, {RATE_CLIENTS} concurrent clients", d.rate, e.rate, h.rate, "{:.0f}"),
        (f"DATA throughput, {DATA_MB} MB (MB/s)", d.mbps, e.mbps, h.mbps, "{:.0f}"),
    ]
    out = [
        "| metric | direct | edge (caddy-l4) | HAProxy | edge/direct | edge/HAProxy |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, dv, ev, hv, f in rows:
        out.append(
            f"| {name} | {f.format(dv)} | {f.format(ev)} | {f.format(hv)} | "
            f"{ev / dv:.2f} | {ev / hv:.2f} |"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    global LATENCY_SESSIONS, RATE_SESSIONS, DATA_MB, DATA_RUNS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (markdown)")
    args = parser.parse_args(argv)
    if args.quick:
        LATENCY_SESSIONS, RATE_SESSIONS, DATA_MB, DATA_RUNS = 60, 300, 10, 1
    built = ensure_caddy(*_host_target(), progress=lambda m: print(m, file=sys.stderr))
    ctx = mp.get_context("spawn")
    ports: Any = ctx.Queue()
    stop = ctx.Event()
    upstream = ctx.Process(target=_serve_upstream, args=(ports, stop), daemon=True)
    upstream.start()
    plain_port, proxy_port = ports.get(timeout=30)
    work = short_tempdir("tailwart-bench-")
    haproxy_port = free_port(EDGE_HOST)
    layout = EdgeLayout(
        upstream_host=UPSTREAM_HOST,
        listen_host=EDGE_HOST,
        listen={port: free_port(EDGE_HOST) for _, port in MAIL_PORTS},
        upstream={port: proxy_port for _, port in MAIL_PORTS},
        admin_socket=str(work / "admin.sock"),
    )
    haproxy = _haproxy(haproxy_port, proxy_port, work)
    load_before = _loadavg()
    try:
        with RunningEdge(built.path, layout, work / "edge"):
            paths = {
                "direct": (UPSTREAM_HOST, plain_port),
                "edge": (EDGE_HOST, layout.listen_port(25)),
                "haproxy": (EDGE_HOST, haproxy_port),
            }
            figures = _measure(paths)
    finally:
        haproxy.terminate()
        haproxy.wait(10)
        stop.set()
        proxied, bad = ports.get(timeout=30)
        upstream.join(10)
        shutil.rmtree(work, ignore_errors=True)
    if bad:
        raise SystemExit(f"the upstream refused {bad} connections without a valid PROXY v2 header")
    lines = [
        "# Edge benchmark: caddy-l4 vs direct vs HAProxy (loopback)",
        "",
        f"- machine: {machine()}",
        f"- edge: caddy {built.version} + caddy-l4 {built.pins.caddy_l4} "
        f"(`{built.path.name}`, sha256 {built.sha256[:16]}…), config from tailwart.edge.render",
        f"- peer: {haproxy_version()} (Debian package), `send-proxy-v2`",
        "- upstream: a lean asyncio SMTP responder in its own process; its PROXY listener "
        f"refuses connections without a valid PROXY v2 header ({proxied} headers checked)",
        f"- latency: {LATENCY_SESSIONS} sequential sessions (connect → 220 → EHLO → QUIT) "
        f"after {WARMUP_SESSIONS} warm-up; rate: {RATE_SESSIONS} sessions over "
        f"{RATE_CLIENTS} concurrent asyncio clients; throughput: {DATA_MB} MB DATA, "
        f"median of {DATA_RUNS}; paths interleaved in {ROUNDS} rounds so background load "
        "hits all three alike",
        f"- load average (1 min) before/after: {load_before} / {_loadavg()}",
        f"- run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        "`python benchmarks/bench_edge.py` (or `nox -s bench -- edge`)",
        "",
        *table(figures),
        "",
        "Ratios: latency > 1 means slower than the baseline; rate and throughput > 1 "
        "mean faster. Clients, upstream and proxy share the same cores.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written to {args.out}", file=sys.stderr)
    return 0


def _loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def _measure(paths: dict[str, tuple[str, int]]) -> dict[str, Figures]:
    """Every metric for every path, interleaved: round r measures each path in turn."""
    lat: dict[str, list[float]] = {name: [] for name in paths}
    rate: dict[str, list[float]] = {name: [] for name in paths}
    mbps: dict[str, list[float]] = {name: [] for name in paths}
    for host, port in paths.values():
        for _ in range(WARMUP_SESSIONS):
            session(host, port)
    for r in range(ROUNDS):
        print(f"round {r + 1}/{ROUNDS} …", file=sys.stderr, flush=True)
        for name, (host, port) in paths.items():
            lat[name] += latency_samples(host, port, LATENCY_SESSIONS // ROUNDS)
        for name, (host, port) in paths.items():
            rate[name].append(conn_rate(host, port, RATE_SESSIONS // ROUNDS))
        if r < DATA_RUNS:
            for name, (host, port) in paths.items():
                mbps[name].append(data_throughput(host, port))
    out = {}
    for name in paths:
        times = sorted(lat[name])
        p99 = times[max(0, int(len(times) * 0.99) - 1)]
        out[name] = Figures(
            statistics.median(times),
            p99,
            statistics.median(rate[name]),
            statistics.median(mbps[name]),
        )
    return out


if __name__ == "__main__":
    raise SystemExit(main())
