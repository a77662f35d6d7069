"""HTTP plumbing shared by the Tailscale and headscale adapters: retries and masking.

Network errors, 429 and 5xx get bounded retries with exponential backoff;
every other answer goes back to the caller. Messages never carry a secret:
``Transport.hide_sensitive`` masks the known secrets and credential shapes in any text
before it is shown.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..flags import CONTROL
from ..masking import hide_credentials, hide_sensitive
from .errors import PolicyInputError, PolicyOperationError

if TYPE_CHECKING:
    import requests

    from ..settings import Settings

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
            # no .netrc: it would replace the Authorization header; proxies are passed per
            # call, for https only
            self.session.trust_env = False
            # a private CA (a self-hosted headscale) still comes from the usual variables
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            if bundle:
                self.session.verify = bundle
        return self.session

    def request(self, method: str, url: str, what: str, **kwargs: Any) -> requests.Response:
        """One call with retries; raises PolicyOperationError after the last failed attempt."""
        import requests

        problem = url_problem(url) or headers_problem(kwargs.get("headers") or {})
        if problem:
            raise PolicyInputError(f"{what}: {self.hide_sensitive(problem)}; nothing was sent")
        kwargs.setdefault("timeout", self.timeout)
        # a proxy from the environment only for https (it sees a TLS tunnel): over plain
        # http it would read the bearer token
        proxies = requests.utils.get_environ_proxies(url) if url.startswith("https:") else {}
        kwargs.setdefault("proxies", proxies)
        last = ""
        for attempt in range(self.attempts):
            if attempt:
                self.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self._session().request(method, url, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            except (requests.RequestException, ValueError, UnicodeError) as exc:
                # InvalidURL, InvalidHeader, a bad proxy...: retrying cannot help; the
                # message may quote a header (a secret), so it is masked like every other
                raise PolicyOperationError(
                    self.hide_sensitive(f"{what}: {method} {url}: {type(exc).__name__}: {exc}")
                ) from None
            if response.status_code in RETRY_STATUS:
                last = f"HTTP {response.status_code}: {response.text[:200]}"
                continue
            return response
        raise PolicyOperationError(
            self.hide_sensitive(
                f"{what}: {method} {url} failed after {self.attempts} attempts: {last}"
            )
        )

    def hide_sensitive(self, text: str) -> str:
        """``text`` with this transport's secrets and every credential shape masked."""
        return hide_sensitive(text, self.secrets)


def credential_problem(name: str, value: str) -> str | None:
    """Why ``value`` (a secret) cannot go into an HTTP header, without showing it; else None."""
    if CONTROL.search(value):
        return f"{name} holds a control character (a stray newline?); it cannot be sent"
    if value != value.strip():
        return f"{name} has leading or trailing whitespace; it cannot be sent"
    if not value.isascii():
        return f"{name} holds non-ASCII characters; it cannot be sent in an HTTP header"
    return None


def headers_problem(headers: Mapping[str, str]) -> str | None:
    """The first header that cannot be sent as is (value never shown); else None."""
    for name, value in headers.items():
        if CONTROL.search(name) or CONTROL.search(value) or value != value.strip():
            return f"header {name} holds a control character or surrounding whitespace"
    return None


def url_problem(url: str) -> str | None:
    """Why ``url`` is no usable http(s) URL (control characters, spaces, no host); else None."""
    from urllib.parse import urlsplit

    if CONTROL.search(url) or " " in url:
        return f"URL {url!r} holds a control character or a space"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as exc:
        return f"URL {url!r} is not valid ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"URL {url!r} must be http:// or https:// with a host"
    return None


def check_request_inputs(
    settings: Settings, secret_keys: Iterable[str], url: tuple[str, str]
) -> None:
    """Raise PolicyInputError (exit 2) naming every credential or URL that cannot be sent."""
    problems = [
        p for k in secret_keys if settings[k] for p in [credential_problem(k, settings[k])] if p
    ]
    name, value = url
    if value:
        problem = url_problem(value)
        if problem:
            problems.append(f"{name}: {hide_credentials(problem)}")
    if problems:
        raise PolicyInputError("nothing was sent:\n" + "\n".join(f"  {p}" for p in problems))


def message_of(response: requests.Response) -> str:
    """The ``message`` of a JSON error answer, else the start of the body."""
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:300]
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])
    return response.text.strip()[:300]
