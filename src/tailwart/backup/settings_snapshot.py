"""Hook: a snapshot of the tailwart-owned Stalwart v0.16 settings, secrets as references.

Under v0.16 the settings objects are rows of the data store, so the Postgres dump
already holds them. A readable copy (the objects tailwart provisions, read over JMAP,
secrets as ``EnvironmentVariable`` references) needs the provisioning package's JMAP
reader, which has not landed: this hook says so in the manifest instead of pretending.
"""

from __future__ import annotations

from typing import Any

from ..settings import Settings

NOT_WIRED = "not-wired"


def tailwart_settings_snapshot(settings: Settings) -> dict[str, Any]:
    """The manifest's ``settings_snapshot`` entry: ``status`` and what it holds.

    Wire this to the v0.16 JMAP reader (issue 10) to return
    ``{"status": "taken", "objects": {...}}`` with secrets as references.
    """
    return {
        "status": NOT_WIRED,
        "detail": "the settings objects are in the Postgres dump (v0.16 keeps them in the "
        "data store); a readable JMAP snapshot needs the provisioning reader (not wired yet)",
    }
