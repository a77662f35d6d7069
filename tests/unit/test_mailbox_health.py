"""The wait-and-report logic of `inv up` over recorded-format docker outputs (fixtures)."""

from __future__ import annotations

import pytest

from tailwart.mailbox import health
from tailwart.mailbox.health import Verdict
from tests.support.mailbox_fakes import FakeClock, fixture


def state_of(name: str) -> health.StackState:
    return health.judge(health.parse_inspect(fixture(f"inspect-{name}.json")))


def test_ps_lines_and_the_older_array_form_read_the_same() -> None:
    lines = health.parse_ps(fixture("ps-healthy.json"))
    array = health.parse_ps(fixture("ps-healthy-array.json"))
    assert lines == array
    assert [(r.service, r.name, r.state, r.health) for r in lines] == [
        ("stalwart", "tailwart-mail-stalwart-1", "running", "healthy"),
        ("ts-stalwart", "tailwart-mail-ts-stalwart-1", "running", "healthy"),
    ]
    # inspected in start order: the sidecar first
    assert health.containers_to_inspect(lines) == [
        "tailwart-mail-ts-stalwart-1",
        "tailwart-mail-stalwart-1",
    ]


def test_exited_listing_carries_the_exit_code() -> None:
    rows = {r.service: r for r in health.parse_ps(fixture("ps-exited.json"))}
    assert (rows["ts-stalwart"].state, rows["ts-stalwart"].exit_code) == ("exited", 1)
    assert rows["stalwart"].state == "created"


@pytest.mark.parametrize(
    ("name", "verdict", "not_ready"),
    [
        ("healthy", Verdict.READY, []),
        ("starting", Verdict.WAITING, ["stalwart"]),
        ("unhealthy", Verdict.WAITING, ["stalwart"]),
        ("exited", Verdict.FAILED, ["ts-stalwart", "stalwart"]),
    ],
)
def test_verdict_per_recorded_stack(name: str, verdict: Verdict, not_ready: list[str]) -> None:
    state = state_of(name)
    assert state.verdict() is verdict
    assert state.not_ready == not_ready


def test_inspect_keeps_the_health_log() -> None:
    stalwart = state_of("unhealthy").containers["stalwart"]
    assert stalwart.name == "tailwart-mail-stalwart-1"
    assert stalwart.image == "stalwartlabs/stalwart:v0.15.5"
    assert [p.exit_code for p in stalwart.log] == [1, 1, 1, 1, 1]


def test_wait_returns_ready_once_starting_turns_healthy() -> None:
    states = iter([state_of("starting"), state_of("starting"), state_of("healthy")])
    clock = FakeClock()
    seen: list[float] = []
    result = health.wait(
        lambda: next(states),
        timeout=120,
        interval=5,
        clock=clock.clock,
        sleep=clock.sleep,
        progress=lambda state, waited: seen.append(waited),
    )
    assert result.verdict is Verdict.READY
    assert clock.slept == [5, 5]
    assert seen == [0, 5]


def test_wait_gives_up_at_the_timeout_on_an_unhealthy_stack() -> None:
    clock = FakeClock()
    polls = []

    def poll() -> health.StackState:
        polls.append(clock.now)
        return state_of("unhealthy")

    result = health.wait(poll, timeout=30, interval=10, clock=clock.clock, sleep=clock.sleep)
    assert result.timed_out
    assert result.waited == 30
    assert polls == [0, 10, 20, 30]


def test_wait_stops_at_once_when_a_container_exited() -> None:
    clock = FakeClock()
    result = health.wait(
        lambda: state_of("exited"), timeout=300, clock=clock.clock, sleep=clock.sleep
    )
    assert result.verdict is Verdict.FAILED
    assert clock.slept == []


def test_restarting_container_is_still_waited_for() -> None:
    text = fixture("inspect-exited.json").replace('"Restarting": false', '"Restarting": true', 1)
    state = health.judge(health.parse_inspect(text))
    assert state.verdict() is Verdict.WAITING


def test_report_names_the_unhealthy_container_its_health_log_and_log_lines() -> None:
    logs = {"stalwart": "stalwart-1  | line 1\nstalwart-1  | store.postgres-error\n"}
    report = health.failure_report(state_of("unhealthy"), logs, 300, timed_out=True)
    assert report.startswith("mailbox not healthy after 300s: stalwart")
    assert "stalwart (tailwart-mail-stalwart-1): running, health unhealthy" in report
    assert "health log (last 3):" in report
    assert report.count("  - exit 1 at 2026-11-25T18:") == 3
    assert "    stalwart-1  | store.postgres-error" in report
    assert "ts-stalwart (" not in report  # the healthy sidecar is not blamed


def test_report_of_an_exited_sidecar_explains_the_never_started_app() -> None:
    report = health.failure_report(state_of("exited"), {}, 12, timed_out=False)
    assert report.startswith("mailbox stopped: ts-stalwart, stalwart")
    assert "ts-stalwart (tailwart-mail-ts-stalwart-1): exited with code 1" in report
    assert "wget: can't connect to remote host (127.0.0.1): Connection refused" in report
    assert "stalwart (tailwart-mail-stalwart-1): created" in report
    assert "TS_OAUTH_CLIENT_SECRET (scopes, tag:stalwart)" in report


def test_summary_line_of_a_starting_stack() -> None:
    assert health.summary_line(state_of("starting")) == (
        "ts-stalwart: running, health healthy; stalwart: running, health starting"
    )
