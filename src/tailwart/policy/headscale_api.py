"""headscale's policy API (``policy.mode: database``), v0.29.

- ``GET  /api/v1/policy`` → ``{"policy": "<hujson>", "updatedAt": "<time>"}``
- ``PUT  /api/v1/policy`` with ``{"policy": "<hujson>"}`` stores it (headscale
  parses it, runs its ``tests`` and rejects it on failure)
- ``POST /api/v1/policy/check`` with ``{"policy": ...}`` validates without
  storing (0.29+; older servers answer 404/405/501 and the check is skipped)

No ETag: ``updatedAt`` read just before the write narrows the race.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import PolicyAuthError, PolicyOperationError
from .http import Transport, message_of

if TYPE_CHECKING:
    import requests

KEY_HELP = (
    "create an API key on the headscale server (`headscale apikeys create`) and put it "
    "into .env as HEADSCALE_API_KEY"
)
#: what an empty database answers on GET before any policy was stored
EMPTY_POLICY = "{}\n"


@dataclass(frozen=True)
class Stored:
    """The stored policy and when it was last written ('' if never)."""

    text: str
    updated_at: str


@dataclass
class HeadscaleAPI:
    base_url: str
    api_key: str
    transport: Transport = field(default_factory=Transport)

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self.transport.secrets.append(self.api_key)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}", "Accept": "application/json"}

    def _check(self, response: requests.Response, what: str) -> None:
        if response.status_code in (401, 403):
            raise PolicyAuthError(
                self.transport.hide_sensitive(
                    f"{what}: headscale refused the API key ({response.status_code}: "
                    f"{message_of(response)}); {KEY_HELP}"
                )
            )
        if response.status_code >= 400:
            raise PolicyOperationError(
                self.transport.hide_sensitive(
                    f"{what}: HTTP {response.status_code}: {message_of(response)}"
                )
            )

    def get_policy(self) -> Stored:
        response = self.transport.request(
            "GET",
            f"{self.base_url}/api/v1/policy",
            "fetching the headscale policy",
            headers=self._headers(),
        )
        if response.status_code >= 400 and _no_policy_yet(response):
            return Stored(EMPTY_POLICY, "")
        self._check(response, "fetching the headscale policy")
        data = _json(response)
        return Stored(str(data.get("policy") or EMPTY_POLICY), _updated(data))

    def check(self, text: str) -> str | None:
        """headscale's verdict ('' = valid), or None when the server has no check endpoint."""
        response = self.transport.request(
            "POST",
            f"{self.base_url}/api/v1/policy/check",
            "checking the policy",
            json={"policy": text},
            headers=self._headers(),
        )
        if response.status_code in (404, 405, 501):
            return None
        if response.status_code in (401, 403) or response.status_code >= 500:
            self._check(response, "checking the policy")
        if response.status_code >= 400:
            return message_of(response) or f"HTTP {response.status_code}"
        return ""

    def put(self, text: str) -> Stored:
        response = self.transport.request(
            "PUT",
            f"{self.base_url}/api/v1/policy",
            "writing the headscale policy",
            json={"policy": text},
            headers=self._headers(),
        )
        self._check(response, "writing the headscale policy")
        data = _json(response)
        return Stored(str(data.get("policy") or text), _updated(data))


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        raise PolicyOperationError(
            f"headscale answered {response.status_code} with something that is not JSON"
        ) from None
    return data if isinstance(data, dict) else {}


def _updated(data: dict[str, Any]) -> str:
    return str(data.get("updatedAt") or data.get("updated_at") or "")


def _no_policy_yet(response: requests.Response) -> bool:
    text = message_of(response).lower()
    return "record not found" in text or "no policy" in text or "not found" in text


#: top-level fields headscale v0.29 accepts; it rejects the rest (postures, ipsets, ...)
HEADSCALE_FIELDS = frozenset(
    {
        "groups",
        "hosts",
        "tagOwners",
        "acls",
        "grants",
        "ssh",
        "autoApprovers",
        "nodeAttrs",
        "tests",
        "sshTests",
    }
)


def adapt_snippet(snippet: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The snippet in headscale's dialect, and a note per change.

    headscale has no ``autogroup:admin`` (tag owners are users ``name@``, groups
    or tags) and rejects fields it does not know, so those are left out with a
    note instead of failing the whole policy.
    """
    notes: list[str] = []
    out: dict[str, Any] = {}
    for key, value in snippet.items():
        if key not in HEADSCALE_FIELDS:
            notes.append(f"headscale does not support {key!r}: left out of the merge")
            continue
        out[key] = value
    owners = out.get("tagOwners")
    if isinstance(owners, dict):
        adapted: dict[str, Any] = {}
        dropped: set[str] = set()
        for tag, names in owners.items():
            if isinstance(names, list):
                keep = [n for n in names if not (isinstance(n, str) and n.startswith("autogroup:"))]
                dropped |= {n for n in names if n not in keep}
                adapted[tag] = keep
            else:
                adapted[tag] = names
        out["tagOwners"] = adapted
        for name in sorted(dropped):
            notes.append(
                f"headscale has no {name}: dropped from the snippet's tagOwners (add your admin "
                "user 'name@' or a group as owner in the headscale policy)"
            )
    return out, notes
