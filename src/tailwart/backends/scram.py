"""SCRAM-SHA-256 verifiers as Postgres stores them (RFC 5802/7677, ``pg_authid.rolpassword``).

Bootstrap sends a verifier, never the plaintext password, in ``CREATE/ALTER ROLE``
(what psql's ``\\password`` does), and compares the stored verifier with
``STALWART_DB_PASSWORD`` without logging in, so a ``trust`` rule cannot fool it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import stringprep
import unicodedata

ITERATIONS = 4096  # Postgres' default scram_iterations


def saslprep(password: str) -> bytes:
    """RFC 4013 SASLprep as Postgres applies it: on failure the raw UTF-8 bytes are used."""
    raw = password.encode("utf-8")
    if password.isascii():
        return raw
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch
        for ch in password
        if not stringprep.in_table_b1(ch)
    )
    text = unicodedata.normalize("NFKC", mapped)
    prohibited = (
        stringprep.in_table_c12,
        stringprep.in_table_c21_c22,
        stringprep.in_table_c3,
        stringprep.in_table_c4,
        stringprep.in_table_c5,
        stringprep.in_table_c6,
        stringprep.in_table_c7,
        stringprep.in_table_c8,
        stringprep.in_table_c9,
        stringprep.in_table_a1,
    )
    if any(test(ch) for ch in text for test in prohibited):
        return raw
    if any(stringprep.in_table_d1(ch) for ch in text):
        if any(stringprep.in_table_d2(ch) for ch in text):
            return raw
        if not (stringprep.in_table_d1(text[0]) and stringprep.in_table_d1(text[-1])):
            return raw
    return text.encode("utf-8")


def _keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return stored_key, server_key


def verifier(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """``SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`` for ``password``."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    stored, server = _keys(password, salt, iterations)
    b64 = base64.b64encode
    return (
        f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}${b64(stored).decode()}:"
        + b64(server).decode()
    )


def matches(stored: str | None, password: str, role: str) -> bool | None:
    """Whether a ``rolpassword`` value accepts ``password``; None when the format is unknown."""
    if not stored:
        return False
    if stored.startswith("SCRAM-SHA-256$"):
        try:
            head, keys = stored.removeprefix("SCRAM-SHA-256$").split("$", 1)
            iterations, salt_b64 = head.split(":", 1)
            stored_b64, server_b64 = keys.split(":", 1)
            salt = base64.b64decode(salt_b64)
            want_stored, want_server = base64.b64decode(stored_b64), base64.b64decode(server_b64)
        except ValueError:
            return None
        got_stored, got_server = _keys(password, salt, int(iterations))
        return hmac.compare_digest(got_stored, want_stored) and hmac.compare_digest(
            got_server, want_server
        )
    if stored.startswith("md5") and len(stored) == 35:
        digest = hashlib.md5((password + role).encode("utf-8")).hexdigest()
        return hmac.compare_digest("md5" + digest, stored)
    return None
