"""A snapshot's content, checked before a restore uses any of it.

A snapshot is input like a flag: it may have been crafted. Before anything is
restored, restic's own listing of the snapshot (``restic ls``) must show exactly the
tree tailwart writes: directories and regular files only (no symlink, device, FIFO or
socket), in the places tailwart puts them, with the sizes the manifest claims; the
manifest is read with a bound and validated against its schema. After ``restic
restore`` the restored tree is walked again without following links, every file is
read with a bound, and every blob's size and sha256 must match the listing before
one byte is uploaded.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..files import ReadRefused, not_regular, read_bounded
from ..flags import printable
from . import blobs as blob_store
from . import manifest as mf
from .manifest import SnapshotRefused
from .restic import Restic, TooLarge

#: a restic snapshot id as restic prints it
SNAPSHOT_HEX = re.compile(r"[0-9a-f]{64}", re.ASCII)
#: what a node of restic's listing may be
ALLOWED_TYPES = ("file", "dir")


def _refuse(snap_id: str, problems: list[str]) -> SnapshotRefused:
    shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
    return SnapshotRefused(
        f"--snapshot {snap_id[:8]}: the snapshot is not what tailwart writes; nothing was "
        "restored:\n" + "\n".join(f"  {p}" for p in shown)
    )


@dataclass(frozen=True)
class Picked:
    """The snapshot a restore reads: its id, its root path, its time (all checked)."""

    id: str
    path: str
    time: str

    @classmethod
    def of(cls, snap: dict[str, Any]) -> Picked:
        snap_id = str(snap.get("id", ""))
        paths = snap.get("paths")
        problems = []
        if not SNAPSHOT_HEX.fullmatch(snap_id):
            problems.append("its id is not 64 hex digits")
        if not isinstance(paths, list) or len(paths) != 1 or not isinstance(paths[0], str):
            problems.append("it holds more or less than one backed-up directory")
            path = ""
        else:
            path = paths[0]
            if printable(path, 4096) != path or not path.startswith("/") or "\\" in path:
                problems.append("its directory is not a plain absolute path")
        if problems:
            raise _refuse(snap_id if SNAPSHOT_HEX.fullmatch(snap_id) else "????????", problems)
        return cls(snap_id, path, printable(str(snap.get("time", "?")), 40)[:19])


@dataclass
class Tree:
    """restic's listing of a snapshot below its root: relative path → (type, size)."""

    nodes: dict[str, tuple[str, int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @classmethod
    def listed(cls, restic: Restic, picked: Picked) -> Tree:
        tree = cls()
        root = PurePosixPath(picked.path)

        def node(message: dict[str, Any]) -> None:
            path = PurePosixPath(str(message.get("path", "")))
            if path == root:
                return
            try:
                rel = path.relative_to(root).as_posix()
            except ValueError:
                tree.problems.append(f"{printable(str(path), 80)} lies outside the snapshot root")
                return
            kind = str(message.get("type", ""))
            size = message.get("size", 0)
            tree.nodes[rel] = (kind, size if isinstance(size, int) else -1)

        restic.ls(picked.id, picked.path, node)
        return tree

    def manifest_problem(self) -> str | None:
        kind, size = self.nodes.get(mf.MANIFEST, ("missing", 0))
        if kind == "missing":
            return f"{mf.MANIFEST} is missing: not a tailwart snapshot"
        if kind != "file":
            return f"{mf.MANIFEST} is a {printable(kind, 20)}, not a regular file"
        if not 0 <= size <= mf.MANIFEST_CAP:
            return f"{mf.MANIFEST} is larger than {mf.MANIFEST_CAP} bytes"
        return None

    def check(self, manifest: mf.Manifest) -> list[str]:
        """Every way the listed tree differs from what ``manifest`` says it holds."""
        m = manifest.data
        problems = list(self.problems)
        expected_dirs = {mf.DUMP_DIR, mf.BLOB_DIR}
        blob_files = blob_bytes = 0
        for rel, (kind, size) in sorted(self.nodes.items()):
            name = printable(rel, 120)
            if kind not in ALLOWED_TYPES:
                problems.append(f"{name} is a {printable(kind, 20)}: only files and directories")
                continue
            parent = rel.rpartition("/")[0]
            if kind == "dir":
                if rel not in expected_dirs:
                    problems.append(f"{name}/ is a directory tailwart does not write")
            elif rel in (mf.MANIFEST, mf.LISTING, manifest.dump_path):
                pass
            elif parent == mf.BLOB_DIR:
                blob_files += 1
                blob_bytes += max(size, 0)
            else:
                problems.append(f"{name} is a file tailwart does not write")
        for rel, want in (
            (manifest.dump_path, int(m["postgres"]["dump_bytes"])),
            (mf.LISTING, None),
        ):
            kind, size = self.nodes.get(rel, ("missing", 0))
            if kind == "missing":
                problems.append(f"{printable(rel, 120)} is missing")
            elif kind == "file" and want is not None and size != want:
                problems.append(f"{rel} holds {size} bytes; the manifest says {want}")
        kind, size = self.nodes.get(mf.LISTING, ("missing", 0))
        if kind == "file" and size > manifest.listing_cap:
            problems.append(f"{mf.LISTING} is larger than {m['blobs']['count']} blobs can need")
        if blob_files != int(m["blobs"]["count"]) or blob_bytes != int(m["blobs"]["bytes"]):
            problems.append(
                f"{mf.BLOB_DIR}/ holds {blob_files} files of {blob_bytes} bytes; the manifest "
                f"says {m['blobs']['count']} of {m['blobs']['bytes']}"
            )
        return problems


def read_manifest(restic: Restic, picked: Picked) -> tuple[mf.Manifest, Tree]:
    """The snapshot's manifest and tree, both checked (SnapshotRefused naming every problem)."""
    tree = Tree.listed(restic, picked)
    problem = tree.manifest_problem()
    if problem:
        raise _refuse(picked.id, [*tree.problems, problem])
    try:
        text = restic.dump(picked.id, f"{picked.path}/{mf.MANIFEST}", mf.MANIFEST_CAP)
    except TooLarge:
        raise _refuse(
            picked.id, [f"{mf.MANIFEST} is larger than {mf.MANIFEST_CAP} bytes"]
        ) from None
    manifest = mf.Manifest.from_json(text)
    problems = tree.check(manifest)
    if problems:
        raise _refuse(picked.id, problems)
    return manifest, tree


def _walk(top: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Every entry below ``top`` with its lstat (links are never followed)."""
    for entry in os.scandir(top):
        st = entry.stat(follow_symlinks=False)
        rel = os.path.relpath(entry.path, top)
        yield rel, st
        if stat.S_ISDIR(st.st_mode):
            for sub, sub_st in _walk(Path(entry.path)):
                yield f"{rel}/{sub}", sub_st


def check_restored(work: Path, manifest: mf.Manifest, snap_id: str) -> dict[str, tuple[int, str]]:
    """The restored tree agrees with the manifest: only directories and regular files,
    the dump's and the listing's sha256, every blob's size and sha256. Returns the
    blobs to upload ({key: (size, sha256)}); SnapshotRefused names every difference."""
    m = manifest.data
    problems = [
        f"{printable(rel, 120)} was restored as {not_regular(st.st_mode)}"
        for rel, st in _walk(work)
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode))
    ]
    if problems:
        raise _refuse(snap_id, problems)
    dump = work / manifest.dump_path
    if not dump.is_file():
        problems.append(f"{manifest.dump_path} was not restored")
    elif blob_store.sha256_file(dump) != m["postgres"]["dump_sha256"]:
        problems.append(f"{manifest.dump_path}: its sha256 differs from the manifest")
    try:
        data, _ = read_bounded(work / mf.LISTING, manifest.listing_cap)
    except ReadRefused as exc:
        raise _refuse(snap_id, [f"{mf.LISTING}: {exc}"]) from None
    if mf.sha256_bytes(data) != m["blobs"]["listing_sha256"]:
        raise _refuse(snap_id, [*problems, f"{mf.LISTING}: its sha256 differs from the manifest"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _refuse(snap_id, [*problems, f"{mf.LISTING} is not UTF-8"]) from None
    expected = mf.parse_listing(text)
    if len(expected) != int(m["blobs"]["count"]):
        problems.append(
            f"{mf.LISTING} names {len(expected)} blobs; the manifest says {m['blobs']['count']}"
        )
    folder = work / mf.BLOB_DIR
    present = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    for key, (size, sha) in sorted(expected.items()):
        name = blob_store.file_name(key)
        path = folder / name
        if name not in present:
            problems.append(f"blob {printable(key, 80)!s} is missing from {mf.BLOB_DIR}/")
        elif path.stat().st_size != size or blob_store.sha256_file(path) != sha:
            problems.append(f"blob {printable(key, 80)!s} differs from the listing")
    extra = present - {blob_store.file_name(k) for k in expected}
    if extra:
        problems.append(f"{mf.BLOB_DIR}/ holds {len(extra)} files the listing does not name")
    if problems:
        raise _refuse(snap_id, problems)
    return expected
