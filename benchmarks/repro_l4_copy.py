"""Minimal reproduction for caddy-l4's proxy handler (issue 16): the per-connection copy cost.

One layer4 server, one ``proxy`` handler with ``proxy_protocol: v2`` (the config
tailwart renders), in front of a raw upstream that greets and then only reads.
It shows, with caddy's own pprof and /proc:

1. every held connection keeps a fresh 32 KiB ``io.copyBuffer`` buffer alive
   (``io.Copy(down, up)``: ``*layer4.Connection`` hides ``*net.TCPConn``'s
   ``ReadFrom``, so neither splice nor a pooled buffer is used);
2. client → upstream bytes move in 8 KiB reads (``io.Copy(io.Discard,
   io.TeeReader(down, up))``: io.Discard's pooled 8 KiB buffer sets the read size),
   one read and one write syscall per 8 KiB;
3. the system calls of one short session (strace -c), beside HAProxy's.

The same two measurements through HAProxy (``send-proxy-v2``) are printed beside them.

Run: ``PYTHONPATH=src python benchmarks/repro_l4_copy.py``.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_edge import _haproxy, admin_get, rss_kib  # noqa: E402

from tailwart.edge.build import _host_target, ensure_caddy  # noqa: E402
from tailwart.edge.render import EdgeLayout  # noqa: E402
from tailwart.edge.run import RunningEdge, short_tempdir  # noqa: E402
from tailwart.testing.standin import free_port  # noqa: E402

HELD = 1000
MB = 64
SESSIONS = 300


def upstream(sock: socket.socket) -> None:
    """Greet every connection, then read (and drop) whatever comes until EOF."""

    def serve(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.sendall(b"220 repro\r\n")
            while conn.recv(1 << 20):
                pass

    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def syscalls_during(pid: int, work: Callable[[], None]) -> int:
    """System calls the process made while ``work`` ran (perf's raw_syscalls tracepoint)."""
    perf = subprocess.Popen(
        ["perf", "stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "-p", str(pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.3)
    work()
    perf.send_signal(signal.SIGINT)
    _, err = perf.communicate(timeout=10)
    for line in err.splitlines():
        parts = line.split(",")
        if len(parts) > 2 and parts[2] == "raw_syscalls:sys_enter":
            return int(parts[0])
    raise RuntimeError(f"perf stat gave no count: {err.strip()}")


def held_rss(pid: int, port: int, subnet: int) -> tuple[float, list[socket.socket]]:
    """KiB of RSS per held connection after HELD clients got their greeting."""
    before = rss_kib(pid)
    held = []
    for i in range(HELD):
        s = socket.create_connection(
            ("127.0.0.1", port), 10, source_address=(f"127.0.{subnet + i // 250}.{i % 250 + 1}", 0)
        )
        assert s.recv(64).startswith(b"220")
        held.append(s)
    time.sleep(1)
    return (rss_kib(pid) - before) / HELD, held


def transfer(pid: int, port: int) -> str:
    """MB MiB client → upstream; the proxy's system calls for it."""
    chunk = b"x" * (1 << 20)
    with socket.create_connection(("127.0.0.1", port), 10) as s:
        s.recv(64)

        def send() -> None:
            for _ in range(MB):
                s.sendall(chunk)
            s.shutdown(socket.SHUT_WR)
            time.sleep(1)

        calls = syscalls_during(pid, send)
    return f"{MB} MiB client → upstream: {calls} system calls, {calls / MB:.0f} per MiB"


def syscall_mix(pid: int, port: int) -> str:
    """``strace -f -c`` over SESSIONS short sessions (connect, greeting, close): the calls
    per session, most frequent first."""
    strace = shutil.which("strace")
    if not strace:
        return "strace is not installed: no system call mix"
    proc = subprocess.Popen([strace, "-f", "-c", "-p", str(pid)], stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    for _ in range(SESSIONS):
        with socket.create_connection(("127.0.0.1", port), 10) as s:
            s.recv(64)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    calls = []
    for line in err.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
            calls.append((int(parts[3]) / SESSIONS, parts[-1]))
    calls.sort(reverse=True)
    return (
        ", ".join(f"{name} {n:.1f}" for n, name in calls)
        + f" (total {sum(n for n, _ in calls):.1f})"
    )


def main() -> int:
    built = ensure_caddy(*_host_target(), progress=lambda m: print(m, file=sys.stderr))
    up = socket.socket()
    up.bind(("127.0.0.2", 0))
    up.listen(4096)
    threading.Thread(target=upstream, args=(up,), daemon=True).start()
    work = short_tempdir("tailwart-repro-")
    layout = EdgeLayout(
        upstream_host="127.0.0.2",
        listen_host="127.0.0.1",
        listen={25: free_port("127.0.0.1")},
        upstream={25: up.getsockname()[1]},
        admin_socket=str(work / "admin.sock"),
        ports=(25,),
    )
    held: list[socket.socket] = []
    try:
        with RunningEdge(built.path, layout, work / "edge") as edge:
            assert edge.proc is not None
            pid = edge.proc.pid
            rss, held = held_rss(pid, layout.listen_port(25), 3)
            heap = work / "heap.pb.gz"
            heap.write_bytes(admin_get(layout.admin_socket, "/debug/pprof/heap?gc=1", 30))
            go = shutil.which("go") or "/usr/local/go/bin/go"
            top = subprocess.run(
                [go, "tool", "pprof", "-top", "-sample_index=inuse_space", "-nodecount=6", heap],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            for s in held:
                s.close()
            held = []
            print(f"caddy-l4: {HELD} held connections, RSS +{rss:.1f} KiB per connection")
            print("live heap while they are held (go tool pprof -top -sample_index=inuse_space):")
            print("\n".join(ln for ln in top.splitlines() if not ln.startswith(("File", "Build"))))
            print("caddy-l4: " + transfer(pid, layout.listen_port(25)))
            print(f"caddy-l4: system calls per session: {syscall_mix(pid, layout.listen_port(25))}")
        port = free_port("127.0.0.1")
        haproxy = _haproxy(port, up.getsockname()[1], work)
        try:
            rss, held = held_rss(haproxy.pid, port, 8)
            print(f"HAProxy: {HELD} held connections, RSS +{rss:.1f} KiB per connection")
            for s in held:
                s.close()
            held = []
            print("HAProxy: " + transfer(haproxy.pid, port))
            print(f"HAProxy: system calls per session: {syscall_mix(haproxy.pid, port)}")
        finally:
            haproxy.terminate()
            haproxy.wait(10)
    finally:
        for s in held:
            s.close()
        up.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
