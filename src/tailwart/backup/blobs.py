"""Garage side of a backup: mirror the bucket into the staging directory, upload, verify.

Blobs are immutable and content-addressed: a key already mirrored with the same size
and ETag is not fetched again, so a second backup downloads only new blobs. Each key
is one file named by its percent-encoding (flat, reversible, no path tricks).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from ..settings import Settings
from .errors import BackupError

Progress = Callable[[str], None]
WORKERS = 8
CHUNK = 1 << 20


@dataclass(frozen=True)
class Bucket:
    endpoint: str
    region: str
    name: str
    access_key: str
    secret_key: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Bucket:
        host = settings["STALWART_S3_HOST"]
        return cls(
            f"http://{f'[{host}]' if ':' in host else host}:{settings['STALWART_S3_PORT']}",
            settings["STALWART_S3_REGION"],
            settings["STALWART_S3_BUCKET"],
            settings["STALWART_S3_ACCESS_KEY"],
            settings["STALWART_S3_SECRET_KEY"],
        )

    @property
    def where(self) -> str:
        return f"bucket {self.name!r} at {self.endpoint}"

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
            max_pool_connections=WORKERS * 2,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=config,
        )


def s3_failure(bucket: Bucket, what: str, exc: Exception) -> BackupError:
    """An S3 error as a BackupError naming the bucket and the code, never a credential."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        reason = f"{err.get('Code', '')} {err.get('Message', '')}".strip()
    else:
        reason = type(exc).__name__
    return BackupError(f"garage: {what} on {bucket.where} failed: {reason}")


@dataclass(frozen=True)
class Listed:
    key: str
    size: int
    etag: str


def listing(client: Any, bucket: Bucket) -> Iterator[Listed]:
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket.name)
        for page in pages:
            for obj in page.get("Contents", []):
                yield Listed(str(obj["Key"]), int(obj["Size"]), str(obj.get("ETag", "")).strip('"'))
    except Exception as exc:
        raise s3_failure(bucket, "listing", exc) from None


def is_empty(bucket: Bucket) -> bool:
    client = bucket.client()
    try:
        page = client.list_objects_v2(Bucket=bucket.name, MaxKeys=1)
    except Exception as exc:
        raise s3_failure(bucket, "listing", exc) from None
    return not page.get("Contents")


#: objects whose listing entries tell two buckets apart (see ``fingerprint``)
FINGERPRINT_KEYS = 1000


def fingerprint(bucket: Bucket) -> tuple[tuple[str, int, str, str], ...]:
    """The bucket's first objects as (key, size, ETag, last-modified): equal, non-empty
    fingerprints are one bucket reached twice (a copy has other modification times),
    whatever name, alias, key or address reached it. Read only: nothing is written."""
    client = bucket.client()
    try:
        page = client.list_objects_v2(Bucket=bucket.name, MaxKeys=FINGERPRINT_KEYS)
    except Exception as exc:
        raise s3_failure(bucket, "listing", exc) from None
    return tuple(
        (
            str(obj.get("Key", "")),
            int(obj.get("Size", 0)),
            str(obj.get("ETag", "")),
            str(obj.get("LastModified", "")),
        )
        for obj in page.get("Contents", [])
    )


#: longest file name used as is; longer keys get a name derived from their hash
MAX_NAME = 200


def encode_key(key: str) -> str:
    """The key percent-encoded: one line, no tab, no slash; ``decode_key`` reverses it."""
    return quote(key, safe="")


def decode_key(text: str) -> str:
    """The key ``encode_key`` made ``text`` from; UnicodeDecodeError if it is not UTF-8."""
    return unquote(text, errors="strict")


def file_name(key: str) -> str:
    """The mirror's file for ``key``: flat, never '.', '..' or hidden, never too long."""
    name = encode_key(key)
    if len(name) > MAX_NAME:
        return "%long-" + hashlib.sha256(key.encode()).hexdigest()
    if name.startswith("."):
        name = "%2E" + name[1:]
    return name


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Mirrored:
    """The bucket as mirrored: key → (size, sha256), and what changed on the way."""

    blobs: dict[str, tuple[int, str]] = field(default_factory=dict)
    fetched: int = 0
    fetched_bytes: int = 0
    kept: int = 0
    removed: int = 0
    vanished: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(size for size, _ in self.blobs.values())


def mirror(bucket: Bucket, directory: Path, state_file: Path, progress: Progress) -> Mirrored:
    """Make ``directory`` hold exactly the bucket's objects (listed now, after the dump).

    A key that disappears between the listing and its download (a purge) is reported
    in ``vanished``, not fatal: the dump taken before it no longer references it
    once the purge committed, or the purge deleted a blob the dump still names.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.part"):
        stale.unlink()
    state: dict[str, list[Any]] = {}
    if state_file.exists():
        try:
            state = json.loads(state_file.read_text())
        except ValueError:
            state = {}
    client = bucket.client()
    out = Mirrored()
    todo: list[Listed] = []
    listed: set[str] = set()
    for obj in listing(client, bucket):
        listed.add(obj.key)
        local = directory / file_name(obj.key)
        known = state.get(obj.key)
        if (
            known
            and known[0] == obj.size
            and known[1] == obj.etag
            and local.exists()
            and local.stat().st_size == obj.size
        ):
            out.blobs[obj.key] = (obj.size, str(known[2]))
            out.kept += 1
        else:
            todo.append(obj)
    progress(
        f"garage: {len(listed)} objects listed, {out.kept} already mirrored, {len(todo)} to fetch"
    )

    def fetch(obj: Listed) -> tuple[Listed, str | None]:
        from botocore.exceptions import ClientError

        local = directory / file_name(obj.key)
        part = local.with_name(local.name + ".part")
        digest = hashlib.sha256()
        try:
            body = client.get_object(Bucket=bucket.name, Key=obj.key)["Body"]
            with part.open("wb") as fh:
                for chunk in body.iter_chunks(CHUNK):
                    digest.update(chunk)
                    fh.write(chunk)
        except ClientError as exc:
            part.unlink(missing_ok=True)
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return obj, None
            raise s3_failure(bucket, f"GET {obj.key!r}", exc) from None
        except Exception as exc:
            part.unlink(missing_ok=True)
            raise s3_failure(bucket, f"GET {obj.key!r}", exc) from None
        part.replace(local)
        return obj, digest.hexdigest()

    done = 0
    with ThreadPoolExecutor(WORKERS) as pool:
        for obj, sha in pool.map(fetch, todo):
            done += 1
            if sha is None:
                out.vanished.append(obj.key)
                progress(f"garage: {obj.key!r} vanished between listing and copy (purged?)")
                continue
            size = (directory / file_name(obj.key)).stat().st_size
            out.blobs[obj.key] = (size, sha)
            state[obj.key] = [size, obj.etag, sha]
            out.fetched += 1
            out.fetched_bytes += size
            if done % 200 == 0 or done == len(todo):
                progress(f"garage: fetched {done}/{len(todo)}")
    wanted = {file_name(key) for key in out.blobs}
    for local in directory.iterdir():
        if local.name not in wanted:
            local.unlink()
            out.removed += 1
    state = {k: v for k, v in state.items() if k in out.blobs}
    tmp = state_file.with_name(state_file.name + ".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, state_file)
    return out


def upload(
    bucket: Bucket, directory: Path, keys: dict[str, tuple[int, str]], progress: Progress
) -> int:
    """PUT every blob of ``keys`` from ``directory`` into the bucket; return bytes sent."""
    client = bucket.client()

    def put(key: str) -> int:
        path = directory / file_name(key)
        try:
            with path.open("rb") as fh:
                client.put_object(Bucket=bucket.name, Key=key, Body=fh)
        except Exception as exc:
            raise s3_failure(bucket, f"PUT {key!r}", exc) from None
        return path.stat().st_size

    sent = 0
    with ThreadPoolExecutor(WORKERS) as pool:
        for i, size in enumerate(pool.map(put, sorted(keys)), 1):
            sent += size
            if i % 200 == 0 or i == len(keys):
                progress(f"garage: uploaded {i}/{len(keys)}")
    return sent


@dataclass
class BlobCheck:
    present: int = 0
    missing: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)


def verify(bucket: Bucket, expected: dict[str, tuple[int, str]], progress: Progress) -> BlobCheck:
    """Read every expected blob back from the bucket and compare size and sha256."""
    client = bucket.client()
    found = {obj.key: obj.size for obj in listing(client, bucket)}
    out = BlobCheck(extra=sorted(set(found) - set(expected)))

    def digest(key: str) -> str:
        h = hashlib.sha256()
        try:
            body = client.get_object(Bucket=bucket.name, Key=key)["Body"]
            for chunk in body.iter_chunks(CHUNK):
                h.update(chunk)
        except Exception as exc:
            raise s3_failure(bucket, f"GET {key!r}", exc) from None
        return h.hexdigest()

    present = [k for k in sorted(expected) if k in found]
    out.missing = [k for k in sorted(expected) if k not in found]
    with ThreadPoolExecutor(WORKERS) as pool:
        for key, sha in zip(present, pool.map(digest, present), strict=True):
            if found[key] == expected[key][0] and sha == expected[key][1]:
                out.present += 1
            else:
                out.mismatched.append(key)
    progress(f"garage: {out.present}/{len(expected)} blobs read back with matching sha256")
    return out
