"""What the operator sees of a rollout: each host's result, the report table, the upload bar."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

from .health import PortCheck
from .plan import Plan


@dataclass
class HostResult:
    host: str
    #: deployed | unchanged | planned | rolled-back | failed | skipped | ok | refused
    status: str
    release: str = ""
    action: str = ""
    detail: str = ""
    bytes_sent: int = 0
    seconds: float = 0.0
    plan: Plan | None = None
    commands: list[str] = field(default_factory=list)
    checks: list[PortCheck] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "rolled-back", "refused")


def _fmt_bytes(n: int) -> str:
    return f"{n / 1048576:.1f} MiB" if n >= 1 << 20 else f"{n / 1024:.1f} KiB"


def report(results: Sequence[HostResult], title: str = "deploy") -> str:
    """The per-host table printed at the end of every rollout."""
    width = max([len(r.host) for r in results] + [4])
    lines = [
        f"{title} report:",
        f"  {'host':<{width}}  {'result':<11} {'release':<16}  "
        f"{'action':<13} {'sent':>9}  {'time':>6}",
    ]
    for r in results:
        lines.append(
            f"  {r.host:<{width}}  {r.status:<11} {r.release or '-':<16}  {r.action or '-':<13} "
            f"{_fmt_bytes(r.bytes_sent):>9}  {r.seconds:5.1f}s"
        )
        if r.detail and r.status not in ("deployed", "unchanged", "planned", "ok"):
            lines += [f"    {line}" for line in r.detail.splitlines()]
    return "\n".join(lines)


class Progress:
    """A progress bar for the binary upload (a single summary line when not a terminal)."""

    def __init__(self, label: str, stream: TextIO, enabled: bool) -> None:
        from ..masking import terminal

        self.label = label
        # the bar redraws its line with a carriage return: it writes to the terminal
        # itself (its text is a host label and numbers), not through cli's LineStream
        self.stream = terminal(stream)
        self.tty = enabled and self.stream.isatty()
        self.start = time.monotonic()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.tty or (now - self.last < 0.1 and done < total):
            return
        self.last = now
        width = 30
        filled = int(width * done / total) if total else width
        self.stream.write(
            f"\r  {self.label} [{'#' * filled}{'.' * (width - filled)}] "
            f"{done / 1048576:5.1f}/{total / 1048576:.1f} MiB"
        )
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()

    def summary(self, size: int) -> str:
        secs = max(time.monotonic() - self.start, 1e-6)
        return (
            f"uploaded {size / 1048576:.1f} MiB in {secs:.1f} s ({size / 1048576 / secs:.1f} MiB/s)"
        )
