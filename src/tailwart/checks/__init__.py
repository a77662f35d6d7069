"""Static consistency checks (``inv check``): pure reads of the work tree.

Each module listed in ``MODULES`` exposes ``run(ctx) -> list[Finding]``; every
finding carries a stable id (``<module>.<what>``) and one line of advice.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..settings import Settings

if TYPE_CHECKING:
    from .compose_loader import Loaded

#: check modules in report order
MODULES: tuple[str, ...] = (
    "envcontract",
    "proxy",
    "stalwart_keys",
    "compose_rules",
    "tls_files",
    "hygiene",
    "policy",
)

#: groups whose errors never refuse ``inv up`` / ``restart`` (they are printed as warnings):
#: they judge the repository, not whether the mailbox starts
ADVISORY_FOR_UP: frozenset[str] = frozenset({"hygiene"})

COMPOSE_FILE = "compose/docker-compose.yml"
CONFIG_FILE = "config/config.json"
CADDY_FILE = "caddy/caddy.json"
SNIPPET_FILE = "acl-snippet.hujson"


@dataclass(frozen=True)
class CheckContext:
    """What the checks read: validated settings and the files under ``root``."""

    settings: Settings
    root: Path
    #: what the compose loader made of the file; None: not tried (rules then try it)
    compose_loaded: Loaded | None = field(default=None)
    #: the caller renders config/config.json from .env before Stalwart reads it (inv up):
    #: judge what it will write, not a file it is about to replace
    renders_config: bool = False

    @property
    def compose_normalised(self) -> dict[str, Any] | None:
        """The loader's normalised compose document, when a loader accepted the file."""
        return self.compose_loaded.document if self.compose_loaded is not None else None

    def path(self, rel: str) -> Path:
        return self.root / rel

    def text(self, rel: str) -> str | None:
        try:
            return self.path(rel).read_text()
        except FileNotFoundError:
            return None

    @functools.cached_property
    def stalwart_config(self) -> Any:
        """config/config.json parsed if rendered, else what ``inv render`` would write."""
        text = None if self.renders_config else self.text(CONFIG_FILE)
        if text is None:
            from ..stalwart.datastore import config_json

            text = config_json(self.settings)
        return json.loads(text)

    @functools.cached_property
    def caddy_config(self) -> dict[str, Any]:
        """caddy/caddy.json if rendered, else what ``inv render`` would write."""
        text = self.text(CADDY_FILE)
        if text is None:
            from ..edge.render import caddy_json, layout_for

            text = caddy_json(layout_for(self.settings))
        data: dict[str, Any] = json.loads(text)
        return data

    @functools.cached_property
    def compose(self) -> dict[str, Any] | None:
        """The compose document: the loader's normalised form if given, else the raw YAML."""
        if self.compose_normalised is not None:
            return self.compose_normalised
        import yaml

        text = self.text(COMPOSE_FILE)
        if text is None:
            return None
        data = yaml.safe_load(text)
        return data if isinstance(data, dict) else None
