"""Stalwart's object schema: the committed extract of the types tailwart owns.

``extract`` cuts the types tailwart provisions (and every type their fields name)
out of upstream's full ``schema.json``; the result is committed beside this module
as ``schema-<version>.json`` and a test regenerates it from the full schema file.
At run time only the extract is read.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from .versions import CURRENT, Model

#: the full-schema sections the extract keeps (objects: kind; schemas: variants; fields)
SECTIONS = ("objects", "schemas", "fields")
#: enums the extract keeps: the permission names a role grants
ENUMS = ("Permission",)
#: schema names whose values are secrets (read back masked as "****")
SECRET_OBJECTS = frozenset({"x:SecretKey", "x:SecretKeyOptional", "x:SecretText"})


def _referenced(full: dict[str, Any], name: str, seen: set[str]) -> None:
    """Collect ``name`` and every schema its variants or fields name, recursively."""
    if name in seen:
        return
    seen.add(name)
    schema = full["schemas"].get(name) or {}
    children = [v.get("schemaName") for v in schema.get("variants", [])]
    children.append(schema.get("schemaName"))
    for child in filter(None, children):
        if child != name:
            _referenced(full, str(child), seen)
        for field in (full["fields"].get(child) or {}).get("properties", {}).values():
            target = field.get("type", {}).get("objectName")
            if target and field.get("type", {}).get("type") in ("object", "objectList"):
                _referenced(full, str(target), seen)


def extract(full: dict[str, Any], model: Model = CURRENT) -> dict[str, Any]:
    """The part of the full schema that describes the types ``model`` owns."""
    names: set[str] = set()
    for owned in (*model.write_order(), *model.management_types(), model.data_store):
        _referenced(full, owned, names)
    out: dict[str, Any] = {"version": model.version, "schemaHash": model.schema_hash}
    for section in SECTIONS:
        out[section] = {k: full[section][k] for k in sorted(names) if k in full[section]}
    out["enums"] = {name: full["enums"][name] for name in ENUMS}
    return out


def render_extract(full: dict[str, Any], model: Model = CURRENT) -> str:
    """The committed file's exact text (sorted keys, stable indentation)."""
    return json.dumps(extract(full, model), indent=1, sort_keys=True) + "\n"


@dataclass(frozen=True)
class Field:
    name: str
    update: str  # mutable | immutable | serverSet
    secret: bool
    #: a set of IP networks: the server stores a host network without its /32 or /128
    networks: bool = False


class Schema:
    """Questions the planner asks of the extract."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def is_singleton(self, type_name: str) -> bool:
        return bool(self.data["objects"][type_name]["type"] == "singleton")

    def variant_schema(self, type_name: str, variant: str | None) -> str | None:
        """The schema holding the fields of ``type_name`` (for ``variant`` if it has several)."""
        schema = self.data["schemas"][type_name]
        if schema["type"] == "single":
            return str(schema["schemaName"])
        for item in schema["variants"]:
            if item["name"] == variant:
                name = item.get("schemaName")
                return str(name) if name else None
        raise KeyError(f"{type_name} has no variant {variant!r}")

    def variants(self, type_name: str) -> tuple[str, ...]:
        schema = self.data["schemas"][type_name]
        return tuple(v["name"] for v in schema.get("variants", []))

    def fields(self, type_name: str, variant: str | None = None) -> dict[str, Field]:
        schema = self.variant_schema(type_name, variant)
        props = (self.data["fields"].get(schema) or {}).get("properties", {}) if schema else {}
        return {
            name: Field(
                name,
                str(p.get("update", "mutable")),
                _is_secret(p.get("type", {})),
                _is_networks(p.get("type", {})),
            )
            for name, p in props.items()
        }

    def permissions(self) -> frozenset[str]:
        """Every permission name a role may grant."""
        return frozenset(str(v["name"]) for v in self.data["enums"]["Permission"])

    def permission_prefix(self, type_name: str) -> str:
        """The prefix of a type's permissions (``x:Domain`` → ``sysDomain``)."""
        return str(self.data["objects"][type_name]["permissionPrefix"])

    def defaults(self, type_name: str, variant: str | None = None) -> dict[str, Any]:
        schema = self.variant_schema(type_name, variant)
        found = (self.data["fields"].get(schema) or {}).get("defaults", {}) if schema else {}
        return dict(found)


def _is_networks(type_: dict[str, Any]) -> bool:
    return type_.get("type") == "set" and type_.get("class", {}).get("format") == "ipNetwork"


def _is_secret(type_: dict[str, Any]) -> bool:
    if type_.get("type") == "string" and type_.get("format") == "secret":
        return True
    return type_.get("type") == "object" and type_.get("objectName") in SECRET_OBJECTS


@functools.cache
def load(model: Model = CURRENT) -> Schema:
    """The committed extract for ``model``."""
    text = resources.files(__package__).joinpath(model.extract).read_text()
    return Schema(json.loads(text))
