"""Putting a plan into effect: parents first, every refusal a failure, then zero drift."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .desired import Ref
from .jmap import Client, StalwartError
from .plan import CREATE, DELETE, REPLACE, UPDATE, Change, Live, Plan, find
from .schema import Schema


def observe(client: Client, schema: Schema) -> dict[str, list[dict[str, Any]]]:
    """What the server holds of every type tailwart owns."""
    return {t: client.get_all(t, schema.is_singleton(t)) for t in client.model.owned_types()}


def _resolve(value: Any, ids: dict[tuple[str, str], str], live: Live, name: str = "") -> Any:
    """Refs (at any depth) as ids: of objects created in this run, else of live ones."""
    if isinstance(value, Ref):
        if (value.type, value.key) in ids:
            return ids[(value.type, value.key)]
        found = find(live.get(value.type, ()), value.key_field, value.key)
        if found is None:
            raise StalwartError(f"{name}: {value.type} {value.key} does not exist")
        return str(found["id"])
    if isinstance(value, dict):
        return {k: _resolve(v, ids, live, name or k) for k, v in value.items()}
    return value


def write(plan: Plan, client: Client, live: Live, progress: Callable[[str], None]) -> None:
    """Every change, in the plan's order (parents first); deletions last, children first."""
    ids: dict[tuple[str, str], str] = {}
    order = list(client.model.owned_types())
    writes = [c for c in plan.changes if c.action != DELETE]
    deletes = [c for c in plan.changes if c.action == DELETE]
    writes.sort(key=lambda c: order.index(c.type))
    deletes.sort(key=lambda c: -order.index(c.type))
    for change in writes:
        _write_one(change, client, ids, live)
        progress(f"  {change.action} {change.type} {change.key}: done")
        if change.reload_first:
            client.reload()
            progress(f"  reloaded (x:Action {client.model.reload_action}) before what follows")
    for change in deletes:
        client.set(change.type, destroy=[str(change.id)])
        progress(f"  delete {change.type} {change.key}: done")


def _write_one(change: Change, client: Client, ids: dict[tuple[str, str], str], live: Live) -> None:
    fields = _resolve(change.fields, ids, live)
    if change.action == UPDATE:
        if change.reset:
            client.set(change.type, update={str(change.id): dict(change.reset)})
        client.set(change.type, update={str(change.id): fields})
        return
    if change.action == REPLACE:
        client.set(change.type, destroy=[str(change.id)])
    assert change.action in (CREATE, REPLACE)
    result = client.set(change.type, create={"new": fields})
    created = (result.get("created") or {}).get("new") or {}
    if "id" not in created:
        raise StalwartError(f"{change.type}/set created {change.key} without an id")
    ids[(change.type, change.key)] = str(created["id"])
