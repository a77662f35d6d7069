"""What changed between two doctor runs (``inv doctor --diff``): pure.

A problem is a finding that is a warning or an error. Between a run and the one
before it: new problems (a check that got worse: ok → warning → error), problems
resolved (a check that got better), and values drifting toward their limit (a
measured finding, ``Finding.value``, whose status stayed the same, that moved
closer to its ``limit`` and is now within a factor of two of it: a certificate
with under 28 days left that did not renew, a backup more than half a day old).
Messages that change without the status changing (times, counts) are not news.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..findings import Finding, Status
from .history import Run

_RANK = {Status.OK: 0, Status.WARNING: 1, Status.ERROR: 2}
_MARK = {Status.OK: "ok", Status.WARNING: "WARN", Status.ERROR: "ERROR"}
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: how far a baseline may fall short of --since (a timer's accuracy and random delay)
SLACK = 1 / 8


@dataclass(frozen=True)
class Drift:
    id: str
    before: float
    after: float
    limit: float
    unit: str


@dataclass(frozen=True)
class Change:
    """The difference between ``before`` and ``after`` (two runs)."""

    before: Run
    after: Run
    #: (what it was, or None for a check that did not run before; what it is)
    worse: tuple[tuple[Finding | None, Finding], ...]
    better: tuple[tuple[Finding, Finding], ...]
    drifting: tuple[Drift, ...]
    #: problems the newer run no longer checks
    unchecked: tuple[Finding, ...]

    @property
    def unchanged(self) -> bool:
        return not (self.worse or self.better or self.drifting or self.unchecked)


def parse_since(value: str) -> dt.timedelta | str:
    """``--since`` (``90m``, ``24h``, ``7d``, ``2w``) as a duration, else the problem."""
    match = re.fullmatch(r"([1-9][0-9]{0,5})([mhdw])", value.strip())
    if not match:
        return f"--since {value!r}: expected a whole number and m, h, d or w (e.g. 24h, 7d)"
    return dt.timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def baseline(runs: Sequence[Run], now: dt.datetime, since: dt.timedelta) -> Run | None:
    """The newest run recorded at least ``since`` before ``now`` (less ``SLACK`` of it),
    else the oldest run before ``now``; None without one."""
    earlier = [r for r in runs if r.at < now]
    due = now - since * (1 - SLACK)
    old_enough = [r for r in earlier if r.at <= due]
    if old_enough:
        return max(old_enough, key=lambda r: r.at)
    return min(earlier, key=lambda r: r.at) if earlier else None


def _drift(before: Finding, after: Finding) -> Drift | None:
    if before.value is None or after.value is None or after.limit is None:
        return None
    limit = after.limit
    if before.limit != limit or before.unit != after.unit or limit <= 0:
        return None
    closer = abs(after.value - limit) < abs(before.value - limit)
    near = limit / 2 < after.value < limit * 2
    if closer and near:
        return Drift(after.id, before.value, after.value, limit, after.unit)
    return None


def compare(before: Run, after: Run) -> Change:
    """What changed from ``before`` to ``after``, in ``after``'s check order."""
    old = {f.id: f for f in before.findings}
    new_ids = {f.id for f in after.findings}
    worse: list[tuple[Finding | None, Finding]] = []
    better: list[tuple[Finding, Finding]] = []
    drifting: list[Drift] = []
    for f in after.findings:
        was = old.get(f.id)
        rank, was_rank = _RANK[f.status], _RANK[was.status] if was else 0
        if rank > was_rank:
            worse.append((was, f))
        elif was is not None and rank < was_rank:
            better.append((was, f))
        elif was is not None:
            drift = _drift(was, f)
            if drift:
                drifting.append(drift)
    unchecked = [f for f in before.findings if f.id not in new_ids and f.status is not Status.OK]
    return Change(before, after, tuple(worse), tuple(better), tuple(drifting), tuple(unchecked))


def when(at: dt.datetime) -> str:
    return f"{at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


def _line(f: Finding, was: Finding | None = None) -> list[str]:
    before = (
        f" (was {_MARK[was.status]})" if was is not None and was.status is not Status.OK else ""
    )
    lines = [f"  {_MARK[f.status]:<5} {f.id}{before}: {f.message}"]
    if f.advice and f.status is not Status.OK:
        lines.append(f"        → {f.advice}")
    return [line.replace("\n", "\\n") + "\n" for line in lines]


def _number(value: float) -> str:
    return f"{value:g}"


def still(run: Run) -> str:
    """``1 error, 2 warnings: id, id, id`` for the problems of ``run``; "" without."""
    problems = [f for f in run.findings if f.status is not Status.OK]
    if not problems:
        return ""
    errors = sum(1 for f in problems if f.status is Status.ERROR)
    warnings = len(problems) - errors
    counts = ", ".join(
        f"{n} {word}{'s' if n != 1 else ''}"
        for n, word in ((errors, "error"), (warnings, "warning"))
        if n
    )
    return f"{counts}: {', '.join(f.id for f in problems)}"


def render(change: Change) -> str:
    """The report: one line when nothing changed, else a section per kind of change."""
    since = when(change.before.at)
    remaining = still(change.after)
    if change.unchanged:
        return f"no change since {since}" + (f" (still {remaining})" if remaining else "") + "\n"
    out = [f"changes since {since} (this run: {when(change.after.at)}):\n"]
    if change.worse:
        out.append(f"new problems ({len(change.worse)}):\n")
        for was, f in change.worse:
            out += _line(f, was)
    if change.better:
        out.append(f"resolved or better ({len(change.better)}):\n")
        for was, f in change.better:
            out += _line(f, was)
    if change.drifting:
        out.append(f"drifting toward a limit ({len(change.drifting)}):\n")
        for d in change.drifting:
            out.append(
                f"  {d.id}: {_number(d.before)} → {_number(d.after)} {d.unit} "
                f"(limit {_number(d.limit)})\n"
            )
    if change.unchecked:
        out.append(f"no longer checked ({len(change.unchecked)}):\n")
        for f in change.unchecked:
            out += _line(f)
    if remaining:
        out.append(f"problems now: {remaining}\n")
    return "".join(out)


def first_run(run: Run, recording: bool) -> str:
    """The report when nothing was recorded before ``run`` (``recording``: this one is)."""
    remaining = still(run)
    hint = "this run is the first recorded" if recording else "record runs with --record"
    return (
        f"no earlier recorded run to compare with ({hint}); "
        f"{'problems now: ' + remaining if remaining else 'no problems'}\n"
    )
