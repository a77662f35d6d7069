"""Minimal reproduction for caddy-l4's proxy handler (issue 16): the per-connection copy cost.

One layer4 server, one ``proxy`` handler with ``proxy_protocol: v2`` (the config
tailwart renders), in front of a raw upstream that greets and then only reads.
It shows, with caddy's own pprof and /proc:

1. every held connection keeps a fresh 32 KiB ``io.copyBuffer`` buffer alive
   (``io.Copy(down, up)``: ``*layer4.Connection`` hides ``*net.TCPConn``'s
   ``ReadFrom``, so neither splice nor a pooled buffer is used);
2. client → upstream bytes move in 8 KiB reads (``io.Copy(io.Discard,
   io.TeeReader(down, up))``: io.Discard's pooled 8 KiB buffer sets the read size),
   one read and one write syscall per 8 KiB.

Run: ``PYTHONPATH=src python benchmarks/repro_l4_copy.py``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_edge import admin_get, rss_kib  # noqa: E402

from tailwart.edge.build import _host_target, ensure_caddy  # noqa: E402
from tailwart.edge.render import EdgeLayout  # noqa: E402
from tailwart.edge.run import RunningEdge, short_tempdir  # noqa: E402
from tailwart.edge.standin import free_port  # noqa: E402

HELD = 1000
MB = 64


def upstream(sock: socket.socket) -> None:
    """Greet every connection, then read (and drop) whatever comes until EOF."""

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.sendall(b"220 repro\r\n")
            while conn.recv(1 << 20):
                pass

    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def syscalls(pid: int) -> tuple[int, int]:
    """(read-type, write-type) syscalls of the process so far, /proc/<pid>/io."""
    io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().strip().splitlines())
    return int(io["syscr"]), int(io["syscw"])


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
            before = rss_kib(pid)
            for i in range(HELD):
                s = socket.create_connection(
                    ("127.0.0.1", layout.listen_port(25)),
                    10,
                    source_address=(f"127.0.{3 + i // 250}.{i % 250 + 1}", 0),
                )
                assert s.recv(64).startswith(b"220")
                held.append(s)
            time.sleep(1)
            rss = (rss_kib(pid) - before) / HELD
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
            print(f"{HELD} held connections: caddy RSS +{rss:.1f} KiB per connection")
            print("live heap while they are held (go tool pprof -top -sample_index=inuse_space):")
            print("\n".join(ln for ln in top.splitlines() if not ln.startswith(("File", "Build"))))
            chunk = b"x" * (1 << 20)
            with socket.create_connection(("127.0.0.1", layout.listen_port(25)), 10) as s:
                s.recv(64)
                r0, w0 = syscalls(pid)
                for _ in range(MB):
                    s.sendall(chunk)
                s.shutdown(socket.SHUT_WR)
                time.sleep(1)
                r1, w1 = syscalls(pid)
            reads, writes = r1 - r0, w1 - w0
            print(
                f"{MB} MiB client → upstream: {reads} reads and {writes} writes by caddy, "
                f"{MB * 1024 / max(reads, 1):.1f} KiB per read"
            )
    finally:
        for s in held:
            s.close()
        up.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
