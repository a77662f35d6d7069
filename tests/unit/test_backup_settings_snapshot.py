"""The backup's settings snapshot, replayed against a real Stalwart v0.16.18's answers.

The recorded ``provision --check`` phase of the live run (tests/fixtures/stalwart-0.16.18)
is exactly a schema check plus a read of every owned type, which is what the snapshot
sends; the recorded responses are the oracle for what it must hold.
"""

from __future__ import annotations

import json
from pathlib import Path

from tailwart.backup.settings_snapshot import tailwart_settings_snapshot
from tailwart.settings import from_mapping
from tailwart.stalwart.jmap import ReplayTransport

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "stalwart-0.16.18"


def _phase(name: str) -> tuple[dict[str, str], list[dict[str, object]]]:
    meta = json.loads((FIXTURES / f"{name}.meta.json").read_text())
    lines = (FIXTURES / f"{name}.jsonl").read_text().splitlines()
    return meta["env"], [json.loads(line) for line in lines if line.strip()]


def test_snapshot_holds_what_the_server_returned_with_secrets_as_references() -> None:
    env, exchanges = _phase("02-check-clean")
    recorded = {
        call[0].split("/")[0]: call[1]["list"]
        for ex in exchanges
        if "response" in ex
        for call in ex["response"]["methodResponses"]  # type: ignore[index]
    }
    transport = ReplayTransport(list(exchanges))
    snap = tailwart_settings_snapshot(from_mapping(env), transport=transport)
    assert transport.exchanges == []  # every recorded exchange was asked for, no more
    assert snap["status"] == "taken" and snap["schema"] == "0.16.18"
    assert set(snap["objects"]) == set(recorded)
    assert snap["count"] == sum(len(v) for v in recorded.values())
    listeners = snap["objects"]["x:NetworkListener"]
    assert {obj["name"] for obj in listeners} == {o["name"] for o in recorded["x:NetworkListener"]}
    blob = snap["objects"]["x:BlobStore"][0]
    assert blob["secretKey"] == {
        "@type": "EnvironmentVariable",
        "variableName": "STALWART_S3_SECRET_KEY",
    }
    text = json.dumps(snap)
    for key, value in env.items():
        if "PASSWORD" in key or "SECRET" in key or "TOKEN" in key:
            assert value not in text, key


def test_an_unreachable_mailbox_is_reported_not_fatal_and_a_dry_run_sends_nothing() -> None:
    env, _ = _phase("02-check-clean")
    env = {**env, "STALWART_MANAGEMENT_URL": "http://127.0.0.1:9"}  # closed port
    snap = tailwart_settings_snapshot(from_mapping(env))
    assert snap["status"] == "not-taken"
    assert "http://127.0.0.1:9" in snap["detail"] and "dump still holds" in snap["detail"]
    planned = tailwart_settings_snapshot(
        from_mapping(env), dry_run=True, transport=ReplayTransport([])
    )
    assert planned["status"] == "planned"


class _BadAnswers:
    """A server that knows the schema, then answers JMAP calls with the wrong shapes."""

    def __init__(self, answer: object) -> None:
        self.answer = answer

    def schema_hash(self) -> str:
        from tailwart.stalwart.versions import CURRENT

        return CURRENT.schema_hash

    def post(self, body: dict[str, object]) -> dict[str, object]:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer  # type: ignore[return-value]


def test_a_bad_server_answer_marks_the_snapshot_not_taken() -> None:
    env, _ = _phase("02-check-clean")
    answers: list[object] = [
        {"methodResponses": [42]},
        {"methodResponses": [["x:Domain/get", {"list": "not a list\x1b[31m"}, "c0"]]},
        {"methodResponses": [["x:Domain/get", None, "c0"]]},
        ValueError("Expecting value: line 1 column 1 (char 0)"),  # a body that is not JSON
    ]
    for answer in answers:
        snap = tailwart_settings_snapshot(from_mapping(env), transport=_BadAnswers(answer))
        assert snap["status"] == "not-taken", answer
        # the client names the wrong shape itself (h2), or the snapshot says it could not read it
        reasons = ("could not be read", "not JSON objects", "is not what Stalwart v0.16 sends")
        assert any(reason in snap["detail"] for reason in reasons), snap
        assert "\x1b" not in snap["detail"] and "dump still holds" in snap["detail"]
