"""``inv doctor``: run the registry, print a table or JSON, exit 1 on any error.

With ``--record`` the run is kept in the history (``history``); with ``--diff`` the
report is what changed since the run recorded ``--since`` ago (``diff``) instead of
the table. The history is a side matter: a history directory that is full,
unwritable or corrupt gives one line on stderr, and the checks' verdict (the exit
code) stands as it is.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .. import clock
from ..errors import OperationError
from ..findings import Finding, has_errors, to_json, to_table
from ..settings import Settings
from . import runner
from .history import Run
from .registry import Baseline, DoctorContext, DoctorOptions, parse_only, registry
from .stalwart import recorded_counters

DEFAULT_SINCE = "24h"


@dataclass(frozen=True)
class ReportOptions:
    """What ``inv doctor`` does with the findings besides judging them."""

    #: keep the run in the history
    record: bool = False
    #: print what changed since the run ``since`` ago instead of the table
    diff: bool = False
    since: dt.timedelta = dt.timedelta(hours=24)
    #: where the report goes besides stdout (``delivery.CHANNELS``)
    channels: tuple[str, ...] = ()


def report_options(
    record: bool, diff: bool, since: str, as_json: bool, report_to: str = ""
) -> tuple[ReportOptions, list[str]]:
    """The report flags, and every problem with them (for ``doctor_options``)."""
    from .delivery import parse_channels
    from .diff import parse_since

    channels, problem = parse_channels(report_to)
    problems = [problem] if problem else []
    window = parse_since(since or DEFAULT_SINCE)
    if isinstance(window, str):
        problems.append(window)
        window = dt.timedelta(hours=24)
    if as_json and diff:
        problems.append("--json with --diff: choose one (the diff is a report for people)")
    if since and not diff:
        problems.append("--since: only with --diff")
    return ReportOptions(record, diff, window, channels), problems


def doctor(
    settings: Settings,
    options: DoctorOptions,
    only: str = "",
    as_json: bool = False,
    report: ReportOptions | None = None,
) -> list[Finding]:
    """Print the findings (or what changed), deliver the report to ``report.channels``;
    raise OperationError (exit 1) when any finding is an error or a channel failed."""
    from . import delivery

    report = report or ReportOptions()
    if report.channels:
        delivery.require_keys(settings, report.channels)
    groups = parse_only(only)
    counting = wants_baseline(settings, groups)
    # the history is read once: for the counters' baseline and for --diff
    runs, unreadable = recorded_runs(settings) if counting or report.diff else ([], [])
    ctx = DoctorContext(settings, options, baseline=baseline(runs) if counting else None)
    findings = runner.run(ctx, registry(ctx, groups))
    at = clock.utc_stamp()
    text = ""
    if report.record or report.diff:
        counters = recorded_counters(ctx)
        text = keep_and_compare(settings, findings, groups, report, counters, runs, unreadable)
        print(text, end="")
    if not report.diff:
        text = to_table(findings)
        print(to_json(findings) if as_json else text, end="")
    failures = []
    if report.channels:
        built = delivery.build(settings, findings, text, at)
        try:
            said = delivery.deliver(settings, built, report.channels, options.ca_file, ctx.timeout)
            print("".join(f"{line}\n" for line in said), end="", file=sys.stderr)
        except delivery.DeliveryError as exc:
            failures.append(str(exc))
    if has_errors(findings):
        failures.append("inv doctor: errors found (see above)")
    if failures:
        raise OperationError("\n".join(failures))
    return findings


def wants_baseline(settings: Settings, groups: tuple[str, ...]) -> bool:
    """Whether this run judges Stalwart's counters (their increase needs a baseline)."""
    return "stalwart" in groups and bool(settings["STALWART_METRICS_PASSWORD"])


def recorded_runs(settings: Settings) -> tuple[list[Run], list[str]]:
    """Every readable recorded run, and a line for each problem with the history (a
    directory that cannot be read, files skipped)."""
    from . import history

    directory = history.history_dir(settings)
    try:
        runs, skipped = history.load(directory)
    except history.HistoryError as exc:
        return [], [str(exc)]
    return runs, [history.skipped_line(directory, skipped)] if skipped else []


def baseline(runs: Sequence[Run]) -> Baseline | None:
    """Stalwart's counters from the newest recorded run that read them (for the stalwart
    group's increases); None without one."""
    with_counters = [run for run in runs if run.counters and run.at <= clock.now()]
    if not with_counters:
        return None
    newest = max(with_counters, key=lambda run: run.at)
    return Baseline(newest.at, newest.counters)


def keep_and_compare(
    settings: Settings,
    findings: list[Finding],
    groups: tuple[str, ...],
    report: ReportOptions,
    counters: Mapping[str, float] | None = None,
    runs: Sequence[Run] = (),
    unreadable: Sequence[str] = (),
) -> str:
    """Record the run and/or say what changed since one of ``runs`` (the history as read
    before this run, with ``unreadable`` its problems); a broken history is one line on
    stderr."""
    from . import diff, history

    run = history.Run(clock.now(), tuple(findings), groups, dict(counters or {}))
    directory = history.history_dir(settings)
    out = ""
    problems: list[str] = []
    if report.diff:
        problems += unreadable
        before = diff.baseline(runs, run.at, report.since)
        if before is None:
            out = diff.first_run(run, report.record)
        else:
            out = diff.render(diff.compare(before, run))
    if report.record:
        try:
            history.record(
                directory,
                run,
                keep=settings.integer("DOCTOR_HISTORY_KEEP"),
                days=settings.integer("DOCTOR_HISTORY_DAYS"),
            )
        except history.HistoryError as exc:
            problems.append(str(exc))
    if problems:  # one line, whatever went wrong with the directory
        print("; ".join(dict.fromkeys(problems)), file=sys.stderr)
    return out
