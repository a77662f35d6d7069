"""An MTA-STS policy as senders read it (RFC 8461 3.2), parsed strictly.

The only packaged parser (postfix-mta-sts-resolver's) comes with an async daemon's
dependencies and accepts anything (no required field, no value check); this one
follows the RFC's ABNF and says what is wrong, line by line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: RFC 8461 3.2: max_age is at most 31557600 (about a year)
MAX_AGE_LIMIT = 31_557_600
MODES = ("enforce", "testing", "none")
_KEY = re.compile(r"[A-Za-z0-9_.-]{1,32}", re.ASCII)
_LABEL = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
_MX = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})+", re.ASCII)


class PolicyError(ValueError):
    """The text is not a valid policy; the message names the line and what is wrong."""


@dataclass(frozen=True)
class Policy:
    mode: str
    max_age: int
    mx: tuple[str, ...]


def parse_policy(text: str) -> Policy:
    """The policy in ``text`` (lines end in CRLF or LF); PolicyError for anything the RFC
    does not allow in a known field, or a required field missing or repeated."""
    seen: dict[str, str] = {}
    mx: list[str] = []
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for number, raw in enumerate(lines, 1):
        line = raw[:-1] if raw.endswith("\r") else raw
        key, colon, value = line.partition(":")
        if not colon or not _KEY.fullmatch(key):
            raise PolicyError(f"line {number} is not 'key: value': {_shown(line)}")
        value = value.lstrip(" \t").rstrip(" \t")
        if not all(" " <= c <= "~" for c in value):
            raise PolicyError(f"line {number} holds a control or non-ASCII character")
        if key == "mx":
            if not _MX.fullmatch(value):
                raise PolicyError(f"line {number}: mx {_shown(value)} is not a host name pattern")
            mx.append(value.lower())
        elif key in ("version", "mode", "max_age"):
            if key in seen:
                raise PolicyError(f"line {number}: {key} is given twice")
            seen[key] = value
        # other keys: extensions, ignored (RFC 8461 3.2)
    missing = [k for k in ("version", "mode", "max_age") if k not in seen]
    if missing:
        raise PolicyError(f"no {', '.join(missing)} field")
    if seen["version"] != "STSv1":
        raise PolicyError(f"version is {_shown(seen['version'])}, not STSv1")
    if seen["mode"] not in MODES:
        raise PolicyError(f"mode is {_shown(seen['mode'])}, not one of {', '.join(MODES)}")
    age = seen["max_age"]
    if not (age.isascii() and age.isdigit() and len(age) <= 10) or int(age) > MAX_AGE_LIMIT:
        raise PolicyError(
            f"max_age is {_shown(age)}, not a number of seconds up to {MAX_AGE_LIMIT}"
        )
    if not mx and seen["mode"] != "none":
        raise PolicyError(f"no mx field (mode {seen['mode']} needs at least one)")
    return Policy(seen["mode"], int(age), tuple(mx))


def mx_matches(pattern: str, host: str) -> bool:
    """Whether MX ``host`` fits the policy's ``pattern`` (RFC 8461 4.1: a leading ``*.``
    stands for exactly one label)."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        first, dot, rest = host.partition(".")
        return bool(first) and bool(dot) and rest == pattern[2:]
    return host == pattern


def _shown(text: str) -> str:
    return repr(text[:60] + ("…" if len(text) > 60 else ""))
