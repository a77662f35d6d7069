"""Judging the stack from ``docker compose ps --format json`` and ``docker inspect`` (pure).

``parse_ps`` reads compose's listing (a JSON array from compose < 2.21, one JSON object
per line since), ``parse_inspect`` reads ``docker inspect``'s array, ``judge`` turns
both into a verdict, ``wait`` polls until ready, failed or out of time, and
``failure_report`` says which container is not healthy and why.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .compose import SERVICES, SIDECAR

SERVICE_LABEL = "com.docker.compose.service"
#: health-log entries shown per container in a failure report
HEALTH_LOG_SHOWN = 3


@dataclass(frozen=True)
class Listed:
    """One row of ``docker compose ps --format json``."""

    service: str
    name: str
    image: str
    state: str
    health: str
    status: str
    exit_code: int


@dataclass(frozen=True)
class Probe:
    """One health-check run from ``docker inspect`` (State.Health.Log)."""

    exit_code: int
    output: str
    end: str = ""


@dataclass(frozen=True)
class Container:
    """One container's state from ``docker inspect``."""

    service: str
    name: str
    image: str
    status: str  # created | running | restarting | exited | dead | paused | removing
    health: str  # starting | healthy | unhealthy | '' (no health check)
    exit_code: int = 0
    error: str = ""
    restarting: bool = False
    log: tuple[Probe, ...] = field(default=())

    @property
    def healthy(self) -> bool:
        return self.status == "running" and self.health == "healthy"

    @property
    def gone(self) -> bool:
        """Stopped for good: it will not become healthy without operator action."""
        return self.status in ("exited", "dead") and not self.restarting

    def describe(self) -> str:
        if self.status in ("exited", "dead"):
            extra = f" ({self.error})" if self.error else ""
            return f"{self.status} with code {self.exit_code}{extra}"
        if self.status == "running":
            return f"running, health {self.health or 'unknown (no health check)'}"
        return self.status


class Verdict(StrEnum):
    READY = "ready"
    WAITING = "waiting"
    FAILED = "failed"


@dataclass(frozen=True)
class StackState:
    """The containers of the stack, keyed by service (missing = not created yet)."""

    containers: dict[str, Container]
    services: tuple[str, ...] = SERVICES

    @property
    def not_ready(self) -> list[str]:
        """Services not healthy yet, in start order."""
        return [
            s for s in self.services if s not in self.containers or not self.containers[s].healthy
        ]

    def verdict(self) -> Verdict:
        if not self.not_ready:
            return Verdict.READY
        if any(c.gone for c in self.containers.values()):
            return Verdict.FAILED
        return Verdict.WAITING


def _json_rows(text: str) -> list[dict[str, Any]]:
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        data = json.loads(text)
        return [row for row in data if isinstance(row, dict)]
    return [json.loads(row) for row in text.splitlines() if row.strip()]


def parse_ps(text: str) -> list[Listed]:
    """Rows of ``docker compose ps --all --format json`` (array or one object per line)."""
    rows = []
    for row in _json_rows(text):
        rows.append(
            Listed(
                service=str(row.get("Service", "")),
                name=str(row.get("Name", "")),
                image=str(row.get("Image", "")),
                state=str(row.get("State", "")),
                health=str(row.get("Health", "")),
                status=str(row.get("Status", "")),
                exit_code=int(row.get("ExitCode") or 0),
            )
        )
    return rows


def parse_inspect(text: str) -> list[Container]:
    """Containers of ``docker inspect <names…>`` (a JSON array)."""
    containers = []
    for doc in _json_rows(text):
        state = doc.get("State") or {}
        config = doc.get("Config") or {}
        health = state.get("Health") or {}
        log = tuple(
            Probe(
                int(entry.get("ExitCode", -1)),
                str(entry.get("Output", "")),
                str(entry.get("End", "")),
            )
            for entry in health.get("Log") or ()
        )
        containers.append(
            Container(
                service=str((config.get("Labels") or {}).get(SERVICE_LABEL, "")),
                name=str(doc.get("Name", "")).lstrip("/"),
                image=str(config.get("Image", "")),
                status=str(state.get("Status", "")),
                health=str(health.get("Status", "")),
                exit_code=int(state.get("ExitCode") or 0),
                error=str(state.get("Error", "")),
                restarting=bool(state.get("Restarting", False)),
                log=log,
            )
        )
    return containers


def judge(containers: Iterable[Container], services: tuple[str, ...] = SERVICES) -> StackState:
    """The stack state from inspected containers (others' services ignored)."""
    return StackState({c.service: c for c in containers if c.service in services}, services)


@dataclass(frozen=True)
class WaitResult:
    verdict: Verdict
    state: StackState
    waited: float

    @property
    def timed_out(self) -> bool:
        return self.verdict is Verdict.WAITING


def wait(
    poll: Callable[[], StackState],
    timeout: float,
    interval: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[StackState, float], None] | None = None,
) -> WaitResult:
    """Poll until every service is healthy, one has stopped for good, or ``timeout`` passes."""
    start = clock()
    while True:
        state = poll()
        waited = clock() - start
        verdict = state.verdict()
        if verdict is not Verdict.WAITING or waited >= timeout:
            return WaitResult(verdict, state, waited)
        if progress is not None:
            progress(state, waited)
        sleep(max(0.0, min(interval, timeout - waited)))


def summary_line(state: StackState) -> str:
    """One line: each service and its state."""
    parts = []
    for service in state.services:
        container = state.containers.get(service)
        parts.append(f"{service}: {container.describe() if container else 'not created'}")
    return "; ".join(parts)


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + row for row in text.rstrip().splitlines()) or prefix + "(empty)"


def failure_report(state: StackState, logs: dict[str, str], waited: float, timed_out: bool) -> str:
    """Which containers are not healthy, their health log and their last log lines."""
    why = f"not healthy after {waited:.0f}s" if timed_out else "stopped"
    lines = [f"mailbox {why}: {', '.join(state.not_ready)}"]
    for service in state.not_ready:
        container = state.containers.get(service)
        if container is None:
            why = (
                "see docker compose's output above"
                if service == SIDECAR
                else f"compose starts it only once {SIDECAR} is healthy"
            )
            lines.append(f"\n{service}: not created ({why})")
            continue
        lines.append(f"\n{service} ({container.name}): {container.describe()}")
        if container.log:
            lines.append(f"  health log (last {min(len(container.log), HEALTH_LOG_SHOWN)}):")
            for probe in container.log[-HEALTH_LOG_SHOWN:]:
                lines.append(f"  - exit {probe.exit_code} at {probe.end or '?'}")
                if probe.output.strip():
                    lines.append(_indent(probe.output, "      "))
        elif container.status == "running":
            lines.append("  health log: (empty: no probe has finished yet)")
        if service in logs:
            lines.append("  last log lines:")
            lines.append(_indent(logs[service]))
    lines.append("\n" + advice_for(state))
    return "\n".join(lines)


def advice_for(state: StackState) -> str:
    """One line of advice for the first service that is not ready."""
    first = state.not_ready[0] if state.not_ready else ""
    container = state.containers.get(first)
    if first == "ts-stalwart":
        return (
            "→ the sidecar is healthy only when it is on the tailnet AND Postgres and Garage "
            "answer: check TS_OAUTH_CLIENT_SECRET (scopes, tag:stalwart), STALWART_DB_HOST/"
            "PORT and STALWART_S3_HOST/PORT, then `inv up` again"
        )
    if container is not None and container.gone:
        return "→ read the log lines above, fix .env (then inv render), then `inv restart`"
    return (
        "→ Stalwart's /healthz/ready answers 200 once its data store is up: check the "
        "Postgres credentials and `inv logs stalwart`"
    )


def containers_to_inspect(listed: Sequence[Listed]) -> list[str]:
    """Names of the stack's containers, in start order, for ``docker inspect``."""
    order = {s: i for i, s in enumerate(SERVICES)}
    rows = sorted((r for r in listed if r.service in order), key=lambda r: order[r.service])
    return [r.name for r in rows]
