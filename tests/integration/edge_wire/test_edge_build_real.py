"""ensure_caddy with the real Go toolchain: warm no-op, verified artefacts, and the failures
a user meets (proxy unreachable, version refused) provoked on loopback only.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tailwart.edge.build import (
    EdgeBuildError,
    Pins,
    _host_target,
    ensure_caddy,
    find_go,
    load_patch,
    load_pins,
)
from tailwart.testing.standin import free_port
from tests.support.testkit import TOOL_CACHE, need

from .conftest import _GO_CACHES

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _real_go(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        find_go()
    except EdgeBuildError as exc:
        need(False, str(exc))
    for key, value in _GO_CACHES.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def not_found_proxy() -> Iterator[str]:
    """A module proxy on loopback that answers 404 to everything."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404, "not found")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _isolated_go(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, proxy: str) -> None:
    """An empty module cache and a loopback-only GOPROXY: every download must ask it."""
    monkeypatch.setenv("GOMODCACHE", str(tmp_path / "gomod"))
    monkeypatch.setenv("GOPROXY", proxy)
    monkeypatch.setenv("GOSUMDB", "off")
    monkeypatch.setenv("GOFLAGS", "-mod=mod")
    monkeypatch.setenv("TAILWART_CACHE", str(tmp_path / "cache"))


def _link_xcaddy(tmp_path: Path, pins: Pins) -> None:
    """Reuse the installed xcaddy in the temp cache (the build step is what is tested)."""
    real = TOOL_CACHE / "tools" / f"xcaddy-{pins.xcaddy}"
    need((real / "xcaddy").exists(), f"xcaddy {pins.xcaddy} not installed yet (inv build-caddy)")
    (tmp_path / "cache" / "tools").mkdir(parents=True)
    (tmp_path / "cache" / "tools" / real.name).symlink_to(real)


def test_build_is_verified_and_a_warm_call_changes_nothing(tmp_path: Path) -> None:
    first = ensure_caddy(*_host_target(), out_dir=tmp_path)
    assert first.action in {"built", "copied from cache", "unchanged"}
    # issue 25: a patched caddy-l4 (caddy/pins.toml) puts its sha256 prefix in the name
    patch = load_patch()
    tag = f"-p{patch.sha256[:8]}" if patch else ""
    assert first.path.name == f"caddy-v2.11.9-l4-v0.1.2{tag}-{first.goos}-{first.goarch}"
    assert first.version == "v2.11.9"
    mtime = first.path.stat().st_mtime_ns

    again = ensure_caddy(*_host_target(), out_dir=tmp_path)
    assert again.action == "unchanged"
    assert again.sha256 == first.sha256
    assert first.path.stat().st_mtime_ns == mtime

    sums = (tmp_path / f"{first.path.name}.sha256").read_text()
    assert sums == f"{first.sha256}  {first.path.name}\n"
    info = (tmp_path / f"{first.path.name}.build-info").read_text()
    assert "github.com/mholt/caddy-l4\tv0.1.2" in info
    stamp = json.loads((tmp_path / f"{first.path.name}.stamp.json").read_text())
    assert stamp["sha256"] == first.sha256 and stamp["stamp"]["caddy_l4"] == "v0.1.2"
    modules = json.loads(
        subprocess.run(
            [str(first.path), "list-modules", "--json"], capture_output=True, check=True
        ).stdout
    )
    names = {m["module_name"] for m in modules}
    assert {"layer4", "layer4.handlers.proxy"} <= names


def test_a_changed_binary_is_replaced(tmp_path: Path) -> None:
    built = ensure_caddy(*_host_target(), out_dir=tmp_path)
    built.path.write_bytes(b"tampered")
    again = ensure_caddy(*_host_target(), out_dir=tmp_path)
    assert again.action == "copied from cache"
    assert again.path.read_bytes()[:4] == b"\x7fELF"


def test_module_proxy_unreachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    closed = free_port("127.0.0.1")  # nothing listens there
    _isolated_go(monkeypatch, tmp_path, f"http://127.0.0.1:{closed}")
    with pytest.raises(EdgeBuildError) as err:
        ensure_caddy(*_host_target(), out_dir=tmp_path / "out")
    assert "module proxy is unreachable" in str(err.value)
    assert f"GOPROXY=http://127.0.0.1:{closed}" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_a_refused_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, not_found_proxy: str
) -> None:
    pins = load_pins()
    _isolated_go(monkeypatch, tmp_path, not_found_proxy)
    _link_xcaddy(tmp_path, pins)
    wrong = Pins(caddy="v2.99.99", caddy_l4=pins.caddy_l4, xcaddy=pins.xcaddy, min_go=pins.min_go)
    with pytest.raises(EdgeBuildError) as err:
        ensure_caddy(*_host_target(), pins=wrong, out_dir=tmp_path / "out")
    assert "was refused" in str(err.value) and "v2.99.99" in str(err.value)


def test_a_failed_build_leaves_the_previous_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, not_found_proxy: str
) -> None:
    out = tmp_path / "out"
    good = ensure_caddy(*_host_target(), out_dir=out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    _isolated_go(monkeypatch, tmp_path, not_found_proxy)
    _link_xcaddy(tmp_path, good.pins)
    lines: list[str] = []
    with pytest.raises(EdgeBuildError):
        ensure_caddy(*_host_target(), force=True, out_dir=out, progress=lines.append)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert any("building caddy v2.11.9" in line for line in lines)


def test_build_caddy_task_warm(tmp_path: Path) -> None:
    env = {**os.environ, **_GO_CACHES}
    run = [sys.executable, "-m", "invoke", "build-caddy"]
    first = subprocess.run(run, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert first.returncode == 0, first.stderr
    warm = subprocess.run(run, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert warm.returncode == 0, warm.stderr
    assert warm.stdout.startswith("unchanged: ")
    assert "caddy/bin/caddy-v2.11.9-l4-v0.1.2-" in warm.stdout
