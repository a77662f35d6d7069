"""A readable snapshot of the Stalwart v0.16 settings objects tailwart owns.

Under v0.16 those objects are rows of the data store, so the Postgres dump already
holds them; this copy is for people: every owned type as the server returns it over
JMAP (``x:<Type>/get``), which masks secret values as ``****`` and names secret
references (``EnvironmentVariable``) rather than resolving them. A mailbox that cannot
be reached does not stop a backup: the snapshot says so, and the dump still holds the
objects.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import TailwartError
from ..flags import printable
from ..settings import Settings
from ..stalwart.jmap import Transport

NOT_TAKEN = "not-taken"


def _not_taken(url: str, reason: str) -> dict[str, Any]:
    return {
        "status": NOT_TAKEN,
        "detail": f"{url}: {printable(reason, 300)} (the Postgres dump still holds the objects)",
    }


def tailwart_settings_snapshot(
    settings: Settings, *, dry_run: bool = False, transport: Transport | None = None
) -> dict[str, Any]:
    """The manifest's ``settings_snapshot`` entry: ``status`` and what it holds."""
    from ..masking import hide_jmap_secrets, hide_secrets, hide_secrets_in_tree, secret_values
    from ..stalwart.apply import observe
    from ..stalwart.provision import client_for, management_url

    url = management_url(settings)
    secrets = secret_values(settings)
    if dry_run:
        return {"status": "planned", "detail": f"would read the owned objects from {url}"}
    try:
        from ..stalwart.schema import load

        client = client_for(settings, transport)
        model = client.check_schema()
        live = observe(client, load(model))
        if not all(isinstance(obj, dict) for found in live.values() for obj in found):
            return _not_taken(url, "the server answered objects that are not JSON objects")
        objects = {name: hide_jmap_secrets(found) for name, found in sorted(live.items())}
        json.dumps(objects)  # what goes into the manifest must serialise
    except TailwartError as exc:
        return _not_taken(url, hide_secrets(str(exc), secrets))
    except Exception as exc:  # an answer of the wrong shape is the server's input, not a bug
        return _not_taken(url, f"the server's answer could not be read ({type(exc).__name__})")
    objects = {name: hide_secrets_in_tree(found, secrets) for name, found in objects.items()}
    return {
        "status": "taken",
        "schema": model.version,
        "url": url,
        "count": sum(len(found) for found in objects.values()),
        "objects": objects,
    }
