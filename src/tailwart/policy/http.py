"""HTTP plumbing shared by the Tailscale and headscale adapters: retries and redaction.

Network errors, 429 and 5xx get bounded retries with exponential backoff;
every other answer goes back to the caller. Messages never carry a secret:
``redact`` removes the known secrets from any text before it is shown.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import PolicyOperationError

if TYPE_CHECKING:
    import requests

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass
class Transport:
    """A requests session with bounded retries and the secrets to keep out of messages."""

    secrets: list[str] = field(default_factory=list)
    attempts: int = 4
    backoff: float = 0.5
    timeout: float = 20.0
    sleep: Callable[[float], None] = time.sleep
    session: requests.Session | None = None

    def _session(self) -> requests.Session:
        if self.session is None:
            import requests

            self.session = requests.Session()
            # no .netrc: it would replace the Authorization header; proxies are passed per call
            self.session.trust_env = False
            # a private CA (a self-hosted headscale) still comes from the usual variables
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            if bundle:
                self.session.verify = bundle
        return self.session

    def request(self, method: str, url: str, what: str, **kwargs: Any) -> requests.Response:
        """One call with retries; raises PolicyOperationError after the last failed attempt."""
        import requests

        kwargs.setdefault("timeout", self.timeout)
        kwargs.setdefault("proxies", requests.utils.get_environ_proxies(url))
        last = ""
        for attempt in range(self.attempts):
            if attempt:
                self.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self._session().request(method, url, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code in RETRY_STATUS:
                last = f"HTTP {response.status_code}: {response.text[:200]}"
                continue
            return response
        raise PolicyOperationError(
            self.redact(f"{what}: {method} {url} failed after {self.attempts} attempts: {last}")
        )

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (longer than 3 characters) replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) > 3:
            text = text.replace(secret, "***")
    return text


def message_of(response: requests.Response) -> str:
    """The ``message`` of a JSON error answer, else the start of the body."""
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:300]
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])
    return response.text.strip()[:300]
