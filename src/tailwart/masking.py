"""What tailwart prints is safe to print: known secrets masked (in every encoding a
server or a library may quote them in), credential shapes masked, control characters
escaped.

One name per meaning (every other module imports these; none keeps its own):

=============================================  =============================================
name                                           meaning
=============================================  =============================================
``hide_secrets(text, secrets)``                known secret values, in every encoded form,
                                               → ``<secret>``
``hide_credentials(text)``                     anything shaped like a credential (URL
                                               userinfo, Bearer/Basic, Authorization,
                                               ``tskey-…``, ``password=…``) → ``<secret>``
``hide_sensitive(text, secrets)``              both of the above: the form for any message
``hide_secrets_in_tree(value, secrets)``       ``hide_secrets`` on every string (and key) of a
                                               JSON-like structure, at any depth
``hide_jmap_secrets(value, leaf)``             a Stalwart (JMAP) value for display: inline
                                               secrets (``{"@type": "Value"}``) and URL
                                               passwords → ``****``, as Stalwart reads back
``replace_secrets(value, placeholders)``       each secret value in a JSON-like structure →
                                               its named placeholder (recorded fixtures)
``settings.mask_value(key, value)``            a ``.env`` value shown in a message: a secret
                                               by its length only, a long value cut short
                                               (kept with the contract: settings sits below
                                               this module in the layers)
``printable(text)`` / ``one_line(text)``       control and format characters escaped (not
                                               masking: what a terminal must not interpret)
=============================================  =============================================

Used on every line a task prints (``cli.exits`` wraps stdout and stderr in a
``LineStream``), on streamed command output and on HTTP errors. Light on purpose: no
heavy imports.

The rule for which values are masked (so that masking cannot give a secret away):
masking a value everywhere it occurs reveals it when that value would occur in
ordinary text anyway (a word, a number, a host name): the mask marks the spot. So

- only values of at least ``MIN_SECRET`` (8) characters are masked, and the .env
  contract refuses every secret shorter than that;
- the contract refuses a secret tailwart asks the operator to generate (``Key.strong``:
  the recovery admin's password, the database, S3 and restic passwords) when it is
  word-like (only letters, or only digits), and any secret that occurs inside another
  key's value (a host name, a bucket);
- secrets issued by others (a relay's password, Tailscale keys) cannot be chosen, so
  they are masked as they are.

A ``name:password`` value (``Key.pair``) is masked whole and by its password alone.
Each value is masked as written, in its ``repr`` and JSON string forms, percent-encoded
(``quote`` and ``quote_plus``, either case of hex digits) and in base64 (standard and
URL-safe, with and without padding, and inside longer base64 text such as HTTP Basic
credentials ``base64(user:password)``).
"""

from __future__ import annotations

import base64
import functools
import json
import re
import threading
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import quote, quote_plus

if TYPE_CHECKING:
    from .settings import Settings

#: secrets shorter than this are not masked (see the module docstring); the contract
#: refuses shorter secrets
MIN_SECRET = 8
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

#: Unicode categories escaped before printing: controls (C0, DEL, C1), format characters
#: (bidi overrides and isolates, zero-width), surrogates, line and paragraph separators
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def secret_values(settings: Settings | None = None, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The values of every secret key of ``settings`` that is set (and the password part
    of ``name:password`` keys), longest first."""
    from .settings.contract import KEYS, password_part

    values = set(extra)
    if settings is not None:
        for key in KEYS:
            if key.secret and settings[key.name]:
                values.add(settings[key.name])
                if key.pair:
                    values.add(password_part(settings[key.name]))
        if settings["STALWART_MANAGEMENT_PASSWORD"]:
            # the management login's Basic credentials as a whole: an echo of them (or a
            # cut-short base64 of them) must not show the password's first bytes
            values.add(
                f"{settings['STALWART_MANAGEMENT_USER']}@{settings['MAIL_DOMAIN']}:"
                f"{settings['STALWART_MANAGEMENT_PASSWORD']}"
            )
    return tuple(sorted((v for v in values if len(v) >= MIN_SECRET), key=len, reverse=True))


def remember_secrets(settings: Settings) -> None:
    """Mask ``settings``' secret values in every message this process prints from now on."""
    _REMEMBERED.update(secret_values(settings))


def remembered_secrets() -> frozenset[str]:
    """The secret values of every settings object this process loaded."""
    return frozenset(_REMEMBERED)


def secret_values_of(mapping: Mapping[str, str]) -> tuple[str, ...]:
    """Secret values in a raw mapping (an unvalidated .env, the process environment)."""
    from .settings.contract import BY_NAME, password_part

    names = {name for name, key in BY_NAME.items() if key.secret} | {"PG_ADMIN_PASSWORD"}
    pairs = {name for name, key in BY_NAME.items() if key.pair}
    found = [v for k, v in mapping.items() if k in names]
    found += [password_part(v) for k, v in mapping.items() if k in pairs]
    return secret_values(None, found)


def _percent_forms(value: str) -> set[str]:
    forms = {quote(value, safe=""), quote(value), quote_plus(value, safe=""), quote_plus(value)}
    lower = {re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), f) for f in forms}
    return forms | lower


def _base64_forms(raw: bytes) -> set[str]:
    """``raw`` in base64 (standard and URL-safe): alone, with and without padding, and the
    part of its encoding that stays the same wherever it starts inside longer data."""
    forms = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(raw).decode()
        forms |= {whole, whole.rstrip("=")}
        for offset in range(3):
            text = encode(b"\0" * offset + raw).decode()
            # characters that hold only bits of ``raw``: six bits each, ``raw`` starts at
            # bit 8 * offset
            forms.add(text[-(-8 * offset // 6) : 8 * (offset + len(raw)) // 6])
    return forms


def encoded_forms(value: str) -> set[str]:
    """Every form of ``value`` masked (see the module docstring), each long enough to mask."""
    forms = {value, value.strip(), repr(value)[1:-1], json.dumps(value)[1:-1]}
    forms |= set(value.splitlines())
    forms.add(json.dumps(value, ensure_ascii=False)[1:-1])
    forms |= _percent_forms(value)
    forms |= _base64_forms(value.encode())
    return {f for f in forms if len(f) >= MIN_SECRET}


@functools.lru_cache(maxsize=32)
def _pattern(secrets: frozenset[str]) -> re.Pattern[str] | None:
    """One pattern for every form of every secret, longest first."""
    forms: set[str] = set()
    for value in secrets:
        if len(value) >= MIN_SECRET:
            forms |= encoded_forms(value)
    if not forms:
        return None
    return re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)))


def hide_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every known secret value, in every form it may be quoted in, replaced
    by ``<secret>`` (a value cut at a newline is masked line by line)."""
    pattern = _pattern(frozenset(secrets))
    return text if pattern is None else pattern.sub(MASK, text)


def hide_credentials(text: str) -> str:
    """``text`` with anything shaped like a credential (URL userinfo, Bearer …) masked."""
    for pattern, replacement in _CREDENTIAL_SHAPES:
        text = pattern.sub(replacement, text)
    return text


def hide_sensitive(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with known secrets masked first (``hide_secrets``), then credential shapes
    (``hide_credentials``): the form for any message."""
    return hide_credentials(hide_secrets(text, secrets))


def hide_secrets_in_tree(value: Any, secrets: Iterable[str]) -> Any:
    """``value`` (JSON-like: dicts, lists, strings) with every one of ``secrets`` masked in
    every string and every key, at any depth (a server that echoes a credential must not
    have it written into a file)."""
    known = tuple(secrets)
    if isinstance(value, str):
        return hide_secrets(value, known)
    if isinstance(value, dict):
        return {
            hide_secrets(str(k), known): hide_secrets_in_tree(v, known) for k, v in value.items()
        }
    if isinstance(value, list):
        return [hide_secrets_in_tree(v, known) for v in value]
    return value


#: the mask Stalwart itself shows for a secret it reads back
JMAP_MASK = "****"
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/@:]*:)[^@/]+(?P<tail>@)")


def hide_jmap_secrets(value: Any, leaf: Callable[[Any], Any] = lambda v: v) -> Any:
    """A Stalwart (JMAP) value for display: URL passwords and inline secret values
    (``{"@type": "Value", "secret"|"value": …}``) as ``****``, at any depth; ``leaf``
    turns any other non-container value into what is shown."""
    if isinstance(value, str):
        return _URL_PASSWORD.sub(rf"\g<head>{JMAP_MASK}\g<tail>", value)
    if isinstance(value, Mapping):
        inline = value.get("@type") == "Value"
        return {
            k: JMAP_MASK if inline and k in ("secret", "value") else hide_jmap_secrets(v, leaf)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [hide_jmap_secrets(v, leaf) for v in value]
    return leaf(value)


def replace_secrets(value: Any, placeholders: Mapping[str, str]) -> Any:
    """``value`` (JSON-serialisable) with each secret (a key of ``placeholders``, in any
    string, longest first) replaced by its placeholder: what a recorded fixture keeps."""
    text = json.dumps(value, sort_keys=True)
    for secret in sorted(placeholders, key=len, reverse=True):
        text = text.replace(secret, placeholders[secret])
    return json.loads(text)


def escape_char(char: str) -> str:
    """One character as a Python-style escape: ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``."""
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str, newlines: bool = True) -> str:
    """``text`` with every control, format (bidi, zero-width), surrogate and separator
    character written as an escape (``\\x1b``, ``\\u202e``). Newlines stay unless
    ``newlines`` is False (a value from a server that must stay on its line); tabs stay
    (a diff of a tab-indented file), they only move the cursor right."""
    if text.isprintable():
        return text
    kept = "\t\n" if newlines else "\t"
    return "".join(
        escape_char(c) if c not in kept and unicodedata.category(c) in _UNPRINTABLE else c
        for c in text
    )


def one_line(text: Any, limit: int = 300) -> str:
    """A value from a server, for a message: on one line, escaped, at most ``limit``
    characters (then ``…``)."""
    shown = printable(str(text), newlines=False)
    return shown if len(shown) <= limit else shown[:limit] + "…"


class LineStream:
    """A text stream that passes whole lines to ``target``, each through ``clean``.

    A line is held until its newline arrives (a secret split across two writes or
    chunks is still masked whole); ``finish`` (or ``close``) passes on the rest.
    Thread-safe: checks running in parallel print through one stream.
    """

    def __init__(self, target: TextIO, clean: Callable[[str], str]) -> None:
        self.target = target
        self.clean = clean
        self.pending = ""
        self._lock = threading.Lock()

    def write(self, data: str) -> int:
        with self._lock:
            *lines, self.pending = (self.pending + data).split("\n")
            for row in lines:  # CRLF ends a line like LF does
                self.target.write(self.clean(row.removesuffix("\r")) + "\n")
        return len(data)

    def writelines(self, lines: Iterable[str]) -> None:
        for row in lines:
            self.write(row)

    def flush(self) -> None:
        self.target.flush()

    def finish(self) -> None:
        """Pass on a last line that has no newline."""
        with self._lock:
            if self.pending:
                self.target.write(self.clean(self.pending))
                self.pending = ""
        self.target.flush()

    def close(self) -> None:
        self.finish()

    def isatty(self) -> bool:
        return bool(self.target.isatty())

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, errors...
        return getattr(self.target, name)


def terminal(stream: TextIO) -> TextIO:
    """The stream under a ``LineStream`` (tailwart's own progress bar redraws its line
    with a carriage return, which a ``LineStream`` escapes)."""
    while isinstance(stream, LineStream):
        stream = stream.target
    return stream
