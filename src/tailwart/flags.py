"""Checks of command-line flag values, shared by the tasks: each returns a problem or None.

A flag value is operator input like a .env value: it is refused (exit 2, naming the
flag) when it holds a control character, is out of range, or is not what the flag
expects, before anything is read, written, connected or started. Each function
returns one line naming the flag, so a task can report every problem at once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable
from pathlib import Path

from .masking import escape_char

#: C0, DEL, C1, and the Unicode line and paragraph separators: never part of a plain
#: value (shared with the unit renderer and the HTTP adapters)
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ASCII_NUMBER = re.compile(r"[0-9]{1,9}")


def printable(text: str, limit: int = 200) -> str:
    """``text`` safe to print: control characters as ``\\xNN``/``\\uNNNN`` escapes (a
    backslash doubled, so an escape cannot be forged), cut to ``limit`` characters."""
    cut = text if len(text) <= limit else text[:limit] + "…"
    return CONTROL.sub(lambda m: escape_char(m[0]), cut.replace("\\", "\\\\"))


def control(flag: str, value: str) -> str | None:
    """A control character (newline, tab, NUL...) in ``value``."""
    if CONTROL.search(value):
        return f"{flag} {value!r}: holds a control character (a newline, a tab...)"
    return None


def port_number(text: str) -> int | None:
    """``text`` as a TCP port 1..65535 written in ASCII digits, else None."""
    if not _ASCII_NUMBER.fullmatch(text):
        return None
    port = int(text)
    return port if 0 < port < 65536 else None


def seconds(flag: str, value: float, *, at_most: float = 24 * 3600) -> str | None:
    """A positive, finite number of seconds no larger than ``at_most``."""
    if not math.isfinite(value) or not 0 < value <= at_most:
        return f"{flag} {value!r}: expected seconds, more than 0 and at most {at_most:g}"
    return None


def count(flag: str, value: int, *, least: int = 1, most: int = 10_000) -> str | None:
    """A whole number within [least, most]."""
    if not least <= value <= most:
        return f"{flag} {value!r}: expected a number from {least} to {most}"
    return None


def existing_file(flag: str, value: str) -> str | None:
    """A path that names a regular file (after control characters are refused)."""
    problem = control(flag, value)
    if problem:
        return problem
    if not Path(value).is_file():
        return f"{flag} {value}: no such file"
    return None


def host(flag: str, value: str) -> str | None:
    """A host name or IP literal (the contract's HOSTNAME kind), no control characters."""
    from .settings.kinds import Kind

    problem = control(flag, value)
    if problem:
        return problem
    if "%" in value or any(ch.isspace() for ch in value):
        return f"{flag} {value!r}: expected a host name or an IP address (no scope id, no blanks)"
    why = Kind.HOSTNAME.check(value)
    return f"{flag} {value!r}: {why}" if why else None


def ip_or_empty(flag: str, value: str) -> str | None:
    """An IP literal, or '' (all addresses)."""
    from .settings.kinds import Kind

    if not value:
        return None
    problem = control(flag, value)
    if problem:
        return problem
    if not re.fullmatch(r"[0-9A-Fa-f:.]+", value) or Kind.IP.check(value):
        return f"{flag} {value!r}: expected an IP address (no scope id), or '' for all"
    return None


def port_map(
    flag: str, values: Iterable[str], known: Collection[int]
) -> tuple[dict[int, int], list[str]]:
    """``MAILPORT=PORT`` items → {mail port: port}, and one problem per bad item.

    The one syntax of ``inv edge-run --ports`` and ``inv doctor --port``: items are
    separated by commas, and the flag may be given more than once (``25=2525,993=2993``
    or ``--port 25=2525 --port 993=2993``). The mail port must be one of ``known``.
    """
    out: dict[int, int] = {}
    problems = []
    for value in values:
        for item in filter(None, (part.strip() for part in value.split(","))):
            mail_text, sep, port_text = item.partition("=")
            mail, port = port_number(mail_text), port_number(port_text)
            digits = all(_ASCII_NUMBER.fullmatch(text) for text in (mail_text, port_text))
            if not sep or not digits:
                problems.append(f"{flag} {item!r}: expected MAILPORT=PORT, e.g. 25=2525")
            elif mail is None or mail not in known:
                problems.append(
                    f"{flag} {item!r}: {mail_text} is not a mail port "
                    f"({', '.join(map(str, sorted(known)))})"
                )
            elif port is None:
                problems.append(f"{flag} {item!r}: port outside 1..65535")
            else:
                out[mail] = port
    return out, problems
