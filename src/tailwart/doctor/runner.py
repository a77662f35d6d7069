"""Running doctor checks in parallel, each with its own timeout.

Every check runs in its own daemon thread (checks also pass the timeout to
their sockets). A check that overruns is reported as an error and left
behind; one that raises becomes an error finding. Secrets are masked in
every message.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence

from ..findings import Finding, Status
from ..masking import hide_sensitive, secret_values
from .registry import Check, DoctorContext

#: grace beyond the socket timeout before a check counts as hung
GRACE = 2.0


def run(
    ctx: DoctorContext,
    checks: Sequence[Check],
    timeout: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[Finding]:
    """One finding per check, in the order of ``checks``; ``clock`` (injectable for
    tests) measures the shared deadline."""
    limit = (ctx.timeout + GRACE) if timeout is None else timeout
    results: dict[int, Finding] = {}

    def work(index: int, check: Check) -> None:
        try:
            results[index] = check.fn(ctx)
        except Exception as exc:  # a crashing check is an error, never a traceback
            results[index] = Finding(
                "",
                Status.ERROR,
                f"check crashed: {type(exc).__name__}: {exc}",
                "report a tailwart bug with this message",
            )

    threads = []
    for index, check in enumerate(checks):
        thread = threading.Thread(
            target=work, args=(index, check), daemon=True, name=f"doctor:{check.id}"
        )
        thread.start()
        threads.append(thread)
    started = clock()
    secrets = secret_values(ctx.settings)
    findings = []
    for index, (check, thread) in enumerate(zip(checks, threads, strict=True)):
        thread.join(max(0.0, started + limit - clock()))
        found = results.get(index)
        if thread.is_alive() or found is None:
            found = Finding(
                "",
                Status.ERROR,
                f"no answer within {limit:g}s",
                f"{check.title}: check that it is reachable from here",
            )
        findings.append(
            dataclasses.replace(
                found,
                id=check.id,
                group=check.group,
                message=hide_sensitive(found.message, secrets),
                advice=hide_sensitive(found.advice, secrets),
            )
        )
    return findings
