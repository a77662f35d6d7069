"""Exception types shared by every area.

Each area raises a subclass carrying what the operator must do next; the task
layer turns them into a message on stderr and an exit code, never a traceback.
"""

from __future__ import annotations


class TailwartError(Exception):
    """An expected failure: printed without a traceback."""

    exit_code = 1


class UsageError(TailwartError):
    """Bad input (flags, .env, files): nothing was changed."""

    exit_code = 2


class OperationError(TailwartError):
    """An operation failed after validation passed."""

    exit_code = 1
