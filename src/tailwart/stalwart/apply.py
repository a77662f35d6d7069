"""Putting a plan into effect: parents first, every refusal a failure, then zero drift."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .desired import Absent, Desired, Ref, State
from .jmap import Client, StalwartError
from .plan import CREATE, DELETE, REPLACE, UPDATE, Change, Live, Plan, find
from .schema import Schema
from .versions import Model


def observed_types(model: Model, state: Sequence[Desired | Absent] = ()) -> tuple[str, ...]:
    """Every type tailwart owns, and the cluster types when ``state`` declares one."""
    wanted = {item.type for item in state}
    return (*model.owned_types(), *(t for t in model.cluster_types() if t in wanted))


def observe(
    client: Client, schema: Schema, state: Sequence[Desired | Absent] = ()
) -> dict[str, list[dict[str, Any]]]:
    """What the server holds of every type tailwart owns (of the cluster types, only those
    ``state`` declares: a single node's requests are what they were before clusters)."""
    types = observed_types(client.model, state)
    return {t: _get_all(client, schema, t) for t in types}


def _refused(message: str) -> bool:
    return any(word in message.lower() for word in ("forbidden", "permission"))


def _get_all(client: Client, schema: Schema, type_: str) -> list[dict[str, Any]]:
    try:
        return client.get_all(type_, schema.is_singleton(type_))
    except StalwartError as exc:
        if type_ in client.model.cluster_types() and _refused(str(exc)):
            raise StalwartError(
                f"{type_}: the management login may not read it (its role predates several "
                "nodes) → `inv recover` writes the login's role again, with the cluster "
                "types, then run `inv provision` again"
            ) from exc
        raise


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
    order = list(client.model.write_order())
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


def started_work(plan: Plan, state: State) -> list[tuple[Desired, str]]:
    """(desired, field) pairs whose write in ``plan`` made Stalwart start work on the
    Manual → Automatic transition (a certificate order): a new object, a reset, or an
    update of the field itself (seen live: a domain made in recovery mode, Manual, then
    turned Automatic by the full apply, has its order cut by the restart that follows)."""
    out = []
    for item in state:
        if not isinstance(item, Desired):
            continue
        for change in plan.changes:
            if (change.type, change.key) != (item.type, item.key):
                continue
            for name in item.resets:
                if name in change.reset or name in change.fields:
                    out.append((item, name))
    return out


def restart_work(
    work: list[tuple[Desired, str]], client: Client, schema: Schema, say: Callable[[str], None]
) -> None:
    """After a restart, start again what the restart cut short: a running task stays
    locked for an hour in Stalwart's in-memory store, so a new transition makes a new one."""
    live = observe(client, schema, [item for item, _ in work])
    for item, name in work:
        obj = find(live.get(item.type, ()), item.key_field or "name", item.key)
        if obj is None:
            continue
        value = _resolve(item.fields[name], {}, live, name)
        client.set(item.type, update={str(obj["id"]): {name: item.resets[name]}})
        client.set(item.type, update={str(obj["id"]): {name: value}})
        say(f"  {item.type} {item.key}: {name} passed through Manual again after the restart")
