"""Regular expressions over HTTP Basic credentials as they travel: base64 of ``login:password``.

Caddy has no base64-decoding matcher, but a Basic token's decoded bytes start at offset 0,
so "the decoded text starts with these bytes" is a fixed pattern over the base64 text:
every 3 bytes are 4 characters, and a partial last group fixes only the top bits of its
last character (a character class). Patterns are sequences of byte sets (one set per
byte), so case-folded letters and "any byte but a letter or digit" cost a class, not an
alternation of spellings. The output is RE2 (Go's regexp, what Caddy compiles): classes
and non-capturing groups only, with no backslash, quote, brace or blank, so it sits in a
quoted Caddyfile token unchanged.

Stalwart v0.16.18 reads a Basic login as ``login.trim().to_lowercase()`` after a decoder
that skips blanks and restarts at every ``=`` (mail-parser's ``base64_decode``). The
caller refuses every token not in the one form clients send (one unbroken base64 word),
so the patterns here are matched against canonical base64 only; for the trim and the
lower-casing see ``management_login``.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Sequence
from functools import cache
from itertools import product

#: the standard base64 alphabet, by 6-bit value (RFC 4648 §4)
ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits + "+/"
ANY = frozenset(range(256))
ALNUM = frozenset(string.ascii_letters.encode() + string.digits.encode())
#: Unicode White_Space (what Rust's ``str::trim`` strips), as UTF-8, plus the ASCII
#: separators 0x1C-0x1F: a login that starts with any of them is refused outright
WHITESPACE: tuple[str, ...] = (
    *"\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680",
    *(chr(c) for c in range(0x2000, 0x200B)),
    "\u2028",
    "\u2029",
    "\u202f",
    "\u205f",
    "\u3000",
)
#: the one non-ASCII character that Unicode lower-cases to an ASCII letter (U+212A → k)
KELVIN = "\u212a"

Pattern = Sequence[frozenset[int]]


def exactly(data: bytes) -> list[frozenset[int]]:
    """The pattern of exactly these bytes."""
    return [frozenset((b,)) for b in data]


def any_case(text: str) -> list[frozenset[int]]:
    """The pattern of ASCII ``text`` with every letter in either case."""
    return [frozenset(c.lower().encode() + c.upper().encode()) for c in text]


def starts_with(patterns: Iterable[Pattern]) -> str:
    """RE2 (unanchored, no ``^``) for canonical base64 whose decoded bytes start with one of
    ``patterns``."""
    # one group or less: the words of patterns of one length share a trie
    short: dict[int, set[str]] = {}
    long = set()
    for pattern in patterns:
        if len(pattern) <= 3:
            short.setdefault(len(pattern), set()).update(_words(list(pattern)))
        else:
            long.add(_pattern(list(pattern)))
    alternatives = sorted(long | {_trie(words) for words in short.values() if words})
    return alternatives[0] if len(alternatives) == 1 else f"(?:{'|'.join(alternatives)})"


@cache
def contains(data: bytes) -> str:
    """RE2 for canonical base64 whose decoded bytes hold ``data`` at any offset: whole groups,
    then ``data`` at each of the three alignments within a group."""
    group = f"(?:{_class(set(ALPHABET)) * 4})*"
    return group + starts_with([ANY] * shift + exactly(data) for shift in range(3))


def management_login(name: str) -> str:
    """RE2 for the Basic credentials Stalwart reads as the login ``name`` (ASCII), alone or
    as ``name@domain``, or as any login that starts with a blank.

    ``name`` in any case, followed by a byte that is not a letter or a digit (``:``, ``@``,
    a blank Stalwart trims, or anything else: ``name2`` is another account, ``name.x`` is
    refused with it); a login led by a blank (trimmed, so it could be ``name`` again); and
    for a name with a ``k``, any credential holding the Kelvin sign, which lower-cases to
    ``k`` in a different byte length than the other letters."""
    patterns = [[*any_case(name), ANY - ALNUM], *(exactly(w.encode()) for w in WHITESPACE)]
    found = starts_with(patterns)
    if "k" in name.lower():
        found = f"(?:{found}|{contains(KELVIN.encode())})"
    return found


def _pattern(pattern: list[frozenset[int]]) -> str:
    return "".join(_trie(_words(pattern[i : i + 3])) for i in range(0, len(pattern), 3))


def _words(sets: list[frozenset[int]]) -> set[str]:
    """One group of up to 3 byte sets → its base64 characters. A partial group fixes the
    characters it reaches: 1 byte → 2 characters, 2 bytes → 3; the bits of the bytes
    beyond are free, so one representative per value of the bits that are read."""
    width = len(sets) + 1
    # 1 byte: the 2nd character reads the top 4 bits of the next; 2 bytes: the 3rd, 2 bits
    free: dict[int, list[Iterable[int]]] = {
        1: [range(0, 256, 16), [0]],
        2: [range(0, 256, 64)],
        3: [],
    }
    words = set()
    for b0, b1, b2 in product(*sets, *free[len(sets)]):
        value = b0 << 16 | b1 << 8 | b2
        words.add("".join(ALPHABET[value >> s & 63] for s in (18, 12, 6, 0))[:width])
    return words


def _trie(words: set[str]) -> str:
    """Words of one length as RE2: first characters that share what may follow become one
    class (``[Tt]GFp``, not ``TGFp|tGFp``)."""
    if not next(iter(words)):
        return ""
    rests: dict[str, set[str]] = {}
    for word in words:
        rests.setdefault(word[0], set()).add(word[1:])
    firsts: dict[str, set[str]] = {}
    for first, rest in rests.items():
        firsts.setdefault(_trie(rest), set()).add(first)
    branches = sorted(_class(chars) + rest for rest, chars in firsts.items())
    return branches[0] if len(branches) == 1 else f"(?:{'|'.join(branches)})"


def _class(chars: set[str]) -> str:
    """A character class of base64 characters; runs of 3+ letters or digits as ranges;
    ``+`` and ``/`` always inside brackets (no backslash is ever needed)."""
    if len(chars) == 1 and (char := next(iter(chars))) not in "+/":
        return char
    parts = []
    for run in (string.ascii_uppercase, string.ascii_lowercase, string.digits):
        picked = [c for c in run if c in chars]
        while picked:
            end = 0
            while end + 1 < len(picked) and ord(picked[end + 1]) == ord(picked[end]) + 1:
                end += 1
            parts.append(f"{picked[0]}-{picked[end]}" if end >= 2 else "".join(picked[: end + 1]))
            picked = picked[end + 1 :]
    parts += [c for c in "+/" if c in chars]
    return f"[{''.join(parts)}]"
