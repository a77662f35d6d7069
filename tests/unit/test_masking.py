"""Masking in every encoding and escaping of control characters (issue 21, findings 6-9).

The oracles encode with the standard library (base64, urllib.parse, json) and decode the
masked text again; they never ask tailwart's masking which forms it knows.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import json
import re
import unicodedata
from collections.abc import Callable
from urllib.parse import quote, quote_plus

import pytest

from tailwart.masking import MASK, LineStream, printable, secret_values
from tailwart.masking import hide_secrets as redact
from tailwart.settings import from_mapping
from tailwart.settings.example import example_values

#: a password holding what each encoding changes: " and \\ (JSON), / + & % = (percent),
#: and enough bytes that base64 of it has no padding luck
SECRET = 'h2"\\/+&%=Zq9~' + "0f3a9c"
B64 = (base64.b64encode, base64.urlsafe_b64encode)


def forms(value: str) -> dict[str, str]:
    """Every encoding of ``value`` a server or library may quote it in."""
    raw = value.encode()
    out = {
        "raw": value,
        "json": json.dumps(value)[1:-1],
        "quote": quote(value, safe=""),
        "quote-default": quote(value),
        "quote_plus": quote_plus(value),
        "quote-lower": re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(value, safe="")),
    }
    for name, encode in zip(("b64", "b64url"), B64, strict=True):
        out[name] = encode(raw).decode()
        out[name + "-unpadded"] = encode(raw).decode().rstrip("=")
        out[name + "-basic"] = encode(b"admin:" + raw).decode()
    return out


@pytest.mark.parametrize("form", list(forms(SECRET)))
def test_every_encoding_of_a_secret_is_masked(form: str) -> None:
    text = f"the server said: <{forms(SECRET)[form]}> (end)"
    masked = redact(text, [SECRET])
    assert MASK in masked
    for encoded in forms(SECRET).values():
        assert encoded not in masked


def _decodable(pieces: list[str]) -> list[bytes]:
    """Every decoding of every base64 stretch in ``pieces``, at each of the 4 offsets."""
    out = []
    for piece in pieces:
        for run in re.findall(r"[A-Za-z0-9+/_-]+", piece):
            for start in range(4):
                chunk = run[start:]
                chunk = chunk[: len(chunk) - len(chunk) % 4]
                for alt in (b"+/", b"-_"):
                    with contextlib.suppress(binascii.Error, ValueError):
                        out.append(base64.b64decode(chunk, altchars=alt))
    return out


@pytest.mark.parametrize("before", range(3))
@pytest.mark.parametrize("encode", B64, ids=["std", "urlsafe"])
def test_a_secret_inside_longer_base64_is_masked_at_every_alignment(
    before: int, encode: Callable[[bytes], bytes]
) -> None:
    data = b"x" * before + SECRET.encode() + b"tail bytes"
    masked = redact(f"token={encode(data).decode()}", [SECRET])
    assert MASK in masked
    for decoded in _decodable(masked.split(MASK)):
        assert SECRET.encode()[2:-2] not in decoded


def test_the_password_of_a_name_password_key_is_masked_alone_and_whole() -> None:
    password = "Zq9" + "e1d2c3b4a5f6g7"  # 16 characters at least: the recovery admin's rule
    settings = from_mapping({**example_values(), "STALWART_RECOVERY_ADMIN": f"admin:{password}"})
    known = secret_values(settings)
    assert redact(f"login failed for password {password}", known).count(password) == 0
    assert redact(f"STALWART_RECOVERY_ADMIN=admin:{password}", known).endswith(MASK)
    basic = base64.b64encode(f"admin:{password}".encode()).decode()
    assert basic not in redact(f"Authorization: Basic {basic}", known)


def test_only_secrets_of_eight_or_more_characters_are_masked() -> None:
    """Shorter values would be masked inside ordinary words (the contract refuses them)."""
    assert redact("the word seven77 stays", ["seven77"]) == "the word seven77 stays"
    assert redact("eight888 goes", ["eight888"]) == f"{MASK} goes"


HOSTILE = {
    "esc": "\x1b",
    "csi-clear": "\x1b[2J\x1b[H",
    "osc-title": "\x1b]0;pwned\x07",
    "c1-csi": "\x9b2J",
    "carriage-return": "\r",
    "nul": "\x00",
    "del": "\x7f",
    "backspace": "\x08",
    "vertical-tab": "\x0b",
    "bidi-override": "\u202e",
    "bidi-isolate": "\u2066",
    "zero-width": "\u200b",
    "line-separator": "\u2028",
    "lone-surrogate": "\ud800",
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_control_characters_are_escaped_and_newlines_kept(name: str) -> None:
    text = f"line one {HOSTILE[name]}ok: all fine\nline two ünïcødé\u00a0\tend"
    shown = printable(text)
    assert shown.split("\n")[1] == "line two ünïcødé\u00a0\tend"  # a tab only moves right
    for char in shown:
        assert char in "\t\n" or unicodedata.category(char) not in {"Cc", "Cf", "Cs", "Zl", "Zp"}
    # the escape names the code point
    code = ord(HOSTILE[name][0])
    assert (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}") in shown
    assert "\n" not in printable(text, newlines=False)


def test_a_line_stream_masks_a_secret_split_across_writes_and_holds_the_tail() -> None:
    target = io.StringIO()
    stream = LineStream(target, lambda line: printable(redact(line, [SECRET])))
    stream.write("a " + SECRET[:5])
    stream.flush()
    assert target.getvalue() == ""
    stream.write(SECRET[5:] + " b\x1b[2J\r\ntail\x07")
    assert target.getvalue() == f"a {MASK} b\\x1b[2J\n"
    stream.finish()
    assert target.getvalue() == f"a {MASK} b\\x1b[2J\ntail\\x07"
