"""Running the registry of static checks and printing the findings."""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import OperationError, TailwartError
from ..findings import Finding, has_errors, to_json, to_table
from ..settings import Settings
from . import MODULES, CheckContext


def collect(ctx: CheckContext, modules: tuple[str, ...] = MODULES) -> list[Finding]:
    """Every finding of every check module, in registry order."""
    from ..masking import mask_all, secret_values

    findings: list[Finding] = []
    secrets = secret_values(ctx.settings)
    for name in modules:
        try:
            module = importlib.import_module(f"{__package__}.{name}")
            findings += module.run(ctx)
        except TailwartError as exc:  # a value the check cannot work with: say which
            findings.append(
                Finding.error(
                    f"{name}.input",
                    mask_all(str(exc), secrets),
                    "fix the value it names (in .env or the file it reads)",
                )
            )
        except Exception as exc:  # a check that crashes is itself an error finding
            findings.append(
                Finding.error(
                    f"{name}.crashed",
                    mask_all(f"check crashed: {type(exc).__name__}: {exc}", secrets),
                    "fix the file it reads, or report a tailwart bug",
                )
            )
    return findings


def context_for(settings: Settings, root: Path, renders_config: bool = False) -> CheckContext:
    """The check context, with what the compose loader made of the file (``compose_loader``);
    ``renders_config``: the caller writes config/config.json from .env first (inv up)."""
    from .compose_loader import try_load

    return CheckContext(
        settings, root, compose_loaded=try_load(settings, root), renders_config=renders_config
    )


def run_checks(settings: Settings, root: Path, as_json: bool = False) -> list[Finding]:
    """Print the findings; raise OperationError (exit 1) when any is an error."""
    findings = collect(context_for(settings, root))
    print(to_json(findings) if as_json else to_table(findings), end="")
    if has_errors(findings):
        raise OperationError("inv check: errors found (see above)")
    return findings
