"""Writing generated files: atomically, and only when their content changes.

A symlink is written through: the new content replaces the link's target (the temp
file lives in the target's directory, so the rename stays atomic) and the link
itself is kept. A failed write (read-only directory, full disk, no permission)
raises FileWriteError and leaves the previous file exactly as it was.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from .errors import OperationError


class FileWriteError(OperationError):
    """A generated file could not be written; the previous one is intact."""


def write_target(path: Path) -> Path:
    """Where writing ``path`` lands: the final target of a symlink chain, else ``path``."""
    return path.resolve() if path.is_symlink() else path


def write_atomic(path: Path, content: str | bytes, mode: int | None = None) -> bool:
    """Write ``content`` to ``path`` through a temp file and rename.

    Returns True when the file was created or changed, False when it already
    held exactly this content (then nothing is touched).
    """
    data = content.encode() if isinstance(content, str) else content
    try:
        target = write_target(path)
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise FileWriteError(f"cannot write {path}: {_reason(exc)}; nothing was changed") from None
    try:
        if target.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    except OSError as exc:  # a directory, no permission: the write below says why
        if isinstance(exc, IsADirectoryError):
            raise FileWriteError(f"cannot write {path}: it is a directory") from None
    shown = path if target == path else f"{path} (→ {target})"
    tmp = ""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        elif target.exists():
            os.chmod(tmp, target.stat().st_mode & 0o7777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise FileWriteError(
            f"cannot write {shown}: {_reason(exc)}; the previous file is unchanged"
        ) from None
    except BaseException:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise
    return True


def _reason(exc: BaseException) -> str:
    """The OS's words for a failed write (no paths repeated, no errno noise)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


# ---------------------------------------------------------------- bounded reads


class ReadRefused(Exception):
    """``read_bounded`` would not read a file. ``reason``: missing | unreadable | type |
    size; the message names the path and says why, in words for the operator."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


_FILE_TYPES = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def not_regular(mode: int) -> str:
    """What a non-regular file is, in words (``a directory``, ``a FIFO (named pipe)``…)."""
    return next((what for test, what in _FILE_TYPES if test(mode)), "not a regular file")


def read_bounded(path: Path | str, cap: int) -> tuple[bytes, os.stat_result]:
    """The bytes of a regular file of at most ``cap`` bytes, and its stat (symlinks
    followed); ReadRefused otherwise.

    Opened with O_NONBLOCK and checked on the open descriptor, so a FIFO, a device or a
    file swapped in between is refused instead of read (or waited on forever).
    """
    try:
        before = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise ReadRefused("missing", f"{path} does not exist") from None
    except OSError as exc:
        raise ReadRefused("unreadable", f"{path} cannot be read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(before.st_mode):
        raise ReadRefused("type", f"{path} is {not_regular(before.st_mode)}")
    if before.st_size > cap:
        raise ReadRefused("size", f"{path} is {before.st_size} bytes")
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise ReadRefused("unreadable", f"{path} cannot be read: {exc.strerror or exc}") from None
    try:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode):
            raise ReadRefused("type", f"{path} is {not_regular(now.st_mode)}")
        chunks: list[bytes] = []
        size = 0
        while size <= cap:
            chunk = os.read(fd, min(65536, cap + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ReadRefused("unreadable", f"{path} cannot be read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if size > cap:
        raise ReadRefused("size", f"{path} grew past {cap} bytes while being read")
    return b"".join(chunks), now
