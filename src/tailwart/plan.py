"""The one plan every area speaks: edge deploy, backends, Stalwart objects (and DNS to come).

A plan is computed before anything changes. Every area's plan has

- ``changes``: what would change, one item per change (empty: the target is in step);
- ``effect``: when the whole plan takes effect (``live``, ``reload``, ``restart``, …);
- ``describe()``: its lines for a terminal, secrets masked;
- ``to_json()``: its machine form, ``{"effect": …, "changes": [...], …}``.

``show_plan`` turns a plan and the flags into output and the exit decision, the same in
every area:

==============  ==========================================  ==========================
flags           prints                                      then
==============  ==========================================  ==========================
(none)          the plan                                    apply it
``--dry-run``   the plan                                    stop: exit 0
``--check``     the plan                                    stop: exit 1 when anything
                                                            would change (drift), else 0
``--json``      one JSON document instead of the lines      as above
==============  ==========================================  ==========================

``--check`` wins over ``--dry-run``: both write nothing, and ``--check`` says whether
something would have been written.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict, Unpack, runtime_checkable

from .errors import OperationError

#: exit code of ``--check`` when anything would change
EXIT_DRIFT = 1


@runtime_checkable
class Plan(Protocol):
    """What one area will change, computed before anything changes."""

    @property
    def changes(self) -> Sequence[Any]:
        """One item per change; empty when the target already holds what is wanted."""
        ...

    @property
    def effect(self) -> str:
        """When the whole plan takes effect (a word the area defines: live, reload, …)."""
        ...

    def describe(self) -> list[str]:
        """The plan as lines for a terminal."""
        ...

    def to_json(self) -> dict[str, Any]:
        """The plan as data: at least ``effect`` and ``changes`` (a list)."""
        ...


#: the --help of --check and --json, the same on every planning task
CHECK_HELP = "write nothing; exit 1 when what runs differs from .env (drift)"
JSON_HELP = "print the plan as JSON"


@dataclass(frozen=True)
class PlanFlags:
    """The flags every planning task takes: ``--dry-run``, ``--check``, ``--json``."""

    dry_run: bool = False
    check: bool = False
    as_json: bool = False

    @property
    def applies(self) -> bool:
        """Whether the run goes on to change something."""
        return not (self.dry_run or self.check)


class Drift(OperationError):
    """``--check`` found something to change (exit 1); nothing was changed."""


class Shown(TypedDict, total=False):
    """What an area prints beside its plan."""

    #: keys added to the JSON document (``--json``)
    extra: Mapping[str, Any]
    #: lines printed after the plan's (not with ``--json``)
    notes: Sequence[str]


def print_plan(
    plan: Plan, flags: PlanFlags, out: Callable[[str], object], **shown: Unpack[Shown]
) -> None:
    """The plan's lines and then ``notes``; with ``--json`` one document instead:
    ``plan.to_json()`` with the keys of ``extra`` added (indented, keys sorted)."""
    if flags.as_json:
        doc = {**plan.to_json(), **shown.get("extra", {})}
        out(json.dumps(doc, indent=2, sort_keys=True))
        return
    for line in [*plan.describe(), *shown.get("notes", ())]:
        out(line)


def plan_exit(plan: Plan, flags: PlanFlags, *, problems: bool = False) -> int | None:
    """The exit code when the run stops after the plan, or None when it goes on to apply.

    ``--check``: 1 when the plan has changes (or ``problems``: drift the plan does not
    hold, such as a certificate about to expire), else 0. ``--dry-run``: 0."""
    if flags.check:
        return EXIT_DRIFT if plan.changes or problems else 0
    if flags.dry_run:
        return 0
    return None


def show_plan(
    plan: Plan,
    flags: PlanFlags,
    out: Callable[[str], object],
    problems: bool = False,
    **shown: Unpack[Shown],
) -> int | None:
    """``print_plan``, then ``plan_exit``: the one way a plan reaches the operator."""
    print_plan(plan, flags, out, **shown)
    return plan_exit(plan, flags, problems=problems)


def drift_message(area: str, plan: Plan) -> str:
    """The message of ``Drift`` for ``area``'s plan."""
    count = len(plan.changes)
    return f"{area} --check: {count} change(s) would be made; nothing was changed"
