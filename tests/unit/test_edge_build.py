"""Build logic of the edge binary without building: pins, stamp, Go checks, error messages.

Go is faked with small scripts on PATH; nothing here contacts a network.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tailwart.edge import build
from tailwart.edge.build import (
    EdgeBuildError,
    Pins,
    PinsError,
    binary_name,
    build_stamp,
    classify_failure,
    ensure_caddy,
    load_pins,
    parse_go_version,
    stamp_hash,
)

ROOT = Path(__file__).resolve().parents[2]
PINS = Pins(caddy="v2.11.9", caddy_l4="v0.1.2", xcaddy="v0.4.5", min_go="1.25.1")


def fake_go(bin_dir: Path, version: str, install_output: str = "", install_code: int = 0) -> Path:
    """A `go` that reports ``version`` and answers `go install` with the given output."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    go = bin_dir / "go"
    go.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = version ]; then echo "go version {version} linux/amd64"; exit 0; fi\n'
        f"printf '%s\\n' '{install_output}' >&2\n"
        f"exit {install_code}\n"
    )
    go.chmod(go.stat().st_mode | stat.S_IXUSR)
    return go


def test_the_committed_pins_are_the_issues() -> None:
    assert load_pins(ROOT) == PINS
    assert load_pins() == PINS


def test_bad_pins_are_all_reported_at_once_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "caddy").mkdir()
    (tmp_path / "caddy" / "pins.toml").write_text(
        'caddy = "latest"\ncaddy_l4 = 1\nxcaddy = "v0.4.5"\nmin_go = "one"\nextra = "x"\n'
    )
    with pytest.raises(PinsError) as err:
        load_pins(tmp_path)
    text = str(err.value)
    assert err.value.exit_code == 2
    for fragment in ("caddy = 'latest'", "caddy_l4 = 1", "min_go = 'one'", "extra: unknown key"):
        assert fragment in text


def test_missing_or_broken_pins_file(tmp_path: Path) -> None:
    with pytest.raises(PinsError, match="missing"):
        load_pins(tmp_path)
    (tmp_path / "caddy").mkdir()
    (tmp_path / "caddy" / "pins.toml").write_text("caddy = \n")
    with pytest.raises(PinsError, match="not valid TOML"):
        load_pins(tmp_path)


def test_binary_name_carries_version_os_and_arch() -> None:
    assert binary_name(PINS, "linux", "arm64") == "caddy-v2.11.9-l4-v0.1.2-linux-arm64"


def test_the_stamp_changes_with_every_input() -> None:
    base = stamp_hash(build_stamp(PINS, "linux", "amd64", "go1.26.8"))
    variants = [
        build_stamp(Pins("v2.11.8", "v0.1.2", "v0.4.5", "1.25.1"), "linux", "amd64", "go1.26.8"),
        build_stamp(Pins("v2.11.9", "v0.1.1", "v0.4.5", "1.25.1"), "linux", "amd64", "go1.26.8"),
        build_stamp(Pins("v2.11.9", "v0.1.2", "v0.4.4", "1.25.1"), "linux", "amd64", "go1.26.8"),
        build_stamp(PINS, "linux", "arm64", "go1.26.8"),
        build_stamp(PINS, "linux", "amd64", "go1.26.9"),
    ]
    hashes = {stamp_hash(v) for v in variants}
    assert base not in hashes and len(hashes) == len(variants)
    assert stamp_hash(build_stamp(PINS, "linux", "amd64", "go1.26.8")) == base


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("go version go1.26.8 linux/amd64", (1, 26, 8)),
        ("go version go1.25 linux/arm64", (1, 25, 0)),
        ("go version devel go1.27-abcdef linux/amd64", (1, 27, 0)),
        ("bash: go: not found", None),
    ],
)
def test_parse_go_version(text: str, want: tuple[int, int, int] | None) -> None:
    assert parse_go_version(text) == want


def test_go_too_old_stops_before_building(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_go(tmp_path / "bin", "go1.24.3")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.delenv("TAILWART_GO", raising=False)
    out = tmp_path / "out"
    with pytest.raises(EdgeBuildError) as err:
        ensure_caddy(pins=PINS, out_dir=out)
    assert err.value.exit_code == 1
    assert "Go too old" in str(err.value) and "go1.24.3" in str(err.value)
    assert "1.25.1" in str(err.value) and "Next:" in str(err.value)
    assert not out.exists()


def test_go_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("TAILWART_GO", raising=False)
    monkeypatch.setattr(build, "GO_FALLBACKS", ())
    with pytest.raises(EdgeBuildError, match="Go not found") as err:
        ensure_caddy(pins=PINS, out_dir=tmp_path / "out")
    assert "install Go" in str(err.value)


def test_go_install_failure_is_classified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake Go new enough but whose `go install xcaddy` cannot reach the proxy."""
    refused = (
        'go: github.com/caddyserver/xcaddy/cmd/xcaddy@v0.4.5: Get "http://127.0.0.1:9/x": '
        "dial tcp 127.0.0.1:9: connect: connection refused"
    )
    fake_go(tmp_path / "bin", "go1.26.8", refused, 1)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("TAILWART_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GOPROXY", "https://builder:hunter2@goproxy.internal.test/mod")
    lines: list[str] = []
    with pytest.raises(EdgeBuildError) as err:
        ensure_caddy(pins=PINS, out_dir=tmp_path / "out", progress=lines.append)
    text = str(err.value)
    assert "module proxy is unreachable" in text and "connection refused" in text
    assert "hunter2" not in text and "builder" not in text
    assert "GOPROXY=https://goproxy.internal.test/mod" in text
    assert any("installing xcaddy v0.4.5" in line and line.startswith("[0:0") for line in lines)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("output", "fragment"),
    [
        (
            "go: github.com/mholt/caddy-l4@v9.9.9: reading https://proxy.test/github.com/"
            "mholt/caddy-l4/@v/v9.9.9.info: 404 Not Found",
            "was refused",
        ),
        ("go: github.com/mholt/caddy-l4@latest: invalid version: unknown revision", "was refused"),
        (
            "go: github.com/mholt/caddy-l4@v0.1.2 requires go >= 1.25.1 (running go 1.24.3)",
            "Go too old",
        ),
        ("dial tcp: lookup goproxy.example.invalid: no such host", "unreachable"),
        ("compile: internal compiler error", "rerun `inv build-caddy --verbose`"),
    ],
)
def test_go_output_becomes_advice(output: str, fragment: str) -> None:
    err = classify_failure("xcaddy build", ["2026/01/01 [INFO] step", output], PINS)
    assert fragment in str(err)
    assert "Next:" in str(err)


def test_progress_shows_the_step_and_elapsed_time(tmp_path: Path) -> None:
    lines: list[str] = []
    runner = build._Runner(lines.append, verbose=False, started=time.monotonic())
    code, tail = runner.run(
        ["sh", "-c", "echo '[INFO] Pinning versions'; echo '[INFO] Build environment ready'"],
        env=dict(os.environ),
        cwd=tmp_path,
        step="building",
        markers=(("Pinning versions", "resolving"), ("Build environment ready", "compiling")),
    )
    assert code == 0 and tail[-1].endswith("Build environment ready")
    assert [line.split("] ", 1)[1] for line in lines] == ["building", "resolving", "compiling"]
    assert all(line.startswith("[0:00] ") for line in lines)


def test_verbose_streams_the_output(tmp_path: Path) -> None:
    lines: list[str] = []
    runner = build._Runner(lines.append, verbose=True, started=0.0)
    runner.run(["sh", "-c", "echo go: downloading x"], env=dict(os.environ), cwd=tmp_path, step="s")
    assert "    go: downloading x" in lines


def _inv(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_build_caddy_task_exit_codes(tmp_path: Path) -> None:
    fake_go(tmp_path / "bin", "go1.21.0")
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}
    env.pop("TAILWART_GO", None)
    old = _inv("build-caddy", env=env)
    assert old.returncode == 1, old.stderr
    assert "Go too old" in old.stderr and "Traceback" not in old.stderr

    missing = _inv("build-caddy", env={**env, "TAILWART_GO": str(tmp_path / "nope")})
    assert missing.returncode == 1
    assert "Go not found" in missing.stderr

    bad_arch = _inv("build-caddy", "--arch", "sparc", env=env)
    assert bad_arch.returncode == 2
    assert "amd64|arm64" in bad_arch.stderr


def _elf(path: Path, machine: int) -> Path:
    path.write_bytes(b"\x7fELF" + bytes(14) + machine.to_bytes(2, "little") + bytes(64))
    return path


def test_a_cross_build_is_checked_by_elf_header_and_embedded_modules(tmp_path: Path) -> None:
    go = tmp_path / "go"
    go.write_text(
        "#!/bin/sh\n"
        'echo "$3: go1.26.8"\n'
        "printf '\\tdep\\tgithub.com/caddyserver/caddy/v2\\tv2.11.9\\th1:x=\\n'\n"
        "printf '\\tdep\\tgithub.com/mholt/caddy-l4\\tv0.1.2\\th1:y=\\n'\n"
        "printf '\\tbuild\\tGOARCH=arm64\\n\\tbuild\\tGOOS=linux\\n'\n"
    )
    go.chmod(0o755)
    arm = _elf(tmp_path / "caddy-arm64", 0xB7)
    info = build.verify_cross(go, arm, PINS, "linux", "arm64")
    assert info.startswith("go1.26.8") and str(arm) not in info
    with pytest.raises(EdgeBuildError, match="not a linux/arm64 ELF"):
        build.verify_cross(go, _elf(tmp_path / "caddy-x86", 0x3E), PINS, "linux", "arm64")
    other = Pins("v2.11.9", "v0.1.1", "v0.4.5", "1.25.1")
    with pytest.raises(EdgeBuildError, match=r"caddy-l4 v0\.1\.1 not found"):
        build.verify_cross(go, arm, other, "linux", "arm64")
