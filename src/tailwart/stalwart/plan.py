"""Observe → normalise → diff: what must change on the server, and when it takes effect.

Pure. Live objects are compared on the fields tailwart owns only. A polymorphic
value (one with ``@type``) is compared on the keys tailwart sets (the server fills
in the rest from schema defaults); any other value must be equal. A secret is
compared by reference, never by value: reads mask inline secrets as ``****``, so
only ``@type`` and ``variableName``/``filePath`` of a secret field can match.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..masking import hide_jmap_secrets
from .desired import LIVE, RELOAD, RESTART, STRENGTH, Absent, Desired, Ref, State, key_of
from .schema import Schema

CREATE, UPDATE, REPLACE, DELETE = "create", "update", "replace", "delete"
#: what the live server holds: type → its objects, each with its "id"
Live = Mapping[str, Sequence[Mapping[str, Any]]]


@dataclass(frozen=True)
class Change:
    action: str
    type: str
    key: str
    effect: str
    #: the live object's id (update, replace, delete)
    id: str | None = None
    #: desired values of the fields to write (Refs unresolved)
    fields: dict[str, Any] = field(default_factory=dict)
    #: live values of the changed fields (update/replace), for showing the diff
    before: dict[str, Any] = field(default_factory=dict)
    #: values written in a first update, just before ``fields`` (Desired.resets)
    reset: dict[str, Any] = field(default_factory=dict)
    #: reload settings right after this write (Desired.reload_first)
    reload_first: bool = False


#: when a change takes effect, in words
EFFECT_TEXT = {
    LIVE: "takes effect at once",
    RELOAD: "needs ReloadSettings",
    RESTART: "needs a Stalwart restart",
}


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]

    @property
    def effect(self) -> str:
        """What the whole plan needs after it is written: live, reload or restart."""
        effects = [c.effect for c in self.changes] or [LIVE]
        return max(effects, key=STRENGTH.__getitem__)

    def __bool__(self) -> bool:
        return bool(self.changes)

    def describe(self) -> list[str]:
        """The plan as lines for a terminal; secrets and URL passwords masked."""
        if not self:
            return ["no changes: the server holds exactly what .env describes"]
        lines = []
        for c in self.changes:
            lines.append(f"{c.action:7} {c.type} {c.key}  ({EFFECT_TEXT[c.effect]})")
            if c.action in (UPDATE, REPLACE):
                for name, want in c.fields.items():
                    if c.action == REPLACE and name not in c.before:
                        continue
                    old = json.dumps(shown(c.before.get(name)), sort_keys=True)
                    new = json.dumps(shown(want), sort_keys=True, default=str)
                    via = ""
                    if name in c.reset:
                        via = f" (via {json.dumps(c.reset[name], sort_keys=True)})"
                    lines.append(f"          {name}: {old} → {new}{via}")
            elif c.action == CREATE:
                lines.append(
                    f"          {json.dumps(shown(c.fields), sort_keys=True, default=str)}"
                )
        lines.append(f"after writing: {EFFECT_TEXT[self.effect]}")
        return lines

    def to_json(self) -> dict[str, Any]:
        """The plan as data (``--json``): ``effect`` and ``changes``; secrets masked."""
        return {
            "effect": self.effect,
            "changes": [
                {
                    "action": c.action,
                    "type": c.type,
                    "key": c.key,
                    "id": c.id,
                    "effect": c.effect,
                    "fields": shown(c.fields),
                    "before": shown(c.before),
                    "reset": shown(c.reset),
                }
                for c in self.changes
            ],
        }


def _ref_text(value: Any) -> Any:
    return f"<id of {value.type} {value.key}>" if isinstance(value, Ref) else value


def shown(value: Any) -> Any:
    """A plan value for printing: secrets masked (``masking.hide_jmap_secrets``), a
    reference to another object as ``<id of TYPE KEY>``."""
    return hide_jmap_secrets(value, _ref_text)


def _as_map(value: Any) -> Any:
    """JMAP object lists come back as {"0": …, "1": …}: compare lists in that form."""
    if isinstance(value, list):
        return {str(i): _as_map(v) for i, v in enumerate(value)}
    if isinstance(value, Mapping):
        return {k: _as_map(v) for k, v in value.items()}
    return value


def same(want: Any, have: Any, secret: bool = False) -> bool:
    """Whether the live value ``have`` satisfies the desired ``want``."""
    want, have = _as_map(want), _as_map(have)
    if isinstance(want, Mapping) and "@type" in want:
        if not isinstance(have, Mapping) or have.get("@type") != want["@type"]:
            return False
        if secret and want["@type"] == "Value":
            return False  # an inline secret cannot be compared: always rewrite it
        return all(same(v, have.get(k)) for k, v in want.items())
    if want is None:
        return have is None or have == {"@type": "None"}
    return bool(want == have)


def networks(value: Any) -> Any:
    """A set of IP networks as comparable networks ("10.0.0.1" and "10.0.0.1/32" are one)."""
    if not isinstance(value, Mapping):
        return value
    try:
        return {ipaddress.ip_network(k, strict=False): v for k, v in value.items()}
    except ValueError:
        return value


def _resolve(value: Any, live: Live) -> Any:
    """``value`` with every Ref (at any depth) replaced by the live object's id; a Ref
    that matches nothing stays a Ref."""
    if isinstance(value, Ref):
        found = find(live.get(value.type, ()), value.key_field, value.key)
        return found["id"] if found else value
    if isinstance(value, Mapping):
        return {k: _resolve(v, live) for k, v in value.items()}
    return value


def find(
    objects: Sequence[Mapping[str, Any]], key_field: str, key: str
) -> Mapping[str, Any] | None:
    """The object whose ``key_field`` (a dotted path) is ``key``."""
    for obj in objects:
        if key_of(obj, key_field) == key:
            return obj
    return None


def _variant(schema: Schema, item: Desired, obj: Mapping[str, Any] | None) -> str | None:
    if schema.variants(item.type):
        return str(item.fields.get("@type") or (obj or {}).get("@type"))
    return None


def _diff_one(item: Desired, live: Live, schema: Schema) -> Change | None:
    objects = live.get(item.type, ())
    if item.key_field is None:
        obj = objects[0] if objects else None
    else:
        obj = find(objects, item.key_field, item.key)
    if obj is None:
        fields = dict(item.fields)
        if item.key_field is None:
            # a singleton always exists: write every owned field
            return Change(UPDATE, item.type, item.key, item.effect, item.key, fields)
        return Change(
            CREATE, item.type, item.key, item.effect, None, fields, reload_first=item.reload_first
        )
    fields = schema.fields(item.type, _variant(schema, item, obj))
    changed = {}
    for name, want in item.fields.items():
        have, spec = obj.get(name), fields.get(name)
        if spec is not None and spec.networks and networks(want) == networks(have):
            continue
        if not same(_resolve(want, live), have, spec is not None and spec.secret):
            changed[name] = want
    if not changed:
        return None
    before = {name: obj.get(name) for name in changed}
    immutable = [n for n in changed if n in fields and fields[n].update == "immutable"]
    if immutable and item.key_field is not None:
        return Change(
            REPLACE,
            item.type,
            item.key,
            item.effect,
            str(obj["id"]),
            dict(item.fields),
            before,
            reload_first=item.reload_first,
        )
    reset = {
        name: value
        for name, value in item.resets.items()
        if name in changed and not same(value, obj.get(name))
    }
    return Change(
        UPDATE,
        item.type,
        item.key,
        item.effect_of(set(changed)),
        str(obj["id"]),
        changed,
        before,
        reset,
        item.reload_first,
    )


def diff(state: State, live: Live, schema: Schema) -> Plan:
    """The changes that make ``live`` hold ``state``; nothing else is touched."""
    changes: list[Change] = []
    for item in state:
        if isinstance(item, Absent):
            for obj in live.get(item.type, ()):
                if key_of(obj, item.key_field) == item.key:
                    changes.append(Change(DELETE, item.type, item.key, item.effect, str(obj["id"])))
            continue
        change = _diff_one(item, live, schema)
        if change is not None:
            changes.append(change)
    return Plan(tuple(changes))


__all__ = ["CREATE", "DELETE", "REPLACE", "RESTART", "UPDATE", "Change", "Plan", "diff"]
