"""Garage for Stalwart: layout, bucket, access key and its read+write grant.

Talks to the admin API v2 with the bearer token (``GARAGE_ADMIN_URL``,
``GARAGE_ADMIN_TOKEN``). Keys are looked up before they are made: CreateKey
always mints a new one, so bootstrap imports the key named in ``.env``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..flags import printable
from ..settings import Settings
from .plan import Action, BackendError, Step

if TYPE_CHECKING:
    import requests

NAME = "garage"
KEY_ID = re.compile(r"^GK[0-9a-f]{24}$")
SECRET = re.compile(r"^[0-9a-f]{64}$")
ZONE = "dc1"
#: capacity given to a fresh single node when the data partition size is unknown
DEFAULT_CAPACITY = 10 * 1000**3


#: how long computing a layout (preview, apply) may take: an optimisation over every
#: partition, seconds of CPU on a small or busy node
LAYOUT_TIMEOUT = 120.0
#: how long bootstrap waits for every node to take a new layout (seconds)
LAYOUT_SETTLE = 60.0
#: partitions of a Garage cluster ("currently always 256", GetClusterHealth)
PARTITIONS = 256


@dataclass(frozen=True)
class WantedNode:
    """One GARAGE_NODES entry: the start of a node id and its zone."""

    prefix: str
    zone: str


def wanted_nodes(value: str) -> tuple[WantedNode, ...]:
    """GARAGE_NODES (already validated) as entries."""
    out = []
    for item in value.split(",") if value else ():
        prefix, _, zone = item.partition("@")
        out.append(WantedNode(prefix, zone))
    return tuple(out)


def short(node_id: str) -> str:
    """A node id as `garage status` prints it (16 hex digits), safe to print."""
    return printable(node_id[:16], 16)


def measured_replication(layout: Any) -> int | None:
    """Copies the applied layout keeps of each partition: the partitions its nodes store,
    over the cluster's 256; None without an applied layout or when the numbers do not
    add up (Garage's replication_factor lives in garage.toml, not in the API)."""
    if not isinstance(layout, dict) or not layout_ready(layout):
        return None
    stored = [role.get("storedPartitions") for role in layout.get("roles", [])]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in stored):
        return None
    total = sum(n for n in stored if isinstance(n, int))
    if total == 0 or total % PARTITIONS:
        return None
    return total // PARTITIONS


def replication_problem(measured: int | None, expected: int) -> str:
    """Why the cluster's replication does not match GARAGE_REPLICATION ('' when it does)."""
    if measured is None or measured == expected:
        return ""
    return (
        f"the cluster keeps {measured} cop{'y' if measured == 1 else 'ies'} of each block, "
        f"GARAGE_REPLICATION says {expected}"
    )


REPLICATION_ADVICE = (
    "make GARAGE_REPLICATION equal the nodes' garage.toml replication_factor (tailwart "
    "never changes it; changing it on a live cluster is Garage's own procedure)"
)


@dataclass(frozen=True)
class LayoutPlan:
    """How GARAGE_NODES differs from the cluster's layout (pure: see ``plan_layout``)."""

    #: role changes for UpdateClusterLayout
    roles: tuple[dict[str, Any], ...] = ()
    #: one phrase per change, for the plan
    changes: tuple[str, ...] = ()
    #: why the layout must not be touched (each a refusal)
    problems: tuple[str, ...] = ()
    kept: int = 0


def plan_layout(
    wanted: tuple[WantedNode, ...], status: Any, layout: Any, capacity: int = 0
) -> LayoutPlan:
    """Compare GARAGE_NODES with GetClusterStatus and GetClusterLayout.

    A listed node without a role is assigned (capacity: what its data disk has free,
    else ``capacity``); a node in another zone is moved (its capacity kept). Refused:
    an id no connected node matches or that matches several, a down node to assign,
    a role held by a node GARAGE_NODES leaves out (tailwart removes no node), changes
    someone else has staged."""
    nodes = status.get("nodes") if isinstance(status, dict) else None
    if not isinstance(nodes, list) or not isinstance(layout, dict):
        return LayoutPlan(problems=("the admin API's cluster status or layout is malformed",))
    roles = {
        str(r.get("id")): r for r in layout.get("roles", []) if isinstance(r, dict) and "id" in r
    }
    problems: list[str] = []
    if layout.get("stagedRoleChanges"):
        problems.append(
            "layout changes are staged already (garage layout show): apply or revert them "
            "yourself first"
        )
    changes: list[dict[str, Any]] = []
    said: list[str] = []
    kept = 0
    listed: set[str] = set()
    for entry in wanted:
        found = [
            n
            for n in nodes
            if isinstance(n, dict) and str(n.get("id", "")).startswith(entry.prefix)
        ]
        if not found:
            problems.append(
                f"node {entry.prefix} (GARAGE_NODES) is not known to the cluster: connect it "
                "(garage node connect <id>@<host>:3901) or fix its id"
            )
            continue
        if len(found) > 1:
            problems.append(f"node {entry.prefix} (GARAGE_NODES) matches {len(found)} nodes")
            continue
        node = found[0]
        node_id = str(node["id"])
        listed.add(node_id)
        role = roles.get(node_id)
        if role is None:
            if not node.get("isUp"):
                problems.append(f"node {short(node_id)} is down: it cannot join the layout now")
                continue
            partition = node.get("dataPartition") or {}
            free = partition.get("available") if isinstance(partition, dict) else None
            size = free if isinstance(free, int) and free > 0 else capacity
            changes.append({"id": node_id, "zone": entry.zone, "capacity": size, "tags": []})
            said.append(f"assign {short(node_id)} to zone {entry.zone} ({size} bytes)")
        elif role.get("zone") != entry.zone:
            changes.append(
                {
                    "id": node_id,
                    "zone": entry.zone,
                    "capacity": role.get("capacity"),
                    "tags": list(role.get("tags") or []),
                }
            )
            was = printable(str(role.get("zone")), 64)
            said.append(f"move {short(node_id)} from zone {was} to {entry.zone}")
        else:
            kept += 1
    for node_id, role in sorted(roles.items()):
        if node_id not in listed:
            problems.append(
                f"node {short(node_id)} holds a role in the layout (zone "
                f"{printable(str(role.get('zone')), 64)}) "
                f"but GARAGE_NODES leaves it out: add it, or remove it yourself "
                f"(garage layout remove {short(node_id)})"
            )
    return LayoutPlan(tuple(changes), tuple(said), tuple(problems), kept)


@dataclass(frozen=True)
class GarageTarget:
    admin_url: str
    admin_token: str
    bucket: str
    access_key: str
    secret_key: str
    #: GARAGE_NODES: the layout of several nodes (empty: one node, --init-layout)
    nodes: tuple[WantedNode, ...] = ()
    #: GARAGE_REPLICATION: the replication_factor the nodes' garage.toml must hold
    replication: int = 3

    @classmethod
    def from_settings(cls, settings: Settings) -> GarageTarget:
        settings.require(["GARAGE_ADMIN_URL", "GARAGE_ADMIN_TOKEN"], "for inv bootstrap (Garage)")
        return cls(
            settings["GARAGE_ADMIN_URL"].rstrip("/"),
            settings["GARAGE_ADMIN_TOKEN"],
            settings["STALWART_S3_BUCKET"],
            settings["STALWART_S3_ACCESS_KEY"],
            settings["STALWART_S3_SECRET_KEY"],
            wanted_nodes(settings["GARAGE_NODES"]),
            settings.integer("GARAGE_REPLICATION"),
        )

    def check_key_format(self) -> None:
        """Garage only imports keys in its own format; say so before contacting it."""
        problems = []
        if not KEY_ID.match(self.access_key):
            problems.append("STALWART_S3_ACCESS_KEY must be GK followed by 24 hex digits")
        if not SECRET.match(self.secret_key):
            problems.append("STALWART_S3_SECRET_KEY must be 64 hex digits (openssl rand -hex 32)")
        if problems:
            raise UsageError("garage: " + "; ".join(problems) + "; nothing was changed")


class NotFound(Exception):
    pass


class GarageAdmin:
    """Minimal admin API v2 client; errors become BackendError without the token."""

    def __init__(self, url: str, token: str, timeout: float = 10) -> None:
        import requests

        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session: requests.Session = requests.Session()
        # no proxy or .netrc from the environment: a proxy would see the token (and an
        # imported secret key) in clear
        self.session.trust_env = False
        self.session.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self.session.close()

    def call(
        self,
        method: str,
        endpoint: str,
        body: Any = None,
        timeout: float | None = None,
        **params: Any,
    ) -> Any:
        import requests

        try:
            resp = self.session.request(
                method,
                f"{self.url}/v2/{endpoint}",
                json=body,
                params=params or None,
                timeout=timeout or self.timeout,
                allow_redirects=False,  # a body may carry the S3 secret key
            )
        except requests.RequestException as exc:
            raise BackendError(
                f"garage: admin API {self.url} unreachable: "
                f"{type(exc).__name__}; check GARAGE_ADMIN_URL"
            ) from None
        if resp.status_code in (401, 403):
            raise BackendError(
                "garage: the admin API refused GARAGE_ADMIN_TOKEN "
                f"(HTTP {resp.status_code}); check the token"
            )
        if resp.status_code == 404:
            raise NotFound(endpoint)
        if 300 <= resp.status_code < 400:
            raise BackendError(
                f"garage: {endpoint} answered HTTP {resp.status_code}, a redirect; tailwart "
                "follows none (a request may carry a secret key): check GARAGE_ADMIN_URL"
            )
        if resp.status_code >= 400:
            raise BackendError(
                f"garage: {endpoint} failed (HTTP {resp.status_code}): {_message(resp)}"
            )
        try:
            return resp.json() if resp.content else None
        except ValueError:
            raise BackendError(
                f"garage: {endpoint} answered with something that is not JSON; check "
                "GARAGE_ADMIN_URL"
            ) from None

    def get(self, endpoint: str, **params: Any) -> Any:
        return self.call("GET", endpoint, **params)

    def post(self, endpoint: str, body: Any, timeout: float | None = None) -> Any:
        return self.call("POST", endpoint, body, timeout)

    def bucket(self, alias: str) -> dict[str, Any] | None:
        try:
            info: dict[str, Any] = self.get("GetBucketInfo", globalAlias=alias)
        except NotFound:
            return None
        return info

    def key(self, key_id: str, secret: bool = False) -> dict[str, Any] | None:
        try:
            params: dict[str, Any] = {"id": key_id}
            if secret:
                params["showSecretKey"] = "true"
            info: dict[str, Any] = self.get("GetKeyInfo", **params)
        except NotFound:
            return None
        return info


def _message(resp: requests.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return resp.text[:200]
    return str(data.get("message") or data.get("code") or data)[:200]


def layout_ready(layout: dict[str, Any]) -> bool:
    return int(layout.get("version", 0)) > 0 and bool(layout.get("roles"))


class GarageBootstrap:
    def __init__(self, target: GarageTarget, init_layout: bool = False) -> None:
        target.check_key_format()
        self.target = target
        self.init_layout = init_layout
        self.api = GarageAdmin(target.admin_url, target.admin_token)
        #: whether a layout is applied (buckets and keys can be read)
        self.ready = False

    def close(self) -> None:
        self.api.close()

    # -- actions
    def _apply_layout(self, node_id: str, capacity: int) -> None:
        layout = self.api.post(
            "UpdateClusterLayout",
            {"roles": [{"id": node_id, "zone": ZONE, "capacity": capacity, "tags": []}]},
        )
        self.api.post("ApplyClusterLayout", {"version": int(layout["version"]) + 1})

    def _create_bucket(self) -> None:
        self.api.post("CreateBucket", {"globalAlias": self.target.bucket})

    def _import_key(self) -> None:
        self.api.post(
            "ImportKey",
            {
                "accessKeyId": self.target.access_key,
                "secretAccessKey": self.target.secret_key,
                "name": f"stalwart ({self.target.bucket})",
            },
        )

    def _grant(self) -> None:
        bucket = self.api.bucket(self.target.bucket)
        if bucket is None:
            raise BackendError(f"garage: bucket {self.target.bucket!r} vanished; rerun")
        self.api.post(
            "AllowBucketKey",
            {
                "bucketId": bucket["id"],
                "accessKeyId": self.target.access_key,
                "permissions": {"read": True, "write": True, "owner": False},
            },
        )

    def _apply_nodes_layout(self, roles: tuple[dict[str, Any], ...]) -> None:
        """Stage, preview and check the replication, then apply; anything else reverts."""
        staged = self.api.post("UpdateClusterLayout", {"roles": list(roles)})
        try:
            preview = self.api.post("PreviewClusterLayoutChanges", None, LAYOUT_TIMEOUT)
            if not isinstance(preview, dict) or "newLayout" not in preview:
                error = preview.get("error") if isinstance(preview, dict) else None
                raise BackendError(
                    f"garage: the new layout cannot be computed: {printable(str(error), 200)}"
                )
            problem = replication_problem(
                measured_replication(preview["newLayout"]), self.target.replication
            )
            if problem:
                raise BackendError(f"garage: {problem}; {REPLICATION_ADVICE}")
        except BackendError as exc:
            self.api.post("RevertClusterLayout", None)
            raise BackendError(f"{exc}; the staged layout was reverted, nothing applied") from None
        version = int(staged["version"]) + 1
        self.api.post("ApplyClusterLayout", {"version": version}, LAYOUT_TIMEOUT)
        self._wait_layout_taken(version)

    def _wait_layout_taken(self, version: int, within: float = LAYOUT_SETTLE) -> None:
        """Until every node has acknowledged layout ``version`` and the cluster is healthy:
        before that, a write needs nodes still on the old layout (buckets come next)."""
        import time

        deadline = time.monotonic() + within
        while True:
            history = self.api.get("GetClusterLayoutHistory")
            health = self.api.get("GetClusterHealth")
            acked = isinstance(history, dict) and history.get("minAck") == version
            if acked and isinstance(health, dict) and health.get("status") == "healthy":
                return
            if time.monotonic() > deadline:
                raise BackendError(
                    f"garage: layout version {version} is applied but not every node took it "
                    f"within {within:.0f} s (garage layout history); rerun bootstrap once the "
                    "nodes are up and connected"
                )
            time.sleep(0.5)

    def _nodes_layout_steps(self) -> list[Step]:
        """GARAGE_NODES: the layout and the replication check, as plan steps."""
        what = "cluster layout"
        t = self.target
        status = self.api.get("GetClusterStatus")
        layout = self.api.get("GetClusterLayout")
        self.ready = layout_ready(layout)
        plan = plan_layout(t.nodes, status, layout, DEFAULT_CAPACITY)
        out = [
            Step(NAME, Action.REFUSE, what, problem, advice="fix GARAGE_NODES or the cluster")
            for problem in plan.problems
        ]
        measured = measured_replication(layout)
        problem = replication_problem(measured, t.replication)
        if problem:
            out.append(Step(NAME, Action.REFUSE, "replication", problem, advice=REPLICATION_ADVICE))
        elif measured is not None:
            out.append(Step(NAME, Action.KEEP, "replication", f"{measured} copies of each block"))
        if any(step.action is Action.REFUSE for step in out):
            return out
        zones = sorted({entry.zone for entry in t.nodes})
        shape = f"{len(t.nodes)} node(s) in zone(s) {', '.join(zones)}"
        if not plan.roles:
            return [
                Step(NAME, Action.KEEP, what, f"version {layout.get('version')}: {shape}"),
                *out,
            ]
        action = Action.CHANGE if layout_ready(layout) else Action.CREATE
        detail = (
            f"{shape}, replication {t.replication} (checked in a preview before it is "
            f"applied): {'; '.join(plan.changes)}"
        )
        run = partial(self._apply_nodes_layout, plan.roles)
        return [Step(NAME, action, what, detail, run=run), *out]

    # -- plan
    def _layout_step(self) -> Step:
        layout = self.api.get("GetClusterLayout")
        if layout_ready(layout):
            roles = layout["roles"]
            return Step(
                NAME,
                Action.KEEP,
                "cluster layout",
                f"version {layout['version']} with {len(roles)} node(s)",
            )
        status = self.api.get("GetClusterStatus")
        nodes = status.get("nodes", [])
        if len(nodes) != 1:
            return Step(
                NAME,
                Action.REFUSE,
                "cluster layout",
                f"none applied and {len(nodes)} nodes are known",
                advice="assign roles with `garage layout assign` and apply them yourself",
            )
        node = nodes[0]
        if not self.init_layout:
            return Step(
                NAME,
                Action.REFUSE,
                "cluster layout",
                "no layout is applied yet",
                advice="rerun with --init-layout to apply a single-node layout, or "
                "apply one with `garage layout assign` / `garage layout apply`",
            )
        partition = node.get("dataPartition") or {}
        capacity = int(partition.get("available") or DEFAULT_CAPACITY)
        return Step(
            NAME,
            Action.CREATE,
            "cluster layout",
            f"single node {node['id'][:16]}, zone {ZONE}, capacity {capacity} bytes",
            run=partial(self._apply_layout, node["id"], capacity),
        )

    def steps(self) -> list[Step]:
        t = self.target
        if t.nodes:
            out = self._nodes_layout_steps()
            ready = self.ready
        else:
            out = [self._layout_step()]
            ready = out[0].action is Action.KEEP
        if not ready:
            # without a layout Garage cannot read its tables: everything comes after it
            return [
                *out,
                Step(
                    NAME, Action.CREATE, f"bucket {t.bucket!r}", "private", run=self._create_bucket
                ),
                Step(
                    NAME,
                    Action.CREATE,
                    f"key {t.access_key}",
                    "import the access key and secret from .env",
                    run=self._import_key,
                ),
                Step(
                    NAME,
                    Action.CREATE,
                    f"grant {t.access_key} on {t.bucket!r}",
                    "read+write (not owner)",
                    run=self._grant,
                ),
            ]
        bucket = self.api.bucket(t.bucket)
        if bucket is None:
            out.append(
                Step(
                    NAME, Action.CREATE, f"bucket {t.bucket!r}", "private", run=self._create_bucket
                )
            )
        else:
            out.append(Step(NAME, Action.KEEP, f"bucket {t.bucket!r}", f"id {bucket['id'][:16]}"))
        key = self.api.key(t.access_key, secret=True)
        if key is None:
            out.append(
                Step(
                    NAME,
                    Action.CREATE,
                    f"key {t.access_key}",
                    "import the access key and secret from .env",
                    run=self._import_key,
                )
            )
        elif key.get("secretAccessKey") not in (None, t.secret_key):
            out.append(
                Step(
                    NAME,
                    Action.REFUSE,
                    f"key {t.access_key}",
                    "exists with another secret than STALWART_S3_SECRET_KEY",
                    advice="put the key's real secret in .env (garage key info "
                    "--show-secret), or delete the key",
                )
            )
        elif key.get("expired"):
            out.append(
                Step(
                    NAME,
                    Action.REFUSE,
                    f"key {t.access_key}",
                    "has expired",
                    advice="lift the expiration (garage key set) or use another key",
                )
            )
        else:
            out.append(Step(NAME, Action.KEEP, f"key {t.access_key}", "matches .env"))
        granted = False
        if bucket is not None:
            for entry in bucket.get("keys", []):
                perms = entry.get("permissions", {})
                if (
                    entry.get("accessKeyId") == t.access_key
                    and perms.get("read")
                    and perms.get("write")
                ):
                    granted = True
        what = f"grant {t.access_key} on {t.bucket!r}"
        if granted:
            out.append(Step(NAME, Action.KEEP, what, "read+write"))
        else:
            action = Action.CREATE if bucket is None or key is None else Action.CHANGE
            out.append(Step(NAME, action, what, "read+write (not owner)", run=self._grant))
        return out
