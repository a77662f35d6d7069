"""Several mailbox nodes as one Stalwart cluster: what ``inv provision`` declares.

Oracles: the literal objects below, written from Stalwart v0.16.18's schema (the
ClusterTaskType enum, the x:ClusterRole and x:Coordinator variants) and its code
(which task types gate which jobs); the schema test in test_stalwart_model.py checks
them against upstream's schema file as well.
"""

from __future__ import annotations

from typing import Any

import pytest

from tailwart.stalwart import cluster
from tailwart.stalwart.apply import observed_types
from tailwart.stalwart.jmap import StalwartError
from tailwart.stalwart.versions import CURRENT

from .test_stalwart_plan import Store, run, settings

TWO = "stalwart.tail1234.ts.net,stalwart-2.tail1234.ts.net"
PRIMARY = {
    "name": "primary",
    "description": "tailwart: every background task (ACME, purges, reports, indexing, metrics)",
    "tasks": {"@type": "EnableAll"},
    "listeners": {"@type": "EnableAll"},
}
SECONDARY = {
    "name": "secondary",
    "description": "tailwart: sessions and outbound delivery only",
    "tasks": {"@type": "EnableSome", "taskTypes": {"outboundMta": True}},
    "listeners": {"@type": "EnableAll"},
}


class ClusterStore(Store):
    """The fake server, with a fresh store's coordinator (Disabled, the schema default)
    and every method it was asked, in order."""

    def __init__(self) -> None:
        super().__init__()
        one = CURRENT.singleton_id
        self.objects[CURRENT.coordinator] = {one: {"id": one, "@type": "Disabled"}}
        self.methods: list[str] = []
        self.forbid: set[str] = set()

    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        method, _, call = body["methodCalls"][0]
        self.methods.append(method)
        if method.split("/")[0] in self.forbid:
            error = {"type": "forbidden", "description": "You do not have permission"}
            return {"methodResponses": [["error", error, call]]}
        return super().post(body)


def _roles(store: Store) -> list[dict[str, Any]]:
    found = store.objects.get(CURRENT.cluster_role, {}).values()
    return sorted(({k: v for k, v in o.items() if k != "id"} for o in found), key=str)


def test_one_node_asks_nothing_of_the_cluster_types() -> None:
    store = ClusterStore()
    code, lines = run(store, settings(), restart="auto")
    assert code == 0, lines
    asked = {m.split("/")[0] for m in store.methods}
    assert not asked & {"x:Coordinator", "x:ClusterRole", "x:ClusterNode"}
    assert store.objects[CURRENT.coordinator]["singleton"]["@type"] == "Disabled"
    assert observed_types(CURRENT) == CURRENT.owned_types()


def test_two_nodes_declare_the_redis_coordinator_and_both_roles_at_restart() -> None:
    store = ClusterStore()
    s = settings(MAILBOX_NODES=TWO)
    code, lines = run(store, s, restart="never")
    assert code == 3, lines
    assert store.objects[CURRENT.coordinator]["singleton"] == {
        "id": "singleton",
        "@type": "Default",
    }
    assert _roles(store) == sorted([PRIMARY, SECONDARY], key=str)
    # both are read at start only: the plan says a restart is still needed, naming them
    pending = lines[lines.index(next(x for x in lines if x.startswith("still needs"))) :]
    assert "  update x:Coordinator singleton" in pending
    assert "  create x:ClusterRole primary" in pending
    assert "  create x:ClusterRole secondary" in pending
    # a second run: nothing to do
    assert run(store, s) == (0, ["no changes: the server holds exactly what .env describes"])


def test_a_changed_role_is_drift_and_is_put_back() -> None:
    store = ClusterStore()
    s = settings(MAILBOX_NODES=TWO)
    run(store, s, restart="never")
    secondary = next(
        o for o in store.objects[CURRENT.cluster_role].values() if o["name"] == "secondary"
    )
    secondary["tasks"] = {"@type": "EnableAll"}
    code, _ = run(store, s, check=True, certificate=False)
    assert code == 1
    run(store, s, restart="never")
    assert _roles(store) == sorted([PRIMARY, SECONDARY], key=str)


def test_a_login_from_before_clusters_is_told_to_recover() -> None:
    store = ClusterStore()
    store.forbid.add(CURRENT.coordinator)
    with pytest.raises(StalwartError, match=r"x:Coordinator: the management login may not read"):
        run(store, settings(MAILBOX_NODES=TWO))
    # refused while reading: nothing was written
    assert not [m for m in store.methods if m.endswith("/set")]


@pytest.mark.parametrize(
    ("node", "role"),
    [
        ("stalwart.tail1234.ts.net", "primary"),
        ("STALWART.tail1234.ts.net", "primary"),
        ("stalwart-2.tail1234.ts.net", "secondary"),
    ],
)
def test_the_node_mailbox_fqdn_names_runs_every_task(node: str, role: str) -> None:
    assert cluster.role_for(settings(MAILBOX_NODES=TWO), node) == role
    assert cluster.role_for(settings(), node) == ""


def test_the_primary_alone_runs_every_job_that_must_run_once() -> None:
    # the ClusterTaskType enum of v0.16.18, in its order
    assert cluster.TASK_TYPES == (
        "storeMaintenance",
        "accountMaintenance",
        "metricsCalculate",
        "metricsPush",
        "pushNotifications",
        "searchIndexing",
        "spamClassifierTraining",
        "outboundMta",
        "taskQueueProcessing",
        "taskScheduler",
    )
    # a secondary runs none of the five that start Stalwart's task queue (ACME, DKIM, DNS)
    queue = {
        "storeMaintenance",
        "accountMaintenance",
        "searchIndexing",
        "spamClassifierTraining",
        "taskQueueProcessing",
    }
    assert not queue & set(cluster.SECONDARY_TASKS)
    assert {"taskScheduler", "metricsCalculate", "metricsPush", "pushNotifications"} <= set(
        cluster.PRIMARY_ONLY
    )
