"""``inv check`` for STALWART_TLS=files: the PEM files the mailbox mounts (ids ``tls-files.*``).

Run where ``inv up`` runs (the mailbox host): the files are read from the paths in
.env, strictly (regular files, bounded size) and never shown: a finding names a file
and what is wrong with it, never its content. The leaf (the certificate of the key, which
the file must put first) must cover every name of ``certificate_names``, be valid now and for
more than 14 days; the chain follows leaf first, each certificate issued by the next.
The chain file holds no PEM block labelled ``… PRIVATE KEY …`` of any kind, and neither
file is writable by its group or by others (either could swap what Stalwart serves).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import stat
from collections.abc import Sequence
from typing import Any

from .. import clock
from ..findings import Finding
from . import CheckContext
from .registry import declared

GROUP = "tls-files"
#: every id of this module: the files are read once and judged together (``run``)
RULES = declared(
    GROUP,
    """
    tls-files.mode              STALWART_TLS: Stalwart obtains its certificate, or files
    tls-files.cert-file         STALWART_TLS_CERT_FILE is a readable PEM chain
    tls-files.key-file          STALWART_TLS_KEY_FILE is a readable PEM private key
    tls-files.cert-file-access  Stalwart (2000:2000) can read the chain
    tls-files.key-file-access   Stalwart can read the key, and nobody else
    tls-files.key-match         the key belongs to a certificate of the chain
    tls-files.expiry            the certificate is valid, and not about to expire
    tls-files.names             the certificate covers MAIL_HOSTNAME and the other names
    tls-files.chain             the chain is leaf first, each issued by the next
    tls-files.issuer            the certificate is not self-signed
    """,
)
#: what is read of each file at most (a chain is a few KiB, a key one or two)
CERT_CAP = 256 * 1024
KEY_CAP = 64 * 1024
#: the container's user and group (compose: user "2000:2000")
STALWART_UID = STALWART_GID = 2000
WARN_DAYS = 14
_CERT_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----")
_KEY_BLOCK = re.compile(rb"-----BEGIN (?:RSA |EC |ENCRYPTED )?PRIVATE KEY-----")
#: every PEM armour label (RFC 7468), of any kind: the chain file may hold no private key
#: at all, whatever its format (OPENSSH, DSA, ENCRYPTED, PGP … PRIVATE KEY)
_PEM_LABEL = re.compile(rb"-----BEGIN ([^\r\n]{0,80}?)-----")
RENEW = "put a renewed certificate in place, then `inv restart` and `inv check`"


def run(ctx: CheckContext) -> list[Finding]:
    settings = ctx.settings
    mode = settings["STALWART_TLS"] or "acme-http"
    if mode != "files":
        return [
            Finding.ok(
                f"{GROUP}.mode",
                f"STALWART_TLS={mode}: Stalwart obtains its certificate (no PEM files to check)",
                GROUP,
            )
        ]
    from ..settings.derived import certificate_names

    return judge(
        settings["STALWART_TLS_CERT_FILE"],
        settings["STALWART_TLS_KEY_FILE"],
        certificate_names(settings),
    )


def judge(
    cert_path: str, key_path: str, names: Sequence[str], now: dt.datetime | None = None
) -> list[Finding]:
    """Every finding about a certificate chain file and its key file."""
    now = now or clock.now()
    certs, cert_finding, cert_stat = _read_chain(cert_path)
    key, key_finding, key_stat = _read_key(key_path)
    out = [cert_finding, key_finding]
    out += _access("STALWART_TLS_CERT_FILE", cert_path, cert_stat, secret=False)
    out += _access("STALWART_TLS_KEY_FILE", key_path, key_stat, secret=True)
    if not certs:
        return out
    try:
        # the key's certificate is the leaf, wherever the file put it (chain says if misplaced)
        owner = _owner(certs, key) if key is not None else None
        leaf = certs[owner or 0]
        judged = [_key_match(certs, owner)] if key is not None else []
        judged += [
            _validity(leaf, now),
            _names(leaf, names),
            _chain(certs, key),
            _self_signed(leaf),
        ]
    except ValueError:  # an extension or key that parses only on demand, and fails
        out[0] = Finding.error(
            f"{GROUP}.cert-file",
            f"STALWART_TLS_CERT_FILE: {cert_path} holds a certificate whose extensions or "
            "public key do not parse",
            "replace the file with the chain your CA issued (PEM, leaf first)",
            GROUP,
        )
        judged = []
    return out + judged


# ---------------------------------------------------------------- reading


def _read(
    key_name: str, path: str, cap: int
) -> tuple[bytes | None, Finding | None, os.stat_result | None]:
    from ..files import ReadRefused, read_bounded

    fid = f"{GROUP}.{_short(key_name)}"
    try:
        data, st = read_bounded(path, cap)
    except ReadRefused as exc:
        if exc.reason == "unreadable" and (there := _stat(path)) is not None:
            # there, but not for this user: Stalwart (2000:2000) may well read it
            return (
                None,
                Finding.warning(
                    fid,
                    f"{key_name}: {exc}: its content is not checked",
                    "run inv check as a user that can read it (root, or its owner)",
                    GROUP,
                ),
                there,
            )
        advice = {
            "missing": f"put the file there or fix {key_name}",
            "type": f"point {key_name} at a regular PEM file",
            "size": f"a PEM file is at most {cap // 1024} KiB here: point {key_name} at the "
            "right file",
        }.get(exc.reason, "run inv check as a user that can read it (root, or its owner)")
        return None, Finding.error(fid, f"{key_name}: {exc}", advice, GROUP), None
    return data, None, st


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _short(key_name: str) -> str:
    return "cert-file" if key_name == "STALWART_TLS_CERT_FILE" else "key-file"


def _read_chain(path: str) -> tuple[list[Any], Finding, os.stat_result | None]:
    from cryptography import x509

    name = "STALWART_TLS_CERT_FILE"
    data, refused, st = _read(name, path, CERT_CAP)
    if data is None:
        assert refused is not None
        return [], refused, st
    fid = f"{GROUP}.cert-file"
    if not _CERT_BLOCK.search(data):
        return (
            [],
            Finding.error(
                fid,
                f"{name}: {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                "point it at the PEM chain (fullchain.pem), not a DER file or the key",
                GROUP,
            ),
            st,
        )
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        return (
            [],
            Finding.error(
                fid,
                f"{name}: {path} has a CERTIFICATE block that is not a valid X.509 certificate",
                "replace the file with the chain your CA issued (PEM, leaf first)",
                GROUP,
            ),
            st,
        )
    # labels are shown, so only their printable ASCII (a file's bytes reach no terminal)
    labels = {re.sub(rb"[^ -~]", b"?", m).decode() for m in _PEM_LABEL.findall(data)}
    keys = sorted(label for label in labels if "PRIVATE KEY" in label.upper())
    if keys:
        return (
            certs,
            Finding.error(
                fid,
                f"{name}: {path} also holds a private key ({', '.join(keys)} block)",
                "keep the key only in STALWART_TLS_KEY_FILE (the chain file is public): "
                "write the chain alone, leaf first, then check the key was not exposed",
                GROUP,
            ),
            st,
        )
    return (
        certs,
        Finding.ok(
            fid, f"{path}: {len(certs)} certificate(s), the first {_subject(certs[0])}", GROUP
        ),
        st,
    )


def _read_key(path: str) -> tuple[Any, Finding, os.stat_result | None]:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    name = "STALWART_TLS_KEY_FILE"
    data, refused, st = _read(name, path, KEY_CAP)
    if data is None:
        assert refused is not None
        return None, refused, st
    fid = f"{GROUP}.key-file"
    if not _KEY_BLOCK.search(data):
        return (
            None,
            Finding.error(
                fid,
                f"{name}: {path} holds no PEM private key (-----BEGIN … PRIVATE KEY-----)",
                "point it at the private key (privkey.pem), not the certificate",
                GROUP,
            ),
            st,
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # encrypted: Stalwart has no passphrase to give
        return (
            None,
            Finding.error(
                fid,
                f"{name}: {path} is encrypted with a passphrase (Stalwart cannot unlock it)",
                "write it unencrypted: openssl pkey -in KEY -out privkey.pem",
                GROUP,
            ),
            st,
        )
    except (ValueError, UnsupportedAlgorithm):
        return (
            None,
            Finding.error(
                fid,
                f"{name}: {path} has a PRIVATE KEY block that does not parse as a key",
                "replace it with the key the certificate was issued for (PEM)",
                GROUP,
            ),
            st,
        )
    return key, Finding.ok(fid, f"{path}: a {_key_kind(key)} private key", GROUP), st


def _key_kind(key: Any) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, rsa.RSAPrivateKey):
        return f"RSA {key.key_size}-bit"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"EC {key.curve.name}"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "Ed25519"
    return type(key).__name__


def readable_by(st: os.stat_result, uid: int, gid: int) -> bool:
    """Whether uid:gid (no supplementary groups) may read the file, by its mode bits."""
    if uid == 0:
        return True
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IRUSR)
    if st.st_gid == gid:
        return bool(st.st_mode & stat.S_IRGRP)
    return bool(st.st_mode & stat.S_IROTH)


def _access(key_name: str, path: str, st: os.stat_result | None, secret: bool) -> list[Finding]:
    """Stalwart runs as 2000:2000 and reads the mounted file with those ids."""
    if st is None:
        return []
    fid = f"{GROUP}.{_short(key_name)}-access"
    mode = stat.S_IMODE(st.st_mode)
    who = f"{path} is {st.st_uid}:{st.st_gid} mode {mode:04o}"
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        writers = "every user on the host" if mode & stat.S_IWOTH else f"group {st.st_gid}"
        what = "private key" if secret else "certificate chain"
        return [
            Finding.error(
                fid,
                f"{key_name}: {who}: {writers} can write it, so can replace the {what} "
                "Stalwart serves",
                "chmod go-w FILE (only its owner writes it; Stalwart only reads it)",
                GROUP,
            )
        ]
    if not readable_by(st, STALWART_UID, STALWART_GID):
        fix = "chown 2000:2000 FILE && chmod 0400 FILE" if secret else "chmod 0644 FILE"
        return [
            Finding.error(
                fid,
                f"{key_name}: {who}: Stalwart (2000:2000 in the container) cannot read it",
                f"{fix} (or give group 2000 read: chgrp 2000 FILE && chmod 0640 FILE)",
                GROUP,
            )
        ]
    if secret and mode & stat.S_IROTH:
        return [
            Finding.warning(
                fid,
                f"{key_name}: {who}: every user on the host can read the private key",
                "chmod o-r FILE (Stalwart reads it as 2000:2000: owner or group 2000 is enough)",
                GROUP,
            )
        ]
    return [Finding.ok(fid, f"{who}: readable by Stalwart (2000:2000)", GROUP)]


# ---------------------------------------------------------------- judging


def _subject(cert: Any) -> str:
    return str(cert.subject.rfc4514_string() or "(empty subject)")


def _spki(public_key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(
        public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _owner(certs: Sequence[Any], key: Any) -> int | None:
    """Index of the certificate the key belongs to, None when it belongs to none."""
    mine = _spki(key.public_key())
    return next((i for i, c in enumerate(certs) if _spki(c.public_key()) == mine), None)


def _key_match(certs: Sequence[Any], owner: int | None) -> Finding:
    fid = f"{GROUP}.key-match"
    if owner is not None:
        return Finding.ok(
            fid, f"the private key belongs to the certificate {_subject(certs[owner])}", GROUP
        )
    return Finding.error(
        fid,
        f"the private key belongs to no certificate in the file (the first is "
        f"{_subject(certs[0])})",
        "use the key the certificate was issued for (the pair your CA or ACME client wrote)",
        GROUP,
    )


def _validity(leaf: Any, now: dt.datetime) -> Finding:
    fid = f"{GROUP}.expiry"
    after, before = leaf.not_valid_after_utc, leaf.not_valid_before_utc
    days = (after - now).total_seconds() / 86400
    if before > now:
        return Finding.error(
            fid, f"the certificate is not valid before {before:%Y-%m-%d %H:%M} UTC", RENEW, GROUP
        )
    if days < 0:
        return Finding.error(fid, f"the certificate expired on {after:%Y-%m-%d}", RENEW, GROUP)
    if days < WARN_DAYS:
        return Finding.warning(
            fid, f"the certificate expires {after:%Y-%m-%d} ({int(days)} days)", RENEW, GROUP
        )
    return Finding.ok(fid, f"valid until {after:%Y-%m-%d} ({int(days)} days)", GROUP)


def dns_names(cert: Any) -> list[str] | None:
    """The DNS names of a certificate's subjectAltName, None without that extension."""
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    return list(san.value.get_values_for_type(x509.DNSName))


def _names(leaf: Any, names: Sequence[str]) -> Finding:
    from ..stalwart.tls_status import name_matches

    fid = f"{GROUP}.names"
    sans = dns_names(leaf)
    advice = "get a certificate whose subjectAltName lists MAIL_HOSTNAME and every alias"
    if sans is None:
        return Finding.error(
            fid, "the certificate has no subjectAltName (clients ignore the CN)", advice, GROUP
        )
    missing = [n for n in names if not any(name_matches(p, n) for p in sans)]
    if missing:
        return Finding.error(
            fid,
            f"the certificate does not cover {', '.join(missing)} "
            f"(it names {', '.join(sans) or 'nothing'})",
            advice,
            GROUP,
        )
    return Finding.ok(fid, f"covers {', '.join(names)}", GROUP)


def _issued_by(cert: Any, issuer: Any) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _is_ca(cert: Any) -> bool:
    from cryptography import x509

    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _chain(certs: Sequence[Any], key: Any) -> Finding:
    fid = f"{GROUP}.chain"
    order = "order the file leaf first, then each intermediate (the root may be left out)"
    if key is not None:
        owner = _owner(certs, key)
        if owner:
            return Finding.error(
                fid,
                f"the chain is not leaf first: the key belongs to certificate {owner + 1} "
                f"of {len(certs)} ({_subject(certs[owner])})",
                order,
                GROUP,
            )
    if _is_ca(certs[0]) and len(certs) > 1:
        return Finding.error(
            fid,
            f"the chain is not leaf first: certificate 1 ({_subject(certs[0])}) is a CA",
            order,
            GROUP,
        )
    for i in range(len(certs) - 1):
        if not _issued_by(certs[i], certs[i + 1]):
            return Finding.error(
                fid,
                f"certificate {i + 2} ({_subject(certs[i + 1])}) did not issue certificate "
                f"{i + 1} (issuer {certs[i].issuer.rfc4514_string()})",
                order,
                GROUP,
            )
    if len(certs) == 1 and not _issued_by(certs[0], certs[0]):
        return Finding.warning(
            fid,
            f"the file holds the leaf only (issuer {certs[0].issuer.rfc4514_string()}): "
            "clients that lack the intermediate reject it",
            "use the full chain (fullchain.pem, not cert.pem)",
            GROUP,
        )
    return Finding.ok(
        fid, f"{len(certs)} certificate(s), leaf first, each issued by the next", GROUP
    )


def _self_signed(leaf: Any) -> Finding:
    fid = f"{GROUP}.issuer"
    if leaf.issuer == leaf.subject and _issued_by(leaf, leaf):
        return Finding.warning(
            fid,
            f"the certificate is self-signed ({_subject(leaf)}): mail clients reject it",
            "use a certificate from a CA the clients trust (or STALWART_TLS=acme-http)",
            GROUP,
        )
    return Finding.ok(fid, f"issued by {leaf.issuer.rfc4514_string()}", GROUP)
