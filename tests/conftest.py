"""Fixtures for every test. Shared helpers live in tests/support (``tests.support.testkit``).

Tests never read the operator's real ~/.ssh, .env or credentials: HOME is
pointed at a temp dir for every test, and tailwart's own variables are cleared.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.testkit import (
    FAILURE_NOTES,
    GO_ENV,
    REQUIRE_TOOLS,
    ROOT,
    TOOL_CACHE,
    need,
    need_root,
    need_tool,
    write_env,
)

__all__ = [
    "GO_ENV",
    "REQUIRE_TOOLS",
    "ROOT",
    "TOOL_CACHE",
    "need",
    "need_root",
    "need_tool",
    "write_env",
]


#: the unit tests' clock (the day the recorded Stalwart exchanges were made)
UNIT_NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
UNIT_TESTS = Path(__file__).resolve().parent / "unit"


@pytest.fixture(autouse=True)
def _fixed_clock(request: pytest.FixtureRequest) -> Iterator[None]:
    """Unit tests run at a fixed clock: whatever judges time (certificate days left,
    expiry warnings, backup age, lock and audit times) reads ``tailwart.clock``, which
    every unit test freezes. A module that defines ``NOW`` (an aware datetime) is frozen
    there instead: the TLS-files tests make certificates around the machine's time
    because `openssl`, their oracle, judges by the machine's clock."""
    if UNIT_TESTS not in Path(str(request.node.path)).parents:
        yield
        return
    from tailwart import clock

    at = getattr(request.module, "NOW", UNIT_NOW)
    assert isinstance(at, dt.datetime) and at.tzinfo is not None
    with clock.frozen(at):
        yield


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TAILWART_CACHE", str(TOOL_CACHE))
    for var, value in GO_ENV.items():
        monkeypatch.setenv(var, value)
    prefixes: tuple[str, ...] = ("TS_", "STALWART_", "PG_ADMIN", "GARAGE_", "HEADSCALE_")
    prefixes += ("SSH_AUTH_SOCK", "BACKUP_", "RESTIC_", "TAILWART_RESTIC")
    for var in list(os.environ):
        if var.startswith(prefixes):
            monkeypatch.delenv(var, raising=False)
    yield


@pytest.fixture
def example_values() -> dict[str, str]:
    """Valid .env values (secrets generated for this test)."""
    from tailwart.settings.example import example_values as values

    return values()


#: the files that take longest, started first (``pytest -n N --dist loadfile``: each file
#: on one worker, its module-scoped world built once) so that the run does not end
#: waiting on one of them
SLOWEST_FIRST = (
    "tests/integration/test_mailbox_live.py",
    "tests/integration/test_policy_evaluate_headscale.py",
    "tests/integration/backends/test_backup_hostile.py",
    "tests/integration/backends/test_backup_restore.py",
    "tests/integration/edge_wire/test_edge_wire.py",
    "tests/integration/backends/test_backends_bootstrap.py",
    "tests/integration/test_edge_deploy_netns.py",
    "tests/integration/test_acl_headscale.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slowest files first (a stable sort: each file's tests keep their order)."""
    rank = {path: index for index, path in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test's report gains the state its fixtures describe (testkit.explain_on_failure),
    taken before any teardown runs."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if report.when != "call" or not report.failed:
        return
    for explain in item.stash.get(FAILURE_NOTES, []):
        try:
            text = explain()
        except Exception as exc:  # the note must never hide the failure itself
            text = f"(could not describe the state: {exc!r})"
        report.sections.append(("state at the failure", text))
