"""The registry of ``inv check`` rules, declared like ``inv doctor``'s checks.

Each rule module (``MODULES``) holds one ``GROUP`` constant and a ``RULES`` tuple: one
``Rule`` per finding id, in report order, with a one-line title. A rule with ``fn`` is
one small function ``fn(ctx) -> Finding | None`` (None: it does not apply here); a
``gate`` rule whose finding is not ok stops the module's later rules (a file that is
missing or broken). ``run_rules`` runs such a tuple; a module whose findings share one
parse (compose, TLS files) computes them in its own ``run`` and declares them here
without ``fn``.

``all_rules()`` lists every id ``inv check`` can report, with its group and title (the
docs' reference is generated from it); ``tailwart.doctor.registry.all_checks()`` is the
same for ``inv doctor``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType

from ..findings import Finding, Status
from . import MODULES, CheckContext

RuleFn = Callable[[CheckContext], Finding | None]

#: id suffixes ``checks.run.collect`` adds for a whole module: bad input, a crash
INPUT, CRASHED = ".input", ".crashed"


@dataclass(frozen=True)
class Rule:
    """One finding id of ``inv check``: what it judges, and the function that judges it."""

    id: str
    group: str
    title: str
    fn: RuleFn | None = None
    #: when this rule's finding is not ok, the module's later rules do not run
    gate: bool = False


def run_rules(ctx: CheckContext, rules: Sequence[Rule]) -> list[Finding]:
    """The findings of ``rules`` in order: one per rule that applies, up to a failed gate."""
    out: list[Finding] = []
    for rule in rules:
        found = rule.fn(ctx) if rule.fn is not None else None
        if found is None:
            continue
        out.append(found)
        if rule.gate and found.status is not Status.OK:
            break
    return out


def rule_module(name: str) -> ModuleType:
    """The rule module ``name`` of ``MODULES``."""
    return importlib.import_module(f"{__package__}.{name}")


def group_of(name: str) -> str:
    """The ``GROUP`` of rule module ``name`` (its name when it declares none)."""
    return str(getattr(rule_module(name), "GROUP", name))


def all_rules() -> list[Rule]:
    """Every id ``inv check`` can report, in report order, with its group and title;
    each module's ``.input`` and ``.crashed`` (a check that cannot run) follow its rules."""
    out: list[Rule] = []
    for name in MODULES:
        group = group_of(name)
        out += rule_module(name).RULES
        out.append(Rule(name + INPUT, group, f"a value the {group} checks cannot work with"))
        out.append(Rule(name + CRASHED, group, f"the {group} checks crashed (a tailwart bug)"))
    return out
