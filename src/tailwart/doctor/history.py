"""The doctor's history: each recorded run's findings as one JSON file, bounded.

``inv doctor --record`` writes ``doctor-<UTC time>.json`` into DOCTOR_HISTORY_DIR
(default ``~/.local/state/tailwart/doctor``), atomically and readable by its owner
only, then removes the oldest runs beyond DOCTOR_HISTORY_KEEP and those older than
DOCTOR_HISTORY_DAYS. A file is at most ``MAX_FILE_BYTES``; a larger, unreadable or
malformed file is skipped and named (never deleted by reading). Only files named
like a run are ever removed. The findings are already masked (``runner.run``), so
no secret reaches a file.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import clock
from ..errors import OperationError
from ..findings import Finding, Status
from ..flags import printable
from ..settings import Settings

#: the version of the file's shape
FORMAT = 1
#: a run file is never larger than this (written or read)
MAX_FILE_BYTES = 512 * 1024
#: a message or advice is cut to this many characters when stored
MAX_TEXT = 2000
_NAME = re.compile(r"^doctor-(\d{8}T\d{6}Z)\.json$")
_STAMP = "%Y%m%dT%H%M%SZ"


class HistoryError(OperationError):
    """The history directory cannot be written (full, not writable, not a directory)."""


@dataclass(frozen=True)
class Run:
    """One doctor run: when, which groups were checked, and a finding per check."""

    at: dt.datetime
    findings: tuple[Finding, ...]
    groups: tuple[str, ...] = ()
    #: Stalwart's counters as this run read them (the next run judges their increase)
    counters: Mapping[str, float] = field(default_factory=dict)


def history_dir(settings: Settings) -> Path:
    """DOCTOR_HISTORY_DIR, else ``$XDG_STATE_HOME`` (default ``~/.local/state``)
    ``/tailwart/doctor``."""
    given = settings["DOCTOR_HISTORY_DIR"]
    if given:
        return Path(given)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "tailwart" / "doctor"


def encode(run: Run) -> str:
    """The run as JSON (texts cut to ``MAX_TEXT``)."""
    rows = []
    for f in run.findings:
        row: dict[str, Any] = {
            "id": f.id,
            "group": f.group,
            "status": f.status.value,
            "message": f.message[:MAX_TEXT],
            "advice": f.advice[:MAX_TEXT],
        }
        if f.value is not None and f.limit is not None:
            row.update(value=f.value, limit=f.limit, unit=f.unit)
        rows.append(row)
    at = run.at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    doc: dict[str, Any] = {"format": FORMAT, "at": at, "groups": list(run.groups)}
    doc["findings"] = rows
    if run.counters:
        doc["counters"] = dict(sorted(run.counters.items()))
    return json.dumps(doc, indent=1) + "\n"


def _text(row: dict[str, Any], key: str) -> str:
    value = row.get(key, "")
    if not isinstance(value, str):
        raise ValueError(f"{key} is not text")
    return value


def _number(row: dict[str, Any], key: str) -> float | None:
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} is not a number")
    return float(value)


def decode(text: str) -> Run:
    """A run from its JSON; ValueError naming what is wrong with it."""
    doc = json.loads(text)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"not a doctor run of format {FORMAT}")
    at = clock.parse(str(doc.get("at", "")))
    rows, groups = doc.get("findings"), doc.get("groups", [])
    if not isinstance(rows, list) or not isinstance(groups, list):
        raise ValueError("findings or groups is not a list")
    findings = []
    for row in rows:
        if not isinstance(row, dict):
            raise ValueError("a finding is not an object")
        findings.append(
            Finding(
                _text(row, "id"),
                Status(_text(row, "status")),
                _text(row, "message"),
                _text(row, "advice"),
                _text(row, "group"),
                _number(row, "value"),
                _number(row, "limit"),
                _text(row, "unit"),
            )
        )
    return Run(at, tuple(findings), tuple(str(g) for g in groups), _counters(doc))


#: a counter's name as Stalwart's endpoint writes it; at most this many are read back
_COUNTER = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
MAX_COUNTERS = 5000


def _counters(doc: dict[str, Any]) -> dict[str, float]:
    found = doc.get("counters", {})
    if not isinstance(found, dict) or len(found) > MAX_COUNTERS:
        raise ValueError(f"counters is not an object of at most {MAX_COUNTERS} entries")
    out: dict[str, float] = {}
    for name, value in found.items():
        if not _COUNTER.fullmatch(name):
            raise ValueError("a counter's name is not one Stalwart writes")
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise ValueError(f"counter {name} is not a non-negative number")
        out[name] = float(value)
    return out


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def record(directory: Path, run: Run, keep: int, days: int) -> Path:
    """Write ``run`` into ``directory`` (made 0700), then prune; HistoryError on failure
    (the previous files are left as they were)."""
    from ..files import FileWriteError, write_atomic

    path = directory / f"doctor-{run.at.astimezone(dt.UTC).strftime(_STAMP)}.json"
    text = encode(run)
    if len(text.encode()) > MAX_FILE_BYTES:
        raise HistoryError(
            f"doctor history {directory}: this run is over {MAX_FILE_BYTES} bytes; not recorded"
        )
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(path, text, mode=0o600)
    except FileWriteError as exc:
        raise HistoryError(f"doctor history: {exc}; this run was not recorded") from None
    except OSError as exc:
        raise HistoryError(
            f"doctor history {printable(str(directory))}: {_reason(exc)}; this run was not recorded"
        ) from None
    prune(directory, run.at, keep, days)
    return path


def _runs_on_disk(directory: Path) -> list[tuple[dt.datetime, Path]]:
    """(time, path) of every file named like a run, oldest first."""
    out = []
    for path in directory.iterdir():
        match = _NAME.match(path.name)
        if match:
            at = dt.datetime.strptime(match.group(1), _STAMP).replace(tzinfo=dt.UTC)
            out.append((at, path))
    return sorted(out)


def prune(directory: Path, now: dt.datetime, keep: int, days: int) -> list[Path]:
    """Remove the runs beyond the newest ``keep`` (at least one stays) and those older
    than ``days`` (the newest always stays); returns what was removed."""
    runs = _runs_on_disk(directory)
    cutoff = now - dt.timedelta(days=days)
    newest = runs[-1][1] if runs else None
    doomed = [path for at, path in runs[: max(0, len(runs) - max(1, keep))]]
    doomed += [path for at, path in runs if at < cutoff and path != newest]
    removed = []
    for path in dict.fromkeys(doomed):
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            continue  # the next run tries again; the check's result matters more
    return removed


def load(directory: Path) -> tuple[list[Run], list[str]]:
    """Every readable run in ``directory``, oldest first, and what was wrong with the
    files that were skipped (``name: why``). A missing directory holds no runs."""
    runs: list[Run] = []
    skipped: list[str] = []
    try:
        found = _runs_on_disk(directory)
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        raise HistoryError(f"doctor history {directory}: cannot be read ({_reason(exc)})") from None
    for _, path in found:
        try:
            with path.open("rb") as fh:
                data = fh.read(MAX_FILE_BYTES + 1)
            if len(data) > MAX_FILE_BYTES:
                raise ValueError(f"over {MAX_FILE_BYTES} bytes")
            runs.append(decode(data.decode()))
        except OSError as exc:
            skipped.append(f"{path.name}: {_reason(exc)}")
        except (ValueError, KeyError, UnicodeDecodeError) as exc:
            skipped.append(f"{path.name}: {printable(str(exc), 120)}")
    return sorted(runs, key=lambda r: r.at), skipped


def skipped_line(directory: Path, skipped: Sequence[str]) -> str:
    """One line naming the run files that could not be read."""
    shown = "; ".join(skipped[:3]) + (f"; and {len(skipped) - 3} more" if len(skipped) > 3 else "")
    return (
        f"doctor history {directory}: skipped {len(skipped)} unreadable run file(s) "
        f"({shown}); move them away"
    )
