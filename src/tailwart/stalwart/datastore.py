"""``config/config.json``: Stalwart v0.16's startup file, the DataStore and nothing else.

Rendered from ``.env`` by ``inv render`` (and ``inv up``); the password is an
environment reference the container resolves, so the file holds no secret.
"""

from __future__ import annotations

import json
from typing import Any

from ..settings import Settings
from .desired import Absent, Desired, State

CONFIG_FILE = "config/config.json"
ENV_DB_PASSWORD = "STALWART_DB_PASSWORD"


def data_store(settings: Settings) -> dict[str, Any]:
    """The one PostgreSql DataStore object (fields as in the schema's x:PostgreSqlStore)."""
    return {
        "@type": "PostgreSql",
        "host": settings["STALWART_DB_HOST"],
        "port": settings.port("STALWART_DB_PORT"),
        "database": settings["STALWART_DB_NAME"],
        "authUsername": settings["STALWART_DB_USER"],
        "authSecret": {"@type": "EnvironmentVariable", "variableName": ENV_DB_PASSWORD},
    }


def config_json(settings: Settings) -> str:
    """The file's exact text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(data_store(settings), indent=2, sort_keys=True) + "\n"


def env_references(value: Any) -> set[str]:
    """Every ``variableName`` an EnvironmentVariable reference in ``value`` names."""
    if isinstance(value, dict):
        found = (
            {str(value["variableName"])}
            if value.get("@type") == "EnvironmentVariable" and "variableName" in value
            else set()
        )
        return found.union(*(env_references(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(env_references(v) for v in value))
    return set()


def state_env_references(state: State) -> set[str]:
    """Environment variables the provisioned objects read inside the container."""
    return set().union(
        *(env_references(item.fields) for item in state if isinstance(item, Desired)),
        *(set() for item in state if isinstance(item, Absent)),
    )
