"""The backup area's exception: an operation failed after validation passed (exit 1)."""

from __future__ import annotations

from ..errors import OperationError


class BackupError(OperationError):
    """A backup or restore step failed; the message says what to do and what was kept."""
