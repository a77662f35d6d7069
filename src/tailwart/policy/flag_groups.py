"""The flags every ``inv acl*`` task shares, as one group, and the merge they run.

A frozen dataclass whose fields are flags (help in the field's metadata), spread into
flags by ``tailwart.cli.operator_task``. Kept light for ``inv --list``: the merge is
imported when it runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class PolicyMerge:
    """--dry-run and --snippet: what to merge, and whether to only show the diff."""

    dry_run: bool = field(
        default=False, metadata={"help": "fetch and print the diff only; write and send nothing"}
    )
    snippet: str = field(
        default="acl-snippet.hujson",
        metadata={"help": "the policy fragment to merge (default acl-snippet.hujson)"},
    )

    def into(
        self,
        *,
        env_file: str = ".env",
        strict: bool = False,
        file: str = "",
        check: bool = False,
        tailscale: bool = False,
        headscale: str | bool = "",
    ) -> None:
        """Check the target flags (exactly one target), then merge into that target."""
        from .apply import run_acl

        run_acl(
            Path.cwd(),
            file=file,
            check=check,
            tailscale=tailscale,
            headscale=headscale,
            dry_run=self.dry_run,
            snippet=self.snippet,
            env_file=env_file,
            strict=strict,
        )
