"""The certificate Stalwart serves, judged from its live x:Certificate objects
(``inv provision --check``), and the next step for each STALWART_TLS mode.

Stalwart v0.16.18 picks a certificate for a client's SNI name in this order
(crates/common/src/network/tls.rs, config/server/tls.rs): a valid certificate that
names it (the one valid longest), one whose wildcard covers its parent domain, the
default certificate (SystemSettings.defaultCertificateId), any certificate at all;
with none valid it serves its own self-signed one. Expired and not-yet-valid objects
are skipped. ``issuer``, ``notValidBefore``, ``notValidAfter`` and
``subjectAlternativeNames`` (the DNS and IP SANs plus the subject CN) are set by the
server; an ACME certificate's PEM is readable (PublicText ``Text``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import clock
from ..masking import one_line
from ..settings import Settings

WARN_DAYS = 14
_CN = re.compile(r"(?:^|,)\s*CN=([^,]+)")

Obj = Mapping[str, Any]


@dataclass
class CertificateReport:
    """What ``--check`` prints about the served certificate: facts, then problems."""

    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def name_matches(pattern: str, host: str) -> bool:
    """RFC 6125 matching: exact, or one wildcard as the whole leftmost label."""
    pattern, host = pattern.rstrip(".").lower(), host.rstrip(".").lower()
    if pattern == host:
        return True
    if pattern.startswith("*.") and "*" not in pattern[2:]:
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:] and rest.count(".") >= 1
    return False


def next_step(settings: Settings) -> str:
    """What to do about a missing or wrong certificate, for the STALWART_TLS in use."""
    mode = settings["STALWART_TLS"] or "acme-http"
    host = settings["MAIL_HOSTNAME"]
    if mode == "files":
        return (
            "STALWART_TLS=files: check STALWART_TLS_CERT_FILE and STALWART_TLS_KEY_FILE "
            "with `inv check` (leaf first, names, expiry), then `inv restart` and "
            "`inv provision --check`"
        )
    if mode == "acme-dns":
        return (
            f"STALWART_TLS=acme-dns: check that ACME_DNS_SERVER accepts updates to "
            f"{settings['ACME_DNS_ZONE'] or settings['MAIL_DOMAIN']} signed with the TSIG key "
            f"ACME_DNS_TSIG_KEY ({settings['ACME_DNS_TSIG_ALGORITHM']}) and that the zone is "
            f"the one public DNS serves for _acme-challenge.{host}, then "
            f"`inv provision --check`"
        )
    return (
        f"STALWART_TLS=acme-http: check that the JMAP vhost is deployed (`inv deploy-edge`) "
        f"and that http://{host}/.well-known/acme-challenge/ reaches the mailbox (port 80 open "
        f"to the edge, DNS of {host} at the edge), then `inv provision --check`"
    )


def names_of(obj: Obj) -> list[str]:
    """subjectAltNames of a live certificate (``{"name": true}`` or a list)."""
    value = obj.get("subjectAlternativeNames")
    if isinstance(value, Mapping):
        return [str(k) for k, v in value.items() if v is True]
    if isinstance(value, list):
        return [str(v) for v in value]
    return []


def when(obj: Obj, name: str) -> dt.datetime | None:
    value = obj.get(name)
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def usable(obj: Obj, now: dt.datetime) -> bool:
    """Valid now, as Stalwart loads certificates (others are skipped or deleted)."""
    before, after = when(obj, "notValidBefore"), when(obj, "notValidAfter")
    return before is not None and after is not None and before <= now < after


def served_for(
    host: str, certs: Sequence[Obj], default_id: Any, now: dt.datetime
) -> tuple[Obj | None, str]:
    """(the certificate Stalwart serves for SNI ``host``, why that one), or (None, "")."""
    valid = [c for c in certs if usable(c, now)]

    def newest(found: list[Obj]) -> Obj:
        return max(found, key=lambda c: str(c.get("notValidAfter") or ""))

    host = host.rstrip(".").lower()
    exact = [c for c in valid if host in {n.lower() for n in names_of(c)}]
    if exact:
        return newest(exact), "it names the host"
    parent = host.partition(".")[2]
    wild = [c for c in valid if parent and {f"*.{parent}", parent} & _lower(names_of(c))]
    if wild:
        return newest(wild), "a wildcard"
    default = [c for c in valid if default_id is not None and str(c.get("id")) == str(default_id)]
    if default:
        return default[0], "the default certificate"
    if valid:
        return valid[0], f"none names it: Stalwart takes any of {len(valid)}"
    return None, ""


def _lower(names: list[str]) -> set[str]:
    return {n.lower() for n in names}


def self_signed(obj: Obj) -> bool:
    """Issuer equals subject: read from the PEM when the object holds it as text, else
    (a File or variable reference) the issuer's CN is one of the certificate's own names."""
    cert = obj.get("certificate")
    if isinstance(cert, Mapping) and cert.get("@type") == "Text":
        value = cert.get("value")
        if isinstance(value, str) and "-----BEGIN CERTIFICATE-----" in value:
            from cryptography import x509

            try:
                leaf = x509.load_pem_x509_certificates(value.encode())[0]
            except ValueError:
                pass
            else:
                return bool(leaf.issuer == leaf.subject)
    match = _CN.search(str(obj.get("issuer") or ""))
    return match is not None and match.group(1).strip().lower() in _lower(names_of(obj))


def judge(
    live: Mapping[str, Sequence[Obj]],
    certificate_type: str,
    system_type: str,
    names: Sequence[str],
    now: dt.datetime | None = None,
) -> CertificateReport:
    """The certificate served for ``names[0]`` (MAIL_HOSTNAME), and every problem:
    none, self-signed, expiring within 14 days, a name of ``names`` not covered."""
    now = now or clock.now()
    certs = list(live.get(certificate_type, ()))
    system = list(live.get(system_type, ()))
    default_id = system[0].get("defaultCertificateId") if system else None
    host = names[0]
    report = CertificateReport()
    served, why = served_for(host, certs, default_id, now)
    if served is None:
        stale = len(certs)
        report.problems.append(
            f"no valid certificate for {host}"
            + (f" ({stale} expired or not yet valid)" if stale else "")
            + ": Stalwart serves its own self-signed one"
        )
        return report
    after = when(served, "notValidAfter")
    assert after is not None  # usable() checked it
    days = (after - now).total_seconds() / 86400
    # what the server says stays on this line, escaped and cut short
    issuer = one_line(served.get("issuer") or "(unknown issuer)", 200)
    report.lines.append(
        f"certificate for {host}: x:Certificate {one_line(served.get('id'), 60)} ({why}), "
        f"issuer {issuer}, valid until {after:%Y-%m-%d} ({int(days)} days), names "
        f"{one_line(', '.join(names_of(served)), 500) or '(none)'}"
    )
    if self_signed(served):
        report.problems.append(f"the certificate for {host} is self-signed (issuer {issuer})")
    if days < WARN_DAYS:
        report.problems.append(
            f"the certificate for {host} expires {after:%Y-%m-%d} ({int(days)} days)"
        )
    for name in names:
        cert, _ = served_for(name, certs, default_id, now)
        if cert is None or not any(name_matches(p, name) for p in names_of(cert)):
            report.problems.append(
                f"no certificate covers {name}"
                + (
                    f" (Stalwart serves one for {one_line(', '.join(names_of(cert)))})"
                    if cert
                    else ""
                )
            )
    return report
