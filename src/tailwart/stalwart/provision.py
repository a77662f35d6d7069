"""``inv provision``: observe the server, plan, apply, verify zero drift, reload or restart."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import UsageError
from ..plan import PlanFlags, show_plan
from ..settings import Settings
from .apply import observe, restart_work, started_work, write
from .desired import RELOAD, RESTART, desired_state
from .jmap import Client, HttpTransport, StalwartError, Transport
from .management import ensure, login, recovery_login
from .plan import Live, Plan, diff, shown
from .schema import load
from .tls_status import CertificateReport, next_step
from .versions import CURRENT, Model

RESTART_MODES = ("auto", "never")
#: "stores": only the blob, in-memory and search stores (the first start's first step)
PHASES = ("all", "stores")
#: exit code of --restart never when a restart is still needed
EXIT_NEEDS_RESTART = 3


@dataclass(frozen=True)
class Options:
    dry_run: bool = False
    check: bool = False
    as_json: bool = False
    restart: str = "auto"
    phase: str = "all"
    #: --check also judges the certificate Stalwart serves (first start: not yet issued)
    certificate: bool = True
    #: Stalwart runs in recovery mode: log in as the recovery admin
    recovery: bool = False


def management_url(settings: Settings) -> str:
    """STALWART_MANAGEMENT_URL, else the mailbox's HTTP listener over the tailnet."""
    url = settings["STALWART_MANAGEMENT_URL"] or f"http://{settings['MAILBOX_FQDN']}:8080"
    return url.rstrip("/")


def client_for(
    settings: Settings, transport: Transport | None = None, recovery: bool = False
) -> Client:
    """A client logged in as tailwart's management login, or (``recovery``: Stalwart runs
    in recovery mode) as STALWART_RECOVERY_ADMIN."""
    if transport is None:
        import os
        from pathlib import Path

        from .record import ENV_VAR, Recorder

        user, password = recovery_login(settings) if recovery else login(settings)
        record = os.environ.get(ENV_VAR)
        transport = HttpTransport(
            management_url(settings),
            user,
            password,
            record=Recorder.for_settings(Path(record), settings) if record else None,
            login_key="STALWART_RECOVERY_ADMIN" if recovery else "STALWART_MANAGEMENT_PASSWORD",
        )
    return Client(transport)


def certificate_report(settings: Settings, live: Live, model: Model) -> CertificateReport:
    """The certificate Stalwart serves for MAIL_HOSTNAME, and its problems."""
    from ..settings.derived import certificate_names
    from .tls_status import judge

    return judge(live, model.certificate, model.system, certificate_names(settings))


def certificate_lines(report: CertificateReport, settings: Settings) -> list[str]:
    """The report as --check prints it: facts, one line per problem, then the next step."""
    lines = [*report.lines, *(f"certificate problem: {p}" for p in report.problems)]
    if report.problems:
        lines.append(f"  → {next_step(settings)}")
    return lines


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
    if options.phase not in PHASES:
        raise UsageError(f"--phase {options.phase!r}: choose all or stores")
    state = desired_state(settings)  # bad .env input fails here, before any request
    if options.phase == "stores":
        # and the cluster's roles: a node whose STALWART_ROLE names a role the registry
        # lacks refuses every reload (seen live), the stores phase's own included
        cluster = CURRENT.cluster_types()
        state = [i for i in state if i.type.endswith("Store") or i.type in cluster]
    client = client_for(settings, transport, recovery=options.recovery)
    model = client.check_schema()
    schema = load(model)
    live = observe(client, schema, state)
    plan = diff(state, live, schema)
    judged = options.check and options.certificate and options.phase == "all"
    certificate = certificate_report(settings, live, model) if judged else None
    extra: dict[str, Any] = {"schema": model.version}
    if certificate is not None:
        extra["certificate"] = {"facts": certificate.lines, "problems": certificate.problems}
    stop = show_plan(
        plan,
        PlanFlags(options.dry_run, options.check, options.as_json),
        out,
        extra=extra,
        notes=certificate_lines(certificate, settings) if certificate else (),
        problems=bool(certificate and certificate.problems),
    )
    if stop is not None:
        return stop
    if not plan:
        return 0
    say = (lambda _: None) if options.as_json else out
    say("applying:")
    write(plan, client, live, say)
    drift = diff(state, observe(client, schema, state), schema)
    if drift:
        left = "; ".join(f"{c.action} {c.type} {c.key}" for c in drift.changes)
        raise StalwartError(
            f"drift remains after apply ({left}): the server stored something else "
            f"than was written, first: wrote {shown(drift.changes[0].fields)}, "
            f"holds {shown(drift.changes[0].before)}"
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
        if started_work(plan, state):
            out(
                "a certificate order has started: a restart before it ends leaves it locked "
                "for an hour (then Stalwart retries); --restart auto restarts and orders again"
            )
        return EXIT_NEEDS_RESTART
    say("restarting Stalwart (alone; the sidecar keeps running)")
    restart()
    work = started_work(plan, state)
    if work:
        say("starting again what the restart cut short:")
        restart_work(work, client, schema, say)
    return 0


class Control(Protocol):
    """Starts and stops Stalwart alone (compose, systemd, a test harness)."""

    def start(self, recovery: bool) -> None: ...

    def stop(self) -> None: ...


def write_management(
    settings: Settings, out: Callable[[str], None], transport: Transport | None = None
) -> None:
    """The management login's role and account, through the recovery admin (recovery mode)."""
    client = client_for(settings, transport, recovery=True)
    model = client.check_schema()
    ensure(client, settings, load(model), out)


def first_start(
    settings: Settings,
    control: Control,
    out: Callable[[str], None],
    transport: Callable[[], Transport | None] = lambda: None,
) -> None:
    """A fresh store, in order: recovery mode + stores, first normal start (defaults
    seeded), recovery mode + tailwart's management login, the full apply as that login.

    Recovery mode seeds nothing, so the stores are in place before the first normal
    start seeds the defaults (into the right stores). The management login's role is
    written only after that start: a role made earlier would keep Stalwart from seeding
    its own default roles (seen live: users then get no rights at all). The full apply
    converges what was seeded, and a restart makes listeners and PROXY trust live. The
    recovery admin is never present outside recovery mode.
    """
    out("first start 1/5: Stalwart in recovery mode (STALWART_RECOVERY_ADMIN, nothing seeded)")
    control.start(recovery=True)
    out("first start 2/5: the stores")
    stores = Options(restart="never", phase="stores", recovery=True)
    provision(settings, stores, out, transport=transport())
    control.stop()
    out("first start 3/5: first normal start (defaults seeded for the empty types)")
    control.start(recovery=False)
    control.stop()
    out("first start 4/5: recovery mode again, tailwart's management login")
    control.start(recovery=True)
    write_management(settings, out, transport())
    control.stop()
    out("first start 5/5: the full apply, as the management login")
    control.start(recovery=False)

    def restart_alone() -> None:
        control.stop()
        control.start(recovery=False)

    # the restart comes from provision itself, which then orders the certificate again
    provision(settings, Options(restart="auto"), out, restart_alone, transport=transport())
    final = Options(check=True, certificate=False)  # ACME has not issued one yet
    if provision(settings, final, out, transport=transport()) != 0:
        raise StalwartError("first start: the server still differs from .env after the apply")
    out("first start done: the server holds exactly what .env describes")


def recover(
    settings: Settings,
    control: Control,
    out: Callable[[str], None],
    transport: Callable[[], Transport | None] = lambda: None,
) -> None:
    """Write the management login again from .env through the recovery admin: Stalwart
    restarts in recovery mode (mail ports closed meanwhile), then normally; the recovery
    admin exists only in between. For a lost or rotated-away management password."""
    out("recover 1/3: Stalwart in recovery mode (STALWART_RECOVERY_ADMIN; mail ports closed)")
    control.stop()
    control.start(recovery=True)
    try:
        out("recover 2/3: the management login")
        write_management(settings, out, transport())
    finally:
        out("recover 3/3: Stalwart in normal mode (the recovery admin is gone)")
        control.stop()
        control.start(recovery=False)
    check = provision(settings, Options(check=True, certificate=False), out, transport=transport())
    out(
        "recovered: the management login works from here"
        + ("" if check == 0 else "; inv provision has changes to apply")
    )
