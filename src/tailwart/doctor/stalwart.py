"""Stalwart's own numbers: its Prometheus endpoint and its outbound queue, over the tailnet.

Run only when STALWART_METRICS_PASSWORD is set (``inv provision`` then turns the
endpoint on, behind Basic auth). The endpoint is read once per run and parsed with
``prometheus_client``'s text parser. Stalwart's counters count from its start; each is
judged by its increase since the newest recorded run (``inv doctor --record``), as
Prometheus's ``increase()`` does: a counter lower than before means Stalwart restarted,
and it counts from zero. Without a recorded run, the count since the start is judged.
The queue is read with tailwart's management login (``x:QueuedMessage``, read only):
the community edition exports no queue gauge.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import clock
from ..errors import OperationError
from ..findings import Finding
from ..settings.limits import BY_NAME, parse
from .registry import Check, CheckFn, DoctorContext, error, ok, warning

if TYPE_CHECKING:
    from ..stalwart.jmap import Client

GROUP = "stalwart"
PATH = "/metrics/prometheus"
#: the endpoint's answer is read up to this size (Stalwart's is about 20 KiB)
MAX_BYTES = 4 * 1024 * 1024
#: at most this many series are kept from one answer
MAX_SERIES = 5000
#: queued messages whose age is read (the oldest among them is judged)
AGE_SAMPLE = 200
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,99}$")

#: counters by the limit that judges their sum (Stalwart's event ids, dots and dashes
#: as underscores: ``delivery.dsn-perm-fail`` → ``delivery_dsn_perm_fail``)
COUNTERS: dict[str, tuple[str, ...]] = {
    # a permanent failure: the sender gets a bounce
    "failed": ("delivery_dsn_perm_fail",),
    # a delivery attempt that did not finish: the message waits for its next retry
    "deferred": ("queue_rescheduled",),
    "auth-failures": ("auth_failed",),
}
#: store errors: every ``store_*_error`` counter, and these
STORE_ERRORS = ("store_data_corruption", "store_assert_value_failed")
ADVICE = {
    "failed": "see why in Stalwart's log (docker compose logs stalwart): a refusing "
    "smarthost, a blocklisted address, a wrong SPF/DKIM",
    "deferred": "remote servers or the smarthost answer with temporary errors: check the "
    "outbound path (inv doctor --only outbound) and Stalwart's log",
    "auth-failures": "someone guesses passwords: Stalwart bans an address after 10 failures "
    "in 10 minutes; check that it does (docker compose logs stalwart | grep auth)",
    "store-errors": "Stalwart could not read or write its stores: check the backends "
    "(inv doctor --only backends) and Stalwart's log",
    "queue": "messages wait to leave: check the outbound path (inv doctor --only outbound) "
    "and the smarthost",
    "queue-hours": "a message has waited long: check why in Stalwart's log; it bounces when "
    "its expiry passes",
}


class MetricsError(OperationError):
    """The endpoint did not give metrics tailwart can read."""


@dataclass(frozen=True)
class Scrape:
    """One reading of the endpoint: every counter and gauge, by name."""

    values: Mapping[str, float]
    families: int

    def counters(self) -> dict[str, float]:
        return dict(self.values)


def parse_metrics(text: str) -> Scrape:
    """The counters and gauges of a Prometheus text answer; MetricsError naming what is
    wrong (not the text format, a name or a value tailwart does not accept)."""
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, float] = {}
    families = 0
    try:
        for family in text_string_to_metric_families(text):
            families += 1
            if family.type not in ("counter", "gauge", "unknown"):
                continue
            for sample in family.samples:
                if sample.labels:
                    continue  # Stalwart's own series carry no labels
                if not _NAME.fullmatch(sample.name):
                    raise MetricsError("a series name is not one Stalwart writes")
                if not math.isfinite(sample.value) or sample.value < 0:
                    raise MetricsError(f"{sample.name} is not a non-negative number")
                values[sample.name.removesuffix("_total")] = sample.value
                if len(values) > MAX_SERIES:
                    raise MetricsError(f"more than {MAX_SERIES} series")
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise MetricsError(f"not the Prometheus text format ({type(exc).__name__})") from None
    if families == 0:
        raise MetricsError("no metric at all")
    return Scrape(values, families)


def _scrape(ctx: DoctorContext) -> Scrape:
    from ..stalwart.desired import ENV_METRICS_SECRET, METRICS_USER
    from ..stalwart.jmap import HttpTransport, StalwartError
    from ..stalwart.provision import management_url

    url = management_url(ctx.settings)
    transport = HttpTransport(
        url,
        METRICS_USER,
        ctx.settings[ENV_METRICS_SECRET],
        timeout=ctx.timeout,
        deadline=ctx.timeout,
        max_answer=MAX_BYTES,
        login_key=ENV_METRICS_SECRET,
    )
    try:
        answer = transport.get_text(PATH)
    except StalwartError as exc:
        raise MetricsError(str(exc)) from None
    if answer.status == 401:
        raise MetricsError(f"{url}{PATH} refused the password (401): check {ENV_METRICS_SECRET}")
    if answer.status == 404:
        raise MetricsError(f"{url}{PATH} answered 404: the endpoint is off; run inv provision")
    if answer.status != 200:
        raise MetricsError(f"{url}{PATH} answered {answer.status}")
    try:
        text = answer.body.decode("utf-8")
    except UnicodeDecodeError:
        raise MetricsError(f"{url}{PATH}: the answer is not UTF-8 text") from None
    try:
        return parse_metrics(text)
    except MetricsError as exc:
        raise MetricsError(f"{url}{PATH}: {exc}") from None


def scrape(ctx: DoctorContext) -> Scrape:
    """The endpoint's numbers, read once per run (every check of the group shares them)."""
    found: Scrape = ctx.shared.once("stalwart.metrics", lambda: _scrape(ctx))
    return found


def recorded_counters(ctx: DoctorContext) -> dict[str, float]:
    """The counters this run read ({} when it read none): what ``--record`` keeps."""
    found = ctx.shared.get("stalwart.metrics")
    return found.counters() if isinstance(found, Scrape) else {}


def increase(now: float, before: float | None) -> float:
    """How much a counter grew: ``now`` when there is no earlier reading or the counter
    went down (Stalwart restarted and counts from zero)."""
    if before is None or now < before:
        return now
    return now - before


def _since(ctx: DoctorContext) -> str:
    if ctx.baseline is None:
        return "since Stalwart started (no recorded run yet)"
    return f"since the run recorded {ctx.baseline.at:%Y-%m-%d %H:%M} UTC"


def store_error_names(values: Mapping[str, float]) -> list[str]:
    return sorted(
        name
        for name in values
        if (name.startswith("store_") and name.endswith("_error")) or name in STORE_ERRORS
    )


def judge_counter(
    ctx: DoctorContext, limit_name: str, names: list[str], severe: bool = False
) -> Finding:
    """The increase of the sum of ``names`` against DOCTOR_LIMITS' ``limit_name``: over
    it, a warning (an error when ``severe``)."""
    values = scrape(ctx).values
    # a recorded run lists only the counters above zero (all Stalwart exports)
    before = ctx.baseline.counters if ctx.baseline is not None else None
    grown = sum(
        increase(values.get(n, 0.0), None if before is None else before.get(n, 0.0)) for n in names
    )
    limit = parse(ctx.settings["DOCTOR_LIMITS"])[limit_name]
    about = BY_NAME[limit_name]
    said = f"{grown:g} {about.unit} {_since(ctx)}"
    over = error if severe else warning
    found = (
        over(f"{said}: over {limit:g} (DOCTOR_LIMITS {limit_name})", ADVICE[limit_name])
        if grown > limit
        else ok(said)
    )
    return found.measured(grown, limit, about.unit)


def metrics(ctx: DoctorContext) -> Finding:
    try:
        found = scrape(ctx)
    except MetricsError as exc:
        return error(
            str(exc),
            "check that Stalwart runs and inv provision has run since "
            "STALWART_METRICS_PASSWORD was set",
        )
    return ok(f"{found.families} metric families, {len(found.values)} counters and gauges")


def _counter_check(limit_name: str) -> CheckFn:
    def check(ctx: DoctorContext) -> Finding:
        try:
            return judge_counter(ctx, limit_name, list(COUNTERS[limit_name]))
        except MetricsError as exc:
            return error(f"not judged: {exc}", "see stalwart.metrics")

    return check


def store_errors(ctx: DoctorContext) -> Finding:
    try:
        names = store_error_names(scrape(ctx).values)
        if ctx.baseline is not None:
            names = sorted({*names, *store_error_names(ctx.baseline.counters)})
        # a store error is an error
        return judge_counter(ctx, "store-errors", names, severe=True)
    except MetricsError as exc:
        return error(f"not judged: {exc}", "see stalwart.metrics")


@dataclass(frozen=True)
class Queue:
    size: int
    #: createdAt of the oldest message read (None: the queue is empty)
    oldest: dt.datetime | None


def management_client(ctx: DoctorContext) -> Client:
    """A JMAP client logged in as tailwart's management login, bound by the doctor's
    timeout (each request and the whole exchange)."""
    from ..stalwart.jmap import Client, HttpTransport
    from ..stalwart.management import login
    from ..stalwart.provision import management_url

    user, password = login(ctx.settings)
    url = management_url(ctx.settings)
    return Client(HttpTransport(url, user, password, ctx.timeout, deadline=ctx.timeout))


def read_queue(ctx: DoctorContext) -> Queue:
    """The outbound queue's size and its oldest message, with the management login."""
    from ..stalwart.jmap import StalwartError

    def compute() -> Queue:
        client = management_client(ctx)
        kind = client.model.queued_message
        try:
            found = client.call(f"{kind}/query", {"calculateTotal": True, "limit": AGE_SAMPLE})
            ids, total = found.get("ids"), found.get("total")
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise StalwartError(f"{kind}/query: its ids are not a list of ids")
            if isinstance(total, bool) or not isinstance(total, int) or total < 0:
                raise StalwartError(f"{kind}/query: its total is not a count")
            if not ids:
                return Queue(total, None)
            got = client.call(f"{kind}/get", {"ids": ids[:AGE_SAMPLE], "properties": ["createdAt"]})
            listed = got.get("list")
            if not isinstance(listed, list):
                raise StalwartError(f"{kind}/get: its list is not a list")
            times = []
            for item in listed:
                stamp = item.get("createdAt") if isinstance(item, dict) else None
                if not isinstance(stamp, str):
                    raise StalwartError(f"{kind}/get: a createdAt is not a time")
                try:
                    times.append(clock.parse(stamp))
                except ValueError:
                    raise StalwartError(f"{kind}/get: a createdAt is not a time") from None
            return Queue(max(total, len(ids)), min(times) if times else None)
        except StalwartError as exc:
            raise MetricsError(str(exc)) from None

    queue: Queue = ctx.shared.once("stalwart.queue", compute)
    return queue


def queue_size(ctx: DoctorContext) -> Finding:
    try:
        queue = read_queue(ctx)
    except MetricsError as exc:
        return error(
            f"the queue could not be read: {exc}",
            "check the management login (inv doctor --only management) and that Stalwart runs",
        )
    limit = parse(ctx.settings["DOCTOR_LIMITS"])["queue"]
    said = f"{queue.size} messages in the outbound queue"
    found = (
        warning(f"{said}: over {limit} (DOCTOR_LIMITS queue)", ADVICE["queue"])
        if queue.size > limit
        else ok(said)
    )
    return found.measured(queue.size, limit, "messages")


def queue_age(ctx: DoctorContext) -> Finding:
    try:
        queue = read_queue(ctx)
    except MetricsError as exc:
        return error(f"not judged: {exc}", "see stalwart.queue")
    limit = parse(ctx.settings["DOCTOR_LIMITS"])["queue-hours"]
    if queue.oldest is None:
        return ok("the outbound queue is empty").measured(0, limit, "hours")
    hours = max(0.0, (clock.now() - queue.oldest).total_seconds() / 3600)
    said = f"the oldest queued message has waited {hours:.1f} hours"
    found = (
        warning(f"{said}: over {limit} (DOCTOR_LIMITS queue-hours)", ADVICE["queue-hours"])
        if hours > limit
        else ok(said)
    )
    return found.measured(round(hours, 1), limit, "hours")


def checks(ctx: DoctorContext) -> list[Check]:
    if not ctx.settings["STALWART_METRICS_PASSWORD"]:
        return []
    return [
        Check("stalwart.metrics", GROUP, "Stalwart's Prometheus endpoint", metrics),
        Check("stalwart.queue", GROUP, "messages waiting in the outbound queue", queue_size),
        Check("stalwart.queue-age", GROUP, "the oldest queued message", queue_age),
        Check("stalwart.failed", GROUP, "deliveries failed for good", _counter_check("failed")),
        Check("stalwart.deferred", GROUP, "deliveries deferred", _counter_check("deferred")),
        Check("stalwart.auth", GROUP, "failed logins", _counter_check("auth-failures")),
        Check("stalwart.store", GROUP, "store errors", store_errors),
    ]
