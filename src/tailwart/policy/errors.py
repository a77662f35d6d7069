"""Errors of the policy area: bad policy input (exit 2) and failed policy operations (exit 1)."""

from __future__ import annotations

from ..errors import OperationError, UsageError


class PolicyInputError(UsageError):
    """A policy or snippet that cannot be merged (syntax, duplicate keys, JSON5-only syntax)."""


class PolicyOperationError(OperationError):
    """Fetching, validating or writing a tailnet policy failed; nothing was written."""


class PolicyAuthError(PolicyOperationError):
    """The control plane refused the credentials (401/403)."""
