"""Keeping secrets out of messages: known secret values and anything shaped like a credential.

Used on every line tailwart prints about a failure (``cli.exits``), on streamed
command output and on HTTP errors. Light on purpose: no heavy imports.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .settings import Settings

#: secrets shorter than this are not masked (too likely to clobber ordinary words)
MIN_SECRET = 6
MASK = "<secret>"
#: secret values of every settings object loaded in this process (masked in any message)
_REMEMBERED: set[str] = set()

#: credential shapes masked even when the value is not a known secret
_SECRET_NAME = r"[a-z0-9_-]*(?:password|passwd|secret|token|api[_-]?key|access[_-]?key)[a-z0-9_]*"
_CREDENTIAL_SHAPES = (
    # user:password@ in a URL (any scheme)
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"]*@"), r"\1" + MASK + "@"),
    # HTTP credentials: "Bearer X", "Basic X", and an Authorization header in any notation
    (re.compile(r"(?i)\b(bearer|basic)\s+[^\s'\",}]+"), r"\1 " + MASK),
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)[^'\"\n,}]+"), r"\1" + MASK),
    # Tailscale keys (auth keys, API tokens, OAuth client secrets)
    (re.compile(r"\btskey-[A-Za-z0-9_-]+"), "tskey-" + MASK),
    # name=value (URL queries, environment, DSNs) and "name": "value" whose name says secret
    (re.compile(rf"(?i)\b({_SECRET_NAME})=[^\s'\",}}&;]+"), r"\1=" + MASK),
    (re.compile(rf"(?i)(['\"]{_SECRET_NAME}['\"]\s*:\s*['\"])[^'\"]*"), r"\1" + MASK),
)


def secret_values(settings: Settings | None = None, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The values of every secret key of ``settings`` that is set, longest first."""
    from .settings.contract import KEYS

    values = set(extra)
    if settings is not None:
        values |= {settings[k.name] for k in KEYS if k.secret}
    return tuple(sorted((v for v in values if len(v) >= MIN_SECRET), key=len, reverse=True))


def remember_secrets(settings: Settings) -> None:
    """Mask ``settings``' secret values in every message this process prints from now on."""
    _REMEMBERED.update(secret_values(settings))


def remembered_secrets() -> frozenset[str]:
    """The secret values of every settings object this process loaded."""
    return frozenset(_REMEMBERED)


def secret_values_of(mapping: Mapping[str, str]) -> tuple[str, ...]:
    """Secret values in a raw mapping (an unvalidated .env, the process environment)."""
    from .settings.contract import BY_NAME

    names = {name for name, key in BY_NAME.items() if key.secret} | {"PG_ADMIN_PASSWORD"}
    return secret_values(None, (v for k, v in mapping.items() if k in names))


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every known secret value replaced by ``<secret>``.

    Each value is also masked in its ``repr`` form (escapes such as a trailing
    ``\\n`` change how it is printed) and line by line (a secret cut at a newline).
    """
    for value in sorted(set(secrets), key=len, reverse=True):
        if len(value) < MIN_SECRET:
            continue
        forms = {value, repr(value)[1:-1], value.strip()}
        forms |= {part for part in value.splitlines() if len(part) >= MIN_SECRET}
        for form in sorted(forms, key=len, reverse=True):
            if len(form) >= MIN_SECRET:
                text = text.replace(form, MASK)
    return text


def mask_credentials(text: str) -> str:
    """``text`` with anything shaped like a credential (URL userinfo, Bearer …) masked."""
    for pattern, replacement in _CREDENTIAL_SHAPES:
        text = pattern.sub(replacement, text)
    return text


def mask_all(text: str, secrets: Iterable[str] = ()) -> str:
    """Known secrets first, then credential shapes."""
    return mask_credentials(redact(text, secrets))
