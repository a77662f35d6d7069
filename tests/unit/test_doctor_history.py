"""inv doctor --record / --diff: the history files (bounded, atomic, never a secret)
and the diff of two runs (new problems, resolved, drift toward a limit, one line when
nothing changed), with injected findings and a frozen clock."""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tailwart import clock
from tailwart.doctor import diff, history, report
from tailwart.doctor.history import Run
from tailwart.doctor.registry import Check, DoctorContext, DoctorOptions
from tailwart.doctor.report import ReportOptions
from tailwart.errors import OperationError
from tailwart.findings import Finding, Status
from tailwart.settings import Settings, from_mapping

T0 = dt.datetime(2026, 12, 1, 6, 15, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
SECRET = "Zq8-v3ryS3cretDbPassw0rd-77"


def ok(id: str, message: str = "fine") -> Finding:
    return Finding(id, Status.OK, message, "", id.split(".")[0])


def bad(id: str, status: Status = Status.ERROR, message: str = "broken") -> Finding:
    return Finding(id, status, message, "fix it", id.split(".")[0])


def cert(days: float, status: Status = Status.OK) -> Finding:
    limit = 14 if days >= 14 else 3 if days >= 3 else 0
    return Finding("tls.imaps", status, f"valid ({int(days)} days)", "", "tls").measured(
        days, limit, "days left"
    )


def backup_age(hours: float) -> Finding:
    status = Status.WARNING if hours > 24 else Status.OK
    f = Finding("backup.snapshot.age", status, f"{hours:.1f} hours old", "", "backup")
    return f.measured(hours, 24, "hours old")


def run(at: dt.datetime, *findings: Finding) -> Run:
    return Run(at, tuple(findings), ("backends", "dns", "tls", "backup"))


# ---------------------------------------------------------------- the diff (pure)


def test_nothing_changed_is_one_line_naming_the_time() -> None:
    before = run(T0, ok("dns.mx"), cert(60), backup_age(3.0))
    after = run(T0 + DAY, ok("dns.mx", "other words"), cert(59), backup_age(3.4))
    out = diff.render(diff.compare(before, after))
    assert out == "no change since 2026-12-01 06:15 UTC\n"


def test_unchanged_problems_are_named_on_the_one_line() -> None:
    before = run(T0, bad("dns.dkim"), bad("dns.dmarc", Status.WARNING))
    after = run(T0 + DAY, bad("dns.dkim"), bad("dns.dmarc", Status.WARNING))
    out = diff.render(diff.compare(before, after))
    assert (
        out
        == "no change since 2026-12-01 06:15 UTC (still 1 error, 1 warning: dns.dkim, dns.dmarc)\n"
    )


def test_new_resolved_and_worse_are_named_and_nothing_else() -> None:
    before = run(
        T0,
        ok("dns.mx"),
        ok("dns.dkim"),
        bad("backends.redis.auth"),
        bad("tls.imap", Status.WARNING),
        ok("edge.smtp"),
    )
    after = run(
        T0 + DAY,
        ok("dns.mx"),
        bad("dns.dkim", message="s1._domainkey.example.org has no DKIM record"),
        ok("backends.redis.auth", "PONG"),
        bad("tls.imap", Status.ERROR, "expired"),
        ok("edge.smtp", "220 other banner"),
    )
    change = diff.compare(before, after)
    assert [f.id for _, f in change.worse] == ["dns.dkim", "tls.imap"]
    assert [f.id for _, f in change.better] == ["backends.redis.auth"]
    assert change.drifting == () and change.unchecked == ()
    out = diff.render(change)
    assert out.splitlines() == [
        "changes since 2026-12-01 06:15 UTC (this run: 2026-12-02 06:15 UTC):",
        "new problems (2):",
        "  ERROR dns.dkim: s1._domainkey.example.org has no DKIM record",
        "        → fix it",
        "  ERROR tls.imap (was WARN): expired",
        "        → fix it",
        "resolved or better (1):",
        "  ok    backends.redis.auth (was ERROR): PONG",
        "problems now: 2 errors: dns.dkim, tls.imap",
    ]
    assert "dns.mx" not in out and "edge.smtp" not in out


def test_a_certificate_that_did_not_renew_drifts_toward_its_limit() -> None:
    # far from the limit: a day less is no news; under twice the limit it is
    quiet = diff.compare(run(T0, cert(60)), run(T0 + DAY, cert(59)))
    assert quiet.unchanged
    change = diff.compare(run(T0, cert(27.5)), run(T0 + DAY, cert(26.5)))
    assert change.drifting == (diff.Drift("tls.imaps", 27.5, 26.5, 14, "days left"),)
    assert diff.render(change).splitlines()[1:] == [
        "drifting toward a limit (1):",
        "  tls.imaps: 27.5 → 26.5 days left (limit 14)",
    ]
    # renewed: moving away from the limit is no drift
    assert diff.compare(run(T0, cert(20)), run(T0 + DAY, cert(89))).unchanged


def test_a_backup_growing_old_drifts_then_becomes_a_new_problem() -> None:
    drift = diff.compare(run(T0, backup_age(3)), run(T0 + DAY, backup_age(15)))
    assert drift.drifting == (diff.Drift("backup.snapshot.age", 3, 15, 24, "hours old"),)
    late = diff.compare(run(T0, backup_age(15)), run(T0 + DAY, backup_age(39)))
    assert late.drifting == () and [f.id for _, f in late.worse] == ["backup.snapshot.age"]


def test_a_problem_no_longer_checked_is_said_and_a_new_ok_check_is_not() -> None:
    change = diff.compare(run(T0, bad("dns.dkim"), ok("dns.mx")), run(T0 + DAY, ok("edge.smtp")))
    assert [f.id for f in change.unchecked] == ["dns.dkim"]
    assert "no longer checked (1):" in diff.render(change) and "edge.smtp" not in diff.render(
        change
    )


def test_the_baseline_is_the_run_since_ago_allowing_a_timers_jitter() -> None:
    runs = [
        run(T0 - 2 * DAY),
        run(T0 - DAY + dt.timedelta(minutes=10)),
        run(T0 - dt.timedelta(hours=2)),
    ]
    # yesterday's run came 10 minutes late: still the one "24h ago"
    assert diff.baseline(runs, T0, dt.timedelta(hours=24)) == runs[1]
    assert diff.baseline(runs, T0, dt.timedelta(hours=48)) == runs[0]
    assert diff.baseline(runs, T0, dt.timedelta(hours=1)) == runs[2]
    # nothing that old: the oldest there is; nothing before now: none
    assert diff.baseline(runs, T0, dt.timedelta(days=30)) == runs[0]
    assert diff.baseline(runs, T0 - 3 * DAY, dt.timedelta(hours=24)) is None


@pytest.mark.parametrize(
    ("text", "seconds"), [("24h", 86400), ("90m", 5400), ("7d", 604800), ("2w", 1209600)]
)
def test_since_parses(text: str, seconds: int) -> None:
    assert diff.parse_since(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "24", "h", "0h", "1.5h", "24 hours", "-1d", "9999999d"])
def test_bad_since_names_the_flag(text: str) -> None:
    problem = diff.parse_since(text)
    assert isinstance(problem, str) and problem.startswith("--since")


# ---------------------------------------------------------------- the history files


def test_a_run_round_trips_with_its_measured_values(tmp_path: Path) -> None:
    one = run(T0, ok("dns.mx"), cert(26.5), backup_age(3.0), bad("dns.dkim", Status.WARNING))
    path = history.record(tmp_path / "h", one, keep=10, days=30)
    assert path.name == "doctor-20261201T061500Z.json"
    assert (path.stat().st_mode & 0o777, path.parent.stat().st_mode & 0o777) == (0o600, 0o700)
    doc = json.loads(path.read_text())
    assert doc["at"] == "2026-12-01T06:15:00Z"
    assert doc["findings"][1] == {
        "id": "tls.imaps",
        "group": "tls",
        "status": "ok",
        "message": "valid (26 days)",
        "advice": "",
        "value": 26.5,
        "limit": 14,
        "unit": "days left",
    }
    assert "value" not in doc["findings"][0]
    runs, skipped = history.load(tmp_path / "h")
    assert runs == [one] and skipped == []


def test_stalwarts_counters_are_kept_with_the_run_and_read_back(tmp_path: Path) -> None:
    one = replace(run(T0, ok("dns.mx")), counters={"auth_failed": 12.0, "queue_rescheduled": 3})
    path = history.record(tmp_path, one, keep=5, days=5)
    assert json.loads(path.read_text())["counters"] == {"auth_failed": 12, "queue_rescheduled": 3}
    runs, skipped = history.load(tmp_path)
    assert runs == [one] and skipped == []
    # a run without counters writes none
    bare = history.record(tmp_path, run(T0 + DAY, ok("dns.mx")), keep=5, days=5)
    assert "counters" not in json.loads(bare.read_text())


@pytest.mark.parametrize(
    "counters",
    [
        [1, 2],
        {"Auth-Failed": 1},
        {"auth_failed": -1},
        {"auth_failed": "12"},
        {"auth_failed": True},
        {f"c{n}": 1 for n in range(history.MAX_COUNTERS + 1)},
    ],
)
def test_a_run_file_with_hostile_counters_is_skipped_and_named(
    tmp_path: Path, counters: object
) -> None:
    good = history.record(tmp_path, run(T0, ok("dns.mx")), keep=9, days=9)
    doc = json.loads(good.read_text())
    doc["counters"] = counters
    (tmp_path / "doctor-20261101T000000Z.json").write_text(json.dumps(doc))
    runs, skipped = history.load(tmp_path)
    assert [r.at for r in runs] == [T0]
    assert len(skipped) == 1 and skipped[0].startswith("doctor-20261101T000000Z.json: ")
    assert "counter" in skipped[0]


def test_the_history_is_bounded_in_count_and_age(tmp_path: Path) -> None:
    for n in range(8):
        history.record(tmp_path, run(T0 + n * DAY, ok("dns.mx")), keep=5, days=365)
    foreign = tmp_path / "notes.txt"
    foreign.write_text("mine")
    names = sorted(p.name for p in tmp_path.glob("doctor-*.json"))
    assert names == [f"doctor-202612{d:02d}T061500Z.json" for d in range(4, 9)]
    # ten days later with days=3: all but the newest are too old; the newest stays
    history.record(tmp_path, run(T0 + 20 * DAY, ok("dns.mx")), keep=5, days=3)
    assert sorted(p.name for p in tmp_path.glob("doctor-*.json")) == [
        "doctor-20261221T061500Z.json"
    ]
    assert foreign.read_text() == "mine"  # only run files are ever removed


def test_texts_are_cut_and_a_run_file_is_size_capped(tmp_path: Path) -> None:
    long = bad("dns.dkim", message="x" * 10_000)
    path = history.record(tmp_path, run(T0, long), keep=5, days=5)
    assert len(json.loads(path.read_text())["findings"][0]["message"]) == history.MAX_TEXT
    huge = run(T0 + DAY, *(bad(f"dns.c{n}", message="y" * 3000) for n in range(300)))
    with pytest.raises(history.HistoryError, match="not recorded"):
        history.record(tmp_path, huge, keep=5, days=5)
    oversized = tmp_path / "doctor-20261130T000000Z.json"
    oversized.write_text(" " * (history.MAX_FILE_BYTES + 1))
    runs, skipped = history.load(tmp_path)
    assert len(runs) == 1 and skipped == [f"{oversized.name}: over {history.MAX_FILE_BYTES} bytes"]


def test_corrupt_files_are_skipped_and_named(tmp_path: Path) -> None:
    good = history.record(tmp_path, run(T0, ok("dns.mx")), keep=9, days=9)
    (tmp_path / "doctor-20261101T000000Z.json").write_text("{not json")
    (tmp_path / "doctor-20261102T000000Z.json").write_text('{"format": 1, "at": "x"}')
    (tmp_path / "doctor-20261103T000000Z.json").write_text(
        json.dumps({"format": 1, "at": "2026-11-03T00:00:00Z", "findings": [{"status": "meh"}]})
    )
    runs, skipped = history.load(tmp_path)
    assert [r.at for r in runs] == [T0] and good.exists()
    assert [s.split(":")[0] for s in skipped] == [
        "doctor-20261101T000000Z.json",
        "doctor-20261102T000000Z.json",
        "doctor-20261103T000000Z.json",
    ]
    line = history.skipped_line(tmp_path, skipped)
    assert "\n" not in line and "skipped 3 unreadable run file(s)" in line


# ---------------------------------------------------------------- inv doctor's run


def _settings(tmp_path: Path, example_values: dict[str, str], directory: Path) -> Settings:
    values = {**example_values, "STALWART_DB_PASSWORD": SECRET}
    values["DOCTOR_HISTORY_DIR"] = str(directory)
    return from_mapping(values, str(tmp_path / ".env"))


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Finding]]:
    """The doctor's registry replaced by checks answering what the test puts here."""
    answers: dict[str, Finding] = {}

    def answer(id: str) -> Callable[[DoctorContext], Finding]:
        return lambda ctx: answers[id]

    def fake(ctx: DoctorContext, groups: tuple[str, ...] = ()) -> list[Check]:
        return [Check(id, id.split(".")[0], id, answer(id)) for id in answers]

    monkeypatch.setattr(report, "registry", fake)
    yield answers


def _doctor(settings: Settings, record: bool = False, diff: bool = False) -> bool:
    """Run inv doctor's body: whether it failed (exit 1, an error finding)."""
    try:
        options = ReportOptions(record=record, diff=diff)
        report.doctor(settings, DoctorOptions(timeout=2), report=options)
    except OperationError:
        return True
    return False


def test_record_then_a_change_then_diff_names_it(
    tmp_path: Path,
    example_values: dict[str, str],
    checks: dict[str, Finding],
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = _settings(tmp_path, example_values, tmp_path / "history")
    checks.update({"dns.mx": ok("dns.mx"), "dns.dkim": ok("dns.dkim")})
    with clock.frozen(T0):
        assert _doctor(settings, record=True, diff=True) is False
    out = capsys.readouterr().out
    assert out.startswith(
        "no earlier recorded run to compare with (this run is the first recorded)"
    )
    checks["dns.dkim"] = bad("dns.dkim", message="no DKIM record")
    with clock.frozen(T0 + DAY):
        assert _doctor(settings, record=True, diff=True) is True  # exit 1 stands
    out = capsys.readouterr().out
    assert out.splitlines()[:3] == [
        "changes since 2026-12-01 06:15 UTC (this run: 2026-12-02 06:15 UTC):",
        "new problems (1):",
        "  ERROR dns.dkim: no DKIM record",
    ]
    assert "dns.mx" not in out
    with clock.frozen(T0 + 2 * DAY):
        _doctor(settings, record=True, diff=True)
    assert capsys.readouterr().out == (
        "no change since 2026-12-02 06:15 UTC (still 1 error: dns.dkim)\n"
    )
    assert len(list((tmp_path / "history").iterdir())) == 3


def test_no_secret_reaches_a_stored_run(
    tmp_path: Path, example_values: dict[str, str], checks: dict[str, Finding]
) -> None:
    settings = _settings(tmp_path, example_values, tmp_path / "history")
    checks["backends.postgres.login"] = bad(
        "backends.postgres.login", message=f"password {SECRET} refused"
    )
    with clock.frozen(T0):
        _doctor(settings, record=True)
    (stored,) = (tmp_path / "history").iterdir()
    text = stored.read_text()
    assert SECRET not in text and "<secret>" in text  # the runner masked it before


@pytest.mark.parametrize("broken", ["unwritable", "full", "corrupt"])
def test_a_broken_history_is_one_line_and_the_check_still_runs(
    tmp_path: Path,
    example_values: dict[str, str],
    checks: dict[str, Finding],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    broken: str,
) -> None:
    directory = tmp_path / "history"
    if broken == "unwritable":
        directory.write_text("a file where the directory should be")
    elif broken == "full":
        real_fsync = os.fsync

        def no_space(fd: int) -> None:
            real_fsync(fd)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "fsync", no_space)
    else:
        directory.mkdir()
        (directory / "doctor-20261130T061500Z.json").write_bytes(b"\x00\xff garbage")
    settings = _settings(tmp_path, example_values, directory)
    checks.update({"dns.mx": ok("dns.mx"), "dns.dkim": bad("dns.dkim")})
    with clock.frozen(T0):
        assert _doctor(settings, record=True, diff=True) is True  # the verdict stands
    captured = capsys.readouterr()
    problem_lines = captured.err.splitlines()
    assert len(problem_lines) == 1, captured.err
    assert problem_lines[0].startswith("doctor history")
    assert "Traceback" not in captured.err + captured.out
    assert "problems now: 1 error: dns.dkim" in captured.out  # the checks ran and reported
    if broken == "full":
        assert "no space left on device" in problem_lines[0].lower()
        assert "not recorded" in problem_lines[0]
    if broken == "corrupt":
        assert "skipped 1 unreadable" in problem_lines[0]
        # the good run was recorded next to the corrupt file, which was left alone
        assert len(list(directory.iterdir())) == 2


def test_the_backup_check_measures_the_age_the_diff_follows(
    example_values: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """backup.snapshot.age carries its age in hours against 24: a backup that stopped
    drifts, then is a new problem (restic's answer stubbed: the newest snapshot)."""
    from tailwart.backup.restic import Restic
    from tailwart.doctor import backup

    newest = [{"time": "2026-12-01T03:30:00.123456789Z"}]
    monkeypatch.setattr(Restic, "snapshots", lambda self, tags=(), latest=0: newest)
    values = {**example_values, "BACKUP_REPOSITORY": "/srv/repo", "BACKUP_PASSWORD": "a1b2" * 8}
    ctx = DoctorContext(from_mapping(values, "<test>"))
    found = []
    for hours_later in (0, 12, 24):  # T0 is 2h45 after the snapshot
        with clock.frozen(T0 + dt.timedelta(hours=hours_later)):
            found.append(replace(backup.snapshot_age(ctx), id="backup.snapshot.age"))
    assert [(f.status, f.value, f.limit, f.unit) for f in found] == [
        (Status.OK, 2.8, 24, "hours old"),  # 2h45 (restic's fraction of a second is cut)
        (Status.OK, 14.8, 24, "hours old"),
        (Status.WARNING, 26.8, 24, "hours old"),
    ]
    runs = [run(T0 + dt.timedelta(hours=h), f) for h, f in zip((0, 12, 24), found, strict=True)]
    assert diff.compare(runs[0], runs[1]).drifting == (
        diff.Drift("backup.snapshot.age", 2.8, 14.8, 24, "hours old"),
    )
    late = diff.compare(runs[1], runs[2])
    assert [f.id for _, f in late.worse] == ["backup.snapshot.age"] and not late.drifting


def test_the_newest_recorded_counters_are_the_next_runs_baseline(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    directory = tmp_path / "h"
    settings = _settings(tmp_path, example_values, directory)
    groups = ("stalwart",)
    with_metrics = from_mapping(
        {**settings.values, "STALWART_METRICS_PASSWORD": "metrics-0a1b2c3d4e5f6a7b"},
        str(tmp_path / ".env"),
    )
    assert report.baseline(report.recorded_runs(with_metrics)[0]) is None  # none recorded
    old = replace(run(T0, ok("dns.mx")), counters={"auth_failed": 5.0})
    newer = replace(run(T0 + DAY, ok("dns.mx")), counters={"auth_failed": 9.0})
    later = replace(run(T0 + 3 * DAY, ok("dns.mx")), counters={"auth_failed": 1.0})
    for each in (old, newer, later, run(T0 + 2 * DAY, ok("dns.mx"))):
        history.record(directory, each, keep=9, days=30)
    with clock.frozen(T0 + 2 * DAY + dt.timedelta(hours=1)):
        found = report.baseline(report.recorded_runs(with_metrics)[0])
        # without the password, or without the group, no baseline is wanted
        assert report.wants_baseline(with_metrics, groups)
        assert not report.wants_baseline(settings, groups)
        assert not report.wants_baseline(with_metrics, ("dns",))
    # the newest run that read counters, not one from a clock ahead of this one
    assert found is not None and found.at == T0 + DAY and found.counters == {"auth_failed": 9.0}
