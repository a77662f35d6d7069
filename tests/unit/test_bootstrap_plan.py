"""Pure parts of inv bootstrap: SCRAM verifiers, the plan's rendering, Redis refusals."""

from __future__ import annotations

import base64
import hashlib

from tailwart.backends import scram
from tailwart.backends.plan import Action, Plan, Step, render_steps
from tailwart.backends.redis_store import DbState, describe_foreign
from tailwart.stalwart.tls_status import name_matches


def test_scram_verifier_round_trip_and_format() -> None:
    salt = bytes(range(16))
    v = scram.verifier("correct horse", salt=salt, iterations=4096)
    head, keys = v.split("$")[1:]
    assert v.startswith("SCRAM-SHA-256$4096:")
    assert base64.b64decode(head.split(":")[1]) == salt
    assert all(len(base64.b64decode(k)) == 32 for k in keys.split(":"))
    assert scram.matches(v, "correct horse", "stalwart") is True
    assert scram.matches(v, "correct horsf", "stalwart") is False
    assert scram.verifier("x") != scram.verifier("x")  # fresh salt every time


def test_scram_matches_md5_null_and_unknown_formats() -> None:
    md5 = "md5" + hashlib.md5(b"pwstalwart").hexdigest()
    assert scram.matches(md5, "pw", "stalwart") is True
    assert scram.matches(md5, "pw", "other") is False
    assert scram.matches(None, "pw", "stalwart") is False
    assert scram.matches("plain-old-text", "pw", "stalwart") is None


def test_saslprep_normalises_like_postgres() -> None:
    assert scram.saslprep("I\u00adX") == b"IX"  # soft hyphen is mapped to nothing
    assert scram.saslprep("\u2168") == b"IX"  # NFKC: Roman numeral nine
    assert scram.saslprep("a\u0007b") == "a\u0007b".encode()  # prohibited: raw bytes kept
    assert scram.saslprep("plain") == b"plain"


def test_plan_rendering_and_counts() -> None:
    steps = (
        Step("postgres", Action.CREATE, "role 'stalwart'", "LOGIN", run=lambda: None),
        Step("redis", Action.REFUSE, "DB 3", "another app uses it", advice="choose another"),
        Step("garage", Action.KEEP, "bucket 'mail'"),
    )
    plan = Plan(steps)
    assert [s.what for s in plan.changes] == ["role 'stalwart'"]
    assert [s.what for s in plan.refusals] == ["DB 3"]
    assert render_steps(steps) == (
        "postgres  create  role 'stalwart': LOGIN\n"
        "redis     refuse  DB 3: another app uses it\n"
        "                  → choose another\n"
        "garage    keep    bucket 'mail'\n"
    )


def test_foreign_keys_are_named_with_a_count_of_the_rest() -> None:
    state = DbState(size=12, marker=None, sample=("a:1", "b:2"))
    assert describe_foreign(state) == "a:1, b:2 (+10 more)"
    assert describe_foreign(DbState(2, None, ("a", "b"))) == "a, b"


def test_certificate_name_matching() -> None:
    assert name_matches("mail.example.org", "MAIL.example.org.")
    assert name_matches("*.example.org", "mail.example.org")
    assert not name_matches("*.example.org", "a.mail.example.org")
    assert not name_matches("*.org", "example.org")
    assert not name_matches("mail.example.org", "mx.example.org")
