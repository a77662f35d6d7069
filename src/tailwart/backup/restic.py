"""The restic adapter: run restic with the repository's environment, parse its --json output.

The password and S3 keys go only into restic's environment (never argv); restic's exit
codes become errors that say what to do (12: wrong password, 10: no repository, 11: locked).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..paths import cache_path
from .errors import BackupError
from .repository import Repository

#: built by scripts/setup/60-backup.sh (keep the two equal)
RESTIC_VERSION = "v0.18.1"
#: ``snapshot:subfolder`` restores and exit codes 10/11/12 need restic >= 0.17
MIN_VERSION = (0, 17)
#: seconds between two progress lines
PROGRESS_EVERY = 2.0

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _version_of(binary: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run(
            [binary, "version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except OSError:
        return None
    words = out.split()
    if len(words) < 2 or words[0] != "restic":
        return None
    try:
        return tuple(int(p) for p in words[1].split("-")[0].split(".")[:2])
    except ValueError:
        return None


def restic_binary() -> str:
    """``$TAILWART_RESTIC``, else the cached build, else a restic >= 0.17 on PATH."""
    candidates = [
        os.environ.get("TAILWART_RESTIC", ""),
        str(cache_path("tools", f"restic-{RESTIC_VERSION}", "restic")),
        shutil.which("restic") or "",
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            version = _version_of(candidate)
            if version is not None and version >= MIN_VERSION:
                return candidate
    raise BackupError(
        f"restic >= {'.'.join(map(str, MIN_VERSION))} is missing: run scripts/setup/60-backup.sh "
        f"(builds restic {RESTIC_VERSION} into ~/.cache/tailwart/tools) or set TAILWART_RESTIC"
    )


class TooLarge(BackupError):
    """``restic dump`` of a file larger than the caller's bound (stopped, not read)."""


class RepositoryMissing(BackupError):
    """restic exit 10: no repository at the location (yet)."""


@dataclass
class Outcome:
    """What a restic command returned: its JSON messages and its stderr."""

    code: int
    messages: list[dict[str, Any]] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("message_type") == kind]


def _last_words(stderr: str) -> str:
    """restic's reason: its JSON exit_error message, else the last line of stderr."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("{") and '"exit_error"' in line:
            try:
                message = str(json.loads(line).get("message", ""))
            except ValueError:
                continue
            return "; ".join(m.strip() for m in message.splitlines() if m.strip())[:300]
    return lines[-1][:300] if lines else "no message"


class Restic:
    """One repository; every call runs the restic binary with the repository's environment."""

    def __init__(
        self,
        repo: Repository,
        binary: str | None = None,
        timeout: float = 6 * 3600,
        no_cache: bool = False,
    ) -> None:
        self.repo = repo
        self.binary = binary or restic_binary()
        self.timeout = timeout
        #: a dry run writes nothing, not even restic's local cache
        self.no_cache = no_cache
        self._reached = False

    def environment(self) -> dict[str, str]:
        inherited = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RESTIC_", "AWS_")) and k not in ("PGPASSWORD",)
        }
        return {
            **inherited,
            **self.repo.environment(),
            "RESTIC_CACHE_DIR": str(cache_path("restic-cache")),
            "RESTIC_PROGRESS_FPS": str(1 / PROGRESS_EVERY),
        }

    def globals(self) -> list[str]:
        return [*self.repo.options(), *(["--no-cache"] if self.no_cache else [])]

    def run(
        self,
        args: Sequence[str],
        *,
        cwd: Path | None = None,
        on_message: Callable[[dict[str, Any]], None] | None = None,
        check: bool = True,
        keep: bool = True,
    ) -> Outcome:
        """Run ``restic ARGS`` (--json added); messages are parsed as they arrive
        (``keep=False``: handed to ``on_message`` only, not kept in the outcome)."""
        if not self._reached:
            self.reachable()
            self._reached = True
        argv = [self.binary, *self.globals(), "--json", *args]
        with tempfile.TemporaryFile(mode="w+") as err:
            try:
                proc = subprocess.Popen(
                    argv,
                    cwd=cwd,
                    env=self.environment(),
                    stdout=subprocess.PIPE,
                    stderr=err,
                    stdin=subprocess.DEVNULL,
                    text=True,
                )
            except OSError as exc:
                raise BackupError(f"cannot run restic ({self.binary}): {exc}") from None
            assert proc.stdout is not None
            messages: list[dict[str, Any]] = []
            raw: list[str] = []
            watchdog = threading.Timer(self.timeout, proc.kill)
            watchdog.daemon = True
            watchdog.start()
            try:
                for line in proc.stdout:
                    if keep:
                        raw.append(line)
                    text = line.strip()
                    if text.startswith("{"):
                        try:
                            message = json.loads(text)
                        except (ValueError, RecursionError):
                            continue
                        if isinstance(message, dict):
                            if keep:
                                messages.append(message)
                            if on_message is not None:
                                on_message(message)
                code = proc.wait()
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            finally:
                watchdog.cancel()
            err.seek(0)
            outcome = Outcome(code, messages, "".join(raw), err.read())
        if check and outcome.code != 0:
            self.raise_for(args[0] if args else "", outcome)
        return outcome

    def raise_for(self, command: str, outcome: Outcome) -> None:
        where = self.repo.location
        if outcome.code == 12:
            raise UsageError(
                f"BACKUP_PASSWORD does not open the restic repository at {where} "
                "(restic: wrong password or no key found); nothing was changed"
            )
        if outcome.code == 10:
            raise RepositoryMissing(
                f"no restic repository at {where}: run inv backup once to create it"
            )
        if outcome.code == 11:
            raise BackupError(
                f"the restic repository at {where} is locked by another process; if no backup "
                "runs, remove a stale lock with: restic unlock"
            )
        words = _last_words(outcome.stderr)
        if outcome.code < 0:
            words = f"stopped after {self.timeout:g}s without finishing"
        raise BackupError(f"restic {command} failed (exit {outcome.code}) at {where}: {words}")

    # ------------------------------------------------------------ commands

    def version(self) -> str:
        proc = subprocess.run(
            [self.binary, "version"], capture_output=True, text=True, timeout=30, check=False
        )
        words = proc.stdout.split()
        return words[1] if len(words) > 1 else "unknown"

    def reachable(self, timeout: float = 10) -> None:
        """Fail fast when an S3 repository's endpoint does not answer (restic would retry
        for many minutes)."""
        import socket
        from urllib.parse import urlsplit

        if not self.repo.is_s3:
            return
        parts = urlsplit(self.repo.location[3:])
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            socket.create_connection((parts.hostname or "", port), timeout=timeout).close()
        except OSError as exc:
            raise BackupError(
                f"the restic repository {self.repo.location} is unreachable "
                f"({parts.hostname}:{port}: {exc.strerror or type(exc).__name__}); "
                "check BACKUP_REPOSITORY and the network; nothing was changed"
            ) from None

    def exists(self) -> bool:
        """True when a repository is at the location and BACKUP_PASSWORD opens it."""
        try:
            self.run(["cat", "config"])
        except RepositoryMissing:
            return False
        return True

    def init(self) -> None:
        self.run(["init"])

    def backup(
        self, directory: Path, tags: Sequence[str], host: str, progress: Progress = _quiet
    ) -> dict[str, Any]:
        """Back up ``directory`` (as '.', from inside it); return restic's summary message."""
        last = [0.0]

        def show(message: dict[str, Any]) -> None:
            kind = message.get("message_type")
            if kind == "status" and time.monotonic() - last[0] >= PROGRESS_EVERY:
                last[0] = time.monotonic()
                done = float(message.get("percent_done", 0)) * 100
                progress(
                    f"restic: {done:5.1f}%  {message.get('files_done', 0)}/"
                    f"{message.get('total_files', '?')} files, "
                    f"{human_bytes(float(message.get('bytes_done', 0)))}/"
                    f"{human_bytes(float(message.get('total_bytes', 0)))}"
                )
            elif kind == "error":
                item = message.get("item", "")
                text = (message.get("error") or {}).get("message", "")
                progress(f"restic: error on {item}: {text}")

        args = ["backup", "--host", host]
        for tag in tags:
            args += ["--tag", tag]
        outcome = self.run([*args, str(directory)], cwd=directory, on_message=show)
        summaries = outcome.of_type("summary")
        if not summaries:
            raise BackupError("restic backup ended without a summary; the snapshot is unknown")
        return summaries[-1]

    def snapshots(self, tags: Sequence[str] = (), latest: int = 0) -> list[dict[str, Any]]:
        args = ["snapshots"]
        for tag in tags:
            args += ["--tag", tag]
        if latest:
            args += ["--latest", str(latest)]
        outcome = self.run(args)
        text = outcome.stdout.strip()
        try:
            data = json.loads(text) if text else []
        except ValueError:
            raise BackupError("restic snapshots printed no JSON list") from None
        if isinstance(data, dict):  # grouped output
            data = data.get("snapshots", [])
        return [s for s in data if isinstance(s, dict)]

    def dump(self, snapshot: str, path: str, cap: int) -> bytes:
        """The bytes of one file of a snapshot, at most ``cap`` of them (TooLarge beyond)."""
        if not self._reached:
            self.reachable()
            self._reached = True
        argv = [self.binary, *self.globals(), "dump", snapshot, path]
        with tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(
                    argv,
                    env=self.environment(),
                    stdout=subprocess.PIPE,
                    stderr=err,
                    stdin=subprocess.DEVNULL,
                )
            except OSError as exc:
                raise BackupError(f"cannot run restic ({self.binary}): {exc}") from None
            assert proc.stdout is not None
            watchdog = threading.Timer(self.timeout, proc.kill)
            watchdog.daemon = True
            watchdog.start()
            try:
                data = proc.stdout.read(cap + 1)
                if len(data) > cap:
                    proc.kill()
                proc.stdout.close()
                code = proc.wait()
            finally:
                watchdog.cancel()
            if len(data) > cap:
                raise TooLarge(f"{path} is larger than {cap} bytes")
            err.seek(0)
            stderr = err.read().decode(errors="replace")
        if code != 0:
            self.raise_for("dump", Outcome(code, stderr=stderr))
        return data

    def ls(self, snapshot: str, path: str, on_node: Callable[[dict[str, Any]], None]) -> None:
        """Every node under ``path`` in the snapshot (recursive), handed to ``on_node``."""

        def node(message: dict[str, Any]) -> None:
            if message.get("struct_type") == "node":
                on_node(message)

        self.run(["ls", "--recursive", snapshot, path], on_message=node, keep=False)

    def restore(
        self, snapshot: str, subfolder: str, target: Path, progress: Progress = _quiet
    ) -> dict[str, Any]:
        last = [0.0]

        def show(message: dict[str, Any]) -> None:
            if (
                message.get("message_type") == "status"
                and time.monotonic() - last[0] >= PROGRESS_EVERY
            ):
                last[0] = time.monotonic()
                done = float(message.get("percent_done", 0)) * 100
                progress(
                    f"restic restore: {done:5.1f}%  {message.get('files_restored', 0)}/"
                    f"{message.get('total_files', '?')} files"
                )

        outcome = self.run(
            ["restore", f"{snapshot}:{subfolder}", "--target", str(target)], on_message=show
        )
        summaries = outcome.of_type("summary")
        return summaries[-1] if summaries else {}

    def forget_prune(self, keep: Sequence[str], tags: Sequence[str]) -> Outcome:
        args = ["forget", "--prune", *keep]
        for tag in tags:
            args += ["--tag", tag]
        return self.run(args)

    def check(self, read_data_subset: str = "") -> Outcome:
        args = ["check"]
        if read_data_subset:
            args += ["--read-data-subset", read_data_subset]
        return self.run(args)
