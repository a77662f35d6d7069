"""Helpers every test may import (``from testkit import need, ...``).

Kept out of conftest.py: several directories have a conftest.py, so importing
"conftest" by name picks whichever was loaded first. tests/conftest.py puts
this directory on sys.path before any test module is imported.

Under CI (``CI`` or ``TAILWART_REQUIRE_TOOLS`` set) a missing tool or server
FAILS the test instead of skipping it, so a green CI cannot hide a missing
install step.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
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


def write_env(path: Path, values: dict[str, str], mode: int = 0o600) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(mode)
    return path


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
