"""Secrets and generated files stay out of git (ids ``hygiene.*``).

Advisory for ``inv up`` (``checks.ADVISORY_FOR_UP``): the state of the repository
says nothing about whether the mailbox starts, so its errors are warnings there. A
host without git (a server that only runs the mailbox) gets one warning.
"""

from __future__ import annotations

import shutil
import subprocess

from ..findings import Finding
from . import CheckContext

G = "hygiene"
MUST_IGNORE = (".env", "caddy/bin/caddy", "caddy/caddy.json")


def _git(ctx: CheckContext, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(ctx.root), *args], capture_output=True, text=True, check=False
    )


def run(ctx: CheckContext) -> list[Finding]:
    if shutil.which("git") is None:
        return [
            Finding.warning(
                "hygiene.git",
                "git is not installed here: repository hygiene was not checked",
                "check on the machine that holds the checkout: `inv check` there",
                G,
            )
        ]
    if _git(ctx, "rev-parse", "--is-inside-work-tree").returncode != 0:
        return [
            Finding.warning(
                "hygiene.git",
                f"{ctx.root} is not a git checkout",
                "nothing to check; keep .env and caddy/bin/ out of any VCS",
                G,
            )
        ]
    not_ignored = [
        p for p in MUST_IGNORE if _git(ctx, "check-ignore", "-q", "--no-index", p).returncode != 0
    ]
    tracked = [
        line
        for line in _git(
            ctx, "ls-files", "--", ".env", "caddy/bin", "caddy/caddy.json"
        ).stdout.splitlines()
        if line
    ]
    out = []
    if not_ignored:
        out.append(
            Finding.error(
                "hygiene.ignored",
                f"not ignored by git: {', '.join(not_ignored)}",
                "add them to .gitignore (.env, caddy/bin/, caddy/caddy.json)",
                G,
            )
        )
    else:
        out.append(
            Finding.ok("hygiene.ignored", ".env, caddy/bin/ and caddy/caddy.json are ignored", G)
        )
    if tracked:
        out.append(
            Finding.error(
                "hygiene.tracked",
                f"tracked by git: {', '.join(tracked)}",
                "git rm --cached them (and rotate any secret they held)",
                G,
            )
        )
    else:
        out.append(Finding.ok("hygiene.tracked", "no secret or generated file is tracked", G))
    return out
