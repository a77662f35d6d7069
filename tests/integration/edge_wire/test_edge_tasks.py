"""`inv demo` and `inv edge-run` as a user runs them: real processes, exit codes, output."""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tailwart.edge.render import MAIL_PORTS
from tests.support.doc_samples import check_sample

from .conftest import _GO_CACHES

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
INV = [sys.executable, "-m", "invoke"]
MAILBOX = "127.0.0.2"


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, **_GO_CACHES, **extra}


def _caddy_pids(marker: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "caddy-v2" in cmd and marker in cmd:
                pids.append(int(proc.name))
    return pids


def test_demo_proves_the_wire_and_leaves_nothing_running(caddy_binary: Path) -> None:
    before = set(Path("/tmp").glob("tailwart-demo-*"))
    run = subprocess.run(
        [sys.executable, "-m", "invoke", "demo"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    for name, port in MAIL_PORTS:
        row = re.search(
            rf"^{port}\s+{name}\s+(127\.0\.0\.23:\d+)\s+(\S+)\s+(\S+)\s+(\S+)", out, re.M
        )
        assert row, f"no row for {name} in:\n{out}"
        client, seen, listener, edge_own = row.groups()
        assert seen == client  # the mailbox saw the client's own address and port
        assert listener.startswith("127.0.0.1:") and edge_own.startswith("127.0.0.1:")
    assert out.count("mailbox stored") == 3
    assert "OK: on every port the mailbox saw the client's own address" in out
    check_sample("demo", out)  # docs/guides/edge.md shows this run's lines
    assert set(Path("/tmp").glob("tailwart-demo-*")) == before
    assert _caddy_pids("tailwart-demo-") == []


def test_demo_fails_with_a_reason(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "invoke", "demo"],
        cwd=ROOT,
        env=_env(TAILWART_GO=str(tmp_path / "no-go")),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 1
    assert "Go not found" in run.stderr and "Traceback" not in run.stderr


def _free_offset() -> int:
    for _ in range(50):
        offset = random.randrange(20000, 40000)
        try:
            for _, port in MAIL_PORTS:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        return offset
    raise RuntimeError("no free port range")


def _start_edge_run(offset: int) -> subprocess.Popen[str]:
    """``inv edge-run`` on the example values, ports moved by ``offset``, output piped."""
    return subprocess.Popen(
        [*INV, "edge-run", "--example", "--port-offset", str(offset), "--upstream-host", MAILBOX],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_edge_run_validates_then_serves_until_interrupted(caddy_binary: Path) -> None:
    check = subprocess.run(
        [sys.executable, "-m", "invoke", "edge-run", "--example", "--validate-only"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    assert "caddy validate: ok" in check.stdout

    offset = _free_offset()
    proc = _start_edge_run(offset)
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "serving initial configuration" in line:
                break
        text = "".join(lines)
        assert "caddy validate: ok" in text
        assert f"127.0.0.1:{25 + offset}" in text and "127.0.0.2:25 (PROXY v2)" in text
        for _, port in MAIL_PORTS:
            # nothing listens upstream: the edge accepts, then closes promptly
            address = ("127.0.0.1", port + offset)
            with (
                socket.create_connection(address, timeout=10) as sock,
                contextlib.suppress(ConnectionResetError),
            ):
                assert sock.recv(10) == b""
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, rest
    assert "shutdown complete" in rest
    time.sleep(0.2)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine
        sock.bind(("127.0.0.1", 25 + offset))  # no listener is left


def test_edge_run_rejects_bad_ports() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "invoke", "edge-run", "--example", "--ports", "25=x,99=3"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 2
    assert "'25=x'" in run.stderr and "99 is not a mail port" in run.stderr


def test_edge_run_interrupted_during_start_leaves_no_caddy(caddy_binary: Path) -> None:
    """Ctrl-C while caddy is starting stops caddy too: the run ends, its output closes,
    and the listening port is free again. (Under load a signal that landed between
    caddy's start and the handler used to leave caddy running, holding the pipe.)"""
    offset = _free_offset()
    proc = _start_edge_run(offset)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if '"level"' in line:  # caddy's first log line: it has just started
                break
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)  # EOF: no caddy holds the pipe
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in rest
    time.sleep(0.2)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 25 + offset))
