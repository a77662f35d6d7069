"""``inv rollback-edge``: switch each edge host back to a kept release.

The same host session as a deploy: lock, switch, bring up, gate; a failure (a dropped
link included) brings back the release that was current before and releases the lock.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from . import commands as rc
from .plan import Action, decide_action
from .report import HostResult
from .rollout import DeployError, conclude, rollout
from .session import HostSession, audit_line
from .targets import DeployOptions, HostJob


def rollback_host(
    job: HostJob, opts: DeployOptions, to: str | None, out: TextIO | None = None
) -> HostResult:
    """Switch one host back to a kept release (default: the one active before ``current``)."""
    out = out or sys.stdout  # looked up now: tasks print through cli's masking stream
    session = HostSession(job, opts, "rollback", out)
    label = session.label
    result = HostResult(label, "failed", action="rollback")
    with session.guard(result):
        state = session.connect()
        target = state.release(to) if to else state.previous()
        if target is None:
            kept = ", ".join(r.id for r in state.releases) or "none"
            raise DeployError(
                f"{label}: no release {to!r} to roll back to (kept: {kept})"
                if to
                else f"{label}: no previous release to roll back to (kept: {kept})"
            )
        result.release = target.id
        action = decide_action(state, target.id, target.binary_sha256, target.config_sha256)
        session.say(f"rollback {state.current or '(none)'} -> {target.id}: {action.describe()}")
        if opts.dry_run:
            result.status = "planned"
            return result
        if action is Action.NONE:
            result.status = "unchanged"
            return result
        msg = opts.message or f"rollback to {target.id}"
        state = session.lock(msg)
        action = decide_action(state, target.id, target.binary_sha256, target.config_sha256)
        config = session.remote.run(
            f"cat {rc.q(session.layout.release(target.id) + '/caddy.json')}",
            what="read release config",
        ).stdout
        result.checks = session.switch(target.id, config, action)
        result.status = "ok"
        session.finish(audit_line("rollback", target.id, f"ok:{action.value}", msg))
    return result


def rollback(
    jobs: Sequence[HostJob],
    opts: DeployOptions,
    to: str | None = None,
    out: TextIO | None = None,
) -> list[HostResult]:
    """Roll every host back; raise DeployError (exit 1) with the report on failure."""
    out = out or sys.stdout
    results = rollout(jobs, lambda job: rollback_host(job, opts, to, out), opts.parallel)
    return conclude(results, "rollback", "rollback", out)
