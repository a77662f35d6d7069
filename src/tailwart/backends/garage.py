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


@dataclass(frozen=True)
class GarageTarget:
    admin_url: str
    admin_token: str
    bucket: str
    access_key: str
    secret_key: str

    @classmethod
    def from_settings(cls, settings: Settings) -> GarageTarget:
        settings.require(["GARAGE_ADMIN_URL", "GARAGE_ADMIN_TOKEN"], "for inv bootstrap (Garage)")
        return cls(
            settings["GARAGE_ADMIN_URL"].rstrip("/"),
            settings["GARAGE_ADMIN_TOKEN"],
            settings["STALWART_S3_BUCKET"],
            settings["STALWART_S3_ACCESS_KEY"],
            settings["STALWART_S3_SECRET_KEY"],
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

    def call(self, method: str, endpoint: str, body: Any = None, **params: Any) -> Any:
        import requests

        try:
            resp = self.session.request(
                method,
                f"{self.url}/v2/{endpoint}",
                json=body,
                params=params or None,
                timeout=self.timeout,
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

    def post(self, endpoint: str, body: Any) -> Any:
        return self.call("POST", endpoint, body)

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
        layout = self._layout_step()
        out = [layout]
        if layout.action is not Action.KEEP:
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
