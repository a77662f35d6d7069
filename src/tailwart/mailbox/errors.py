"""Errors of the mailbox area, each carrying what the operator must do next."""

from __future__ import annotations

from ..errors import OperationError, UsageError


class MailboxError(OperationError):
    """A compose operation failed (exit 1)."""


class PreconditionError(OperationError):
    """Docker is not usable here: names what to install or start (exit 1)."""


class StackRefused(UsageError):
    """The stack would start broken: static checks found errors; nothing ran (exit 2)."""
