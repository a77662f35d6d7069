"""Several Stalwart nodes as one cluster: the coordinator, the roles, which node runs what.

Pure. With one mailbox node nothing here is declared and no node gets a role: the
server runs as it always did. With several, ``inv provision`` declares
``x:Coordinator`` ``Default`` (Stalwart's broadcasts ride the shared Redis) and two
``x:ClusterRole`` objects; each node's compose environment names its role in
``STALWART_ROLE``:

- ``primary`` (the node ``MAILBOX_FQDN`` names): every background task.
- ``secondary`` (every other node): sessions on every listener and its share of the
  outbound queue (``outboundMta``: the queue is shared and each message locked), and no
  other background task.

Why the secondaries run no other task (Stalwart v0.16.18's own code):

- ``taskScheduler`` queues the purges (accounts, data store, blob store), the metrics
  calculation and the spam-classifier training on a timer in every node that has it,
  so two nodes queue each twice;
- ``metricsCalculate`` and ``metricsPush`` would count and push the same figures twice;
- ``pushNotifications`` without push shards has every node load every subscription
  and send each notification;
- the task queue (``taskQueueProcessing`` with ``storeMaintenance``,
  ``accountMaintenance``, ``searchIndexing`` and ``spamClassifierTraining``) runs the
  ACME orders and renewals, DKIM and DNS management, DMARC and TLS reports and the
  indexing. Each task is locked in Redis, but a node runs the queue whenever any of
  these five is on (``spawn_task_manager``), and ACME, DKIM and DNS tasks are always
  on in a node that runs it: only with all five off does a node order no certificate.
"""

from __future__ import annotations

from typing import Any

from ..settings import Settings
from ..settings.derived import mailbox_nodes

PRIMARY = "primary"
SECONDARY = "secondary"
#: every x:ClusterRole task type of v0.16.18 (enum ClusterTaskType)
TASK_TYPES = (
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
#: what a secondary node runs besides its sessions
SECONDARY_TASKS = ("outboundMta",)
#: the jobs only the primary runs (the docs list them from here)
PRIMARY_ONLY = tuple(t for t in TASK_TYPES if t not in SECONDARY_TASKS)
ROLE_DESCRIPTIONS = {
    PRIMARY: "tailwart: every background task (ACME, purges, reports, indexing, metrics)",
    SECONDARY: "tailwart: sessions and outbound delivery only",
}


def clustered(settings: Settings) -> bool:
    """Whether .env names more than one mailbox node."""
    return len(mailbox_nodes(settings)) > 1


def role_for(settings: Settings, node: str) -> str:
    """The ``STALWART_ROLE`` of ``node`` (a MAILBOX_NODES entry): '' with one node (Stalwart
    runs every task, as before), ``primary`` for MAILBOX_FQDN, else ``secondary``."""
    if not clustered(settings):
        return ""
    return PRIMARY if node.lower() == settings["MAILBOX_FQDN"].lower() else SECONDARY


def role_fields(name: str) -> dict[str, Any]:
    """The x:ClusterRole object of ``name``: every listener, and its tasks."""
    if name == PRIMARY:
        tasks: dict[str, Any] = {"@type": "EnableAll"}
    else:
        tasks = {"@type": "EnableSome", "taskTypes": dict.fromkeys(SECONDARY_TASKS, True)}
    return {
        "name": name,
        "description": ROLE_DESCRIPTIONS[name],
        "tasks": tasks,
        "listeners": {"@type": "EnableAll"},
    }
