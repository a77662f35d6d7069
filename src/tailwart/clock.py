"""The one clock that everything judging time reads.

Certificate days left and expiry warnings, backup age, deploy-lock and audit
times, manifests and markers all call :func:`now`. Nothing else in tailwart calls
``datetime.now``: a test or a replay sets the clock once with :func:`frozen` (or
:func:`use`) and every judgement follows it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: a clock: returns an aware UTC datetime
Clock = Callable[[], dt.datetime]


def system() -> dt.datetime:
    """The machine's clock, in UTC."""
    return dt.datetime.now(dt.UTC)


_current: Clock = system


def now() -> dt.datetime:
    """The current time of the clock in use (aware, UTC)."""
    return _current()


def utc_stamp() -> str:
    """:func:`now` as ``YYYY-MM-DDTHH:MM:SSZ`` (audit lines, lock files, markers)."""
    return now().strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(text: str) -> dt.datetime:
    """An ISO 8601 time with a zone (``Z`` or an offset), as an aware UTC datetime."""
    at = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if at.tzinfo is None:
        raise ValueError(f"{text!r}: a time without a zone")
    return at.astimezone(dt.UTC)


@contextmanager
def use(clock: Clock) -> Iterator[Clock]:
    """Read time from ``clock`` inside the block (tests, replays of recordings)."""
    global _current
    previous, _current = _current, clock
    try:
        yield clock
    finally:
        _current = previous


@contextmanager
def frozen(at: dt.datetime | str) -> Iterator[Clock]:
    """A clock that stands still at ``at`` (an aware datetime or ISO 8601 text)."""
    fixed = parse(at) if isinstance(at, str) else at.astimezone(dt.UTC)
    with use(lambda: fixed) as clock:
        yield clock
