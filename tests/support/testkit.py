"""Helpers every test may import (``from tests.support.testkit import need, ...``).

Kept out of conftest.py, which pytest loads itself: a test imports what it uses
from here by its full name (pytest's ``pythonpath`` puts src/ and the work tree
first on sys.path).

Under CI (``CI`` or ``TAILWART_REQUIRE_TOOLS`` set) a missing tool or server
FAILS the test instead of skipping it, so a green CI cannot hide a missing
install step.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

ROOT = Path(__file__).resolve().parents[2]
#: the work tree's sources: a child Python that imports tailwart gets them as PYTHONPATH
SRC = ROOT / "src"
_ON = frozenset({"1", "true", "yes", "on"})


def _require_tools(environ: Mapping[str, str]) -> bool:
    """TAILWART_REQUIRE_TOOLS decides when set (``0``/``false`` means off, even under
    CI); otherwise a set ``CI`` (any value but 0/false) turns it on."""
    explicit = environ.get("TAILWART_REQUIRE_TOOLS", "").strip().lower()
    if explicit:
        return explicit in _ON
    ci = environ.get("CI", "").strip().lower()
    return bool(ci) and ci not in {"0", "false", "no", "off"}


REQUIRE_TOOLS = _require_tools(os.environ)
#: the real user's cache of built tools (caddy, garage, compose...), read before HOME is faked
TOOL_CACHE = Path(os.environ.get("TAILWART_CACHE", Path.home() / ".cache" / "tailwart"))


_REAL_HOME = Path.home()
#: Go's caches stay the real ones (a build inside a test must not start cold)
GO_ENV = {
    "GOCACHE": os.environ.get("GOCACHE") or str(_REAL_HOME / ".cache" / "go-build"),
    "GOMODCACHE": os.environ.get("GOMODCACHE") or str(_REAL_HOME / "go" / "pkg" / "mod"),
    "GOPATH": os.environ.get("GOPATH") or str(_REAL_HOME / "go"),
}


#: callables a fixture registers on its test (``request.node.stash``); when the test fails,
#: the hook in conftest.py adds what each returns to the report: the state at the failure
FAILURE_NOTES = pytest.StashKey[list[Callable[[], str]]]()


def explain_on_failure(node: pytest.Item, explain: Callable[[], str]) -> None:
    """Add ``explain()`` to ``node``'s report if its test fails (taken at that moment)."""
    node.stash.setdefault(FAILURE_NOTES, []).append(explain)


def need(condition: bool, why: str) -> None:
    """Skip locally, fail under CI, when a prerequisite is missing."""
    if condition:
        return
    if REQUIRE_TOOLS:
        pytest.fail(f"prerequisite missing under CI: {why}", pytrace=False)
    pytest.skip(why)


def need_tool(name: str) -> str:
    """Path of executable ``name`` (PATH, then sbin and Postgres' bin), or skip/fail."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/lib/postgresql/15/bin")
    need(path is not None, f"{name} is not installed (scripts/setup-machine.sh installs it)")
    assert path is not None
    return path


def need_root() -> None:
    need(os.geteuid() == 0, "needs root for network namespaces")


def built_caddy(out_dir: Path) -> Path:
    """The verified caddy-l4 binary (built or reused through ``ensure_caddy``, the code of
    ``inv build-caddy``), copied into ``out_dir``; skip locally, fail under CI, if it cannot be."""
    from tailwart.edge.build import EdgeBuildError, _host_target, ensure_caddy

    saved = {k: os.environ.get(k) for k in GO_ENV}
    os.environ.update(GO_ENV)
    try:
        built = ensure_caddy(*_host_target(), out_dir=out_dir)
    except EdgeBuildError as exc:
        need(False, f"cannot build caddy-l4: {exc}")
        raise
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return built.path


def self_signed_ca(
    common_name: str, path_length: int | None = None
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A P-256 CA (10 years, from yesterday; may sign certificates and CRLs)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


@contextlib.contextmanager
def counting_listener() -> Iterator[tuple[int, list[int]]]:
    """A TCP port on 127.0.0.1 that accepts and counts connections (nothing must arrive)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    seen: list[int] = []
    yield server.getsockname()[1], seen
    sel = selectors.DefaultSelector()
    sel.register(server, selectors.EVENT_READ)
    while sel.select(timeout=0.2):
        conn, _ = server.accept()
        seen.append(1)
        conn.close()
    server.close()


def write_env(path: Path, values: dict[str, str], mode: int = 0o600) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(mode)
    return path


#: what a terminal would act on in a task's output: C0 (the newline aside), DEL, C1
RAW_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def boundary_clean(proc: subprocess.CompletedProcess[str], *secrets: str) -> str:
    """A task's combined output, after asserting the boundary's promises about it: no
    traceback, never the ``unexpected`` catch-all, no raw control character, no secret."""
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text, text
    assert "unexpected" not in text, text
    assert not RAW_CONTROL.search(text), repr(text)
    for secret in secrets:
        assert secret not in text, text
    return text


def inv(
    *args: str,
    cwd: Path = ROOT,
    root: Path = ROOT,
    env_extra: Mapping[str, str] | None = None,
    timeout: float = 180,
) -> subprocess.CompletedProcess[str]:
    """Run tailwart's task runner as an operator does: tasks.py from ``root``, in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "invoke", "-r", str(root), *args],
        cwd=cwd,
        env={**os.environ, **(env_extra or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


#: Pebble, Let's Encrypt's ACME test server (scripts/setup/65-acme.sh builds it)
PEBBLE_VERSION = "v2.10.3"
PEBBLE_DIR = TOOL_CACHE / "tools" / f"pebble-{PEBBLE_VERSION}"
#: Pebble's own test certificates (its WFE's TLS: localhost, 127.0.0.1), from its module
PEBBLE_CERTS = (
    TOOL_CACHE / "src" / f"github.com_letsencrypt_pebble_v2@{PEBBLE_VERSION}" / "test/certs"
)


class Pebble:
    """A running Pebble: directory URL, its WFE's CA file, and its issuing roots."""

    def __init__(
        self,
        work: Path,
        *,
        host: str = "127.0.0.1",
        http_port: int,
        dns_server: str,
        cert: Path | None = None,
        key: Path | None = None,
        ca: Path | None = None,
        validity: int = 7776000,
        netns: str | None = None,
    ) -> None:
        import json
        import socket
        import subprocess
        import time

        binary = PEBBLE_DIR / "pebble"
        need(
            binary.is_file(), f"pebble is not built ({binary}; scripts/setup-machine.sh builds it)"
        )

        def free() -> int:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                return int(s.getsockname()[1])

        self.port, self.management = free(), free()
        self.host = host
        #: the CA of Pebble's own TLS certificate (``cert``), for its clients
        self.wfe_ca = ca or PEBBLE_CERTS / "pebble.minica.pem"
        config = {
            "pebble": {
                "listenAddress": f"{host}:{self.port}",
                "managementListenAddress": f"{host}:{self.management}",
                "certificate": str(cert or PEBBLE_CERTS / "localhost/cert.pem"),
                "privateKey": str(key or PEBBLE_CERTS / "localhost/key.pem"),
                "httpPort": http_port,
                "tlsPort": 1,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
                "retryAfter": {"authz": 1, "order": 1},
                "keyAlgorithm": "ecdsa",
                "profiles": {
                    "default": {"description": "tailwart tests", "validityPeriod": validity}
                },
            }
        }
        work.mkdir(parents=True, exist_ok=True)
        (work / "pebble.json").write_text(json.dumps(config))
        self.log = work / "pebble.log"
        argv = [str(binary), "-config", str(work / "pebble.json"), "-dnsserver", dns_server]
        if netns:
            argv = ["ip", "netns", "exec", netns, *argv]
        env = {
            "PATH": "/usr/bin:/bin",
            "PEBBLE_VA_NOSLEEP": "1",  # answer at once, not after a random pause
            "PEBBLE_WFE_NONCEREJECT": "0",  # no deliberate badNonce refusals
            "PEBBLE_AUTHZREUSE": "0",  # every order proves every name anew
        }
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection((host, self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    tail = self.log.read_text()[-2000:]
                    raise AssertionError("pebble did not start:\n" + tail) from None
                time.sleep(0.1)

    @property
    def directory(self) -> str:
        return f"https://{self.host}:{self.port}/dir"

    def root_pem(self) -> str:
        """The root Pebble signs this run's certificates with (new each start)."""
        import requests

        url = f"https://{self.host}:{self.management}/roots/0"
        return str(requests.get(url, verify=str(self.wfe_ca), timeout=10).text)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except Exception:
                self.proc.kill()


def pebble_dns(work: Path, answer: str, host: str = "127.0.0.1") -> tuple[Any, str]:
    """pebble-challtestsrv as a DNS server that answers every A query with ``answer``
    (its other servers off); returns (process, "host:port") for pebble's -dnsserver."""
    import socket
    import subprocess
    import time

    binary = PEBBLE_DIR / "pebble-challtestsrv"
    need(binary.is_file(), f"pebble-challtestsrv is not built ({binary})")
    # a port free for both UDP and TCP: pebble's VA asks DNS over TCP (va.go: dnsClient.Net
    # = "tcp"; a CI run failed "dial tcp …: connection refused" when only UDP was free)
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
            udp.bind((host, 0))
            port = udp.getsockname()[1]
            try:
                tcp.bind((host, port))
            except OSError:
                continue
            break
    with socket.socket() as s:
        s.bind((host, 0))
        management = s.getsockname()[1]
    argv = [
        str(binary), "-defaultIPv4", answer, "-defaultIPv6", "",
        "-dnsserver", f"{host}:{port}", "-management", f"{host}:{management}",
        "-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "",
    ]  # fmt: skip
    work.mkdir(parents=True, exist_ok=True)
    log = (work / "challtestsrv.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection((host, management), timeout=1).close()
            socket.create_connection((host, port), timeout=1).close()  # DNS over TCP
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("pebble-challtestsrv did not start") from None
            time.sleep(0.1)
    return proc, f"{host}:{port}"
