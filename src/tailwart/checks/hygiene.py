"""Secrets and generated files stay out of git (ids ``hygiene.*``).

Advisory for ``inv up`` (``checks.ADVISORY_FOR_UP``): the state of the repository
says nothing about whether the mailbox starts, so its errors are warnings there. A
host without git (a server that only runs the mailbox) gets one warning.
"""

from __future__ import annotations

import shutil
import subprocess
from functools import partial

from ..findings import Finding
from . import CheckContext
from .registry import rules, run_rules

GROUP = "hygiene"
MUST_IGNORE = (".env", "caddy/bin/caddy", "caddy/caddy.json")


def _git(ctx: CheckContext, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(ctx.root), *args], capture_output=True, text=True, check=False
    )


def git(ctx: CheckContext) -> Finding | None:
    """Git and a checkout are there to judge (a gate: without them, one warning)."""
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


def _verdict(rid: str, found: list[str], problem: str, advice: str, fine: str) -> Finding:
    """An error naming what was ``found`` (``problem: a, b``), else ok with ``fine``."""
    if found:
        return Finding.error(rid, f"{problem}: {', '.join(found)}", advice, GROUP)
    return Finding.ok(rid, fine, GROUP)


def ignored(ctx: CheckContext) -> Finding:
    """.env, caddy/bin/ and caddy/caddy.json are ignored by git."""
    return _verdict(
        "hygiene.ignored",
        [p for p in MUST_IGNORE if _git(ctx, "check-ignore", "-q", "--no-index", p).returncode],
        "not ignored by git",
        "add them to .gitignore (.env, caddy/bin/, caddy/caddy.json)",
        ".env, caddy/bin/ and caddy/caddy.json are ignored",
    )


def tracked(ctx: CheckContext) -> Finding:
    """No secret or generated file is tracked by git."""
    listed = _git(ctx, "ls-files", "--", ".env", "caddy/bin", "caddy/caddy.json").stdout
    return _verdict(
        "hygiene.tracked",
        [line for line in listed.splitlines() if line],
        "tracked by git",
        "git rm --cached them (and rotate any secret they held)",
        "no secret or generated file is tracked",
    )


RULES = rules(GROUP, git, ignored, tracked, gates=(git,))
run = partial(run_rules, rules=RULES)
