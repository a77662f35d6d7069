"""What a snapshot holds: versions, pins, counts, sizes and checksums (manifest.json)
and the blob listing (blobs.tsv: sha256, size, percent-encoded key per line)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import clock
from .errors import BackupError

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


def parse_listing(text: str) -> dict[str, tuple[int, str]]:
    from .blobs import decode_key

    out: dict[str, tuple[int, str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split("\t")
        if len(parts) != 3 or not parts[1].isdigit():
            raise BackupError(f"{LISTING} line {number} is malformed; the snapshot is damaged")
        out[decode_key(parts[2])] = (int(parts[1]), parts[0])
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

    def to_json(self) -> str:
        return json.dumps(self.data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        try:
            data = json.loads(text)
        except ValueError:
            raise BackupError(f"{MANIFEST} is not JSON; the snapshot is damaged") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise BackupError(f"{MANIFEST} is not a {FORMAT} manifest; not a tailwart snapshot?")
        return cls(data)


def now() -> str:
    return clock.now().replace(microsecond=0).isoformat()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


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
