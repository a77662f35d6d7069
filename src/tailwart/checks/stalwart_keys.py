"""config/config.json holds exactly what Stalwart v0.16 reads at start (ids ``stalwart.*``).

The file is one DataStore object; its fields are checked against the committed
schema extract (``x:PostgreSqlStore`` for the PostgreSql variant) and its password
must be an environment reference, never an inline value.
"""

from __future__ import annotations

import difflib
from functools import partial
from typing import Any

from ..findings import Finding
from . import CONFIG_FILE, CheckContext
from .registry import rules, run_rules

GROUP = "stalwart"


def problems_of(config: Any) -> list[str]:
    """What is wrong with a parsed config.json (empty when nothing is)."""
    from ..stalwart.schema import load
    from ..stalwart.versions import CURRENT

    if not isinstance(config, dict):
        return ["is not one JSON object (Stalwart parses exactly one DataStore)"]
    schema = load()
    variant = config.get("@type")
    variants = schema.variants(CURRENT.data_store)
    if variant not in variants:
        return [f"@type {variant!r} is not a DataStore variant ({', '.join(variants)})"]
    out = []
    if variant != "PostgreSql":
        out.append(f"@type {variant!r}: tailwart's data store is PostgreSql")
    fields = schema.fields(CURRENT.data_store, str(variant))
    for key in sorted(set(config) - {"@type"} - set(fields)):
        near = difflib.get_close_matches(key, sorted(fields), n=1)
        out.append(
            f"{key!r} is not a field of {variant}" + (f" (nearest: {near[0]})" if near else "")
        )
    secret = config.get("authSecret")
    if not isinstance(secret, dict) or secret.get("@type") != "EnvironmentVariable":
        out.append(
            "authSecret is not an EnvironmentVariable reference (a password must never be "
            "written into the file)"
        )
    return out


def config(ctx: CheckContext) -> Finding:
    """config/config.json is the one PostgreSql DataStore .env describes."""
    try:
        config = ctx.stalwart_config
    except ValueError as exc:
        return Finding.error(
            "stalwart.config", f"{CONFIG_FILE} is not JSON ({exc})", "run: inv render", GROUP
        )
    problems = problems_of(config)
    if problems:
        return Finding.error(
            "stalwart.config",
            f"{CONFIG_FILE}: " + "; ".join(problems),
            "re-render it from .env: inv render",
            GROUP,
        )
    from ..stalwart.datastore import data_store

    if config != data_store(ctx.settings):
        return Finding.error(
            "stalwart.config",
            f"{CONFIG_FILE} differs from what .env describes",
            "re-render it: inv render (then inv restart: Stalwart reads it only at start)",
            GROUP,
        )
    return Finding.ok(
        "stalwart.config",
        f"{CONFIG_FILE} is one PostgreSql DataStore matching .env, password by reference",
        GROUP,
    )


RULES = rules(GROUP, config)
run = partial(run_rules, rules=RULES)
