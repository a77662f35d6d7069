"""HTTPS through the edge's main Caddy, as an internet client sees it.

The doctor dials the edge (``--edge``, EDGE_PUBLIC_IP or MAIL_HOSTNAME; its :443 mapped
by ``--port 443=N``), asks for ``host`` by SNI and Host header, and verifies the
certificate against the system store plus ``--ca-file``. No redirect is followed and
no retry is made; the body is read up to a limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .registry import DoctorContext

#: the vhost port (doctor's --port 443=N maps it in tests)
HTTPS_PORT = 443
#: a document is read up to this size (RFC 8461 3.3 suggests senders cap a policy at 64 KiB)
READ_LIMIT = 64 * 1024


class EdgeHttpError(Exception):
    """No answer (refused, TLS, timeout), said in words without a secret."""


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes
    #: the body went past the limit (what was read is ``body``)
    truncated: bool = False


def fetch(
    ctx: DoctorContext,
    host: str,
    path: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    limit: int = READ_LIMIT,
) -> Answer:
    """``method https://host/path`` through the edge; EdgeHttpError when nothing answers."""
    import urllib3

    pool = urllib3.HTTPSConnectionPool(
        ctx.address(ctx.edge_host()),
        port=ctx.edge_port(HTTPS_PORT),
        server_hostname=host,
        assert_hostname=host,
        ca_certs=ctx.options.ca_file or None,
        cert_reqs="CERT_REQUIRED",
        timeout=urllib3.Timeout(total=ctx.timeout),
        retries=False,
    )
    try:
        response = pool.urlopen(
            method,
            path,
            body=body,
            headers={"Host": host, **(headers or {})},
            redirect=False,
            preload_content=False,
        )
        data = response.read(limit + 1)
        response.release_conn()
    except urllib3.exceptions.SSLError as exc:
        raise EdgeHttpError(f"TLS for {host} failed: {_reason(exc)}") from None
    except urllib3.exceptions.HTTPError as exc:
        raise EdgeHttpError(f"no answer for {host} ({_reason(exc)})") from None
    finally:
        pool.close()
    return Answer(
        response.status,
        str(response.headers.get("Content-Type", "")),
        data[:limit],
        len(data) > limit,
    )


def _reason(exc: BaseException) -> str:
    """urllib3's error on one line, shortened (it names the address and the socket's
    error; it never holds a header, so no credential)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
