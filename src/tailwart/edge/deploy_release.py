"""``inv deploy-edge``: put a new release on every edge host, one host at a time.

Per host: probe → plan → (dry run stops here) → lock → upload what is missing →
verify sha256 → ``caddy validate`` remotely → publish → switch ``current`` →
reload (config only) or restart (new binary) or first install → health gate →
audit, prune, unlock. A failure after the switch brings the previous release back
(``session.HostSession.guard``); the rollout stops at the first failed host.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from ..errors import UsageError
from ..plan import Drift, PlanFlags, drift_message, plan_exit, print_plan
from . import commands as rc
from .binaries import BinaryProvider, LocalBinary, built_binary_provider, fixed_binary_provider
from .drain import (
    DRAINED_FILE,
    DrainPlan,
    DrainRefused,
    check_node,
    drained_text,
    for_render,
    parse_drained,
    plan_drain,
)
from .plan import (
    MIGRATE_SYSCTL,
    SYSCTL_DROPIN,
    LocalRelease,
    Plan,
    RemoteState,
    Rollout,
    make_plan,
    sha256_text,
)
from .remote import RemoteError
from .render import caddy_json
from .report import HostResult, Progress
from .rollout import DeployError, conclude, rollout
from .session import HostSession, audit_line, operator, utc_now
from .targets import MODES, DeployOptions, HostJob


def _stage(session: HostSession, local: LocalRelease, plan: Plan) -> None:
    """Put the release in place: upload/reuse, verify by sha256, validate, publish."""
    rid, layout, remote = local.id, session.layout, session.remote
    if not plan.uploads:
        return
    inc = layout.incoming(rid)
    binary = next(u for u in plan.uploads if u.name == "binary")
    if binary.source == "upload":
        remote.run(rc.prepare_command(layout, rid), what="prepare")
        bar = Progress(f"{remote.label} caddy", sys.stderr, session.opts.progress)
        remote.put_file(local.binary_path, f"{inc}/caddy", bar)
        session.say(bar.summary(binary.size))
    else:
        source = binary.source.removeprefix("reuse ")
        remote.run(
            rc.prepare_command(layout, rid) + " && " + rc.reuse_binary_command(layout, rid, source),
            what="prepare",
        )
        session.say(f"binary already on the host (release {source}): 0 bytes sent")
    remote.put_text(local.config, f"{inc}/caddy.json")
    remote.put_text(
        rc.meta_text(
            local.binary_sha256, local.config_sha256, local.version, utc_now(), operator()
        ),
        f"{inc}/meta",
    )
    res = remote.run(
        rc.install_release_command(
            layout,
            rid,
            local.binary_sha256,
            local.config_sha256,
            uploaded=binary.source == "upload",
        ),
        check=False,
    )
    if res.exited == rc.VALIDATE_REFUSED:
        tail = "\n".join(res.stdout.strip().splitlines()[-5:])
        raise RemoteError(
            f"{remote.label}: caddy validate refused the new config; nothing was switched:\n{tail}"
        )
    if res.exited != 0:
        out = (res.stdout + res.stderr).strip()
        raise RemoteError(f"{remote.label}: installing the release failed: {out[-500:]}")
    session.say("sha256 verified, caddy validate: ok")


def _migrate_req(session: HostSession, plan: Plan) -> None:
    """net.ipv4.tcp_migrate_req=1 before the release comes up; a refusal warns, never fails."""
    if not (plan.set_migrate_req or plan.persist_sysctl):
        return
    res = session.remote.run(
        rc.migrate_req_command(runtime=plan.set_migrate_req, persist=plan.persist_sysctl),
        check=False,
        what="sysctl",
    )
    if res.exited == 0:
        kept = f", kept in {SYSCTL_DROPIN}" if plan.persist_sysctl else ""
        session.say(f"{MIGRATE_SYSCTL}=1{kept}: reloads hand queued connections over")
        return
    why = " ".join((res.stdout + res.stderr).split())[-200:] or f"exit {res.exited}"
    session.say(
        f"warning: the host refused {MIGRATE_SYSCTL}=1 ({why}): a reload may reset "
        "connections queued on the old listener; deploying anyway"
    )


def deploy_host(
    job: HostJob, opts: DeployOptions, binaries: BinaryProvider, out: TextIO | None = None
) -> HostResult:
    """Deploy to one host; a host-level failure is reported in the result, never raised."""
    out = out or sys.stdout  # looked up now: tasks print through cli's masking stream
    operation = "deploy" if opts.drain is None else "drain" if opts.drain[1] else "undrain"
    session = HostSession(job, opts, operation, out)
    label = session.label
    result = HostResult(label, "failed")
    with session.guard(result):
        state = session.connect()
        nodes = job.layout.nodes()
        before = parse_drained(state.drained_lines, label)
        drain: DrainPlan | None = None
        if opts.drain is not None:
            try:
                drain = plan_drain(label, nodes, before, opts.drain[0], drain=opts.drain[1])
            except DrainRefused as exc:
                result.status, result.detail = "refused", str(exc)
                return result
            binary = running_binary(state, job, label, for_render(nodes, before))
            for line in drain.describe(nodes):
                out.write(line + "\n")
        else:
            binary = binaries(state.goos, state.goarch)
        # the drained set on the host holds, whoever deploys: never undrained by a deploy
        layout = replace(job.layout, drained=for_render(nodes, drain.after if drain else before))
        local = LocalRelease(
            str(binary.path), binary.sha256, binary.size, caddy_json(layout), binary.version
        )
        unit_text = unit_sha = ""
        if session.mode == "systemd":
            from .unit import render_unit

            unit_text = render_unit(job.root, job.layout.admin_socket)
            unit_sha = sha256_text(unit_text)

        def plan_for(state: RemoteState) -> Plan:
            return make_plan(
                label, local, state, mode=session.mode, keep=opts.keep, unit_sha256=unit_sha
            )

        plan = plan_for(state)
        result.plan, result.release, result.action = plan, plan.release, plan.action.value
        flags = _flags(opts)
        if not flags.as_json:
            print_plan(plan, flags, lambda line: out.write(line + "\n"))
        if state.lock:
            session.say(f"lock: HELD by {state.lock.split(' token=')[0]}")
        if not flags.applies:
            result.status = "planned"
            return result
        if not plan.changes:
            result.checks = session.gate(local.config)
            session.say("unchanged; health gate ok")
            result.status = "unchanged"
            return result
        held_by = state.lock
        locked = session.lock(opts.message)
        if parse_drained(locked.drained_lines, label) != before:
            raise RemoteError(
                f"{label}: the drained nodes changed since the plan (another drain or "
                "undrain ran); nothing was changed: rerun"
            )
        replan = plan_for(locked)
        if replan != plan:
            out.write("the host changed since the plan; now:\n" + replan.render() + "\n")
        plan = result.plan = replan
        result.action = plan.action.value
        _stage(session, local, plan)
        _migrate_req(session, plan)
        result.checks = session.switch(
            plan.release, local.config, plan.action, unit_text if plan.install_unit else ""
        )
        if drain is not None:
            # after the gate: a failure here rolls the release back with the file unchanged
            tmp = f"{job.root}/.{DRAINED_FILE}.new"
            session.remote.put_text(drained_text(drain.after), tmp)
            session.remote.run(rc.write_drained_command(session.layout, tmp), what="drained")
        result.status = "deployed"
        forced = f" lock=forced(was:{held_by.split(' token=')[0]})" if held_by else ""
        verb = operation if drain is None else f"{operation}:{drain.node}"
        line = audit_line(verb, plan.release, f"ok:{plan.action.value}", opts.message)
        session.finish(line + (forced if opts.force_unlock else ""), plan.prune)
        if plan.prune:
            session.say(f"pruned {len(plan.prune)} old release(s): {', '.join(plan.prune)}")
    return result


def running_binary(
    state: RemoteState, job: HostJob, label: str, drained: frozenset[str]
) -> LocalBinary:
    """The binary of the release the host runs, for a config-only deploy (a drain): it is
    never uploaded, only reused. The host must run what this .env renders (with its
    drained set), or a drain would roll out unrelated changes with it."""
    current = state.release(state.current)
    # after a reload the process still runs the binary of the release it started from
    running = state.release(state.running_release) if state.running_pid else None
    if current is None or running is None or running.binary_sha256 != current.binary_sha256:
        raise RemoteError(
            f"{label}: the edge does not run its current release's binary; run inv "
            "deploy-edge first"
        )
    if state.current_config != caddy_json(replace(job.layout, drained=drained)):
        raise RemoteError(
            f"{label}: the edge runs a config other than this .env renders; run inv "
            "deploy-edge --dry-run to see the difference, deploy it, then drain"
        )
    return LocalBinary(Path(), current.binary_sha256, 0, current.version)


def _flags(opts: DeployOptions) -> PlanFlags:
    return PlanFlags(opts.dry_run, opts.check, opts.as_json)


def deploy(
    jobs: Sequence[HostJob],
    opts: DeployOptions,
    binaries: BinaryProvider | None = None,
    out: TextIO | None = None,
) -> list[HostResult]:
    """Roll the edge out to every host; raise DeployError (exit 1) with the report on failure.

    ``opts.dry_run`` and ``opts.check`` plan every host and change nothing; ``check``
    raises ``Drift`` (exit 1) when a host would change. ``opts.as_json`` prints the
    rollout's plan (``Rollout``) as one JSON document on ``out``, the rest on stderr."""
    out = out or sys.stdout
    if opts.keep < 1:
        raise UsageError("--keep must be at least 1")
    if opts.parallel < 1:
        raise UsageError("--parallel must be at least 1")
    if opts.mode not in MODES:
        raise UsageError(f"--mode {opts.mode!r}: expected one of {', '.join(MODES)}")
    if binaries is None:
        binaries = fixed_binary_provider(opts.binary) if opts.binary else built_binary_provider()
    provide = binaries
    host_opts = replace(opts, progress=opts.progress and opts.parallel == 1)
    flags = _flags(opts)
    text = sys.stderr if flags.as_json else out
    results = rollout(jobs, lambda job: deploy_host(job, host_opts, provide, text), opts.parallel)
    plans = Rollout(tuple(r.plan for r in results if r.plan is not None))
    if flags.as_json:
        print_plan(plans, flags, lambda line: out.write(line + "\n"))
    title = "check" if opts.check else "dry run" if opts.dry_run else "deploy"
    conclude(results, title, "deploy", text)
    if plan_exit(plans, flags):
        raise Drift(drift_message("deploy-edge", plans))
    return results


def drain_nodes(
    jobs: Sequence[HostJob],
    opts: DeployOptions,
    node: str,
    *,
    drain: bool,
    out: TextIO | None = None,
) -> list[HostResult]:
    """``inv drain`` (``drain``) or ``inv undrain`` of ``node`` on every edge host: a
    config-only deploy per host, the drained set kept in EDGE_ROOT/drained.

    A node MAILBOX_NODES does not list, or a drain that would leave a host no serving
    node, is refused (DrainRefused, exit 2) before that host changes."""
    out = out or sys.stdout
    name = check_node(node, jobs[0].layout.nodes() if jobs else ())
    try:
        return deploy(jobs, replace(opts, drain=(name, drain)), out=out)
    except DeployError as exc:
        refused = [r for r in exc.results if isinstance(r, HostResult) and r.status == "refused"]
        if refused:
            raise DrainRefused("\n".join(r.detail for r in refused)) from None
        raise
