"""``inv doctor``: run the registry, print a table or JSON, exit 1 on any error."""

from __future__ import annotations

from ..errors import OperationError
from ..findings import Finding, has_errors, to_json, to_table
from ..settings import Settings
from . import runner
from .registry import DoctorContext, DoctorOptions, parse_only, registry


def doctor(
    settings: Settings, options: DoctorOptions, only: str = "", as_json: bool = False
) -> list[Finding]:
    """Print the findings; raise OperationError (exit 1) when any is an error."""
    groups = parse_only(only)
    ctx = DoctorContext(settings, options)
    findings = runner.run(ctx, registry(ctx, groups))
    print(to_json(findings) if as_json else to_table(findings), end="")
    if has_errors(findings):
        raise OperationError("inv doctor: errors found (see above)")
    return findings
