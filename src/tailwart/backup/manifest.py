"""What a snapshot holds: versions, pins, counts, sizes and checksums (manifest.json)
and the blob listing (blobs.tsv: sha256, size, percent-encoded key per line)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import clock
from ..errors import UsageError
from ..flags import printable
from .settings_snapshot import NOT_TAKEN

FORMAT = "tailwart-backup/1"
MANIFEST = "manifest.json"
LISTING = "blobs.tsv"
DUMP_DIR = "postgres"
BLOB_DIR = "blobs"


def listing_text(blobs: dict[str, tuple[int, str]]) -> str:
    from .blobs import encode_key

    return "".join(
        f"{sha}\t{size}\t{encode_key(key)}\n" for key, (size, sha) in sorted(blobs.items())
    )


#: the largest manifest.json read from a snapshot (a real one is a few KiB, plus the
#: settings snapshot's objects)
MANIFEST_CAP = 16 << 20
#: the longest line of blobs.tsv: sha256, size, a percent-encoded S3 key (1024 bytes,
#: each up to 3 characters), two tabs and a newline
LISTING_LINE_CAP = 64 + 20 + 3 * 1024 + 3
#: the most blobs a manifest may claim (keeps the listing's bound finite)
MAX_BLOBS = 100_000_000
_HEX64 = "^[0-9a-f]{64}$"
#: no control characters (a table name is printed in the verification report)
_PRINTABLE = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"
_COUNT = {"type": "integer", "minimum": 0, "maximum": 2**62}
_TEXT = {"type": "string", "maxLength": 1024}
#: what a tailwart-backup/1 manifest is; anything else is refused before it is used
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": [
        "format",
        "created",
        "versions",
        "source",
        "postgres",
        "blobs",
        "settings_snapshot",
    ],
    "properties": {
        "format": {"const": FORMAT},
        "created": _TEXT,
        "versions": {"type": "object", "additionalProperties": _TEXT, "maxProperties": 32},
        "source": {
            "type": "object",
            "additionalProperties": False,
            "required": ["db", "bucket", "s3_endpoint"],
            "properties": {"db": _TEXT, "bucket": _TEXT, "s3_endpoint": _TEXT},
        },
        "postgres": {
            "type": "object",
            "additionalProperties": False,
            "required": ["dump", "dump_bytes", "dump_sha256", "tables", "rows"],
            "properties": {
                "dump": {
                    "type": "string",
                    "pattern": f"^{DUMP_DIR}/[A-Za-z0-9_][A-Za-z0-9_.-]{{0,62}}\\.pgdump$",
                },
                "dump_bytes": _COUNT,
                "dump_sha256": {"type": "string", "pattern": _HEX64},
                "tables": {
                    "type": "object",
                    "maxProperties": 100_000,
                    "propertyNames": {"maxLength": 300, "pattern": _PRINTABLE},
                    "additionalProperties": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["rows", "checksum"],
                        "properties": {
                            "rows": _COUNT,
                            "checksum": {"type": "string", "pattern": "^([0-9a-f]{32})?$"},
                        },
                    },
                },
                "rows": _COUNT,
            },
        },
        "blobs": {
            "type": "object",
            "additionalProperties": False,
            "required": ["count", "bytes", "listing", "listing_sha256", "vanished"],
            "properties": {
                "count": {**_COUNT, "maximum": MAX_BLOBS},
                "bytes": _COUNT,
                "listing": {"const": LISTING},
                "listing_sha256": {"type": "string", "pattern": _HEX64},
                "vanished": {"type": "array", "items": _TEXT, "maxItems": 100_000},
            },
        },
        "settings_snapshot": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"enum": ["taken", NOT_TAKEN]}},
        },
    },
}
#: one line of blobs.tsv: sha256, size in ASCII digits, a percent-encoded key
_LISTING_LINE = re.compile(r"([0-9a-f]{64})\t(0|[1-9][0-9]{0,19})\t([A-Za-z0-9._~%-]{1,3072})")


class SnapshotRefused(UsageError):
    """The snapshot's content is not what tailwart wrote: nothing was restored (exit 2)."""


def parse_listing(text: str) -> dict[str, tuple[int, str]]:
    """blobs.tsv as {key: (size, sha256)}; every malformed line named (at most 20)."""
    from .blobs import decode_key

    out: dict[str, tuple[int, str]] = {}
    bad: list[str] = []
    for number, line in enumerate(text.split("\n")[:-1] if text else [], 1):
        match = _LISTING_LINE.fullmatch(line)
        key = None
        if match:
            try:
                key = decode_key(match[3])
            except UnicodeDecodeError:
                key = None
        if match is None or key is None:
            bad.append(f"line {number} is not sha256<TAB>size<TAB>percent-encoded key")
        elif key in out:
            bad.append(f"line {number} repeats a key")
        else:
            out[key] = (int(match[2]), match[1])
    if text and not text.endswith("\n"):
        bad.append("the last line has no newline (cut short?)")
    if bad:
        shown = bad[:20] + ([f"... and {len(bad) - 20} more"] if len(bad) > 20 else [])
        raise SnapshotRefused(
            f"{LISTING} in the snapshot is malformed; nothing was restored:\n"
            + "\n".join(f"  {line}" for line in shown)
        )
    return out


@dataclass(frozen=True)
class Manifest:
    data: dict[str, Any]

    @property
    def tables(self) -> dict[str, dict[str, Any]]:
        return dict(self.data["postgres"]["tables"])

    @property
    def dump_path(self) -> str:
        return str(self.data["postgres"]["dump"])

    @property
    def listing_cap(self) -> int:
        """The most bytes blobs.tsv can hold for the blob count this manifest claims."""
        return max(1, int(self.data["blobs"]["count"])) * LISTING_LINE_CAP

    def to_json(self) -> str:
        return json.dumps(self.data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        """A manifest read from a snapshot: strict JSON, then the schema, every problem named."""
        if len(text) > MANIFEST_CAP:
            raise SnapshotRefused(f"{MANIFEST} is larger than {MANIFEST_CAP} bytes; refused")
        try:
            data = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
        except (ValueError, RecursionError):
            raise SnapshotRefused(
                f"{MANIFEST} in the snapshot is not JSON (or repeats a key, nests too deep or "
                "holds NaN); not a tailwart snapshot, or a damaged one; nothing was restored"
            ) from None
        problems = schema_problems(data)
        if problems:
            raise SnapshotRefused(
                f"{MANIFEST} in the snapshot is not a {FORMAT} manifest; nothing was "
                "restored:\n" + "\n".join(f"  {p}" for p in problems)
            )
        return cls(data)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError("a repeated key")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def schema_problems(data: Any, limit: int = 20) -> list[str]:
    """What is wrong with ``data`` against SCHEMA: one line each, no value quoted."""
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(SCHEMA)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    lines = [
        f"{_where(e.absolute_path)}: {_expected(e.validator, e.validator_value)}" for e in errors
    ]
    return lines[:limit] + ([f"... and {len(lines) - limit} more"] if len(lines) > limit else [])


def _where(path: Any) -> str:
    """A JSON path of schema-known names; a key from the snapshot is shown escaped."""
    parts = ["$"]
    for part in path:
        parts.append(f"[{part}]" if isinstance(part, int) else f".{printable(str(part), 64)}")
    return "".join(parts)


def _expected(rule: Any, value: Any) -> str:
    words: dict[str, Callable[[Any], str]] = {
        "type": lambda v: f"expected {v if isinstance(v, str) else ' or '.join(v)}",
        "required": lambda v: f"expected the keys {', '.join(v)}",
        "additionalProperties": lambda v: (
            "holds a key a tailwart manifest does not have"
            if v is False
            else "holds a value of the wrong shape"
        ),
        "const": lambda v: f"expected {json.dumps(v)}",
        "enum": lambda v: f"expected one of {', '.join(json.dumps(x) for x in v)}",
        "pattern": lambda v: f"does not match {v}",
        "minimum": lambda v: f"expected at least {v}",
        "maximum": lambda v: f"expected at most {v}",
        "maxLength": lambda v: f"longer than {v} characters",
        "maxItems": lambda v: f"more than {v} items",
        "maxProperties": lambda v: f"more than {v} keys",
    }
    say = words.get(str(rule))
    return say(value) if say else f"fails the {rule} rule"


def now() -> str:
    return clock.now().replace(microsecond=0).isoformat()


def sha256_text(text: str) -> str:
    return sha256_bytes(text.encode())


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build(
    *,
    versions: dict[str, str],
    source: dict[str, Any],
    dump: Path,
    dump_sha256: str,
    tables: dict[str, dict[str, Any]],
    blobs: dict[str, tuple[int, str]],
    vanished: list[str],
    listing_sha256: str,
    settings_snapshot: dict[str, Any],
) -> Manifest:
    return Manifest(
        {
            "format": FORMAT,
            "created": now(),
            "versions": versions,
            "source": source,
            "postgres": {
                "dump": f"{DUMP_DIR}/{dump.name}",
                "dump_bytes": dump.stat().st_size,
                "dump_sha256": dump_sha256,
                "tables": tables,
                "rows": sum(int(t["rows"]) for t in tables.values()),
            },
            "blobs": {
                "count": len(blobs),
                "bytes": sum(size for size, _ in blobs.values()),
                "listing": LISTING,
                "listing_sha256": listing_sha256,
                "vanished": vanished,
            },
            "settings_snapshot": settings_snapshot,
        }
    )
