"""The MTA-STS policy parser against RFC 8461's own examples and rules (3.2, 4.1)."""

from __future__ import annotations

import pytest

from tailwart.dns.mta_sts import Policy, PolicyError, mx_matches, parse_policy

#: RFC 8461 3.2's example policy, verbatim, with CRLF line ends
RFC_EXAMPLE = (
    "version: STSv1\r\n"
    "mode: enforce\r\n"
    "mx: mail.example.com\r\n"
    "mx: *.example.net\r\n"
    "mx: backupmx.example.com\r\n"
    "max_age: 604800\r\n"
)


def test_the_rfcs_example_parses() -> None:
    assert parse_policy(RFC_EXAMPLE) == Policy(
        "enforce", 604800, ("mail.example.com", "*.example.net", "backupmx.example.com")
    )


def test_lf_line_ends_unknown_keys_and_spaces_after_the_colon_are_accepted() -> None:
    text = "version: STSv1\nmode:   testing\nmax_age:86400\nmx: mx.example.org\nfuture_key: x\n"
    assert parse_policy(text) == Policy("testing", 86400, ("mx.example.org",))


def test_mode_none_needs_no_mx() -> None:
    assert parse_policy("version: STSv1\nmode: none\nmax_age: 86400\n").mx == ()


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("", "no version, mode, max_age field"),
        ("<html>", "line 1 is not 'key: value'"),
        ("version: STSv2\nmode: enforce\nmax_age: 1\nmx: a.b\n", "not STSv1"),
        ("version: STSv1\nmode: Enforce\nmax_age: 1\nmx: a.b\n", "mode is 'Enforce'"),
        ("version: STSv1\nmode: enforce\nmax_age: 31557601\nmx: a.b\n", "max_age is"),
        ("version: STSv1\nmode: enforce\nmax_age: -1\nmx: a.b\n", "max_age is '-1'"),
        ("version: STSv1\nmode: enforce\nmax_age: 1\n", "no mx field"),
        ("version: STSv1\nmode: enforce\nmode: none\nmax_age: 1\nmx: a.b\n", "given twice"),
        ("version: STSv1\nmode: enforce\nmax_age: 1\nmx: *.*.b\n", "not a host name pattern"),
        ("version: STSv1\nmode: enforce\nmax_age: 1\nmx: localhost\n", "not a host name"),
        ("version: STSv1\nmode: enforce\nmax_age: 1\nmx: a.b\x00\n", "control or non-ASCII"),
        ("version: STSv1\nmode: enforce\nmax_age: 1\nmx: a.b\n\nx\n", "line 5 is not"),
    ],
    ids=[
        "empty", "html", "version", "mode-case", "max-age-big", "max-age-sign", "no-mx",
        "twice", "double-wildcard", "single-label", "nul", "blank-line",
    ],
)  # fmt: skip
def test_what_the_rfc_does_not_allow_is_refused(text: str, said: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text)
    assert said in str(caught.value)


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        # RFC 8461 4.1: "*.example.com" matches mail.example.com, not example.com, not
        # foo.bar.example.com
        ("*.example.com", "mail.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "foo.bar.example.com", False),
        ("mail.example.com", "MAIL.example.com.", True),
        ("mail.example.com", "mail2.example.com", False),
    ],
)
def test_mx_patterns_match_as_rfc_8461_says(pattern: str, host: str, matches: bool) -> None:
    assert mx_matches(pattern, host) is matches
