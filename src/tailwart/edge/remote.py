"""The SSH adapter of an edge host: runs commands and uploads files, never hangs.

A watchdog closes the transport when nothing moves for the I/O timeout (paramiko would
otherwise retry a blocked write forever). The commands themselves are built in
``commands``.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import OperationError

if TYPE_CHECKING:
    from fabric import Connection


def _link_errors() -> tuple[type[BaseException], ...]:
    """What a transfer raises when its link goes: socket errors, EOF, and paramiko's
    SSHException ("Server connection dropped", what the watchdog's close causes)."""
    from paramiko import SSHException

    return (EOFError, OSError, SSHException)


class RemoteError(OperationError):
    """A remote command failed."""


@dataclass
class Counters:
    """What went over the wire through this adapter (bytes of file content, commands)."""

    bytes_sent: int = 0
    commands: list[str] = field(default_factory=list)


class LinkStalled(ConnectionError):
    """Nothing moved on the SSH link for longer than the I/O timeout."""


class _Watchdog:
    """Closes the SSH transport when nothing moved for ``timeout`` seconds.

    paramiko retries a blocked socket write forever; closing the transport from another
    thread is what makes the stalled call raise.
    """

    def __init__(self, conn: Any, timeout: float) -> None:
        self.conn = conn
        self.timeout = timeout
        self.last = time.monotonic()
        self.fired = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def tick(self) -> None:
        self.last = time.monotonic()

    def _watch(self) -> None:
        while not self._done.wait(min(1.0, self.timeout / 4)):
            if time.monotonic() - self.last > self.timeout:
                self.fired = True
                transport = self.conn.client.get_transport()
                if transport is not None:
                    transport.close()
                return

    def __enter__(self) -> _Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()


class Remote:
    """Runs commands and uploads files on one host over an open Fabric connection.

    Every command and every transfer is bounded by ``io_timeout`` seconds, so a link
    that silently stops carrying packets fails the host instead of hanging the rollout.
    """

    def __init__(self, conn: Connection, label: str, io_timeout: float = 60.0) -> None:
        self.conn = conn
        self.label = label
        self.io_timeout = io_timeout
        self.counters = Counters()
        self._sftp: Any = None

    def _stalled(self, what: str) -> LinkStalled:
        return LinkStalled(f"{self.label}: {what}: nothing moved for {self.io_timeout:g} s")

    def run(self, command: str, *, check: bool = True, what: str = "") -> Any:
        """Run ``command``; raise RemoteError with its output when it fails and ``check``."""
        from invoke.exceptions import CommandTimedOut

        self.counters.commands.append(command)
        what = what or "remote command"
        # Fabric's own timeout first; the watchdog (a little later) if even that cannot return
        with _Watchdog(self.conn, self.io_timeout + 5) as dog:
            try:
                result = self.conn.run(
                    command, hide=True, warn=True, in_stream=False, timeout=self.io_timeout
                )
            except CommandTimedOut:
                raise self._stalled(what) from None
            except (EOFError, OSError) as exc:
                if dog.fired:
                    raise self._stalled(what) from None
                raise LinkStalled(f"{self.label}: {what}: {exc or type(exc).__name__}") from exc
        if result.exited == -1 and not self.conn.is_connected:
            # no exit status, the transport gone: the link dropped while the command ran
            raise LinkStalled(f"{self.label}: {what}: the SSH link dropped before it finished")
        if check and result.exited != 0:
            out = (result.stdout + result.stderr).strip()
            tail = "\n".join(out.splitlines()[-8:])
            raise RemoteError(f"{self.label}: {what} failed: {tail}")
        return result

    def sftp(self) -> Any:
        if self._sftp is None:
            self._sftp = self.conn.sftp()
            self._sftp.get_channel().settimeout(self.io_timeout)
        return self._sftp

    def put_file(
        self, local: str, remote: str, progress: Callable[[int, int], None] | None = None
    ) -> None:
        """Upload a file (SFTP), reporting progress; a stalled link raises LinkStalled."""
        sent = 0
        with _Watchdog(self.conn, self.io_timeout) as dog:

            def callback(done: int, total: int) -> None:
                nonlocal sent
                sent = done
                dog.tick()
                if progress is not None:
                    progress(done, total)

            try:
                self.sftp().put(local, remote, callback=callback, confirm=True)
            except _link_errors() as exc:
                if dog.fired:
                    raise self._stalled(f"upload of {remote}") from None
                raise LinkStalled(f"{self.label}: upload of {remote}: {exc!r}") from exc
            finally:
                self.counters.bytes_sent += sent

    def put_text(self, text: str, remote: str) -> None:
        data = text.encode()
        with _Watchdog(self.conn, self.io_timeout) as dog:
            try:
                self.sftp().putfo(io.BytesIO(data), remote, file_size=len(data), confirm=True)
            except _link_errors() as exc:
                if dog.fired:
                    raise self._stalled(f"upload of {remote}") from None
                raise LinkStalled(f"{self.label}: upload of {remote}: {exc!r}") from exc
        self.counters.bytes_sent += len(data)

    def close(self, wait: float = 5.0) -> None:
        """Close the SFTP session and the connection; never hang on a dead link."""

        def _close() -> None:
            try:
                if self._sftp is not None:
                    self._sftp.close()
            finally:
                self.conn.close()

        closer = threading.Thread(target=_close, daemon=True)
        closer.start()
        closer.join(wait)
