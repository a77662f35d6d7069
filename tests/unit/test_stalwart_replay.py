"""inv provision's diff and apply logic replayed against a real Stalwart's recorded answers.

tests/fixtures/stalwart-0.16.18/ holds the JMAP exchanges of a live run (`nox -s live
-- --stalwart-bin … --record`, see its README): each phase's requests, the server's
responses, and what the task printed and returned. Replaying a phase feeds the
recorded responses back; the code must send exactly the recorded requests, in order,
and come to the same plan, output and exit code. Each phase runs at the clock of its
recording (``recorded_at`` in its meta file): what judges time (a certificate's days
left) must print what it printed then, on any date.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tailwart import clock
from tailwart.settings import from_mapping
from tailwart.stalwart.jmap import ReplayTransport
from tailwart.stalwart.provision import Options, first_start, provision

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "stalwart-0.16.18"
PHASES = sorted(FIXTURES.glob("*.meta.json"))


def load(meta_path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    meta = json.loads(meta_path.read_text())
    jsonl = meta_path.with_name(meta_path.name.replace(".meta.json", ".jsonl"))
    exchanges = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    return meta, exchanges


def options(args: list[str]) -> Options:
    restart = args[args.index("--restart") + 1] if "--restart" in args else "auto"
    return Options(
        dry_run="--dry-run" in args,
        check="--check" in args,
        as_json="--json" in args,
        restart=restart,
        phase=args[args.index("--phase") + 1] if "--phase" in args else "all",
    )


def test_a_live_run_is_recorded() -> None:
    assert (FIXTURES / "README.md").exists()
    names = {p.name.split("-", 1)[1] for p in PHASES}
    assert {"first-start.meta.json", "drift-check.meta.json", "drift-repair.meta.json"} <= names
    # every phase carries the clock it ran at, in order
    stamps = [load(p)[0]["recorded_at"] for p in PHASES]
    assert stamps == sorted(stamps)
    assert all(clock.parse(s).tzinfo is not None for s in stamps)


@pytest.mark.parametrize(
    "meta_path",
    [p for p in PHASES if "first-start" not in p.name],
    ids=lambda p: p.name.split(".")[0],
)
def test_provision_phase_replays(meta_path: Path) -> None:
    meta, exchanges = load(meta_path)
    transport = ReplayTransport(list(exchanges))
    lines: list[str] = []
    restarts: list[bool] = []
    with clock.frozen(meta["recorded_at"]):
        code = provision(
            from_mapping(meta["env"]),
            options(meta["args"]),
            lines.append,
            restart=lambda: restarts.append(True),
            transport=transport,
        )
    assert code == meta["exit"]
    assert lines == meta["stdout"]
    assert transport.sent == [e["request"] for e in exchanges if "request" in e]
    assert transport.exchanges == []  # every recorded answer was asked for


def test_first_start_replays_in_order() -> None:
    meta_path = next(p for p in PHASES if "first-start" in p.name)
    meta, exchanges = load(meta_path)
    transport = ReplayTransport(list(exchanges))
    steps: list[str] = []

    class Control:
        def start(self, recovery: bool) -> None:
            steps.append("start recovery" if recovery else "start")

        def stop(self) -> None:
            steps.append("stop")

    lines: list[str] = []
    with clock.frozen(meta["recorded_at"]):
        first_start(from_mapping(meta["env"]), Control(), lines.append, transport=lambda: transport)
    stores, seed = ["start recovery", "stop"], ["start", "stop"]
    assert steps == [*stores, *seed, "start recovery", "stop", "start", "stop", "start"]
    assert lines[-1] == "first start done: the server holds exactly what .env describes"
    assert transport.sent == [e["request"] for e in exchanges if "request" in e]
    assert transport.exchanges == []
