"""Load-balancing policy per port: the real caddy-l4 in front of two mailbox nodes.

Candidates: round_robin, least_conn, random (caddy-l4 v0.1.2 selection policies), each in
the several-node caddy.json tailwart renders (health checks and retries as shipped), one
after the other in one run. Baseline, measured in the same run: today's single-node
edge, one node. Two kinds of session, as a mail edge carries them:

- short SMTP sessions (connect, 220, EHLO, QUIT) from CLIENTS concurrent clients:
  sessions/s against the baseline, and the share each node took;
- long-held IMAP sessions (greeting, then idle, as IDLE clients): HELD sessions over
  both nodes; then the runbook of a node's restart: drain B (reload), B restarts (its
  held sessions drop and their clients reconnect, through the edge, to A), undrain B
  (reload), then RECONNECTS clients reconnect one by one (a random held session closes,
  a new one opens), as phones do over the next hours. Measured: the held split after each
  step, and the share of sessions the returning node took (of the reconnects, and of
  the SMTP sessions right after the undrain).

The nodes are one asyncio process (two loopback addresses, the same ports) that counts,
per node, the sessions accepted with a valid PROXY v2 header and those held open now.
Prints ratios against the baseline and writes ``benchmarks/results/edge-balance.md``;
nothing here is a timed assertion.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import random
import resource
import shutil
import socket
import struct
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_edge import conn_rate, machine  # noqa: E402

from tailwart.edge.build import _host_target, ensure_caddy  # noqa: E402
from tailwart.edge.render import MAIL_PORTS, EdgeLayout, caddy_config  # noqa: E402
from tailwart.edge.run import RunningEdge, short_tempdir  # noqa: E402
from tailwart.files import write_atomic  # noqa: E402
from tailwart.testing.standin import V2_SIGNATURE, free_port  # noqa: E402

EDGE = "127.0.0.1"
NODES = ("127.0.4.1", "127.0.4.2")
POLICIES = ("round_robin", "least_conn", "random")
SERVED = (25, 143)
SMTP_SESSIONS, CLIENTS = 3000, 40
AFTER_UNDRAIN = 600
HELD, RECONNECTS = 400, 400
ROUNDS = 2
RESULTS = ROOT / "benchmarks" / "results" / "edge-balance.md"


# ---------------------------------------------------------------- the nodes (own process)


class _Node(asyncio.Protocol):
    """PROXY v2 first, then SMTP (220/EHLO/QUIT) or an IMAP greeting that idles."""

    def __init__(self, node: int, imap: bool, counts: Any, conns: list[set[Any]]) -> None:
        self.node, self.imap, self.counts, self.conns = node, imap, counts, conns
        self.buf = b""
        self.ready = False
        self.t: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.t = transport

    def data_received(self, data: bytes) -> None:
        assert self.t is not None
        self.buf += data
        if not self.ready:
            if len(self.buf) < 16:
                return
            (length,) = struct.unpack("!H", self.buf[14:16])
            if self.buf[:12] != V2_SIGNATURE:
                self.t.close()
                return
            if len(self.buf) < 16 + length:
                return
            self.ready, self.buf = True, self.buf[16 + length :]
            self.counts[self.node * 2] += 1  # accepted
            if self.imap:
                self.counts[self.node * 2 + 1] += 1  # held now
                self.conns[self.node].add(self.t)
                self.t.write(b"* OK [CAPABILITY IMAP4rev1 IDLE] bench ready\r\n")
            else:
                self.t.write(b"220 bench.node ESMTP\r\n")
        while b"\r\n" in self.buf:
            line, self.buf = self.buf.split(b"\r\n", 1)
            verb = line[:4].upper()
            if verb == b"EHLO":
                self.t.write(b"250 bench.node\r\n")
            elif verb == b"QUIT":
                self.t.write(b"221 bye\r\n")
                self.t.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.imap and self.ready and self.t in self.conns[self.node]:
            self.conns[self.node].discard(self.t)
            self.counts[self.node * 2 + 1] -= 1


def _serve(ports: Any, counts: Any, commands: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        conns: list[set[Any]] = [set(), set()]
        bound: dict[int, int] = {}
        for port in SERVED:
            for i, host in enumerate(NODES):
                server = await loop.create_server(
                    lambda i=i, port=port: _Node(i, port == 143, counts, conns),  # type: ignore[misc]
                    host,
                    bound.get(port, 0),
                    backlog=1024,
                )
                bound.setdefault(port, server.sockets[0].getsockname()[1])
        ports.put(bound)
        while True:
            await asyncio.sleep(0.02)
            if commands.empty():
                continue
            command = commands.get()
            if command == "stop":
                return
            # "drop N": node N restarts; every session held there ends
            node = int(command.split()[1])
            for transport in list(conns[node]):
                transport.close()

    asyncio.run(main())


# ---------------------------------------------------------------- the edge and clients


def config_text(layout: EdgeLayout, policy: str | None) -> str:
    """caddy.json as rendered, with every port's selection policy set to ``policy``."""
    doc = caddy_config(layout)
    if policy is not None:
        for server in doc["apps"]["layer4"]["servers"].values():  # type: ignore[index]
            server["routes"][0]["handle"][0]["load_balancing"]["selection"]["policy"] = policy
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def reload(edge: RunningEdge, layout: EdgeLayout, policy: str) -> None:
    write_atomic(edge.config, config_text(layout, policy))
    edge.reload()


def hold(port: int, count: int) -> list[socket.socket]:
    out = []
    for _ in range(count):
        sock = socket.create_connection((EDGE, port), 10)
        sock.settimeout(10)
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(256)
            if not chunk:
                raise ConnectionError("held session closed before its greeting")
            data += chunk
        out.append(sock)
    return out


def settle(counts: Any, total: int) -> tuple[int, int]:
    """Held sessions per node once the nodes have seen every open and close."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and counts[1] + counts[3] != total:
        time.sleep(0.01)
    return counts[1], counts[3]


def alive(sock: socket.socket) -> bool:
    """False when the node closed this held session (a restart)."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


@dataclass
class Result:
    name: str
    rate: list[float]
    smtp_share_a: list[float]
    after_undrain_b: list[float]
    held_start: list[tuple[int, int]]
    held_drained: list[tuple[int, int]]
    held_end: list[tuple[int, int]]
    reconnects_to_b: list[float]


def run_policy(
    caddy: Path, policy: str | None, counts: Any, commands: Any, ports: dict[int, int], rounds: int
) -> Result:
    """One candidate (None: the single-node baseline), ``rounds`` times."""
    res = Result(policy or "baseline: one node", [], [], [], [], [], [], [])
    for _ in range(rounds):
        work = short_tempdir("tailwart-balance-")
        layout = EdgeLayout(
            upstream_host=NODES[0],
            upstream_hosts=NODES if policy else (),
            listen_host=EDGE,
            listen={port: free_port(EDGE) for _, port in MAIL_PORTS},
            upstream=ports,
            admin_socket=str(work / "admin.sock"),
            ports=SERVED,
        )
        edge = RunningEdge(caddy, layout, work / "edge", config_text=config_text(layout, policy))
        edge.start()
        try:
            a0, b0 = counts[0], counts[2]
            res.rate.append(conn_rate(EDGE, layout.listen_port(25), SMTP_SESSIONS, CLIENTS))
            da, db = counts[0] - a0, counts[2] - b0
            res.smtp_share_a.append(da / max(da + db, 1))
            if policy is None:
                continue
            held = hold(layout.listen_port(143), HELD)
            res.held_start.append(settle(counts, HELD))
            reload(edge, replace(layout, drained=frozenset({NODES[1]})), policy)
            commands.put("drop 1")
            settle(counts, res.held_start[-1][0])
            deadline = time.monotonic() + 10  # until the edge passed every close on
            while sum(not alive(s) for s in held) < res.held_start[-1][1]:
                if time.monotonic() > deadline:
                    raise RuntimeError("the restarted node's sessions did not close")
                time.sleep(0.02)
            held = [s for s in held if alive(s)]
            lost = HELD - len(held)
            held += hold(layout.listen_port(143), lost)  # their clients reconnect, to A
            res.held_drained.append(settle(counts, HELD))
            reload(edge, layout, policy)  # undrain
            b_before = counts[2]
            rng = random.Random(7)
            for _ in range(RECONNECTS):
                victim = held.pop(rng.randrange(len(held)))
                victim.close()
                settle(counts, HELD - 1)
                held += hold(layout.listen_port(143), 1)
            res.reconnects_to_b.append((counts[2] - b_before) / RECONNECTS)
            res.held_end.append(settle(counts, HELD))
            b_before, a_before = counts[2], counts[0]
            conn_rate(EDGE, layout.listen_port(25), AFTER_UNDRAIN, CLIENTS)
            db, da = counts[2] - b_before, counts[0] - a_before
            res.after_undrain_b.append(db / max(da + db, 1))
            for sock in held:
                sock.close()
            settle(counts, 0)
        finally:
            edge.stop()
            shutil.rmtree(work, ignore_errors=True)
    return res


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _split(pairs: list[tuple[int, int]]) -> str:
    return " / ".join(f"{a}:{b}" for a, b in pairs) or "-"


def _imbalance(pairs: list[tuple[int, int]]) -> float:
    """The fuller node's held sessions over an even split (1.00 = even)."""
    return _mean([max(a, b) / ((a + b) / 2) for a, b in pairs if a + b])


def table(results: list[Result]) -> list[str]:
    base = _mean(results[0].rate)
    lines = [
        "| policy | SMTP sessions/s | vs baseline | SMTP share on A | held A:B after open | "
        "held A:B, B drained and restarted | held A:B after 400 reconnects | imbalance at end "
        "| reconnects to B | SMTP to B right after undrain |",
        "| --- | ---: | ---: | ---: | --- | --- | --- | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {_mean(r.rate):,.0f} | {_mean(r.rate) / base:.2f} | "
            f"{_mean(r.smtp_share_a):.2f} | {_split(r.held_start)} | {_split(r.held_drained)} | "
            f"{_split(r.held_end)} | {_imbalance(r.held_end):.2f} | "
            f"{_mean(r.reconnects_to_b):.2f} | {_mean(r.after_undrain_b):.2f} |"
        )
    return lines


def main() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    built = ensure_caddy(*_host_target())
    caddy = Path(built.path)
    ctx = mp.get_context("spawn")
    counts = ctx.Array("i", 4, lock=False)
    ports_q, commands = ctx.Queue(), ctx.Queue()
    node = ctx.Process(target=_serve, args=(ports_q, counts, commands), daemon=True)
    node.start()
    try:
        ports: dict[int, int] = ports_q.get(timeout=30)
        results = [run_policy(caddy, None, counts, commands, ports, ROUNDS)]
        for policy in POLICIES:
            results.append(run_policy(caddy, policy, counts, commands, ports, ROUNDS))
    finally:
        commands.put("stop")
        node.join(10)
    lines = [
        "# Edge load balancing over two nodes (benchmarks/bench_edge_balance.py)",
        "",
        f"Machine: {machine()}. caddy-l4 {built.version}; {ROUNDS} rounds per policy "
        f"(pairs: one per round). SMTP: {SMTP_SESSIONS} sessions from {CLIENTS} clients; "
        f"IMAP: {HELD} held sessions, {RECONNECTS} reconnects after the undrain; "
        f"{AFTER_UNDRAIN} SMTP sessions right after.",
        "",
        *table(results),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    RESULTS.write_text(text)
    print(f"written: {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
