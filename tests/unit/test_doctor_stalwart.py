"""The doctor's stalwart group: Stalwart's Prometheus endpoint, its counters' increase, the
queue, DOCTOR_LIMITS, and what a hostile endpoint may send.

The endpoint's text is the real server's (tests/fixtures/stalwart-0.16.18/metrics.prom,
recorded by ``nox -s live -- --record``), served by a local HTTP server; the expected
numbers are read from the text's own lines here, never from tailwart's parser.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tailwart import clock
from tailwart.doctor import stalwart
from tailwart.doctor.registry import Baseline, DoctorContext, DoctorOptions
from tailwart.findings import Status
from tailwart.settings import SettingsError, from_mapping

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "stalwart-0.16.18"
METRICS = FIXTURES / "metrics.prom"
QUEUE = FIXTURES / "queue.json"
PASSWORD = "metrics-0f1e2d3c4b5a6978"


def _lines(text: str) -> dict[str, float]:
    """``name value`` lines of the counters and gauges of a Prometheus text (histograms'
    ``_sum``/``_count``/``_bucket`` left out), as a plain reading (the oracle)."""
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.MULTILINE))
    out = {}
    for line in text.splitlines():
        match = re.fullmatch(r"([a-z_0-9]+) ([0-9.e+]+)", line)
        if match and types.get(match.group(1)) in ("counter", "gauge"):
            out[match.group(1)] = float(match.group(2))
    return out


class _Server:
    """Loopback HTTP: ``/metrics/prometheus`` behind Basic auth, ``/jmap`` the recorded
    queue answers."""

    def __init__(self, body: bytes, status: int = 200) -> None:
        self.body, self.status = body, status
        self.seen_auth: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                outer.seen_auth.append(self.headers.get("Authorization", ""))
                token = base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()
                if self.headers.get("Authorization") != f"Basic {token}":
                    self.send_response(401)
                    self.end_headers()
                    return
                self.send_response(outer.status)
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                method = request["methodCalls"][0][0]
                answer = json.loads(QUEUE.read_text())[method]
                data = json.dumps({"methodResponses": [[method, answer, "c0"]]}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def real_text() -> str:
    return METRICS.read_text()


@pytest.fixture
def server(real_text: str) -> Iterator[_Server]:
    made = _Server(real_text.encode())
    yield made
    made.close()


def _ctx(
    example_values: dict[str, str],
    url: str,
    baseline: Baseline | None = None,
    **extra: str,
) -> DoctorContext:
    values = {
        **example_values,
        "STALWART_METRICS_PASSWORD": PASSWORD,
        "STALWART_MANAGEMENT_URL": url,
        **extra,
    }
    return DoctorContext(from_mapping(values), DoctorOptions(timeout=5), baseline=baseline)


def test_the_real_servers_text_is_read_whole(real_text: str) -> None:
    found = stalwart.parse_metrics(real_text)
    plain = _lines(real_text)
    assert found.values == plain
    assert found.families == real_text.count("# TYPE ")
    assert plain["auth_failed"] >= 1 and plain["queue_rescheduled"] >= 1


def test_checks_judge_the_real_numbers_since_start(
    example_values: dict[str, str], server: _Server, real_text: str
) -> None:
    plain = _lines(real_text)
    ctx = _ctx(example_values, server.url, DOCTOR_LIMITS="deferred=0,auth-failures=1000")
    deferred = stalwart._counter_check("deferred")(ctx)
    auth = stalwart._counter_check("auth-failures")(ctx)
    assert deferred.status is Status.WARNING
    assert deferred.value == plain["queue_rescheduled"] and deferred.limit == 0
    assert "since Stalwart started (no recorded run yet)" in deferred.message
    assert "DOCTOR_LIMITS deferred" in deferred.message
    assert auth.status is Status.OK and auth.value == plain["auth_failed"]
    assert stalwart.metrics(ctx).status is Status.OK
    # one scrape for every check of the run
    assert len(server.seen_auth) == 1


def test_an_increase_is_counted_from_the_recorded_run_and_a_restart_from_zero(
    example_values: dict[str, str], server: _Server, real_text: str
) -> None:
    now = _lines(real_text)["auth_failed"]
    at = clock.now() - dt.timedelta(hours=20)
    grew = _ctx(example_values, server.url, Baseline(at, {"auth_failed": now - 3}))
    found = stalwart._counter_check("auth-failures")(grew)
    assert found.value == 3 and "since the run recorded" in found.message
    # a counter below the recorded one: Stalwart restarted, its count starts at zero
    restarted = _ctx(example_values, server.url, Baseline(at, {"auth_failed": now + 50}))
    assert stalwart._counter_check("auth-failures")(restarted).value == now
    # a counter the recorded run did not list was zero then (only counters above 0 appear)
    fresh = _ctx(example_values, server.url, Baseline(at, {}))
    assert stalwart._counter_check("auth-failures")(fresh).value == now


def test_the_queue_from_the_recorded_answers(
    example_values: dict[str, str], server: _Server
) -> None:
    recorded = json.loads(QUEUE.read_text())
    total = recorded["x:QueuedMessage/query"]["total"]
    stamps = [m["createdAt"] for m in recorded["x:QueuedMessage/get"]["list"]]
    oldest = min(dt.datetime.fromisoformat(s.replace("Z", "+00:00")) for s in stamps)
    ctx = _ctx(example_values, server.url, DOCTOR_LIMITS="queue=0,queue-hours=1")
    with clock.frozen(oldest + dt.timedelta(hours=2, minutes=30)):
        size, age = stalwart.queue_size(ctx), stalwart.queue_age(ctx)
    assert size.status is Status.WARNING and size.value == total
    assert f"{total} messages in the outbound queue: over 0" in size.message
    assert age.status is Status.WARNING and age.value == 2.5


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "no metric at all"),
        (b"<html>login</html>", "not the Prometheus text format"),
        (b"auth_failed NaN\n", "auth_failed is not a non-negative number"),
        (b"auth_failed -4\n", "auth_failed is not a non-negative number"),
        (b'# TYPE x counter\nx{a="\n', "not the Prometheus text format"),
        (b"\xff\xfe", "not UTF-8"),
        ("".join(f"m{i} 1\n" for i in range(6000)).encode(), "more than 5000 series"),
    ],
)
def test_a_hostile_endpoint_is_one_clear_error(
    example_values: dict[str, str], body: bytes, says: str
) -> None:
    made = _Server(body)
    try:
        ctx = _ctx(example_values, made.url)
        found = stalwart.metrics(ctx)
        judged = stalwart._counter_check("failed")(ctx)
    finally:
        made.close()
    assert found.status is Status.ERROR and says in found.message, found.message
    assert judged.status is Status.ERROR and "not judged" in judged.message
    assert PASSWORD not in found.message + found.advice


def test_a_wrong_password_or_an_endpoint_that_is_off_is_named(
    example_values: dict[str, str], real_text: str
) -> None:
    off = _Server(b"", status=404)
    try:
        found = stalwart.metrics(_ctx(example_values, off.url))
        refused = stalwart.metrics(
            _ctx(example_values, off.url, STALWART_METRICS_PASSWORD="another-0f1e2d3c4b5a")
        )
    finally:
        off.close()
    assert "the endpoint is off; run inv provision" in found.message
    assert "refused the password (401): check STALWART_METRICS_PASSWORD" in refused.message


def test_the_group_runs_only_with_a_metrics_password(example_values: dict[str, str]) -> None:
    without = DoctorContext(from_mapping({**example_values, "STALWART_METRICS_PASSWORD": ""}))
    assert stalwart.checks(without) == []
    ids = [c.id for c in stalwart.checks(_ctx(example_values, "http://127.0.0.1:9"))]
    assert ids == [
        "stalwart.metrics",
        "stalwart.queue",
        "stalwart.queue-age",
        "stalwart.failed",
        "stalwart.deferred",
        "stalwart.auth",
        "stalwart.store",
    ]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("queue=x", "queue must be a whole number"),
        ("bogus=1", "names 'bogus' (item 1): the names are queue"),
        ("queue=1,queue=2", "names queue more than once"),
        ("queue", "item 1 is not name=number"),
        ("queue=99999999999", "queue must be a whole number from 0 to 10000000"),
    ],
)
def test_doctor_limits_refused_naming_the_key(
    example_values: dict[str, str], value: str, says: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        from_mapping({**example_values, "DOCTOR_LIMITS": value})
    text = str(caught.value)
    assert "DOCTOR_LIMITS" in text and says in text, text


def test_a_store_error_is_an_error_not_a_warning(example_values: dict[str, str]) -> None:
    body = b"# TYPE store_postgresql_error counter\nstore_postgresql_error 2\n"
    made = _Server(body)
    try:
        found = stalwart.store_errors(_ctx(example_values, made.url))
    finally:
        made.close()
    assert found.status is Status.ERROR and found.value == 2 and found.limit == 0
    assert "DOCTOR_LIMITS store-errors" in found.message
