"""Findings of checks (``inv check``, ``inv doctor``): one model, two views.

A check yields ``Finding`` values: an id, a status (ok / warning / error), what
was seen, and one line of advice. The table is for people; ``to_json`` is the
stable machine form documented in the README.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from enum import StrEnum


class Status(StrEnum):
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Finding:
    id: str
    status: Status
    message: str
    advice: str = ""
    group: str = ""
    #: a measured quantity, for a check that judges one against a threshold (certificate
    #: days left, backup age): its value, the next threshold it would cross, and its unit.
    #: Machine-readable, so ``inv doctor --diff`` never parses messages.
    value: float | None = None
    limit: float | None = None
    unit: str = ""

    def measured(self, value: float, limit: float, unit: str) -> Finding:
        """This finding with its measured ``value``, the ``limit`` it is judged against,
        and the ``unit`` both are in."""
        return replace(self, value=value, limit=limit, unit=unit)

    @classmethod
    def ok(cls, id: str, message: str, group: str = "") -> Finding:
        return cls(id, Status.OK, message, "", group)

    @classmethod
    def warning(cls, id: str, message: str, advice: str, group: str = "") -> Finding:
        return cls(id, Status.WARNING, message, advice, group)

    @classmethod
    def error(cls, id: str, message: str, advice: str, group: str = "") -> Finding:
        return cls(id, Status.ERROR, message, advice, group)


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.status is Status.ERROR for f in findings)


def summary(findings: Sequence[Finding]) -> dict[str, int]:
    return {s.value: sum(1 for f in findings if f.status is s) for s in Status}


def to_json(findings: Sequence[Finding]) -> str:
    """Stable JSON: {"summary": {...}, "findings": [{id, group, status, message, advice}]}."""
    rows = []
    for f in findings:
        row = asdict(f)
        row["status"] = f.status.value
        rows.append({k: row[k] for k in ("id", "group", "status", "message", "advice")})
    return json.dumps({"summary": summary(findings), "findings": rows}, indent=2) + "\n"


_MARK = {Status.OK: "ok", Status.WARNING: "WARN", Status.ERROR: "ERROR"}


def to_table(findings: Sequence[Finding]) -> str:
    """A plain-text table: status, id, message, and advice on the next line."""
    if not findings:
        return "(no checks ran)\n"
    width = max(len(f.id) for f in findings)
    lines = []
    for f in findings:  # one line each: a line break in a message (a server's text) is shown
        message, advice = (text.replace("\n", "\\n") for text in (f.message, f.advice or ""))
        lines.append(f"{_MARK[f.status]:<5} {f.id:<{width}}  {message}")
        if advice and f.status is not Status.OK:
            lines.append(f"{'':<5} {'':<{width}}  → {advice}")
    counts = summary(findings)
    lines.append(f"\n{counts['ok']} ok, {counts['warning']} warning(s), {counts['error']} error(s)")
    return "\n".join(lines) + "\n"
