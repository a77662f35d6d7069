"""tailwart.clock: one injectable clock, and nothing else in src/ reads the wall clock."""

from __future__ import annotations

import ast
import datetime as dt
from pathlib import Path

import pytest

from tailwart import clock

SRC = Path(__file__).resolve().parents[2] / "src" / "tailwart"


def test_frozen_sets_the_time_and_restores_the_previous_clock() -> None:
    before = clock.now()
    with clock.frozen("2030-01-02T03:04:05Z"):
        assert clock.now() == dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
        assert clock.utc_stamp() == "2030-01-02T03:04:05Z"
        with clock.frozen(dt.datetime(2031, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))):
            assert clock.utc_stamp() == "2031-01-01T00:00:00Z"
        assert clock.utc_stamp() == "2030-01-02T03:04:05Z"
    assert clock.now() == before  # the unit tests' own frozen clock is back


def test_use_restores_the_clock_after_an_error() -> None:
    before = clock.now()
    with pytest.raises(RuntimeError), clock.use(lambda: dt.datetime(2040, 1, 1, tzinfo=dt.UTC)):
        raise RuntimeError("boom")
    assert clock.now() == before


def test_parse_wants_a_zone() -> None:
    assert clock.parse("2026-11-30T08:47:39+01:00") == dt.datetime(
        2026, 11, 30, 7, 47, 39, tzinfo=dt.UTC
    )
    with pytest.raises(ValueError, match="without a zone"):
        clock.parse("2026-11-30T08:47:39")


def _wall_clock_reads(path: Path) -> list[str]:
    """``datetime.now``/``utcnow``/``today``, ``date.today`` and ``time.time`` calls."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = node.func.attr
            owner = ast.unparse(node.func.value)
            if name in {"now", "utcnow", "today"} and owner.split(".")[-1] in {
                "datetime",
                "date",
                "dt",
            }:
                found.append(f"{path.relative_to(SRC)}:{node.lineno}: {ast.unparse(node)}")
            if name == "time" and owner == "time":
                found.append(f"{path.relative_to(SRC)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_only_the_clock_module_reads_the_wall_clock() -> None:
    reads = [
        r for p in sorted(SRC.rglob("*.py")) if p.name != "clock.py" for r in _wall_clock_reads(p)
    ]
    assert reads == []
    assert _wall_clock_reads(SRC / "clock.py")  # the scan does see a read where there is one


def test_tests_on_the_real_clock_hold_no_fixed_date() -> None:
    """Integration and live tests run tasks in subprocesses on the machine's clock, where
    `nox -s later` cannot move it: a date written into them would be judged against the
    real clock one day. Times there are made relative to now."""
    import re

    tests = SRC.parents[1] / "tests"
    date = re.compile(r"\b20\d\d-[01]\d-[0-3]\d\b")
    found = [
        f"{path.relative_to(tests)}:{number}"
        for folder in ("integration", "live")
        for path in sorted((tests / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if date.search(line)
    ]
    assert found == []
