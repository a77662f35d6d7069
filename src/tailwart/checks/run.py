"""Running the registry of static checks (``checks.registry``) and printing the findings."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import OperationError, TailwartError, UsageError
from ..findings import Finding, Status, has_errors, to_json, to_table
from ..settings import Settings
from . import MODULES, CheckContext
from .registry import CRASHED, INPUT, rule_module


def collect(ctx: CheckContext, modules: tuple[str, ...] = MODULES) -> list[Finding]:
    """Every finding of every check module, in registry order."""
    from ..masking import hide_sensitive, secret_values

    findings: list[Finding] = []
    secrets = secret_values(ctx.settings)
    for name in modules:
        group = name
        try:
            module = rule_module(name)
            group = str(getattr(module, "GROUP", name))
            findings += module.run(ctx)
        except TailwartError as exc:  # a value the check cannot work with: say which
            findings.append(
                Finding.error(
                    name + INPUT,
                    hide_sensitive(str(exc), secrets),
                    "fix the value it names (in .env or the file it reads)",
                    group,
                )
            )
        except Exception as exc:  # a check that crashes is itself an error finding
            findings.append(
                Finding.error(
                    name + CRASHED,
                    hide_sensitive(f"check crashed: {type(exc).__name__}: {exc}", secrets),
                    "fix the file it reads, or report a tailwart bug",
                    group,
                )
            )
    return findings


def crashed(finding: Finding) -> bool:
    """A check that crashed: tailwart's failure, not the operator's input."""
    return finding.id.endswith(CRASHED)


def input_errors(findings: Sequence[Finding]) -> list[Finding]:
    """Errors in what the operator gave (.env, the work tree): bad input, exit 2."""
    return [f for f in findings if f.status is Status.ERROR and not crashed(f)]


def context_for(settings: Settings, root: Path, renders_config: bool = False) -> CheckContext:
    """The check context, with what the compose loader made of the file (``compose_loader``);
    ``renders_config``: the caller writes config/config.json from .env first (inv up)."""
    from .compose_loader import try_load

    return CheckContext(
        settings, root, compose_loaded=try_load(settings, root), renders_config=renders_config
    )


def run_checks(settings: Settings, root: Path, as_json: bool = False) -> list[Finding]:
    """Print the findings. An error in the operator's input (.env, the work tree) is a
    UsageError (exit 2, as ``inv up`` refuses it); a check that crashed, with no input
    error, an OperationError (exit 1)."""
    findings = collect(context_for(settings, root))
    print(to_json(findings) if as_json else to_table(findings), end="")
    if input_errors(findings):
        raise UsageError("inv check: errors found (see above)")
    if has_errors(findings):
        raise OperationError("inv check: a check crashed (see above); the others ran")
    return findings
