"""Doctor benchmark: the parallel runner vs the same checks one after another.

Real servers, as in the tests (tests/support/backend_servers.py):
Postgres 15 (SCRAM on a 198.18/15 veth address), Redis, the Garage binary,
knotd, TLS/SMTP/IMAP stand-ins on loopback. The baseline runs each registered
check alone, in registry order (what a plain loop over the registry would do);
tailwart's runner starts them all at once, each with its own timeout.

Scenarios: a healthy setup (all 21 checks ok), and the same setup where three
edge ports accept TCP but never greet (each such check waits for its timeout).

Run: ``python3 benchmarks/bench_doctor.py`` (root: it adds a veth pair).
Writes benchmarks/results/doctor.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(1, str(ROOT))  # the tests' helpers: tests.support

from tailwart.backends.bootstrap import bootstrap  # noqa: E402
from tailwart.doctor import runner  # noqa: E402
from tailwart.doctor.registry import Check, DoctorContext, DoctorOptions, registry  # noqa: E402
from tailwart.findings import Finding, summary  # noqa: E402
from tailwart.paths import cache_dir  # noqa: E402
from tailwart.settings import from_mapping  # noqa: E402
from tests.support.backend_env import backend_values, edge_servers, garage_key, zones  # noqa: E402
from tests.support.backend_servers import (  # noqa: E402
    GarageServer,
    KnotServer,
    LineServer,
    Pki,
    PostgresServer,
    RedisServer,
    VethAddress,
    garage_binary,
    line_servers,
)

RESULTS = ROOT / "benchmarks" / "results" / "doctor.md"
TIMEOUT = 2.0


def serial(ctx: DoctorContext, checks: list[Check]) -> list[Finding]:
    out: list[Finding] = []
    for check in checks:
        out += runner.run(ctx, [check])
    return out


def measure(
    variants: list[Callable[[], list[Finding]]], repeat: int
) -> list[tuple[float, dict[str, int]]]:
    """Median wall time and findings of each variant; variants interleaved run by run."""
    times: list[list[float]] = [[] for _ in variants]
    counts: list[dict[str, int]] = [{} for _ in variants]
    for _ in range(repeat):
        for i, fn in enumerate(variants):
            start = time.perf_counter()
            found = fn()
            times[i].append(time.perf_counter() - start)
            counts[i] = summary(found)
    return [(statistics.median(t), c) for t, c in zip(times, counts, strict=True)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per variant (median)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file (markdown)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_doctor: needs root (veth pair for Postgres' SCRAM address)", file=sys.stderr)
        return 2

    load_before = os.getloadavg()[0]
    veth = VethAddress.create()
    started: list[PostgresServer | RedisServer | GarageServer | KnotServer] = []
    pki_dir = Path(cache_dir("bench-doctor"))
    try:
        pg = PostgresServer.start(veth.address)
        started.append(pg)
        redis = RedisServer.start("/usr/bin/redis-server")
        started.append(redis)
        garage = GarageServer.start(garage_binary(cache_dir()))
        started.append(garage)
        knot = KnotServer.start("/usr/sbin/knotd", zones())
        started.append(knot)
        pki = Pki.create(pki_dir)
        relay = LineServer("220 relay.test ESMTP", ehlo=["STARTTLS"])
        edge = edge_servers(pki)
        tag = secrets.token_hex(3)
        names = {"role": f"bench_{tag}", "db": f"bench_{tag}", "bucket": f"bench-{tag}"}
        rows = []
        with line_servers(relay, *edge.values()):
            values = backend_values(
                pg,
                redis,
                garage,
                5,
                names,
                garage_key(),
                DNS_RESOLVER=knot.resolver,
                DKIM_SELECTOR="s1",
                STALWART_SMARTHOST=f"lo.relay.test:{relay.port}",
            )
            settings = from_mapping(values)
            bootstrap(
                settings,
                init_layout=True,
                say=lambda _: None,
                environ={"PG_ADMIN_PASSWORD": pg.admin_password},
            )
            ports = {public: server.port for public, server in edge.items()}
            silent = [LineServer("", hold=True) for _ in range(3)]
            with line_servers(*silent):
                hung = {**ports, 25: silent[0].port, 587: silent[1].port, 143: silent[2].port}
                for label, port_map in (
                    ("healthy setup", ports),
                    ("3 edge ports silent (timeout 2 s)", hung),
                ):
                    options = DoctorOptions("127.0.0.1", port_map, pki.ca_file, TIMEOUT)
                    ctx = DoctorContext(settings, options)
                    checks = registry(ctx)
                    (base, counts), (par, counts2) = measure(
                        [lambda: serial(ctx, checks), lambda: runner.run(ctx, checks)],  # noqa: B023
                        args.repeat,
                    )
                    assert counts == counts2, (counts, counts2)
                    rows.append((label, len(checks), counts, base, par))
                    print(
                        f"{label}: serial {base:.3f}s, parallel {par:.3f}s, "
                        f"speed-up {base / par:.2f}x ({counts})"
                    )
    finally:
        for server in reversed(started):
            server.close()
        veth.delete()

    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Doctor benchmark: parallel runner vs one check after another",
        "",
        f"- machine: {os.cpu_count()} CPUs, Linux {platform.release()}, "
        f"Python {platform.python_version()}",
        "- servers: PostgreSQL 15 (SCRAM over a 198.18/15 veth address), Redis, Garage 2.1.0 "
        "(debug build), knotd, TLS/SMTP/IMAP stand-ins on loopback",
        "- baseline: each registered check run alone, in registry order; tailwart: "
        "`tailwart.doctor.runner.run` (all checks at once, a timeout each)",
        f"- median of {args.repeat} runs per variant, variants interleaved; per-check timeout "
        f"{TIMEOUT:g} s",
        f"- load average (1 min) before/after: {load_before:.2f} / {os.getloadavg()[0]:.2f}",
        f"- run: {now}, `python benchmarks/bench_doctor.py` (or `nox -s bench -- doctor`)",
        "",
        "| scenario | checks | findings (ok/warn/error) | serial (s) | parallel (s) | speed-up |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for label, n, counts, base, par in rows:
        found = f"{counts['ok']}/{counts['warning']}/{counts['error']}"
        lines.append(f"| {label} | {n} | {found} | {base:.3f} | {par:.3f} | {base / par:.2f}× |")
    lines += [
        "",
        "Speed-up = serial / parallel wall time (higher is better). Client and servers share "
        "the same cores: on loopback a healthy run is CPU-bound, so running in parallel gains "
        "little there; it pays where checks wait (network round trips, hung services, "
        "timeouts).",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
