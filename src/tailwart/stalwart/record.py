"""Recording the JMAP exchanges of a run (``TAILWART_RECORD_JMAP=<file>``), secrets scrubbed.

The live suite sets it to keep the real server's answers as test fixtures; every
secret value of ``.env`` is replaced by ``scrubbed-<KEY>`` before a line is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..masking import replace_secrets
from ..settings import Settings
from ..settings.contract import KEYS

ENV_VAR = "TAILWART_RECORD_JMAP"


def placeholder(name: str) -> str:
    """What a recorded fixture holds in place of the secret of key ``name`` (the fixtures'
    format: ``scrubbed-<KEY>``)."""
    return f"scrubbed-{name}"


@dataclass
class Recorder:
    path: Path
    secrets: dict[str, str]

    @classmethod
    def for_settings(cls, path: Path, settings: Settings) -> Recorder:
        found = {}
        for key in KEYS:
            value = settings[key.name]
            if key.secret and value:
                found[value] = placeholder(key.name)
                found[quote(value, safe="")] = placeholder(key.name)
                # name:password keys: the password alone travels too
                if ":" in value:
                    found[value.partition(":")[2]] = placeholder(key.name + "_PASSWORD")
        return cls(path, found)

    def __call__(self, exchange: dict[str, Any]) -> None:
        with self.path.open("a") as out:
            out.write(json.dumps(replace_secrets(exchange, self.secrets), sort_keys=True) + "\n")
