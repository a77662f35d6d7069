"""The Stalwart versions tailwart knows, and why it refuses the others.

Everything that names a Stalwart type or field lives in ``MODELS``, keyed by the
schema hash the server redirects ``GET /api/schema`` to: moving to a new release
is one new entry (and a new schema extract), not edits all over the code.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .. import clock

PINNED = (0, 16, 18)
PINNED_IMAGE = "stalwartlabs/stalwart:v0.16.18"
#: scoped API keys / app passwords could regain full rights before this (0.16.15 CHANGELOG)
OLDEST = (0, 16, 15)
#: upstream's end of support for the v0.15 (TOML) line
V015_SUPPORT_END = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def fmt(version: tuple[int, int, int]) -> str:
    return ".".join(map(str, version))


def refusal(version: tuple[int, int, int]) -> str | None:
    """Why tailwart refuses to run this Stalwart version, or None when it may."""
    if version < (0, 15, 0):
        return (
            f"stalwart {fmt(version)} predates v0.15: a v0.16 server refuses its store "
            "(schema version < 5) and tailwart's objects do not exist there"
        )
    if version < (0, 16, 0):
        ends = "ended" if clock.now() >= V015_SUPPORT_END else "ends"
        return (
            f"stalwart {fmt(version)} is a v0.15 (TOML) release: it reads config.toml, "
            f"which tailwart no longer renders, and its support {ends} on "
            f"{V015_SUPPORT_END:%Y-%m-%d} (inv migrate-stalwart --dry-run explains the move)"
        )
    if version < OLDEST:
        return (
            f"stalwart {fmt(version)} is older than {fmt(OLDEST)}: before it, scoped API keys "
            "and app passwords could regain full rights"
        )
    if version >= (1, 0, 0):
        return (
            f"stalwart {fmt(version)} cannot open a 0.16 store and rejects the 0.16 object "
            "schema tailwart provisions; 1.x needs a store copy (stalwart-migrate) first"
        )
    return None


def advisory(version: tuple[int, int, int]) -> str | None:
    """A warning for an accepted version other than the verified one."""
    if version == PINNED:
        return None
    return (
        f"stalwart {fmt(version)}: tailwart's object model is verified against "
        f"{fmt(PINNED)}; inv provision refuses a server whose schema hash it does not know"
    )


@dataclass(frozen=True)
class Model:
    """Type and field names of one Stalwart schema, by what tailwart uses them for."""

    version: str
    schema_hash: str
    #: the committed schema extract (``schema-<version>.json`` beside this module)
    extract: str
    capability: str = "urn:stalwart:jmap"
    listener: str = "x:NetworkListener"
    system: str = "x:SystemSettings"
    blob_store: str = "x:BlobStore"
    memory_store: str = "x:InMemoryStore"
    search_store: str = "x:SearchStore"
    http: str = "x:Http"
    route: str = "x:MtaRoute"
    tls_strategy: str = "x:MtaTlsStrategy"
    outbound: str = "x:MtaOutboundStrategy"
    tracer: str = "x:Tracer"
    metrics: str = "x:Metrics"
    mta_sts: str = "x:MtaSts"
    #: owned only with several mailbox nodes (stalwart/cluster.py)
    coordinator: str = "x:Coordinator"
    cluster_role: str = "x:ClusterRole"
    #: read only (inv doctor's queue checks); never written
    queued_message: str = "x:QueuedMessage"
    #: read only (inv doctor's mailbox.cluster): Stalwart's own node leases
    cluster_node: str = "x:ClusterNode"
    security: str = "x:Security"
    role: str = "x:Role"
    account: str = "x:Account"
    domain: str = "x:Domain"
    acme_provider: str = "x:AcmeProvider"
    dns_server: str = "x:DnsServer"
    certificate: str = "x:Certificate"
    data_store: str = "x:DataStore"
    action: str = "x:Action"
    reload_action: str = "ReloadSettings"
    singleton_id: str = "singleton"
    masked: str = "****"

    def owned_types(self) -> tuple[str, ...]:
        """Every object type tailwart reads and writes, parents first."""
        return (
            self.blob_store,
            self.memory_store,
            self.search_store,
            self.acme_provider,
            self.dns_server,
            self.certificate,
            self.domain,
            self.system,
            self.listener,
            self.http,
            self.security,
            self.tls_strategy,
            self.route,
            self.outbound,
            self.tracer,
            self.metrics,
            self.mta_sts,
        )

    def cluster_types(self) -> tuple[str, ...]:
        """The types of several nodes as one cluster: read and written only when .env names
        more than one mailbox node, so that a single node's requests stay as they were."""
        return (self.coordinator, self.cluster_role)

    def write_order(self) -> tuple[str, ...]:
        """Every type tailwart may write, in the order apply writes them (parents first):
        the cluster's first, since a node started with STALWART_ROLE refuses every reload
        until its role exists (seen live)."""
        return (*self.cluster_types(), *self.owned_types())

    def management_types(self) -> tuple[str, ...]:
        """The types of tailwart's own management login: written only in recovery mode
        (the login itself may not change its role or account), parents first."""
        return (self.role, self.account)


V0_16_18 = Model(
    version="0.16.18",
    schema_hash="25gnm1_xB9bPk-puX9VTFMP1W5V-1muUWuK964-_uEw",
    extract="schema-0.16.18.json",
)
#: schema hash → model; inv provision refuses a server whose hash is not here
MODELS: dict[str, Model] = {V0_16_18.schema_hash: V0_16_18}
CURRENT = V0_16_18
