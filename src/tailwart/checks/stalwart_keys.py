"""Every key in config.toml is one the pinned Stalwart reads (ids ``stalwart.*``).

The key set is v0.13–v0.15's, as verified in ../shared/reference/stalwart.md,
plus the ``tracer.<id>`` keys from Stalwart's logging documentation. ``*`` is
one id segment (a listener, store, route or tracer name).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Any

from ..findings import Finding
from . import CheckContext

G = "stalwart"

COMMON: frozenset[str] = frozenset(
    {
        "server.hostname",
        "server.proxy.trusted-networks",
        "server.listener.*.bind",
        "server.listener.*.protocol",
        "server.listener.*.tls.implicit",
        "server.listener.*.proxy.trusted-networks",
        "storage.data",
        "storage.fts",
        "storage.blob",
        "storage.lookup",
        "storage.directory",
        "store.*.type",
        "directory.*.type",
        "directory.*.store",
        "authentication.fallback-admin.user",
        "authentication.fallback-admin.secret",
        "queue.strategy.route",
        "queue.route.*.type",
        "queue.route.*.address",
        "queue.route.*.port",
        "queue.route.*.protocol",
        "queue.route.*.auth.username",
        "queue.route.*.auth.secret",
        "queue.route.*.tls.implicit",
        "queue.route.*.tls.allow-invalid-certs",
        "tracer.*.type",
        "tracer.*.level",
        "tracer.*.ansi",
        "tracer.*.enable",
    }
)

#: keys valid under ``store.<id>.`` per store type
STORE_KEYS: dict[str, frozenset[str]] = {
    "postgresql": frozenset(
        {
            "host",
            "port",
            "database",
            "user",
            "password",
            "timeout",
            "options",
            "pool.max-connections",
            "tls.enable",
            "tls.allow-invalid-certs",
        }
    ),
    "s3": frozenset(
        {
            "bucket",
            "region",
            "endpoint",
            "access-key",
            "secret-key",
            "key-prefix",
            "timeout",
            "max-retries",
        }
    ),
    "redis": frozenset({"redis-type", "urls", "timeout", "pool.max-connections"}),
}
PROTOCOLS = frozenset({"smtp", "lmtp", "imap", "http", "https", "managesieve", "pop3"})
ROUTE_TYPES = frozenset({"relay", "local", "mx"})


def flatten(data: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Dotted keys of a TOML document; arrays and scalars are leaves."""
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from flatten(value, f"{path}.")
        else:
            yield path, value


def pattern_of(key: str) -> str:
    """The key with its id segment replaced by ``*`` (where the schema has one)."""
    parts = key.split(".")
    for head, index in (
        ("server.listener", 2),
        ("store", 1),
        ("directory", 1),
        ("queue.route", 2),
        ("tracer", 1),
    ):
        if key.startswith(head + ".") and len(parts) > index:
            parts[index] = "*"
            break
    return ".".join(parts)


def _valid(key: str, config: dict[str, Any]) -> bool:
    pattern = pattern_of(key)
    if pattern in COMMON:
        return True
    parts = key.split(".")
    if parts[0] == "store" and len(parts) > 2:
        kind = config.get("store", {}).get(parts[1], {}).get("type")
        return ".".join(parts[2:]) in STORE_KEYS.get(str(kind), frozenset())
    return False


def _nearest(key: str, config: dict[str, Any]) -> str:
    candidates = set(COMMON)
    parts = key.split(".")
    if parts[0] == "store" and len(parts) > 2:
        kind = config.get("store", {}).get(parts[1], {}).get("type")
        candidates |= {f"store.*.{k}" for k in STORE_KEYS.get(str(kind), frozenset())}
    close = difflib.get_close_matches(pattern_of(key), sorted(candidates), n=1, cutoff=0.0)
    return close[0] if close else "?"


def run(ctx: CheckContext) -> list[Finding]:
    config = ctx.stalwart_config
    if config is None:
        return [
            Finding.error(
                "stalwart.keys", "config/config.toml is missing", "restore it from git", G
            )
        ]
    out: list[Finding] = []
    keys = list(flatten(config))
    unknown = [k for k, _ in keys if not _valid(k, config)]
    if unknown:
        detail = "; ".join(f"{k} (nearest valid: {_nearest(k, config)})" for k in unknown)
        out.append(
            Finding.error(
                "stalwart.keys",
                f"keys the pinned Stalwart does not read: {detail}",
                "rename or remove them: v0.15 ignores unknown keys silently",
                G,
            )
        )
    else:
        out.append(
            Finding.ok("stalwart.keys", f"all {len(keys)} keys are valid for v0.13–v0.15", G)
        )

    problems: list[str] = []
    stores = config.get("store", {})
    for kind, target in config.get("storage", {}).items():
        if kind == "directory":
            if target not in config.get("directory", {}):
                problems.append(f"storage.directory names missing directory {target!r}")
        elif target not in stores:
            problems.append(f"storage.{kind} names missing store {target!r}")
    for did, directory in config.get("directory", {}).items():
        if directory.get("type") == "internal" and directory.get("store") not in stores:
            problems.append(f"directory.{did}.store names missing store {directory.get('store')!r}")
    for sid, store in stores.items():
        if store.get("type") not in STORE_KEYS:
            problems.append(f"store.{sid}.type {store.get('type')!r} is not one tailwart renders")
    for lid, listener in config.get("server", {}).get("listener", {}).items():
        if listener.get("protocol") not in PROTOCOLS:
            problems.append(
                f"server.listener.{lid}.protocol {listener.get('protocol')!r} is unknown"
            )
    for rid, route in config.get("queue", {}).get("route", {}).items():
        if route.get("type") not in ROUTE_TYPES:
            problems.append(f"queue.route.{rid}.type {route.get('type')!r} is unknown")
        if route.get("type") == "relay" and "implicit" not in route.get("tls", {}):
            problems.append(
                f"queue.route.{rid}.tls.implicit is unset (defaults to true: a "
                "587/STARTTLS relay fails)"
            )
    if "in-memory" in config.get("storage", {}):
        problems.append("storage.in-memory is not a TOML key; use storage.lookup")
    if problems:
        out.append(
            Finding.error("stalwart.references", "; ".join(problems), "fix config/config.toml", G)
        )
    else:
        out.append(
            Finding.ok(
                "stalwart.references",
                "storage selectors, stores, listeners and routes are consistent",
                G,
            )
        )
    return out
