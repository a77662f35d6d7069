"""Shared test helpers.

Under CI (``CI`` or ``TAILWART_REQUIRE_TOOLS`` set) a missing tool or server
FAILS the test instead of skipping it, so a green CI cannot hide a missing
install step. Tests never read the operator's real ~/.ssh, .env or credentials:
HOME is pointed at a temp dir for every test.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

REQUIRE_TOOLS = bool(os.environ.get("CI") or os.environ.get("TAILWART_REQUIRE_TOOLS"))
#: the real user's cache of built tools (caddy, garage, compose...), read before HOME is faked
TOOL_CACHE = Path(os.environ.get("TAILWART_CACHE", Path.home() / ".cache" / "tailwart"))


def need(condition: bool, why: str) -> None:
    """Skip locally, fail under CI, when a prerequisite is missing."""
    if condition:
        return
    if REQUIRE_TOOLS:
        pytest.fail(f"prerequisite missing under CI: {why}", pytrace=False)
    pytest.skip(why)


def need_tool(name: str) -> str:
    """Path of executable ``name`` (PATH, then /usr/sbin), or skip/fail."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/lib/postgresql/15/bin")
    need(path is not None, f"{name} is not installed (scripts/setup-machine.sh installs it)")
    assert path is not None
    return path


def need_root() -> None:
    need(os.geteuid() == 0, "needs root for network namespaces")


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TAILWART_CACHE", str(TOOL_CACHE))
    for var in list(os.environ):
        if var.startswith(
            ("TS_", "STALWART_", "PG_ADMIN", "GARAGE_", "HEADSCALE_", "SSH_AUTH_SOCK")
        ):
            monkeypatch.delenv(var, raising=False)
    yield


@pytest.fixture
def example_values() -> dict[str, str]:
    """Valid .env values (secrets generated for this test)."""
    from tailwart.settings.example import example_values as values

    return values()


def write_env(path: Path, values: dict[str, str], mode: int = 0o600) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(mode)
    return path
