"""The Tailscale policy file API (v2): fetch with ETag, validate, conditional write.

- ``GET  /api/v2/tailnet/{tailnet}/acl`` with ``Accept: application/hujson``
  → the HuJSON text (comments kept) and its ``ETag``.
- ``POST /api/v2/tailnet/{tailnet}/acl/validate`` → 200 with a non-empty
  ``message`` (and ``data[].errors``) when the policy or its tests fail.
- ``POST /api/v2/tailnet/{tailnet}/acl`` with ``If-Match: "<etag>"`` → 412 when
  someone else wrote in between.
- Auth: an API token as Bearer, or OAuth client credentials exchanged at
  ``/api/v2/oauth/token`` for a Bearer access token (scope ``policy_file``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .errors import PolicyAuthError, PolicyOperationError
from .http import Transport, check_request_inputs, message_of

if TYPE_CHECKING:
    import requests

    from ..settings import Settings

SCOPE_HELP = (
    "the credentials need the policy_file scope (read and write): create an OAuth client "
    "with 'Policy File: write' (scope policy_file) or an API access token of an admin, and "
    "put it into .env as TS_API_CLIENT_ID + TS_API_CLIENT_SECRET or TS_API_TOKEN"
)


@dataclass(frozen=True)
class Fetched:
    """A policy as fetched: the HuJSON text and the ETag that identifies this version."""

    text: str
    etag: str


@dataclass(frozen=True)
class Validation:
    """The answer of /acl/validate: empty ``message`` means the policy and its tests pass."""

    message: str = ""
    #: (test source or "", errors) per failing part
    details: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def ok(self) -> bool:
        return not self.message and not any(errors for _, errors in self.details)


class PreconditionFailed(PolicyOperationError):
    """412: the policy changed since it was fetched (If-Match did not match)."""


@dataclass
class TailscaleAPI:
    base_url: str
    tailnet: str = "-"
    token: str = ""
    client_id: str = ""
    client_secret: str = ""
    transport: Transport = field(default_factory=Transport)
    _access_token: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self.transport.secrets += [s for s in (self.token, self.client_secret) if s]

    @classmethod
    def from_settings(cls, settings: Settings, transport: Transport | None = None) -> TailscaleAPI:
        """Client for the credentials in .env (OAuth client preferred over a token)."""
        from .errors import PolicyInputError

        client_id, secret = settings["TS_API_CLIENT_ID"], settings["TS_API_CLIENT_SECRET"]
        token = settings["TS_API_TOKEN"]
        if bool(client_id) != bool(secret):
            raise PolicyInputError(
                "TS_API_CLIENT_ID and TS_API_CLIENT_SECRET go together: set both (or TS_API_TOKEN)"
            )
        if not (client_id or token):
            raise PolicyInputError(
                "inv acl --tailscale needs credentials in .env: TS_API_CLIENT_ID + "
                f"TS_API_CLIENT_SECRET (OAuth client) or TS_API_TOKEN; {SCOPE_HELP}"
            )
        check_request_inputs(
            settings,
            ("TS_API_TOKEN", "TS_API_CLIENT_ID", "TS_API_CLIENT_SECRET"),
            ("TS_API_URL", settings["TS_API_URL"]),
        )
        return cls(
            settings["TS_API_URL"] or "https://api.tailscale.com",
            settings["TS_TAILNET"] or "-",
            token="" if client_id else token,
            client_id=client_id,
            client_secret=secret,
            transport=transport or Transport(),
        )

    # ---- auth

    def _bearer(self) -> str:
        if self.token:
            return self.token
        if not self._access_token:
            response = self.transport.request(
                "POST",
                f"{self.base_url}/api/v2/oauth/token",
                "OAuth token exchange",
                data={
                    "client_id": self.client_id,
                    "client_secret": self.client_secret,
                    "grant_type": "client_credentials",
                },
            )
            if response.status_code in (400, 401, 403):
                raise PolicyAuthError(
                    self.transport.hide_sensitive(
                        f"the OAuth client was refused ({response.status_code}: "
                        f"{message_of(response)}); check TS_API_CLIENT_ID/TS_API_CLIENT_SECRET. "
                        f"{SCOPE_HELP}"
                    )
                )
            self._check(response, "OAuth token exchange")
            token = response.json().get("access_token", "")
            if not token:
                raise PolicyOperationError("OAuth token exchange: no access_token in the answer")
            self._access_token = token
            self.transport.secrets.append(token)
        return self._access_token

    def _headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._bearer()}", **extra}

    def _url(self, suffix: str = "") -> str:
        return f"{self.base_url}/api/v2/tailnet/{quote(self.tailnet, safe='')}/acl{suffix}"

    def _check(self, response: requests.Response, what: str) -> None:
        if response.status_code in (401, 403):
            raise PolicyAuthError(
                self.transport.hide_sensitive(
                    f"{what}: {response.status_code} {message_of(response)}; {SCOPE_HELP}"
                )
            )
        if response.status_code >= 400:
            raise PolicyOperationError(
                self.transport.hide_sensitive(
                    f"{what}: HTTP {response.status_code}: {message_of(response)}"
                )
            )

    # ---- the policy file

    def get_policy(self) -> Fetched:
        response = self.transport.request(
            "GET",
            self._url(),
            "fetching the policy",
            headers=self._headers(Accept="application/hujson"),
        )
        self._check(response, "fetching the policy")
        etag = response.headers.get("ETag", "")
        if not etag:
            raise PolicyOperationError("fetching the policy: the answer has no ETag")
        response.encoding = "utf-8"
        return Fetched(response.text, etag)

    def validate(self, text: str) -> Validation:
        response = self.transport.request(
            "POST",
            self._url("/validate"),
            "validating the policy",
            data=text.encode(),
            headers=self._headers(**{"Content-Type": "application/hujson"}),
        )
        if response.status_code in (401, 403) or response.status_code >= 500:
            self._check(response, "validating the policy")
        try:
            data: Any = response.json()
        except ValueError:
            data = {"message": response.text.strip()} if response.status_code >= 400 else {}
        if not isinstance(data, dict):
            data = {}
        details = []
        for item in data.get("data") or []:
            if isinstance(item, dict):
                errors = tuple(str(e) for e in item.get("errors") or [])
                details.append((str(item.get("user", "")), errors))
        message = str(data.get("message") or "")
        if response.status_code >= 400 and not message:
            message = f"HTTP {response.status_code}"
        return Validation(message, tuple(details))

    def post(self, text: str, etag: str) -> str:
        """Write the policy if it is still at ``etag``; the new ETag. 412 → PreconditionFailed."""
        response = self.transport.request(
            "POST",
            self._url(),
            "writing the policy",
            data=text.encode(),
            headers=self._headers(
                **{
                    "Content-Type": "application/hujson",
                    "If-Match": '"' + etag.strip().strip('"') + '"',
                }
            ),
        )
        if response.status_code == 412:
            raise PreconditionFailed(f"writing the policy: 412 {message_of(response)}")
        self._check(response, "writing the policy")
        return response.headers.get("ETag", "")
