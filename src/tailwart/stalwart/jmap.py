"""The Stalwart management API over JMAP (``POST /jmap``, ``x:<Type>/get|set``).

The adapter: a transport that moves JSON (``requests``, or a recorded exchange in
tests) and a client that speaks the ``x:`` methods and turns every refusal into
``StalwartError``. Credentials travel in the Authorization header only; nothing
here prints, logs or raises a secret.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import OperationError
from .plan import redact
from .versions import CURRENT, MODELS, Model

CORE = "urn:ietf:params:jmap:core"
Exchange = dict[str, Any]


class StalwartError(OperationError):
    """The Stalwart server refused or could not be reached."""


class Transport(Protocol):
    def post(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def schema_hash(self) -> str: ...


@dataclass
class HttpTransport:
    """``requests`` against ``base_url`` with Basic auth; optionally records each exchange."""

    base_url: str
    user: str
    password: str
    timeout: float = 30.0
    record: Callable[[Exchange], None] | None = None
    #: the .env key holding the password, named when the server refuses it
    login_key: str = "STALWART_MANAGEMENT_PASSWORD"

    def __post_init__(self) -> None:
        import requests

        self.session = requests.Session()
        self.session.auth = (self.user, self.password)
        self.session.headers["Content-Type"] = "application/json"

    def _fail(self, what: str, exc: Exception) -> StalwartError:
        return StalwartError(
            f"{what} at {self.base_url} failed: {type(exc).__name__}; check the management "
            "URL (STALWART_MANAGEMENT_URL) and that Stalwart runs"
        )

    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        import requests

        try:
            response = self.session.post(
                f"{self.base_url}/jmap", data=json.dumps(body), timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise self._fail("POST /jmap", exc) from None
        if response.status_code == 401:
            raise StalwartError(
                f"Stalwart refused the login {self.user} (401): check {self.login_key}; "
                "the management login works only from STALWART_MANAGEMENT_NETWORKS and after "
                "inv first-start (or inv recover) created it; the recovery admin only while "
                "Stalwart runs in recovery mode"
            )
        if response.status_code != 200:
            raise StalwartError(
                f"POST /jmap answered {response.status_code}: {redact(response.text[:300])}"
            )
        data: dict[str, Any] = response.json()
        if self.record is not None:
            self.record({"request": body, "response": data})
        return data

    def schema_hash(self) -> str:
        import requests

        try:
            response = self.session.get(
                f"{self.base_url}/api/schema", allow_redirects=False, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise self._fail("GET /api/schema", exc) from None
        location = response.headers.get("Location", "")
        if response.status_code not in (301, 302, 303, 307, 308) or "/api/schema/" not in location:
            raise StalwartError(
                f"GET /api/schema answered {response.status_code} without a schema redirect: "
                "is this a Stalwart v0.16 server?"
            )
        found = location.rsplit("/", 1)[-1]
        if self.record is not None:
            self.record({"schema": found})
        return found


@dataclass
class ReplayTransport:
    """Answers from recorded exchanges, in order; fails on a request it did not record."""

    exchanges: list[Exchange]
    sent: list[dict[str, Any]] = field(default_factory=list)

    def _next(self) -> Exchange:
        if not self.exchanges:
            raise AssertionError("the client sent more requests than were recorded")
        return self.exchanges.pop(0)

    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        exchange = self._next()
        self.sent.append(body)
        response: dict[str, Any] = exchange["response"]
        return response

    def schema_hash(self) -> str:
        return str(self._next()["schema"])


class Client:
    """The ``x:`` methods tailwart needs, over one transport."""

    def __init__(self, transport: Transport, model: Model = CURRENT) -> None:
        self.transport = transport
        self.model = model

    def check_schema(self) -> Model:
        """The model for the server's schema hash; refuse a schema tailwart does not know."""
        found = self.transport.schema_hash()
        model = MODELS.get(found)
        if model is None:
            known = ", ".join(f"{m.version} ({h})" for h, m in MODELS.items())
            raise StalwartError(
                f"the server's object schema {found} is not one tailwart knows ({known}); "
                "pin STALWART_IMAGE to the version tailwart supports or upgrade tailwart"
            )
        self.model = model
        return model

    def call(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        body = {
            "using": [CORE, self.model.capability],
            "methodCalls": [[method, args, "c0"]],
        }
        data = self.transport.post(body)
        responses = data.get("methodResponses") or []
        if not responses:
            raise StalwartError(f"{method}: the server sent no method response")
        name, result, _ = responses[0]
        if name == "error":
            what = result.get("description") or result.get("type", "error")
            raise StalwartError(f"{method} failed: {redact(str(what))}")
        out: dict[str, Any] = result
        return out

    def get_all(self, type_name: str, singleton: bool) -> list[dict[str, Any]]:
        """Every object of a type (a singleton is read by its fixed id)."""
        ids = [self.model.singleton_id] if singleton else None
        result = self.call(f"{type_name}/get", {"ids": ids})
        found: list[dict[str, Any]] = list(result.get("list") or [])
        if not singleton and len(found) >= 500:
            raise StalwartError(f"{type_name}: 500 or more objects; tailwart reads at most 499")
        return found

    def set(
        self,
        type_name: str,
        create: Mapping[str, Any] | None = None,
        update: Mapping[str, Any] | None = None,
        destroy: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """One ``x:<Type>/set``; any notCreated/notUpdated/notDestroyed is a StalwartError."""
        args: dict[str, Any] = {}
        if create:
            args["create"] = dict(create)
        if update:
            args["update"] = dict(update)
        if destroy:
            args["destroy"] = list(destroy)
        result = self.call(f"{type_name}/set", args)
        failures = []
        for key in ("notCreated", "notUpdated", "notDestroyed"):
            for ident, err in (result.get(key) or {}).items():
                detail = err.get("description") or err.get("type") or "refused"
                props = err.get("properties")
                where = f" ({', '.join(props)})" if props else ""
                failures.append(f"{key} {ident}{where}: {redact(str(detail))}")
        if failures:
            raise StalwartError(f"{type_name}/set: " + "; ".join(failures))
        return result

    def reload(self) -> None:
        """``x:Action/set create ReloadSettings``: rebuild the settings from the store."""
        self.set(self.model.action, create={"reload": {"@type": self.model.reload_action}})
