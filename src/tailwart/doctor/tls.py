"""Doctor group ``tls``: the certificates a client sees through the edge.

On 465 and 993 (implicit TLS) and after STARTTLS on 587 and 143: valid for
MAIL_HOSTNAME, trusted (system store plus ``--ca-file``), not self-signed, and
not about to expire: warning under 14 days, error under 3. Advice names the STALWART_TLS
mode and its next step.
"""

from __future__ import annotations

import datetime as dt
import ssl
from functools import partial

from .. import clock
from ..findings import Finding
from ..settings import Settings
from ..stalwart.tls_status import name_matches
from .registry import Check, DoctorContext, error, ok, warning
from .wire import WireError, greet

GROUP = "tls"
WARN_DAYS = 14
ERROR_DAYS = 3
#: (check label, public port, STARTTLS dialogue or "" for implicit TLS)
PORTS = (
    ("submissions", 465, ""),
    ("imaps", 993, ""),
    ("submission", 587, "smtp"),
    ("imap", 143, "imap"),
)
RENEW = "renew the certificate (Stalwart's ACME) and check that the edge passes TLS through"
#: what is wrong, by problem; the advice adds the STALWART_TLS mode's next step
PROBLEMS = {
    "name": "the certificate must name MAIL_HOSTNAME",
    "expiry": "renew the certificate",
    "self-signed": "Stalwart serves its own self-signed certificate when it has none",
    "untrusted": "serve the full chain from a public CA (or pass --ca-file for a private CA)",
}


def advice(problem: str, settings: Settings) -> str:
    """One line of advice: the problem, then the next step of the STALWART_TLS in use."""
    from ..stalwart.tls_status import next_step

    return f"{PROBLEMS[problem]}: {next_step(settings)}"


def self_signed(cert_der: bytes) -> bool:
    """Whether a certificate names itself as its issuer."""
    from cryptography import x509

    cert = x509.load_der_x509_certificate(cert_der)
    return cert.issuer == cert.subject


def cert_names(cert_der: bytes) -> tuple[list[str], dt.datetime, str]:
    """(DNS names of the SAN, or the CN without SAN; notAfter; issuer) of a certificate."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_der_x509_certificate(cert_der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = list(san.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    issuer = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    issued_by = str(issuer[0].value) if issuer else cert.issuer.rfc4514_string()
    return names, cert.not_valid_after_utc, issued_by


def verify_context(ca_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


def certificate(
    public: int, ctx: DoctorContext, now: dt.datetime | None = None, starttls: str = ""
) -> Finding:
    host, port = ctx.address(ctx.edge_host()), ctx.edge_port(public)
    name = ctx.settings["MAIL_HOSTNAME"]
    where = f"{host}:{port}" + ("" if port == public else f" (public :{public})")
    if starttls:
        where += " after STARTTLS"
    # one verified connection when all is well: Stalwart throttles inbound connections per
    # address (5 a second by default), and the doctor shares that address with its user
    verified: Exception | None = None
    try:
        got = greet(
            host,
            port,
            ctx.timeout,
            tls=True,
            sni=name,
            context=verify_context(ctx.options.ca_file),
            starttls=starttls,
        )
    except WireError as exc:
        verified = exc
        # then once more, unverified, to say what is wrong with the certificate
        try:
            got = greet(host, port, ctx.timeout, tls=True, sni=name, starttls=starttls)
        except WireError as again:
            return error(f"{where}: {again}", RENEW)
    assert got.cert_der is not None
    _, not_after, issuer = cert_names(got.cert_der)
    now = now or clock.now()
    days = (not_after - now).total_seconds() / 86400
    found = _judged(ctx, where, name, got.cert_der, not_after, days, issuer, verified)
    # the next threshold ahead: the warning, then the error, then expiry itself
    limit = next((t for t in (WARN_DAYS, ERROR_DAYS) if days >= t), 0)
    return found.measured(round(days, 1), limit, "days left")


def _judged(
    ctx: DoctorContext,
    where: str,
    name: str,
    cert_der: bytes,
    not_after: dt.datetime,
    days: float,
    issuer: str,
    verified: Exception | None,
) -> Finding:
    """The verdict on a certificate with ``days`` left (names, expiry, trust)."""
    names = cert_names(cert_der)[0]
    until = f"{not_after:%Y-%m-%d} ({int(days)} days)"
    if not any(name_matches(n, name) for n in names):
        return error(
            f"{where}: certificate is for {', '.join(names) or '(no names)'}, not {name}",
            advice("name", ctx.settings),
        )
    if days < 0:
        return error(
            f"{where}: certificate expired on {not_after:%Y-%m-%d}", advice("expiry", ctx.settings)
        )
    if days < ERROR_DAYS:
        return error(f"{where}: certificate expires {until}", advice("expiry", ctx.settings))
    if verified is not None:
        if self_signed(cert_der):
            return error(
                f"{where}: self-signed certificate (issuer {issuer})",
                advice("self-signed", ctx.settings),
            )
        return error(f"{where}: {verified} (issuer {issuer})", advice("untrusted", ctx.settings))
    if days < WARN_DAYS:
        return warning(
            f"{where}: certificate for {name} expires {until}", advice("expiry", ctx.settings)
        )
    return ok(f"{where}: valid for {name} until {until}, issuer {issuer}")


def checks(ctx: DoctorContext) -> list[Check]:
    return [
        Check(
            f"tls.{label}",
            GROUP,
            f"TLS certificate on {port}" + (" (STARTTLS)" if starttls else ""),
            partial(certificate, port, starttls=starttls),
        )
        for label, port, starttls in PORTS
    ]
