"""DOCTOR_LIMITS: the thresholds ``inv doctor`` judges Stalwart's own numbers against.

Written ``name=value`` pairs separated by commas; a name left out keeps its default.
Pure: the settings check the text, the doctor and ``inv doctor --prometheus`` read the
numbers from here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    name: str
    default: int
    unit: str
    #: what the number counts, for messages and the alert rules
    what: str


LIMITS: tuple[Limit, ...] = (
    Limit("queue", 100, "messages", "messages waiting in the outbound queue"),
    Limit("queue-hours", 6, "hours", "hours the oldest queued message has waited"),
    Limit("failed", 10, "deliveries", "deliveries failed for good since the last report"),
    Limit("deferred", 50, "deliveries", "delivery attempts deferred since the last report"),
    Limit("auth-failures", 100, "logins", "failed logins since the last report"),
    Limit("store-errors", 0, "errors", "store errors since the last report"),
    Limit("disk-percent", 85, "percent", "percent of a Garage node's data disk in use"),
)
BY_NAME = {limit.name: limit for limit in LIMITS}
DEFAULT = ",".join(f"{limit.name}={limit.default}" for limit in LIMITS)
#: no threshold is larger (a typo of extra digits is refused, not obeyed)
MAXIMUM = 10_000_000


def problem(value: str) -> str | None:
    """What is wrong with a DOCTOR_LIMITS value (every item at once), or None."""
    problems: list[str] = []
    seen: set[str] = set()
    unknown: list[str] = []
    for number, item in enumerate(value.split(","), 1):
        name, eq, amount = item.partition("=")
        if not eq or not name:
            problems.append(f"item {number} is not name=number")
        elif name not in BY_NAME:
            shown = name if name.replace("-", "").isalpha() and len(name) <= 20 else "?"
            unknown.append(f"{shown!r} (item {number})")
        elif name in seen:
            problems.append(f"names {name} more than once")
        elif not (amount.isascii() and amount.isdigit()) or int(amount) > MAXIMUM:
            problems.append(f"{name} must be a whole number from 0 to {MAXIMUM}")
        seen.add(name)
    if unknown:
        names = ", ".join(unknown[:3]) + (f" and {len(unknown) - 3} more" if unknown[3:] else "")
        problems.append(f"names {names}: the names are {', '.join(BY_NAME)}")
    return "; ".join(problems[:4]) or None


def parse(value: str) -> dict[str, int]:
    """Every limit's number: the defaults, overridden by ``value`` (already checked)."""
    out = {limit.name: limit.default for limit in LIMITS}
    for item in filter(None, value.split(",")):
        name, _, amount = item.partition("=")
        out[name] = int(amount)
    return out
