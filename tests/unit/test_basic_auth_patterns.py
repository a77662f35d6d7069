"""The base64 patterns the JMAP vhost refuses Basic credentials with, against Python's own
base64 encoder and a model of how Stalwart v0.16.18 reads a Basic login
(``login.trim().to_lowercase()``, crates/http/src/auth/authenticate.rs).

The real Caddy runs these patterns in tests/integration/edge_wire/test_jmap_vhost_walls.py;
here Python's ``re`` (the same syntax for classes and groups) runs many more credentials.
"""

from __future__ import annotations

import base64
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from tailwart.edge.basic_auth import management_login
from tailwart.edge.render import BASIC, CANONICAL_BASE64, jmap_vhost, management_matcher
from tailwart.settings import from_mapping
from tailwart.settings.example import example_values

#: what Rust's char::is_whitespace (Unicode White_Space) holds, written out
RUST_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,20}", fullmatch=True)


def header(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


def refused(name: str, value: str) -> bool:
    return re.match(f"^{BASIC} {management_login(name)}", value) is not None


def stalwart_reads(credentials: str) -> str | None:
    """The login Stalwart looks up for these decoded credentials (None: no ':')."""
    if ":" not in credentials:
        return None
    login = credentials.split(":", 1)[0]
    return login.strip(RUST_WHITESPACE).lower()


@st.composite
def spellings(draw: st.DrawFn, name: str) -> str:
    """Credentials Stalwart reads as ``name`` or ``name@domain``: any case, blanks around
    it, the Kelvin sign for k, any password."""
    letters = []
    for char in name:
        options = [char.lower(), char.upper()] + (["\u212a"] if char in "kK" else [])
        letters.append(draw(st.sampled_from(options)))
    blanks = st.text(alphabet=RUST_WHITESPACE, max_size=3)
    domain = draw(st.sampled_from(["", "@example.org", "@EXAMPLE.org"]))
    password = draw(st.text(max_size=12))
    return draw(blanks) + "".join(letters) + domain + draw(blanks) + ":" + password


@settings(max_examples=200, deadline=None)
@given(data=st.data(), name=NAMES)
def test_every_spelling_stalwart_reads_as_the_name_is_refused(
    data: st.DataObject, name: str
) -> None:
    credentials = data.draw(spellings(name))
    assert stalwart_reads(credentials) in (name.lower(), name.lower() + "@example.org")
    value = header(credentials)
    assert re.fullmatch(f"{BASIC} {CANONICAL_BASE64}", value)
    assert refused(name, value), credentials


@settings(max_examples=200, deadline=None)
@given(name=NAMES, login=st.text(min_size=1, max_size=30), password=st.text(max_size=12))
def test_other_logins_pass(name: str, login: str, password: str) -> None:
    """A login that neither starts with the name nor with a blank is never refused; one
    that starts with the name and goes on with a letter or digit is another account."""
    blank = login[0] in RUST_WHITESPACE or login[0] in "\x1c\x1d\x1e\x1f"
    kelvin = "\u212a" in login + password and "k" in name.lower()
    after = login[len(name) : len(name) + 1]
    ours = login[: len(name)].lower() == name.lower() and not (after.isascii() and after.isalnum())
    if blank or kelvin or ours or ":" in login:
        return
    assert not refused(name, header(f"{login}:{password}")), login


def test_the_three_alignments_of_the_login_end() -> None:
    """ "name:" ends a base64 group at each offset; hand-checked prefixes of Python's
    encoding are refused, and one letter less is not."""
    for name in ("tailwart-admin", "ops-admin", "mgmt"):  # len + 1 ≡ 0, 1, 2 (mod 3)
        for password in ("", "p", "pw", "pwd"):
            assert refused(name, header(f"{name}:{password}"))
            assert not refused(name, header(f"{name[:-1]}:{password}"))
            assert not refused(name, header(f"{name}2:{password}"))
            assert refused(name, header(f"{name}.2:{password}"))  # refused with it, by design
            assert not refused(name, "Bearer " + base64.b64encode(f"{name}:".encode()).decode())


def test_the_rendered_matcher_is_one_quoted_caddyfile_token() -> None:
    """No blank, quote, backslash or brace: the Caddyfile keeps it as written, and Caddy
    expands no placeholder inside it."""
    for user in ("tailwart-admin", "kk", "_x.y-z"):
        s = from_mapping({**example_values(), "STALWART_MANAGEMENT_USER": user})
        matcher = management_matcher(s)
        body = matcher.removeprefix(f"^{BASIC} ")
        assert not set(body) & set(' "\\{}\t')
        assert f'\t@management vars_regexp {{http.request.header.Authorization}} "{matcher}"\n' in (
            jmap_vhost(s)
        )
