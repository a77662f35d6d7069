"""Benchmark: ``deploy-edge`` against the naive way (scp binary + config, restart).

Two namespaced sshd hosts (tests/support/netns_hosts.py), the same caddy-l4
binary and configs. Host 0 gets tailwart's deploy; host 1 the naive way: ``scp``
of the binary and caddy.json, then ``caddy stop`` + ``caddy start`` over ``ssh``.
Measured per scenario: wall time, bytes the root namespace sent over the host's
veth (everything on the wire: SSH, SFTP/scp), and for the config-only change, what
a client holding 50 connections and opening new ones meanwhile sees.

Run: ``python3 benchmarks/bench_deploy.py`` (root: it creates network namespaces).
Writes benchmarks/results/deploy.md.
"""

from __future__ import annotations

import io
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(1, str(ROOT))  # the tests' helpers: tests.support

from tailwart.edge.binaries import LocalBinary, built_binary_provider  # noqa: E402
from tailwart.edge.deploy_release import deploy  # noqa: E402
from tailwart.edge.render import caddy_json  # noqa: E402
from tailwart.edge.targets import DeployOptions, HostJob  # noqa: E402
from tailwart.paths import cache_dir  # noqa: E402
from tests.support.netns_hosts import HeldConnections, Lab, NetnsHost, lab  # noqa: E402

REPEAT = 5
RESULTS = ROOT / "benchmarks" / "results" / "deploy.md"


@dataclass
class Sample:
    seconds: float
    wire_bytes: int
    payload_bytes: int = 0


@dataclass
class Drops:
    held: int
    held_alive: int
    new_ok: int
    new_failed: int


def measure(host: NetnsHost, fn: Callable[[], int]) -> Sample:
    tx = host.tx_bytes()
    start = time.monotonic()
    payload = fn()
    return Sample(time.monotonic() - start, host.tx_bytes() - tx, payload)


def median(samples: list[Sample]) -> Sample:
    return Sample(
        statistics.median(s.seconds for s in samples),
        int(statistics.median(s.wire_bytes for s in samples)),
        int(statistics.median(s.payload_bytes for s in samples)),
    )


class Tailwart:
    def __init__(self, the_lab: Lab, host: NetnsHost, provider: object) -> None:
        self.lab, self.host, self.provider = the_lab, host, provider
        self.opts = DeployOptions(ssh=the_lab.ssh_options(), progress=False, health_timeout=5)

    def deploy(self, **layout: object) -> int:
        job = HostJob(self.host.target, self.lab.layout(self.host, **layout), self.host.root)
        results = deploy([job], self.opts, self.provider, out=io.StringIO())  # type: ignore[arg-type]
        return results[0].bytes_sent


class Naive:
    """scp the binary and the config, then restart caddy over ssh.

    The files land in ``new/`` and are moved into place after the stop: a running
    executable cannot be overwritten in place (ETXTBSY).
    """

    def __init__(self, the_lab: Lab, host: NetnsHost, binary: LocalBinary) -> None:
        self.lab, self.host, self.binary = the_lab, host, binary
        self.dir = f"{host.root}/naive"
        self.ssh_opts = [
            "-i", str(the_lab.key), "-o", f"UserKnownHostsFile={the_lab.known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-F", "/dev/null",
        ]  # fmt: skip
        self.cfg = the_lab.dir / f"naive-{host.index}.json"

    def _ssh(self, command: str) -> None:
        subprocess.run(
            ["ssh", *self.ssh_opts, f"root@{self.host.addr}", command],
            check=True, capture_output=True, text=True,
        )  # fmt: skip

    def deploy(self, **layout: object) -> int:
        self.cfg.write_text(caddy_json(self.lab.layout(self.host, **layout)))
        self._ssh(f"mkdir -p {self.dir}/new")
        subprocess.run(
            ["scp", "-q", *self.ssh_opts, str(self.binary.path), str(self.cfg),
             f"root@{self.host.addr}:{self.dir}/new/"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        d = shlex.quote(self.dir)
        binary = f"{d}/{self.binary.path.name}"
        config = f"{d}/{self.cfg.name}"
        env = f"env XDG_CONFIG_HOME={d}/state XDG_DATA_HOME={d}/state"
        sock = shlex.quote(f"unix/{self.host.admin_socket}")
        self._ssh(
            f"chmod 755 {binary}; mkdir -p {shlex.quote(self.host.root)}/run; "
            f"{env} {binary} stop --address {sock} >/dev/null 2>&1; mv -f {d}/new/* {d}/; "
            f"{env} {binary} start --config {config} --pidfile {d}/caddy.pid "
            f">> {d}/caddy.log 2>&1 < /dev/null"
        )
        return self.binary.size + len(self.cfg.read_bytes())


def under_load(host: NetnsHost, action: Callable[[], int]) -> Drops:
    with HeldConnections(host.addr, 25, 50) as probe:
        time.sleep(0.3)
        action()
        time.sleep(0.5)
        res = probe.finish()
    return Drops(res.held, res.held_alive, res.new_ok, res.new_failed)


def mib(n: int) -> str:
    return f"{n / 1048576:.2f} MiB" if n >= 1 << 20 else f"{n / 1024:.1f} KiB"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b else "∞"


def main() -> int:
    if os.geteuid() != 0:
        print("bench_deploy: needs root (network namespaces)", file=sys.stderr)
        return 2
    provider = built_binary_provider(out_dir=cache_dir("deploy-test-bin"))
    binary = provider("linux", "amd64")
    rows: list[tuple[str, Sample, Sample]] = []
    with lab(2) as the_lab:
        the_lab.trust_all()
        ours, naive = (
            Tailwart(the_lab, the_lab.hosts[0], provider),
            Naive(the_lab, the_lab.hosts[1], binary),
        )
        up = [dict(u.ports) for u in the_lab.upstreams]

        first = (measure(ours.host, ours.deploy), measure(naive.host, naive.deploy))
        rows.append(("first deploy", *first))

        noop = ([], [])  # type: tuple[list[Sample], list[Sample]]
        for _ in range(REPEAT):
            noop[0].append(measure(ours.host, ours.deploy))
            noop[1].append(measure(naive.host, naive.deploy))
        rows.append((f"no-op redeploy (median of {REPEAT})", median(noop[0]), median(noop[1])))

        cfg = ([], [])  # type: tuple[list[Sample], list[Sample]]
        for i in range(REPEAT):
            # imaps moves to a new listen port each time: a new config, the same binary
            listen = {993: 20000 + i}
            cfg[0].append(measure(ours.host, lambda li=listen: ours.deploy(listen=li)))
            cfg[1].append(measure(naive.host, lambda li=listen: naive.deploy(listen=li)))
        rows.append((f"config-only redeploy (median of {REPEAT})", median(cfg[0]), median(cfg[1])))

        changes = [{**u, 587: u[25]} for u in up]
        drops_ours = under_load(ours.host, lambda: ours.deploy(upstream=changes[0]))
        drops_naive = under_load(naive.host, lambda: naive.deploy(upstream=changes[1]))

    lines = [
        "# deploy-edge vs the naive way (scp binary + config, restart)",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `benchmarks/bench_deploy.py` on this "
        f"machine ({os.cpu_count()} cores), over SSH to an sshd in a network namespace (veth). "
        f"caddy-l4 binary: {mib(binary.size)}. Wire bytes = everything the veth carried to the "
        "host (SSH, SFTP/scp, handshakes).",
        "",
        "| scenario | tailwart time | naive time | time ratio | tailwart wire | naive wire "
        "| bytes ratio | tailwart file bytes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, a, b in rows:
        lines.append(
            f"| {name} | {a.seconds:.2f} s | {b.seconds:.2f} s | {ratio(b.seconds, a.seconds)} "
            f"| {mib(a.wire_bytes)} | {mib(b.wire_bytes)} | {ratio(b.wire_bytes, a.wire_bytes)} "
            f"| {mib(a.payload_bytes)} |"
        )
    lines += [
        "",
        "Config-only change while a client holds 50 connections through the edge and keeps "
        "opening new ones (connect, greeting, QUIT) until after the deploy:",
        "",
        "| way | held connections surviving | new connections ok | new connections failed |",
        "| --- | ---: | ---: | ---: |",
        f"| tailwart (caddy reload via the admin socket) | {drops_ours.held_alive}/"
        f"{drops_ours.held} | {drops_ours.new_ok} | {drops_ours.new_failed} |",
        f"| naive (caddy stop + start) | {drops_naive.held_alive}/{drops_naive.held} "
        f"| {drops_naive.new_ok} | {drops_naive.new_failed} |",
        "",
        "Ratios are naive / tailwart (higher = tailwart better). The no-op redeploy sends 0 "
        "file bytes: the release id (sha256 of binary and config) is already current; a "
        "config-only redeploy sends the config and a meta file, the binary is hard-linked from "
        "the kept release on the host. The first deploy costs more than the naive copy: it "
        "verifies the upload by sha256 on the host, runs `caddy validate`, takes the lock, "
        "gates on every port and writes the audit line. The "
        "per-command cost on these hosts includes root's ~/.bashrc (pyenv init) on every SSH "
        "command, and the machine is shared: compare within a run, not across runs.",
    ]
    text = "\n".join(lines) + "\n"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)
    ok = (
        drops_ours.new_failed == 0
        and drops_ours.held_alive == drops_ours.held
        and rows[1][1].payload_bytes == 0
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
