"""The .env contract against the files that consume it (ids ``env.*``)."""

from __future__ import annotations

import contextlib
import re
from functools import partial
from typing import Any

from ..findings import Finding
from ..settings.contract import (
    BY_NAME,
    DERIVED,
    RECOVERY_DERIVED,
    SIDECAR_DERIVED,
    STALWART_ENV,
)
from . import COMPOSE_FILE, CheckContext
from .registry import rules, run_rules

COMPOSE_VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")
#: characters that cannot stand raw in the password part of a redis:// URL
URL_UNSAFE = re.compile(r"[^A-Za-z0-9._~-]")
GROUP = "contract"


def stalwart_references(ctx: CheckContext) -> set[str]:
    """Variables config.json and the provisioned objects read inside the container."""
    from ..errors import UsageError
    from ..stalwart.datastore import env_references, state_env_references
    from ..stalwart.desired import desired_state

    found = env_references(ctx.stalwart_config)
    with contextlib.suppress(UsageError):  # a missing edge address: proxy.trust says so
        found |= state_env_references(desired_state(ctx.settings))
    return found


def _known() -> set[str]:
    """Every variable the contract declares or derives."""
    return set(BY_NAME) | set(DERIVED) | set(SIDECAR_DERIVED) | set(RECOVERY_DERIVED)


def compose_vars(text: str) -> set[str]:
    return set(COMPOSE_VAR.findall(text))


def stalwart_environment(compose: dict[str, Any] | None) -> set[str]:
    """Names in the stalwart service's environment (mapping or list form)."""
    service = ((compose or {}).get("services") or {}).get("stalwart") or {}
    env = service.get("environment") or {}
    if isinstance(env, list):
        return {str(item).split("=", 1)[0] for item in env}
    return set(env)


def macros_declared(ctx: CheckContext) -> Finding:
    """Every variable config.json and the objects reference is declared."""
    used_macros = stalwart_references(ctx)
    undeclared = sorted(used_macros - _known())
    if undeclared:
        return Finding.error(
            "env.macros-declared",
            f"Stalwart reads undeclared variables: {', '.join(undeclared)}",
            "declare them in src/tailwart/settings/contract.py or fix the typo",
            GROUP,
        )
    return Finding.ok(
        "env.macros-declared",
        f"all {len(used_macros)} variables config.json and the objects reference are declared",
        GROUP,
    )


def macros_passed(ctx: CheckContext) -> Finding:
    """Every referenced variable reaches the stalwart container."""
    not_passed = sorted(stalwart_references(ctx) - stalwart_environment(ctx.compose))
    if not_passed:
        return Finding.error(
            "env.macros-passed",
            f"Stalwart references variables its container does not get: "
            f"{', '.join(not_passed)} (the store or route using them would fail)",
            "add them to services.stalwart.environment in compose/docker-compose.yml",
            GROUP,
        )
    return Finding.ok(
        "env.macros-passed", "every referenced variable reaches the stalwart container", GROUP
    )


def example(ctx: CheckContext) -> Finding:
    """.env.example matches the declaration."""
    from ..settings.example import env_example

    text = ctx.text(".env.example") or ""
    example_keys = set(re.findall(r"^#?([A-Z][A-Z0-9_]*)=", text, re.M))
    missing_example = sorted((stalwart_references(ctx) & set(BY_NAME)) - example_keys)
    if missing_example:
        return Finding.error(
            "env.example",
            f".env.example lacks {', '.join(missing_example)}",
            "run: inv env-example",
            GROUP,
        )
    if text != env_example():
        return Finding.error(
            "env.example",
            ".env.example differs from the declaration",
            "run: inv env-example",
            GROUP,
        )
    return Finding.ok("env.example", ".env.example matches the declaration", GROUP)


def compose_declared(ctx: CheckContext) -> Finding:
    """Every variable compose interpolates is declared."""
    in_compose = compose_vars(ctx.text(COMPOSE_FILE) or "")
    bad_compose = sorted(in_compose - _known())
    if bad_compose:
        return Finding.error(
            "env.compose-declared",
            f"compose interpolates undeclared variables: {', '.join(bad_compose)}",
            "declare them in the contract or fix compose/docker-compose.yml",
            GROUP,
        )
    return Finding.ok(
        "env.compose-declared", f"all {len(in_compose)} compose variables are declared", GROUP
    )


def stalwart_set(ctx: CheckContext) -> Finding:
    """The stalwart container gets exactly the contract's STALWART_ENV."""
    passed = stalwart_environment(ctx.compose)
    extra_passed = sorted(passed - set(STALWART_ENV))
    missing_passed = sorted(set(STALWART_ENV) - passed)
    if not (extra_passed or missing_passed):
        return Finding.ok("env.stalwart-set", "the stalwart container gets exactly its keys", GROUP)
    detail = "; ".join(
        filter(
            None,
            [
                f"passed but not meant for Stalwart: {', '.join(extra_passed)}"
                if extra_passed
                else "",
                f"meant for Stalwart but not passed: {', '.join(missing_passed)}"
                if missing_passed
                else "",
            ],
        )
    )
    return Finding.error(
        "env.stalwart-set",
        detail,
        "pass exactly the contract's STALWART_ENV into services.stalwart",
        GROUP,
    )


def redis_url_safe(ctx: CheckContext) -> Finding:
    """STALWART_REDIS_PASSWORD can stand raw in a redis:// URL."""
    password = ctx.settings["STALWART_REDIS_PASSWORD"]
    bad_chars = sorted(set(URL_UNSAFE.findall(password)))
    if bad_chars:
        return Finding.error(
            "env.redis-url-safe",
            f"STALWART_REDIS_PASSWORD holds {len(bad_chars)} kind(s) of character that "
            "break the redis:// URL of the in-memory store",
            "use a URL-safe password (hex: openssl rand -hex 32) and set it in Redis too",
            GROUP,
        )
    return Finding.ok("env.redis-url-safe", "STALWART_REDIS_PASSWORD is URL-safe", GROUP)


RULES = rules(
    GROUP,
    macros_declared,
    macros_passed,
    example,
    compose_declared,
    stalwart_set,
    redis_url_safe,
    prefix="env",
)
run = partial(run_rules, rules=RULES)
