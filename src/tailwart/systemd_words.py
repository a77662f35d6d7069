"""Values written into systemd units, in systemd's own syntax (shared by every unit tailwart
renders: the edge's service, the backup's service and timer).

Exec lines and Environment= get double-quoted words with ``\\`` and ``"`` escaped, ``%``
doubled (specifiers) and, on Exec lines, ``$`` doubled (variable expansion). A value with
a control character cannot be written into a unit at all and is refused (a CR, a tab or
a newline would start a new setting), and so is an executable path holding a double
quote, a single quote or a backslash: systemd will not run it.
"""

from __future__ import annotations

from .errors import UsageError
from .flags import CONTROL

#: systemd refuses an executable path holding any of these ("contains special characters")
EXEC_PATH_REFUSED = "\"'\\"


class UnitValueError(UsageError, ValueError):
    """A value that cannot be written into a systemd unit (names the value's role)."""


def systemd_word(value: str, *, exec_line: bool = False) -> str:
    """``value`` as one double-quoted systemd word that parses back to exactly ``value``."""
    if CONTROL.search(value):
        raise UnitValueError("holds a control character")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    if exec_line:
        escaped = escaped.replace("$", "$$")
    return f'"{escaped}"'


def systemd_comment(value: str) -> str:
    """``value`` for a comment line: no control characters (a newline would end the comment)."""
    if CONTROL.search(value):
        raise UnitValueError("holds a control character")
    return value


def exec_path_problem(path: str) -> str | None:
    """Why ``path`` cannot be the executable of an Exec line; None if it can."""
    if CONTROL.search(path):
        return "holds a control character (newline, carriage return, tab, NUL...)"
    if not path.startswith("/"):
        return "must be an absolute path"
    refused = sorted({c for c in path if c in EXEC_PATH_REFUSED})
    if refused:
        return f"holds {' '.join(refused)}: systemd refuses such an executable path"
    return None
