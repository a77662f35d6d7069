"""One plan protocol (issue 22): edge, backends and Stalwart plans share ``changes``,
``effect``, ``describe()`` and ``to_json()``, and ``show_plan`` gives ``--dry-run``,
``--check`` and ``--json`` one meaning in every area.

Expected text and JSON are written out here by hand, never taken from the code.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from tailwart import plan as shared
from tailwart.backends import plan as backends
from tailwart.edge import deploy_release
from tailwart.edge import plan as edge
from tailwart.edge.hosts import HostTarget, SshOptions
from tailwart.edge.render import EdgeLayout
from tailwart.edge.report import HostResult
from tailwart.edge.targets import DeployOptions, HostJob
from tailwart.plan import EXIT_DRIFT, Drift, PlanFlags, show_plan
from tailwart.stalwart import plan as stalwart


def edge_plan(action: edge.Action = edge.Action.RELOAD, unit: bool = False) -> edge.Plan:
    return edge.Plan(
        host="edge1",
        mode="systemd",
        release="r2",
        action=action,
        switch_from="r1" if action is not edge.Action.NONE else None,
        install_unit=unit,
    )


def backends_plan(*actions: backends.Action) -> backends.Plan:
    return backends.Plan(
        tuple(backends.Step("redis", a, f"DB {i}", "marker") for i, a in enumerate(actions))
    )


def stalwart_plan(*changes: stalwart.Change) -> stalwart.Plan:
    return stalwart.Plan(tuple(changes))


UPDATE = stalwart.Change(
    stalwart.UPDATE, "x:Http", "singleton", "reload", "singleton", {"a": 2}, {"a": 1}
)


def run(plan: shared.Plan, **flags: bool) -> tuple[int | None, list[str]]:
    lines: list[str] = []
    code = show_plan(plan, PlanFlags(**flags), lines.append)
    return code, lines


# ---------------------------------------------------------------- the protocol


@pytest.mark.parametrize(
    "plan",
    [edge_plan(), backends_plan(backends.Action.CREATE), stalwart_plan(UPDATE)],
    ids=["edge", "backends", "stalwart"],
)
def test_every_area_plan_is_a_plan(plan: Any) -> None:
    assert isinstance(plan, shared.Plan)
    doc = plan.to_json()
    assert isinstance(doc["changes"], list) and len(doc["changes"]) == len(plan.changes) == 1
    assert doc["effect"] == plan.effect
    json.dumps(doc)  # serialisable as is


def test_edge_changes_effect_and_lines() -> None:
    plan = edge_plan(edge.Action.RELOAD, unit=True)
    assert [(c.action, c.what) for c in plan.changes] == [
        ("reload", "release r2"),
        ("install-unit", "/etc/systemd/system/tailwart-edge.service"),
    ]
    assert plan.effect == "reload"
    assert plan.describe()[:3] == [
        "edge1: release r2 (systemd mode)",
        "  action:  reload through the admin socket: established sessions survive",
        "  current: r1 -> r2",
    ]
    assert plan.render() == "\n".join(plan.describe())
    in_step = edge_plan(edge.Action.NONE)
    assert in_step.changes == () and in_step.effect == "none"


def test_backends_changes_effect_and_lines() -> None:
    plan = backends_plan(backends.Action.KEEP, backends.Action.CHANGE, backends.Action.REFUSE)
    assert [s.what for s in plan.changes] == ["DB 1"]
    assert plan.effect == "live"
    assert plan.describe() == [
        "redis  keep    DB 0: marker",
        "redis  change  DB 1: marker",
        "redis  refuse  DB 2: marker",
    ]
    assert plan.to_json()["steps"][2] == {
        "backend": "redis",
        "action": "refuse",
        "what": "DB 2",
        "detail": "marker",
        "advice": "",
    }


def test_stalwart_changes_effect_and_lines() -> None:
    plan = stalwart_plan(UPDATE)
    assert plan.effect == "reload"
    assert plan.describe() == [
        "update  x:Http singleton  (needs ReloadSettings)",
        "          a: 1 → 2",
        "after writing: needs ReloadSettings",
    ]
    assert stalwart_plan().describe() == [
        "no changes: the server holds exactly what .env describes"
    ]


# ---------------------------------------------------------------- show_plan, per area

AREAS: dict[str, tuple[shared.Plan, shared.Plan]] = {
    "edge": (edge_plan(), edge_plan(edge.Action.NONE)),
    "backends": (
        backends_plan(backends.Action.CREATE),
        backends_plan(backends.Action.KEEP),
    ),
    "stalwart": (stalwart_plan(UPDATE), stalwart_plan()),
}


@pytest.mark.parametrize("area", AREAS)
def test_check_exits_1_on_drift_and_0_in_step(area: str) -> None:
    drifted, in_step = AREAS[area]
    assert run(drifted, check=True)[0] == EXIT_DRIFT == 1
    assert run(in_step, check=True)[0] == 0
    # --check wins over --dry-run: both write nothing, --check tells whether it would
    assert run(drifted, check=True, dry_run=True)[0] == 1


@pytest.mark.parametrize("area", AREAS)
def test_dry_run_exits_0_and_no_flag_goes_on_to_apply(area: str) -> None:
    drifted, in_step = AREAS[area]
    assert run(drifted, dry_run=True)[0] == 0
    assert run(in_step, dry_run=True)[0] == 0
    assert run(drifted)[0] is None
    assert run(in_step)[0] is None


@pytest.mark.parametrize("area", AREAS)
def test_text_is_the_plans_lines_then_the_notes(area: str) -> None:
    drifted, _ = AREAS[area]
    lines: list[str] = []
    show_plan(drifted, PlanFlags(dry_run=True), lines.append, notes=["note one"])
    assert lines[-1] == "note one"
    assert lines[:-1] == drifted.describe() and lines[:-1]


CREATED = {"backend": "redis", "action": "create", "what": "DB 0", "detail": "marker", "advice": ""}


def test_json_is_one_document_with_effect_changes_and_extra_keys() -> None:
    code, lines = run(stalwart_plan(UPDATE), as_json=True, check=True)
    assert code == 1 and len(lines) == 1
    doc = json.loads(lines[0])
    assert doc == {
        "effect": "reload",
        "changes": [
            {
                "action": "update",
                "type": "x:Http",
                "key": "singleton",
                "id": "singleton",
                "effect": "reload",
                "fields": {"a": 2},
                "before": {"a": 1},
                "reset": {},
            }
        ],
    }
    out: list[str] = []
    shared.print_plan(
        backends_plan(backends.Action.CREATE), PlanFlags(as_json=True), out.append, extra={"x": 1}
    )
    assert json.loads(out[0]) == {
        "effect": "live",
        "x": 1,
        "changes": [
            {
                "backend": "redis",
                "action": "create",
                "what": "DB 0",
                "detail": "marker",
                "advice": "",
            }
        ],
        "steps": [
            {
                "backend": "redis",
                "action": "create",
                "what": "DB 0",
                "detail": "marker",
                "advice": "",
            }
        ],
    }
    assert out[0].startswith('{\n  "changes"')  # indented, keys sorted


def test_problems_are_drift_for_check_even_without_changes() -> None:
    code, _ = run(stalwart_plan(), check=True)
    assert code == 0
    lines: list[str] = []
    assert show_plan(stalwart_plan(), PlanFlags(check=True), lines.append, problems=True) == 1
    assert lines == ["no changes: the server holds exactly what .env describes"]


def test_json_of_an_edge_plan() -> None:
    doc = edge_plan(edge.Action.RESTART).to_json()
    assert doc["effect"] == "restart"
    assert doc["changes"] == [{"action": "restart", "what": "release r2"}]
    assert (doc["host"], doc["release"], doc["switch_from"]) == ("edge1", "r2", "r1")


# ---------------------------------------------------------------- the edge rollout


def test_a_rollout_is_one_plan_of_every_host() -> None:
    one = edge_plan(edge.Action.RELOAD)
    two = edge.Plan("edge2", "supervised", "r2", edge.Action.RESTART)
    three = edge.Plan("edge3", "supervised", "r2", edge.Action.NONE)
    rollout = edge.Rollout((one, two, three))
    assert isinstance(rollout, shared.Plan)
    assert rollout.effect == "restart"
    assert [(c.action, c.what) for c in rollout.changes] == [
        ("reload", "edge1: release r2"),
        ("restart", "edge2: release r2"),
    ]
    assert [h["host"] for h in rollout.to_json()["hosts"]] == ["edge1", "edge2", "edge3"]
    assert edge.Rollout(()).effect == "none" and not edge.Rollout(()).changes


def _deploy(
    monkeypatch: pytest.MonkeyPatch, plans: list[edge.Plan], flags: PlanFlags
) -> tuple[str, str, BaseException | None]:
    """deploy() over hosts whose plan is given (no SSH): what it printed, and raised."""

    def planned(job: HostJob, opts: DeployOptions, binaries: object, out: Any) -> HostResult:
        plan = next(p for p in plans if p.host == job.target.host)
        out.write(plan.render() + "\n")
        return HostResult(plan.host, "planned", plan.release, plan.action.value, plan=plan)

    monkeypatch.setattr(deploy_release, "deploy_host", planned)
    jobs = [HostJob(HostTarget(p.host), EdgeLayout(upstream_host="mb.example")) for p in plans]
    opts = DeployOptions(
        ssh=SshOptions(Path("/nonexistent/known_hosts")),
        dry_run=flags.dry_run,
        check=flags.check,
        as_json=flags.as_json,
    )
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    raised: BaseException | None = None
    try:
        deploy_release.deploy(jobs, opts, binaries=lambda goos, goarch: None, out=out)  # type: ignore[arg-type,return-value]
    except Drift as exc:
        raised = exc
    return out.getvalue(), err.getvalue(), raised


def test_deploy_check_exits_1_when_a_host_would_change(monkeypatch: pytest.MonkeyPatch) -> None:
    out, _, raised = _deploy(monkeypatch, [edge_plan()], PlanFlags(check=True))
    assert isinstance(raised, Drift) and raised.exit_code == 1
    assert str(raised) == "deploy-edge --check: 1 change(s) would be made; nothing was changed"
    assert "check report:" in out
    out, _, raised = _deploy(monkeypatch, [edge_plan(edge.Action.NONE)], PlanFlags(check=True))
    assert raised is None and "check report:" in out


def test_deploy_json_is_one_document_on_stdout(monkeypatch: pytest.MonkeyPatch) -> None:
    plans = [edge_plan(), edge.Plan("edge2", "supervised", "r2", edge.Action.NONE)]
    out, err, raised = _deploy(monkeypatch, plans, PlanFlags(dry_run=True, as_json=True))
    assert raised is None
    doc = json.loads(out)
    assert doc["effect"] == "reload"
    assert doc["changes"] == [{"action": "reload", "what": "edge1: release r2"}]
    assert [h["host"] for h in doc["hosts"]] == ["edge1", "edge2"]
    assert "dry run report:" in err and "edge1: release r2 (systemd mode)" in err


# ---------------------------------------------------------------- inv bootstrap


class _Backend:
    def __init__(self, *steps: backends.Step) -> None:
        self._steps = list(steps)
        self.closed = False

    def steps(self) -> list[backends.Step]:
        return self._steps

    def close(self) -> None:
        self.closed = True


class _Target:
    @classmethod
    def from_settings(cls, settings: object) -> _Target:
        return cls()

    def check_key_format(self) -> None:
        pass


def _bootstrap(
    monkeypatch: pytest.MonkeyPatch, example_values: dict[str, str], **flags: bool
) -> tuple[list[str], list[str], BaseException | None]:
    """inv bootstrap over stand-in backends: one create (that records its run), one keep."""
    from tailwart.backends import bootstrap as module
    from tailwart.settings import from_mapping

    ran: list[str] = []
    create = backends.Step(
        "redis", backends.Action.CREATE, "DB 3", "marker", run=lambda: ran.append("DB 3")
    )
    keep = backends.Step("garage", backends.Action.KEEP, "bucket 'mail'")
    for name in ("GarageTarget", "PgTarget", "RedisTarget"):
        monkeypatch.setattr(module, name, _Target)
    monkeypatch.setattr(module, "admin_password", lambda user, environ: "not-used-here")
    monkeypatch.setattr(module, "PostgresBootstrap", lambda *a: _Backend())
    monkeypatch.setattr(module, "RedisBootstrap", lambda *a: _Backend(create))
    monkeypatch.setattr(module, "GarageBootstrap", lambda *a: _Backend(keep))
    said: list[str] = []
    raised: BaseException | None = None
    try:
        module.bootstrap(from_mapping(example_values), say=said.append, **flags)  # type: ignore[arg-type]
    except Drift as exc:
        raised = exc
    return said, ran, raised


def test_bootstrap_check_exits_1_on_drift_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch, example_values: dict[str, str]
) -> None:
    said, ran, raised = _bootstrap(monkeypatch, example_values, check=True)
    assert said == [
        "plan:",
        "redis   create  DB 3: marker",
        "garage  keep    bucket 'mail'",
    ]
    assert ran == [] and isinstance(raised, Drift) and raised.exit_code == 1
    assert str(raised) == "bootstrap --check: 1 change(s) would be made; nothing was changed"


def test_bootstrap_dry_run_keeps_its_words_and_a_plain_run_applies(
    monkeypatch: pytest.MonkeyPatch, example_values: dict[str, str]
) -> None:
    said, ran, raised = _bootstrap(monkeypatch, example_values, dry_run=True)
    assert said[-1] == "dry run: 1 change(s) planned; nothing was changed"
    assert ran == [] and raised is None
    said, ran, raised = _bootstrap(monkeypatch, example_values)
    assert said[-2:] == ["applying: redis create DB 3", "done: 1 change(s) applied"]
    assert ran == ["DB 3"] and raised is None


def test_bootstrap_json_prints_one_document_and_nothing_else(
    monkeypatch: pytest.MonkeyPatch, example_values: dict[str, str]
) -> None:
    said, ran, raised = _bootstrap(monkeypatch, example_values, dry_run=True, as_json=True)
    assert len(said) == 1 and ran == [] and raised is None
    doc = json.loads(said[0])
    assert doc["effect"] == "live"
    assert [(c["backend"], c["action"], c["what"]) for c in doc["changes"]] == [
        ("redis", "create", "DB 3")
    ]
    assert [s["action"] for s in doc["steps"]] == ["create", "keep"]
