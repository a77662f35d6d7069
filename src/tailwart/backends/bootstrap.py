"""``inv bootstrap``: inspect Postgres, Redis and Garage, print one plan, then apply it.

Nothing is applied while any step is refused, and a plan without changes says
so: running bootstrap twice changes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from ..plan import Drift, PlanFlags, drift_message, plan_exit, print_plan
from ..settings import Settings
from .garage import GarageBootstrap, GarageTarget
from .plan import BackendError, BackendInputError, Plan, Step
from .postgres import PgTarget, PostgresBootstrap, admin_password
from .redis_store import RedisBootstrap, RedisTarget


def _silent(_: str) -> None:
    """--json: stdout holds the JSON document alone."""


class Backend(Protocol):
    def steps(self) -> list[Step]: ...
    def close(self) -> None: ...


def bootstrap(
    settings: Settings,
    *,
    dry_run: bool = False,
    check: bool = False,
    as_json: bool = False,
    fix_password: bool = False,
    init_layout: bool = False,
    environ: Mapping[str, str] | None = None,
    say: Callable[[str], None] = print,
) -> Plan:
    """Print the plan and apply it; raise BackendError (exit 1) on refusals or failures.

    ``dry_run`` stops after the plan; ``check`` too, raising ``Drift`` (exit 1) when it
    has changes; ``as_json`` prints the plan as JSON and nothing else on stdout."""
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
        flags = PlanFlags(dry_run, check, as_json)
        if not as_json:
            say("plan:")
        print_plan(plan, flags, say)
        if as_json:
            say = _silent
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
        elif not flags.check and dry_run:
            say(f"dry run: {len(plan.changes)} change(s) planned; nothing was changed")
        stop = plan_exit(plan, flags)
        if stop:
            raise Drift(drift_message("bootstrap", plan))
        if stop is not None or not plan.changes:
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
