"""The registry of ``inv check`` rules, declared like ``inv doctor``'s checks.

Each rule module (``MODULES``) holds one ``GROUP`` constant and a ``RULES`` tuple: one
``Rule`` per finding id, in report order, with a one-line title. ``rules(GROUP, f, g,
…)`` declares one small function per finding, ``f(ctx) -> Finding | None`` (None: it
does not apply here): its name is the id (``_`` → ``-``), its docstring's first line the
title; a ``gate`` whose finding is not ok stops the module's later rules (a file that is
missing or broken). ``run_rules`` runs them. A module whose findings share one parse
(compose, TLS files) judges them in its own ``run`` and lists them with ``declared``.

``all_rules()`` lists every id ``inv check`` can report, with its group and title (the
docs' reference is generated from it); ``tailwart.doctor.registry.all_checks()`` is the
same for ``inv doctor``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Sequence
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


def rules(
    group: str, *fns: RuleFn, prefix: str = "", gates: Collection[RuleFn] = ()
) -> tuple[Rule, ...]:
    """One rule per function, in order: id ``<prefix or group>.<its name, _ as ->``,
    title the first line of its docstring; a function in ``gates`` is a gate."""
    out = []
    for fn in fns:
        name = str(getattr(fn, "__name__", "")).replace("_", "-")
        title = (getattr(fn, "__doc__", None) or "").strip().split("\n")[0]
        out.append(Rule(f"{prefix or group}.{name}", group, title, fn, fn in gates))
    return tuple(out)


def declared(group: str, table: str) -> tuple[Rule, ...]:
    """The rules a module judges in its own ``run``, from a table of ``id  title`` lines."""
    out = []
    for line in table.strip().splitlines():
        rid, _, title = line.strip().partition(" ")
        out.append(Rule(rid, group, title.strip()))
    return tuple(out)


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
