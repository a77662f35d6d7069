"""``inv provision``: observe the server, plan, apply, verify zero drift, reload or restart."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import UsageError
from ..settings import Settings
from .apply import observe, write
from .desired import RELOAD, RESTART, desired_state
from .jmap import Client, HttpTransport, StalwartError, Transport
from .plan import Plan, describe, diff, redact, to_json
from .schema import load

RESTART_MODES = ("auto", "never")
#: exit code of --restart never when a restart is still needed
EXIT_NEEDS_RESTART = 3


@dataclass(frozen=True)
class Options:
    dry_run: bool = False
    check: bool = False
    as_json: bool = False
    restart: str = "auto"


def management_url(settings: Settings) -> str:
    """STALWART_MANAGEMENT_URL, else the mailbox's HTTP listener over the tailnet."""
    url = settings["STALWART_MANAGEMENT_URL"] or f"http://{settings['MAILBOX_FQDN']}:8080"
    return url.rstrip("/")


def admin_credentials(settings: Settings) -> tuple[str, str]:
    """(name, password) of STALWART_RECOVERY_ADMIN; the value is never shown."""
    name, sep, password = settings["STALWART_RECOVERY_ADMIN"].partition(":")
    if not sep or not name.strip() or not password.strip():
        raise UsageError(
            "STALWART_RECOVERY_ADMIN: must be name:password (Stalwart ignores it otherwise)"
        )
    return name.strip(), password.strip()


def client_for(settings: Settings, transport: Transport | None = None) -> Client:
    if transport is None:
        user, password = admin_credentials(settings)
        transport = HttpTransport(management_url(settings), user, password)
    return Client(transport)


def restart_text(plan: Plan) -> list[str]:
    return [f"  {c.action} {c.type} {c.key}" for c in plan.changes if c.effect == RESTART]


def provision(
    settings: Settings,
    options: Options,
    out: Callable[[str], None],
    restart: Callable[[], None] | None = None,
    transport: Transport | None = None,
) -> int:
    """Run ``inv provision``; return its exit code (0, 1 for --check drift, 3 restart pending)."""
    if options.restart not in RESTART_MODES:
        raise UsageError(f"--restart {options.restart!r}: choose auto or never")
    state = desired_state(settings)  # bad .env input fails here, before any request
    client = client_for(settings, transport)
    model = client.check_schema()
    schema = load(model)
    live = observe(client, schema)
    plan = diff(state, live, schema)
    if options.as_json:
        out(
            json.dumps(
                {"schema": model.version, "effect": plan.effect, "changes": to_json(plan)},
                indent=2,
                sort_keys=True,
            )
        )
    else:
        for line in describe(plan):
            out(line)
    if options.dry_run:
        return 0
    if options.check:
        return 1 if plan else 0
    if not plan:
        return 0
    say = (lambda _: None) if options.as_json else out
    say("applying:")
    write(plan, client, live, say)
    drift = diff(state, observe(client, schema), schema)
    if drift:
        left = "; ".join(f"{c.action} {c.type} {c.key}" for c in drift.changes)
        raise StalwartError(
            f"drift remains after apply ({left}): the server stored something else "
            f"than was written, first: {redact(drift.changes[0].fields)}"
        )
    say("verified: the server holds exactly what .env describes")
    if plan.effect in (RELOAD, RESTART):
        client.reload()
        say("reloaded: x:Action ReloadSettings")
    if plan.effect != RESTART:
        return 0
    if options.restart == "never" or restart is None:
        out("still needs a Stalwart restart (listeners, stores, PROXY trust are fixed at start):")
        for line in restart_text(plan):
            out(line)
        return EXIT_NEEDS_RESTART
    say("restarting Stalwart (alone; the sidecar keeps running)")
    restart()
    return 0
