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
from .registry import Rule, run_rules

GROUP = "hygiene"
MUST_IGNORE = (".env", "caddy/bin/caddy", "caddy/caddy.json")


def _git(ctx: CheckContext, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(ctx.root), *args], capture_output=True, text=True, check=False
    )


def git(ctx: CheckContext) -> Finding | None:
    """A gate: without git or a checkout there is nothing to judge (a warning)."""
    if shutil.which("git") is None:
        return Finding.warning(
            "hygiene.git",
            "git is not installed here: repository hygiene was not checked",
            "check on the machine that holds the checkout: `inv check` there",
            GROUP,
        )
    if _git(ctx, "rev-parse", "--is-inside-work-tree").returncode != 0:
        return Finding.warning(
            "hygiene.git",
            f"{ctx.root} is not a git checkout",
            "nothing to check; keep .env and caddy/bin/ out of any VCS",
            GROUP,
        )
    return None


def ignored(ctx: CheckContext) -> Finding:
    not_ignored = [
        p for p in MUST_IGNORE if _git(ctx, "check-ignore", "-q", "--no-index", p).returncode != 0
    ]
    if not_ignored:
        return Finding.error(
            "hygiene.ignored",
            f"not ignored by git: {', '.join(not_ignored)}",
            "add them to .gitignore (.env, caddy/bin/, caddy/caddy.json)",
            GROUP,
        )
    return Finding.ok("hygiene.ignored", ".env, caddy/bin/ and caddy/caddy.json are ignored", GROUP)


def tracked(ctx: CheckContext) -> Finding:
    files = [
        line
        for line in _git(
            ctx, "ls-files", "--", ".env", "caddy/bin", "caddy/caddy.json"
        ).stdout.splitlines()
        if line
    ]
    if files:
        return Finding.error(
            "hygiene.tracked",
            f"tracked by git: {', '.join(files)}",
            "git rm --cached them (and rotate any secret they held)",
            GROUP,
        )
    return Finding.ok("hygiene.tracked", "no secret or generated file is tracked", GROUP)


RULES = (
    Rule("hygiene.git", GROUP, "git and a checkout are there to judge", git, gate=True),
    Rule("hygiene.ignored", GROUP, ".env, caddy/bin/ and caddy/caddy.json are ignored", ignored),
    Rule("hygiene.tracked", GROUP, "no secret or generated file is tracked by git", tracked),
)


def run(ctx: CheckContext) -> list[Finding]:
    return run_rules(ctx, RULES)
