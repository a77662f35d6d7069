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

from ..settings import Settings
from ..settings.contract import KEYS

ENV_VAR = "TAILWART_RECORD_JMAP"


def scrubbed(name: str) -> str:
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
                found[value] = scrubbed(key.name)
                found[quote(value, safe="")] = scrubbed(key.name)
                # name:password keys: the password alone travels too
                if ":" in value:
                    found[value.partition(":")[2]] = scrubbed(key.name + "_PASSWORD")
        return cls(path, found)

    def scrub(self, value: Any) -> Any:
        text = json.dumps(value, sort_keys=True)
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, self.secrets[secret])
        return json.loads(text)

    def __call__(self, exchange: dict[str, Any]) -> None:
        with self.path.open("a") as out:
            out.write(json.dumps(self.scrub(exchange), sort_keys=True) + "\n")
