"""``inv bootstrap``: inspect Postgres, Redis and Garage, print one plan, then apply it.

Nothing is applied while any step is refused, and a plan without changes says
so: running bootstrap twice changes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from ..settings import Settings
from .garage import GarageBootstrap, GarageTarget
from .plan import BackendError, BackendInputError, Plan, Step
from .postgres import PgTarget, PostgresBootstrap, admin_password
from .redis_store import RedisBootstrap, RedisTarget


class Backend(Protocol):
    def steps(self) -> list[Step]: ...
    def close(self) -> None: ...


def bootstrap(
    settings: Settings,
    *,
    dry_run: bool = False,
    fix_password: bool = False,
    init_layout: bool = False,
    environ: Mapping[str, str] | None = None,
    say: Callable[[str], None] = print,
) -> Plan:
    """Print the plan and apply it; raise BackendError (exit 1) on refusals or failures."""
    garage_target = GarageTarget.from_settings(settings)  # missing admin keys: exit 2
    garage_target.check_key_format()
    admin_user = settings["PG_ADMIN_USER"]
    admin_pw = admin_password(admin_user, None if environ is None else dict(environ))

    openers: list[Callable[[], Backend]] = [
        lambda: PostgresBootstrap(
            PgTarget.from_settings(settings), admin_user, admin_pw, fix_password
        ),
        lambda: RedisBootstrap(RedisTarget.from_settings(settings)),
        lambda: GarageBootstrap(garage_target, init_layout),
    ]
    backends: list[Backend] = []
    failures: list[str] = []
    try:
        for open_backend in openers:
            try:
                backends.append(open_backend())
            except BackendError as exc:
                failures.append(str(exc))
        if failures:
            raise BackendError("\n".join([*failures, "bootstrap: nothing was changed"]))
        steps: list[Step] = []
        for backend in backends:
            steps += backend.steps()
        plan = Plan(tuple(steps))
        say("plan:\n" + plan.render().rstrip("\n"))
        if any(step.bad_input for step in plan.refusals):
            raise BackendInputError(
                f"bootstrap: {len(plan.refusals)} step(s) refused (see → above); "
                "nothing was changed"
            )
        if plan.refusals:
            raise BackendError(
                f"bootstrap: {len(plan.refusals)} step(s) refused (see → above); "
                "nothing was changed"
            )
        if not plan.changes:
            say("nothing to change: Postgres, Redis and Garage already match .env")
            return plan
        if dry_run:
            say(f"dry run: {len(plan.changes)} change(s) planned; nothing was changed")
            return plan
        for step in plan.changes:
            assert step.run is not None
            say(f"applying: {step.backend} {step.action.value} {step.what}")
            step.run()
        say(f"done: {len(plan.changes)} change(s) applied")
        return plan
    finally:
        for backend in backends:
            backend.close()
