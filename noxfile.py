"""Nox sessions: ``nox`` runs lint, typecheck, tests and the unit tests a year ahead
(``later``); bench and demo on request.

Virtualenvs live outside the work tree (``~/.cache/tailwart/nox``) so a fresh
clone in CI reuses them.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("TAILWART_CACHE") or Path.home() / ".cache" / "tailwart")

nox.options.envdir = str(CACHE / "nox")
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "docs", "tests", "later"]

PYTHON = "3.11"
#: the lint session installs only ruff; keep equal to pyproject.toml's dev pin
RUFF = "ruff==0.17.6"
#: the docs session's site generator; keep equal to pyproject.toml's dev pin
MKDOCS = "mkdocs==1.6.1"


def _install(session: nox.Session) -> None:
    session.install("-e", ".[dev]")


@nox.session(python=PYTHON, tags=["check"])
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install(RUFF)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON, tags=["check"])
def typecheck(session: nox.Session) -> None:
    """mypy --strict on src/, tasks.py and tests/ in one run (pyproject's [tool.mypy] files)."""
    _install(session)
    session.run("mypy")


@nox.session(python=PYTHON, tags=["check"])
def docs(session: nox.Session) -> None:
    """The generated reference is current (inv docs --check), and mkdocs builds docs/ in
    strict mode: a broken link, a missing page or an unknown anchor fails."""
    _install(session)
    session.install(MKDOCS)
    session.run("inv", "docs", "--check")
    site = Path(session.create_tmp()) / "site"
    session.run("mkdocs", "build", "--strict", "--site-dir", str(site))


#: pytest-xdist: 4 workers on 2 cores (the integration worlds mostly wait); a file's tests
#: on one worker, so each module-scoped world is built once (session-scoped servers, once
#: per worker, take their addresses and ports from the worker's pid and free ports)
PARALLEL = ["-n", "4", "--dist", "loadfile"]


@nox.session(python=PYTHON, tags=["test"])
def tests(session: nox.Session) -> None:
    """pytest: unit and integration tests (posargs pass through).

    As root, first installs what the machine lacks (scripts/setup-machine.sh,
    each step only if missing); otherwise tests whose servers are missing skip
    locally (and fail under CI).
    """
    if os.geteuid() == 0 and not os.environ.get("TAILWART_SKIP_SETUP"):
        session.run("bash", str(ROOT / "scripts" / "setup-machine.sh"), external=True)
    _install(session)
    # worlds side by side (most of their time is waiting on servers), each on one worker;
    # the slowest tests, listed at the end: where the CI budget goes
    default = ["tests", *PARALLEL, "--durations=15"]
    session.run("pytest", *(session.posargs or default))


@nox.session(python=PYTHON, tags=["test"])
def unit(session: nox.Session) -> None:
    """Unit tests only: no root, no machine setup, no servers (real tools they use
    skip when missing unless TAILWART_REQUIRE_TOOLS is on)."""
    _install(session)
    session.run("pytest", *(session.posargs or ["tests/unit"]))


#: how far ``nox -s later`` moves the clock: past every certificate and fixture date
LATER = "+400d"


@nox.session(python=PYTHON, tags=["test"])
def later(session: nox.Session) -> None:
    """Unit tests with the system clock moved 400 days ahead (Debian's faketime): a test
    that reads the wall clock where it should read tailwart.clock fails here, not on a
    date in the future. Posargs pass through to pytest."""
    faketime = shutil.which("faketime")
    if faketime is None:
        session.error("faketime is not installed (apt-get install faketime)")
    _install(session)
    # monotonic clocks move by the same offset (libfaketime refuses absolute sleeps
    # on an unshifted monotonic clock with EINVAL), so timeouts keep the real pace
    env: dict[str, str] = {}
    shifted = [faketime, "-f", LATER]
    # the shift must really happen, or this session would prove nothing
    year = session.run(
        *shifted,
        "python",
        "-c",
        "import time; print(time.gmtime().tm_year)",
        env=env,
        external=True,
        silent=True,
    )
    if not isinstance(year, str) or int(year.strip()) <= time.gmtime().tm_year:
        session.error(f"faketime -f {LATER} did not move the clock (saw year {year!r})")
    default = ["tests/unit", "-n", "2", "--dist", "loadfile"]
    session.run(*shifted, "pytest", *(session.posargs or default), env=env, external=True)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks: each benchmarks/bench_*.py prints ratios against a baseline run beside it."""
    _install(session)
    scripts = sorted((ROOT / "benchmarks").glob("bench_*.py"))
    # `edge-held` and `edge_held` both name bench_edge_held.py
    wanted = {name.replace("-", "_") for name in session.posargs}
    for script in scripts:
        if not wanted or script.stem.removeprefix("bench_") in wanted:
            session.run("python", str(script))


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The main job on built-in defaults: build caddy-l4 and prove PROXY v2 on the wire."""
    _install(session)
    session.run("inv", "demo", *session.posargs)


@nox.session(python=PYTHON, default=False)
def live(session: nox.Session) -> None:
    """Acceptance against a real Stalwart: nox -s live -- --stalwart-bin PATH [--record].

    Runs the binary in a network namespace with real Postgres, Redis, Garage and the
    caddy-l4 edge (root only), and, as an image made from it, in the committed compose
    file on the Docker world (headscale tailnet, the edge host, real backends).
    --record copies the JMAP exchanges, secrets scrubbed, into
    tests/fixtures/stalwart-0.16.18/. Not a default session.
    """
    args = list(session.posargs)
    env = {}
    if "--record" in args:
        args.remove("--record")
        env["TAILWART_LIVE_RECORD"] = "1"
    if "--stalwart-bin" not in args or args.index("--stalwart-bin") + 1 >= len(args):
        session.error("usage: nox -s live -- --stalwart-bin PATH [--record] [pytest args]")
    at = args.index("--stalwart-bin")
    binary = Path(args[at + 1]).resolve()
    del args[at : at + 2]
    if not binary.is_file():
        session.error(f"--stalwart-bin {binary}: no such file")
    env["TAILWART_STALWART_BIN"] = str(binary)
    _install(session)
    session.run("pytest", "tests/live", "-v", "-p", "no:cacheprovider", *args, env=env)
