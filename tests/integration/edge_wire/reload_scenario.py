"""Reload under load, run inside a network namespace the test creates (see test_edge_wire).

Usage: PYTHONPATH=src python reload_scenario.py CADDY_BINARY [RELOADS]

Starts the stand-in mailbox and the edge on this namespace's loopback, holds 100 IMAP
connections through the edge, keeps opening new SMTP sessions from another thread,
reloads RELOADS times through the admin socket (every other reload moves port 465,
a real config change), then checks every held connection and the moved port.
Prints one JSON document with what happened; the test asserts on it.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from tailwart.edge.render import MAIL_PORTS, EdgeLayout
from tailwart.edge.run import RunningEdge, short_tempdir
from tailwart.testing.standin import StandinMailbox, TlsFiles, free_port, make_self_signed

EDGE = "127.0.0.1"


def read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def main(caddy: Path, reloads: int) -> dict[str, object]:
    work = short_tempdir("tailwart-reload-")
    tls = make_self_signed(work / "tls")
    report: dict[str, object] = {}
    try:
        with StandinMailbox(tls, host="127.0.0.2") as mailbox:
            layout = EdgeLayout(
                upstream_host="127.0.0.2",
                listen_host=EDGE,
                listen={port: free_port(EDGE) for _, port in MAIL_PORTS},
                upstream=mailbox.ports,
                admin_socket=str(work / "admin.sock"),
            )
            with RunningEdge(caddy, layout, work / "edge") as edge:
                report.update(_scenario(edge, layout, reloads, tls))
                report["loads_logged"] = edge.log_text().count('"msg":"load complete"')
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def _scenario(
    edge: RunningEdge, layout: EdgeLayout, reloads: int, tls: TlsFiles
) -> dict[str, object]:
    held = []
    for _ in range(100):
        sock = socket.create_connection((EDGE, layout.listen_port(143)), 10, ("127.0.0.40", 0))
        assert read_line(sock).startswith(b"* OK")
        held.append(sock)

    stop = threading.Event()
    sessions: list[tuple[float, float, str]] = []
    progress = threading.Condition()

    def wait_sessions(count: int) -> None:
        """Until ``count`` more sessions ended: an event, not a duration (bounded for a
        stuck run only)."""
        with progress:
            target = len(sessions) + count
            assert progress.wait_for(lambda: len(sessions) >= target, 60), "no new sessions"

    def keep_connecting() -> None:
        while not stop.is_set():
            began = time.monotonic()
            try:
                with socket.create_connection(
                    (EDGE, layout.listen_port(25)), 10, ("127.0.0.41", 0)
                ) as sock:
                    line = read_line(sock)
                    outcome = "ok" if line.startswith(b"220 ") else f"bad greeting {line!r}"
                    sock.sendall(b"QUIT\r\n")
            except OSError as exc:
                outcome = repr(exc)
            with progress:
                sessions.append((began, time.monotonic(), outcome))
                progress.notify_all()

    worker = threading.Thread(target=keep_connecting)
    worker.start()
    windows = []
    current = layout
    try:
        wait_sessions(5)  # new sessions flow before the first reload
        for i in range(reloads):
            if i % 2:
                listen = {**dict(current.listen or {}), 465: free_port(EDGE)}
                current = replace(current, listen=listen)
                t0 = time.monotonic()
                edge.reload(current)
            else:
                t0 = time.monotonic()
                edge.reload()  # caddy reload --address unix//…/admin.sock --force
            windows.append((t0, time.monotonic()))
            wait_sessions(1)  # at least one new session between two reloads
        wait_sessions(5)  # and after the last one
    finally:
        stop.set()
        worker.join(30)

    held_ok = 0
    for i, sock in enumerate(held):
        try:
            sock.sendall(f"r{i} NOOP\r\n".encode())
            if read_line(sock) == f"r{i} OK NOOP completed\r\n".encode():
                held_ok += 1
        except OSError:
            pass
        sock.close()

    moved_ok = False
    ctx = ssl.create_default_context(cafile=str(tls.cert))
    raw = socket.create_connection((EDGE, current.listen_port(465)), 10, ("127.0.0.42", 0))
    with ctx.wrap_socket(raw, server_hostname=tls.hostname) as sock:
        moved_ok = read_line(sock).startswith(b"220 ")

    overlapping = [s for s in sessions if any(s[0] < w1 and s[1] > w0 for w0, w1 in windows)]
    return {
        "reloads": len(windows),
        "held": len(held),
        "held_usable_after": held_ok,
        "new_sessions": len(sessions),
        "new_sessions_during_reloads": len(overlapping),
        "new_session_failures": [s[2] for s in sessions if s[2] != "ok"],
        "moved_port_serves": moved_ok,
    }


if __name__ == "__main__":
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    print(json.dumps(main(Path(sys.argv[1]), count)))
