"""Errors of the mailbox area, each carrying what the operator must do next."""

from __future__ import annotations

from ..errors import OperationError, UsageError


class MailboxError(OperationError):
    """A compose operation failed (exit 1)."""


class PreconditionError(OperationError):
    """Docker is not usable here: names what to install or start (exit 1)."""


class StackRefused(UsageError):
    """The stack would start broken: static checks found errors; nothing ran (exit 2)."""


class NodeRefused(UsageError):
    """--node names no mailbox node, or the nodes have no docker engine each (exit 2)."""


class RollStopped(OperationError):
    """A rolling restart stopped at one node: names it, and what state it was left in."""
