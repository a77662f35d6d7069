"""`inv provision --check`'s certificate report, judged from live x:Certificate objects.

The objects are shaped as Stalwart v0.16.18 answers x:Certificate/get (fields from the
committed schema: issuer, notValidBefore/After and subjectAlternativeNames are
serverSet; an ACME certificate holds its PEM as PublicText Text, a files-mode one a File
reference). Expected verdicts are written out by hand from the objects' facts.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from tailwart.settings import from_mapping
from tailwart.stalwart.provision import certificate_lines, certificate_report
from tailwart.stalwart.schema import load
from tailwart.stalwart.tls_status import judge, next_step, self_signed
from tailwart.stalwart.versions import CURRENT
from tests.support.doc_samples import check_sample
from tests.support.testkit import ROOT
from tests.unit.test_check_tls_files import make, pem

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
HOST = "mail.good.test"
CERT, SYSTEM = CURRENT.certificate, CURRENT.system
PEBBLE = "CN=Pebble Intermediate CA 3f2e1d"


def stamp(days: float) -> str:
    return (NOW + dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def cert(
    ident: str,
    names: list[str],
    issuer: str = PEBBLE,
    after: float = 80,
    before: float = -10,
    pem: str | None = None,
) -> dict[str, Any]:
    """One x:Certificate/get list entry."""
    body = (
        {"@type": "Text", "value": pem}
        if pem
        else {"@type": "File", "filePath": "/etc/stalwart/tls/fullchain.pem"}
    )
    return {
        "id": ident,
        "certificate": body,
        "privateKey": {"@type": "Text", "secret": "****"},
        "issuer": issuer,
        "notValidAfter": stamp(after),
        "notValidBefore": stamp(before),
        "subjectAlternativeNames": dict.fromkeys(names, True),
    }


def live(*certs: dict[str, Any], default: str | None = None) -> dict[str, list[dict[str, Any]]]:
    system = {"id": "singleton", "defaultHostname": HOST, "defaultCertificateId": default}
    return {CERT: list(certs), SYSTEM: [system]}


def report(state: dict[str, Any], names: list[str] | None = None) -> tuple[list[str], list[str]]:
    got = judge(state, CERT, SYSTEM, names or [HOST], NOW)
    return got.lines, got.problems


def test_the_fields_read_are_the_schemas_server_set_fields() -> None:
    schema = json.loads((ROOT / "src/tailwart/stalwart/schema-0.16.18.json").read_text())
    fields = schema["fields"][CERT]["properties"]
    for name in ("issuer", "notValidAfter", "notValidBefore", "subjectAlternativeNames"):
        assert fields[name]["update"] == "serverSet", name
    assert fields["subjectAlternativeNames"]["type"]["type"] == "set"
    assert fields["certificate"]["type"]["objectName"] == "x:PublicText"
    assert load().fields(SYSTEM, None)["defaultCertificateId"] is not None


def test_a_good_acme_certificate_has_no_problem() -> None:
    lines, problems = report(live(cert("b", [HOST, "imap.good.test"])), [HOST, "imap.good.test"])
    assert problems == []
    assert lines == [
        f"certificate for {HOST}: x:Certificate b (it names the host), issuer {PEBBLE}, "
        f"valid until 2027-02-18 (80 days), names {HOST}, imap.good.test"
    ]


def test_no_certificate_means_stalwarts_self_signed_one() -> None:
    assert report(live()) == (
        [],
        [f"no valid certificate for {HOST}: Stalwart serves its own self-signed one"],
    )
    expired = live(cert("a", [HOST], after=-1, before=-91))
    assert report(expired)[1] == [
        f"no valid certificate for {HOST} (1 expired or not yet valid): Stalwart serves its "
        "own self-signed one"
    ]


def test_expiring_within_14_days() -> None:
    assert report(live(cert("a", [HOST], after=13.5)))[1] == [
        f"the certificate for {HOST} expires 2026-12-14 (13 days)"
    ]
    assert report(live(cert("a", [HOST], after=14.5)))[1] == []


def test_the_newest_of_renewed_certificates_is_the_one_served() -> None:
    old, new = cert("a", [HOST], after=5), cert("c", [HOST], after=85)
    lines, problems = report(live(old, new, default="a"))
    assert problems == []
    assert "x:Certificate c (it names the host)" in lines[0]


def test_a_missing_alias_is_named() -> None:
    names = [HOST, "imap.good.test", "smtp.good.test"]
    state = live(cert("a", [HOST, "smtp.good.test"]), default="a")
    assert report(state, names)[1] == [
        f"no certificate covers imap.good.test (Stalwart serves one for {HOST}, smtp.good.test)"
    ]


def test_wildcards_cover_one_label() -> None:
    state = live(cert("w", ["*.good.test"]))
    lines, problems = report(state, [HOST, "a.b.good.test"])
    assert "(a wildcard)" in lines[0]
    assert problems == ["no certificate covers a.b.good.test (Stalwart serves one for *.good.test)"]


def test_the_default_certificate_serves_when_none_names_the_host() -> None:
    other = cert("o", ["other.example"], issuer="C=US, O=Let's Encrypt, CN=R11")
    lines, problems = report(live(other, default="o"))
    assert "x:Certificate o (the default certificate)" in lines[0]
    assert problems == [f"no certificate covers {HOST} (Stalwart serves one for other.example)"]


def make_pem(subject: str, issuer_cn: str | None = None) -> str:
    """A PEM certificate for ``subject``: self-signed, or issued by a CA named ``issuer_cn``."""
    issuer = make(issuer_cn, ca=True) if issuer_cn else None
    return pem(make(subject, issuer).cert).decode()


@pytest.mark.parametrize(
    ("obj", "is_self_signed"),
    [
        # the PEM is readable (ACME's Text): issuer and subject compared exactly
        (cert("t", [HOST], issuer=f"CN={HOST}", pem=make_pem(HOST)), True),
        (cert("t", [HOST], issuer="CN=Pebble", pem=make_pem(HOST, "Pebble")), False),
        # a File reference: only the issuer text and the names (subject CN included)
        (cert("f", [HOST], issuer=f"CN={HOST}"), True),
        (cert("f", [HOST], issuer=f"O=Self, CN={HOST}"), True),
        (cert("f", [HOST], issuer="C=US, O=Let's Encrypt, CN=R11"), False),
        (cert("f", [HOST], issuer=""), False),
    ],
)
def test_self_signed(obj: dict[str, Any], is_self_signed: bool) -> None:
    assert self_signed(obj) is is_self_signed
    problems = report(live(obj))[1]
    assert any("is self-signed" in p for p in problems) is is_self_signed


def test_check_prints_the_problem_and_the_modes_next_step(example_values: dict[str, str]) -> None:
    settings = from_mapping(
        {**example_values, "MAIL_HOSTNAME_ALIASES": "imap." + example_values["MAIL_DOMAIN"]}
    )
    host = settings["MAIL_HOSTNAME"]
    state = live(cert("a", [host], after=3), default="a")
    got = certificate_lines(certificate_report(settings, state, CURRENT), settings)
    assert got[0].startswith(f"certificate for {host}: x:Certificate a (it names the host)")
    assert got[1].startswith(f"certificate problem: the certificate for {host} expires")
    assert got[
        2
    ] == f"certificate problem: no certificate covers imap.{settings['MAIL_DOMAIN']} " + (
        f"(Stalwart serves one for {host})"
    )
    assert got[3] == f"  → {next_step(settings)}"
    assert "STALWART_TLS=acme-http" in got[3] and "acme-challenge" in got[3]
    check_sample("provision-check-certificate", "\n".join(got))  # docs/guides/tls.md
    fine = live(cert("a", [host, f"imap.{settings['MAIL_DOMAIN']}"]))
    assert len(certificate_lines(certificate_report(settings, fine, CURRENT), settings)) == 1
