"""The Stalwart management API over JMAP (``POST /jmap``, ``x:<Type>/get|set``).

The adapter: a transport that moves JSON (``requests``, or a recorded exchange in
tests) and a client that speaks the ``x:`` methods and turns every refusal into
``StalwartError``. Credentials travel in the Authorization header only; nothing
here prints, logs or raises a secret.

Everything the server answers is untrusted input (DESIGN.md, "Management plane"): no
redirect is followed (the body may carry secrets: a Redis URL with its password), no
proxy, ``.netrc`` or other setting comes from the environment, every answer is read
up to ``MAX_ANSWER`` bytes within ``DEADLINE`` seconds in all (a server that trickles
cannot hold a provision or a nightly backup), its JSON shape is checked before use,
and server text in a message is one escaped line, cut short.
``TAILWART_MANAGEMENT_DEADLINE`` (seconds) sets another deadline.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import OperationError, UsageError
from ..masking import hide_jmap_secrets, one_line
from .versions import CURRENT, MODELS, Model

CORE = "urn:ietf:params:jmap:core"
Exchange = dict[str, Any]
URL_KEY = "STALWART_MANAGEMENT_URL"

#: the largest answer read. tailwart asks for at most 499 settings objects of one type
#: at a time: a real answer is a few KiB (the largest recorded one 4 KiB), a type full
#: of objects a few MiB. 32 MiB is far above any honest answer and still little memory.
MAX_ANSWER = 32 * 1024 * 1024
#: seconds one exchange may take in all (connect, headers, body), however the server
#: paces its bytes; each read alone may take ``HttpTransport.timeout``
DEADLINE = 60.0
DEADLINE_ENV = "TAILWART_MANAGEMENT_DEADLINE"
#: what a schema hash in the /api/schema redirect looks like
_SCHEMA_HASH = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class StalwartError(OperationError):
    """The Stalwart server refused or could not be reached."""


class LoginRefused(StalwartError):
    """Stalwart does not accept the login (401): a wrong password, or a login that does
    not exist (the recovery admin outside recovery mode)."""


class Transport(Protocol):
    def post(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def schema_hash(self) -> str: ...


def deadline_from_environment() -> float:
    """``TAILWART_MANAGEMENT_DEADLINE`` in seconds (1 to 3600), else ``DEADLINE``."""
    text = os.environ.get(DEADLINE_ENV, "")
    if not text:
        return DEADLINE
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 1 <= value <= 3600:
        raise UsageError(f"{DEADLINE_ENV} {text[:20]!r}: expected seconds from 1 to 3600")
    return value


@dataclass(frozen=True)
class Answer:
    """An HTTP answer as read: status, headers, and at most ``MAX_ANSWER`` bytes of body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class _TooLarge(Exception):
    pass


@dataclass
class HttpTransport:
    """``requests`` against ``base_url`` with Basic auth; optionally records each exchange."""

    base_url: str
    user: str
    password: str
    #: seconds one read (or the connect) may wait
    timeout: float = 30.0
    record: Callable[[Exchange], None] | None = None
    #: the .env key holding the password, named when the server refuses it
    login_key: str = "STALWART_MANAGEMENT_PASSWORD"
    #: seconds one exchange may take in all
    deadline: float = field(default_factory=deadline_from_environment)
    max_answer: int = MAX_ANSWER

    def __post_init__(self) -> None:
        import requests

        self.session = requests.Session()
        # no proxy or .netrc from the environment: a proxy would receive the credential
        # in clear, a .netrc would replace it; a private CA (an https management URL)
        # still comes from the usual variable
        self.session.trust_env = False
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle:
            self.session.verify = bundle
        self.session.auth = (self.user, self.password)
        self.session.headers["Content-Type"] = "application/json"
        # nothing compressed: what is read is what is counted against MAX_ANSWER
        self.session.headers["Accept-Encoding"] = "identity"

    def _fail(self, what: str, exc: Exception) -> StalwartError:
        return StalwartError(
            f"{what} at {self.base_url} failed: {type(exc).__name__}; check the management "
            f"URL ({URL_KEY}) and that Stalwart runs"
        )

    def _exchange(
        self, method: str, path: str, data: str | None = None, body: bool = False
    ) -> Answer:
        """One request, read in a worker thread so that ``deadline`` bounds it in all; a
        GET's answer is read only with ``body``."""
        outcome: dict[str, Any] = {}
        holder: dict[str, Any] = {"body": body}

        def work() -> None:
            try:
                outcome["answer"] = self._read(method, path, data, holder)
            except BaseException as exc:  # handed to the caller below
                outcome["error"] = exc

        worker = threading.Thread(target=work, name="tailwart-jmap", daemon=True)
        worker.start()
        worker.join(self.deadline)
        if worker.is_alive():
            holder["cancelled"] = True
            _shut(holder.get("response"))
            raise StalwartError(
                f"{method} {path} at {self.base_url}: no complete answer within "
                f"{self.deadline:g} s (the server stalls or trickles); check {URL_KEY} and "
                "that Stalwart runs"
            )
        error = outcome.get("error")
        if isinstance(error, _TooLarge):
            raise StalwartError(
                f"{method} {path} at {self.base_url}: the answer is larger than "
                f"{self.max_answer // (1024 * 1024)} MiB; is {URL_KEY} a Stalwart server?"
            )
        if isinstance(error, StalwartError):
            raise error
        if error is not None and _is_network_error(error):
            raise self._fail(f"{method} {path}", error)
        if error is not None:
            raise error
        answer: Answer = outcome["answer"]
        return answer

    def _read(self, method: str, path: str, data: str | None, holder: dict[str, Any]) -> Answer:
        response = self.session.request(
            method,
            f"{self.base_url}{path}",
            data=data,
            timeout=self.timeout,
            allow_redirects=False,
            stream=True,
        )
        holder["response"] = response
        try:
            headers = response.headers
            if response.status_code in _REDIRECTS or (method == "GET" and not holder.get("body")):
                return Answer(response.status_code, headers, b"")
            encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise StalwartError(
                    f"{method} {path} at {self.base_url} answered with Content-Encoding "
                    f"{one_line(encoding, 40)} though tailwart asked for none; is {URL_KEY} "
                    "a Stalwart server?"
                )
            chunks: list[bytes] = []
            size = 0
            while not holder.get("cancelled"):
                chunk = response.raw.read(65536, decode_content=False)
                if not chunk:
                    break
                size += len(chunk)
                if size > self.max_answer:
                    raise _TooLarge
                chunks.append(chunk)
            return Answer(response.status_code, headers, b"".join(chunks))
        finally:
            response.close()

    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        answer = self._exchange("POST", "/jmap", json.dumps(body))
        if answer.status in _REDIRECTS:
            raise StalwartError(
                f"POST /jmap at {self.base_url} answered {answer.status}, a redirect; tailwart "
                f"follows none from the management API (the request carries secrets): set "
                f"{URL_KEY} to the address the server answers on itself"
            )
        if answer.status == 401:
            raise LoginRefused(
                f"Stalwart refused the login {self.user} (401): check {self.login_key}; "
                "the management login works only from STALWART_MANAGEMENT_NETWORKS and after "
                "inv first-start (or inv recover) created it; the recovery admin only while "
                "Stalwart runs in recovery mode"
            )
        if answer.status != 200:
            text = answer.body.decode("utf-8", "replace")
            shown = one_line(hide_jmap_secrets(text))
            raise StalwartError(f"POST /jmap answered {answer.status}: {shown}")
        try:
            data = json.loads(answer.body)
        except (ValueError, RecursionError):
            raise StalwartError(
                f"POST /jmap at {self.base_url} answered with something that is not JSON; is "
                f"{URL_KEY} a Stalwart server?"
            ) from None
        if not isinstance(data, dict):
            raise StalwartError(
                f"POST /jmap at {self.base_url} answered JSON that is not an object; is "
                f"{URL_KEY} a Stalwart server?"
            )
        if self.record is not None:
            self.record({"request": body, "response": data})
        return data

    def get_text(self, path: str) -> Answer:
        """``GET path``, its answer read whole (at most ``max_answer`` bytes, within the
        deadline); the status is the caller's to judge."""
        return self._exchange("GET", path, body=True)

    def schema_hash(self) -> str:
        answer = self._exchange("GET", "/api/schema")
        location = answer.headers.get("Location", "")
        if answer.status not in _REDIRECTS or "/api/schema/" not in location:
            raise StalwartError(
                f"GET /api/schema answered {answer.status} without a schema redirect: "
                "is this a Stalwart v0.16 server?"
            )
        found = location.rsplit("/", 1)[-1]
        if not _SCHEMA_HASH.fullmatch(found):
            raise StalwartError(
                "GET /api/schema redirected to something that is not a schema hash: is this "
                "a Stalwart v0.16 server?"
            )
        if self.record is not None:
            self.record({"schema": found})
        return found


def _is_network_error(exc: BaseException) -> bool:
    """A failure of the connection or of HTTP itself (not a bug in tailwart)."""
    import requests
    import urllib3.exceptions

    return isinstance(exc, requests.RequestException | urllib3.exceptions.HTTPError | OSError)


def _shut(response: Any) -> None:
    """Cut the connection under ``response`` (a worker blocked reading it wakes up)."""
    import contextlib
    import socket

    sock = getattr(getattr(getattr(response, "raw", None), "connection", None), "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


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
                f"the server's object schema {one_line(found, 130)} is not one tailwart knows "
                f"({known}); "
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
        responses = data.get("methodResponses")
        if responses == [] or responses is None:
            raise StalwartError(f"{method}: the server sent no method response")
        if not isinstance(responses, list) or not all(
            isinstance(r, list)
            and len(r) == 3
            and isinstance(r[0], str)
            and isinstance(r[1], dict)
            and isinstance(r[2], str)
            for r in responses
        ):
            raise _shape(method, "methodResponses is not a list of [name, arguments, call id]")
        name, result, _ = responses[0]
        if name == "error":
            what = result.get("description") or result.get("type", "error")
            raise StalwartError(f"{method} failed: {one_line(hide_jmap_secrets(str(what)))}")
        out: dict[str, Any] = result
        return out

    def get_all(self, type_name: str, singleton: bool) -> list[dict[str, Any]]:
        """Every object of a type (a singleton is read by its fixed id)."""
        ids = [self.model.singleton_id] if singleton else None
        method = f"{type_name}/get"
        result = self.call(method, {"ids": ids})
        found = result.get("list")
        if found is None:
            found = []
        if not isinstance(found, list) or not all(
            isinstance(obj, dict) and isinstance(obj.get("id"), str) for obj in found
        ):
            raise _shape(method, "its list is not a list of objects with an id")
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
        method = f"{type_name}/set"
        result = self.call(method, args)
        for key in ("created", "notCreated", "notUpdated", "notDestroyed"):
            value = result.get(key)
            if value is not None and not (
                isinstance(value, dict) and all(isinstance(v, dict) for v in value.values())
            ):
                raise _shape(method, f"{key} is not a map of objects")
        failures = []
        for key in ("notCreated", "notUpdated", "notDestroyed"):
            for ident, err in (result.get(key) or {}).items():
                detail = err.get("description") or err.get("type") or "refused"
                props = err.get("properties")
                where = ""
                if isinstance(props, list) and props:
                    where = f" ({one_line(', '.join(map(str, props)), 100)})"
                failures.append(
                    f"{key} {one_line(ident, 60)}{where}: "
                    f"{one_line(hide_jmap_secrets(str(detail)))}"
                )
        if failures:
            raise StalwartError(f"{type_name}/set: " + "; ".join(failures))
        return result

    def reload(self) -> None:
        """``x:Action/set create ReloadSettings``: rebuild the settings from the store."""
        self.set(self.model.action, create={"reload": {"@type": self.model.reload_action}})


def _shape(method: str, what: str) -> StalwartError:
    return StalwartError(
        f"{method}: the server's answer is not what Stalwart v0.16 sends ({what}); is "
        f"{URL_KEY} a Stalwart server?"
    )
