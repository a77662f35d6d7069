"""Run an edge operation host by host (or N at a time), stop at the first failure, report."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TextIO

from ..errors import OperationError
from .report import HostResult, report
from .targets import HostJob


class DeployError(OperationError):
    """A deploy, rollback or status failed on at least one host (the report says which)."""

    def __init__(self, message: str, results: Sequence[object] = ()) -> None:
        super().__init__(message)
        self.results = list(results)


def rollout(
    jobs: Sequence[HostJob],
    run_one: Callable[[HostJob], HostResult],
    parallel: int = 1,
) -> list[HostResult]:
    """Run hosts one at a time (or ``parallel`` at a time); stop starting hosts after a failure."""
    results: dict[int, HostResult] = {}
    stop = threading.Event()

    def task(index: int) -> None:
        job = jobs[index]
        if stop.is_set():
            results[index] = HostResult(
                str(job.target), "skipped", detail="not attempted: an earlier host failed"
            )
            return
        res = run_one(job)
        results[index] = res
        if res.failed:
            stop.set()

    if parallel <= 1:
        for i in range(len(jobs)):
            task(i)
    else:
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            list(pool.map(task, range(len(jobs))))
    return [results[i] for i in range(len(jobs))]


def conclude(
    results: list[HostResult], title: str, operation: str, out: TextIO
) -> list[HostResult]:
    """Print the report; raise DeployError (exit 1, with the results) if a host failed."""
    out.write(report(results, title) + "\n")
    if any(r.failed for r in results):
        failed = ", ".join(r.host for r in results if r.failed)
        raise DeployError(f"{operation} failed on {failed} (see the report above)", results)
    return results
