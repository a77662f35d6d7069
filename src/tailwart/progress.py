"""Progress lines: the one way a task reports what it is doing while it works.

Progress goes to stderr, so stdout keeps only the result (a plan, a report, JSON).
``sys.stderr`` is looked up on every call: the task glue routes it through masking.
"""

from __future__ import annotations

import sys


def to_stderr(message: str) -> None:
    """Print one progress line to stderr now (flushed, so it shows while work goes on)."""
    print(message, file=sys.stderr, flush=True)
