"""The doctor's registry and runner: parallel checks, per-check timeouts, crashes, scrubbing."""

from __future__ import annotations

import threading

import pytest

from tailwart.doctor import runner
from tailwart.doctor.registry import (
    GROUPS,
    Check,
    DoctorContext,
    DoctorOptions,
    error,
    ok,
    parse_only,
    parse_port_map,
    registry,
)
from tailwart.errors import UsageError
from tailwart.findings import Finding, Status, to_json
from tailwart.settings.example import example_settings


def ctx(timeout: float = 1.0) -> DoctorContext:
    return DoctorContext(example_settings(), DoctorOptions(timeout=timeout))


def test_checks_run_in_parallel_and_keep_registry_order() -> None:
    barrier = threading.Barrier(3, timeout=5)

    def meet(label: str):  # type: ignore[no-untyped-def]
        def fn(_: DoctorContext) -> Finding:
            barrier.wait()  # only returns when all three run at the same time
            return ok(f"{label} met the others")

        return fn

    checks = [Check(f"t.{n}", "t", n, meet(n)) for n in ("c", "a", "b")]
    found = runner.run(ctx(), checks, timeout=10)
    assert [f.id for f in found] == ["t.c", "t.a", "t.b"]
    assert [f.status for f in found] == [Status.OK] * 3
    assert {f.group for f in found} == {"t"}


def test_a_hung_check_times_out_and_a_crashing_check_is_an_error() -> None:
    """Events, not wall time: the clock reaches the deadline only once the quick checks'
    threads have ended, so a loaded machine cannot make them late."""
    never = threading.Event()
    quick = {"doctor:t.crash", "doctor:t.fine"}
    readings: list[float] = []

    def hang(_: DoctorContext) -> Finding:
        never.wait(30)
        return ok("too late")

    def crash(_: DoctorContext) -> Finding:
        raise ValueError("boom")

    def fine(_: DoctorContext) -> Finding:
        return ok("fine")

    def clock() -> float:
        if readings:  # after the start: time moves on once the quick checks are done
            for thread in threading.enumerate():
                if thread.name in quick:
                    thread.join(60)
        readings.append(100.0 if readings else 0.0)
        return readings[-1]

    checks = [
        Check("t.hang", "t", "the hanging service", hang),
        Check("t.crash", "t", "crash", crash),
        Check("t.fine", "t", "fine", fine),
    ]
    found = {f.id: f for f in runner.run(ctx(), checks, timeout=0.3, clock=clock)}
    never.set()
    assert found["t.hang"].status is Status.ERROR
    assert found["t.hang"].message == "no answer within 0.3s"
    assert found["t.hang"].advice.startswith("the hanging service:")
    assert found["t.crash"].message == "check crashed: ValueError: boom"
    assert found["t.fine"].status is Status.OK


def test_secrets_are_scrubbed_from_messages() -> None:
    context = ctx()
    secret = context.settings["STALWART_DB_PASSWORD"]
    checks = [Check("t.leak", "t", "leak", lambda _: error(f"pw={secret}", f"use {secret}"))]
    found = runner.run(context, checks)
    assert found[0].message == "pw=<secret>"
    assert found[0].advice == "use <secret>"


def test_only_and_port_flags() -> None:
    assert parse_only("") == GROUPS
    assert parse_only("tls, dns") == ("dns", "tls")  # report order, not flag order
    with pytest.raises(UsageError, match="unknown group"):
        parse_only("dns,web")
    assert parse_port_map(["25=2525", "993=10993"]) == {25: 2525, 993: 10993}
    with pytest.raises(UsageError) as caught:
        parse_port_map(["25", "0=1", "a=b"])
    assert str(caught.value).count("expected MAILPORT=PORT") == 2
    assert "--port '0=1': 0 is not a mail port" in str(caught.value)


def test_doctor_and_edge_run_read_port_maps_alike() -> None:
    """One syntax for `inv doctor --port` and `inv edge-run --ports`: MAILPORT=PORT
    items, comma-separated, the flag repeatable; the same items refused the same way."""
    from tailwart.edge.run import parse_port_map as edge_run_ports

    want = {25: 2525, 465: 2465, 993: 2993}
    assert parse_port_map(["25=2525,465=2465", "993=2993"]) == want
    assert edge_run_ports("25=2525, 465=2465,993=2993") == want
    bad = ["25=x", "99=3", "465=70000", "587:2587"]
    with pytest.raises(UsageError) as doctor_says:
        parse_port_map([",".join(bad)])
    with pytest.raises(UsageError) as edge_says:
        edge_run_ports(",".join(bad))
    for item in bad:
        assert f"--port {item!r}:" in str(doctor_says.value)
        assert f"--ports {item!r}:" in str(edge_says.value)
    doctor_reasons = str(doctor_says.value).replace("--port ", "").split("; ")
    edge_reasons = [
        line.strip().replace("--ports ", "") for line in str(edge_says.value).split("\n")[1:]
    ]
    # the doctor also maps 443 (the JMAP vhost its management check posts to)
    assert [r.replace("143, 443, ", "143, ") for r in doctor_reasons] == edge_reasons
    assert parse_port_map(["443=8443"]) == {443: 8443}


def test_registry_ids_are_stable_and_grouped() -> None:
    ids = [c.id for c in registry(ctx())]
    assert ids == [
        "backends.postgres.login",
        "backends.postgres.trust",
        "backends.postgres.database",
        "backends.postgres.primary",
        "backends.redis.auth",
        "backends.redis.db",
        "backends.garage.probe",
        "backends.garage.region",
        "mailbox.stalwart",
        "edge.smtp",
        "edge.submissions",
        "edge.submission",
        "edge.imap",
        "edge.imaps",
        "dns.mx",
        "dns.address",
        "dns.fcrdns",
        "dns.spf",
        "dns.dmarc",
        "dns.dkim",
        "zone.mx",
        "zone.addresses",
        "zone.spf",
        "zone.dkim",
        "zone.dmarc",
        "zone.tls-rpt",
        "zone.mta-sts-id",
        "zone.names",
        "zone.srv",
        "zone.caa",
        "zone.mta-sts-policy",
        "zone.autoconfig",
        "tls.submissions",
        "tls.imaps",
        "tls.submission",
        "tls.imap",
        "management.internet",
        "outbound.smarthost",
        "outbound.port25",
    ]
    assert all(c.id.split(".")[0] == c.group for c in registry(ctx()))


def test_json_shape() -> None:
    import json

    found = runner.run(ctx(), [Check("t.x", "t", "x", lambda _: error("bad", "fix it"))])
    assert json.loads(to_json(found)) == {
        "summary": {"ok": 0, "warning": 0, "error": 1},
        "findings": [
            {"id": "t.x", "group": "t", "status": "error", "message": "bad", "advice": "fix it"}
        ],
    }
