"""Plan steps for ``inv bootstrap``: what exists, what will change, what is refused."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..errors import OperationError, UsageError


class Action(StrEnum):
    KEEP = "keep"  # already as wanted: nothing to do
    CREATE = "create"
    CHANGE = "change"
    REFUSE = "refuse"  # would be unsafe; the operator must act (blocks the whole plan)


@dataclass(frozen=True)
class Step:
    """One line of the plan; ``run`` performs it (None for keep and refuse)."""

    backend: str
    action: Action
    what: str
    detail: str = ""
    advice: str = ""
    run: Callable[[], None] | None = field(default=None, compare=False, repr=False)
    #: a refusal caused by what .env asks for (exit 2), not by the backend's state (exit 1)
    bad_input: bool = False

    @property
    def changes(self) -> bool:
        return self.action in (Action.CREATE, Action.CHANGE)

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "action": self.action.value,
            "what": self.what,
            "detail": self.detail,
            "advice": self.advice,
        }


#: a backend change takes effect as it is made
LIVE = "live"


@dataclass(frozen=True)
class Plan:
    """Every step of ``inv bootstrap``: the plan protocol of ``tailwart.plan``."""

    steps: tuple[Step, ...]

    @property
    def changes(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.changes)

    @property
    def refusals(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.action is Action.REFUSE)

    @property
    def effect(self) -> str:
        return LIVE

    def describe(self) -> list[str]:
        return render_steps(self.steps).rstrip("\n").split("\n")

    def render(self) -> str:
        return render_steps(self.steps)

    def to_json(self) -> dict[str, Any]:
        """``effect``, ``changes`` (the create/change steps) and every step with its
        action (keep, refuse too)."""
        return {
            "effect": self.effect,
            "changes": [s.to_json() for s in self.changes],
            "steps": [s.to_json() for s in self.steps],
        }


def render_steps(steps: Sequence[Step]) -> str:
    """One line per step: backend, action, object, detail (advice indented below a refusal)."""
    if not steps:
        return "(empty plan)\n"
    width = max(len(s.backend) for s in steps)
    lines = []
    for s in steps:
        detail = f": {s.detail}" if s.detail else ""
        lines.append(f"{s.backend:<{width}}  {s.action.value:<6}  {s.what}{detail}")
        if s.advice and s.action is Action.REFUSE:
            lines.append(f"{'':<{width}}  {'':<6}  → {s.advice}")
    return "\n".join(lines) + "\n"


class BackendError(OperationError):
    """A backend could not be reached or refused an operation; the message says what to do."""


class BackendInputError(UsageError):
    """.env asks for something a backend must never do (e.g. Stalwart as a superuser)."""
