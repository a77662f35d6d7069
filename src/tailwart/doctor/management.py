"""The management plane from the internet: tailwart's login must not manage Stalwart there.

The probe sends ``POST /jmap`` with an ``x:`` method and the management login through
the public JMAP vhost (``https://MAIL_HOSTNAME/jmap`` at the edge), as any internet
client would. The vhost may refuse it (403: the login's name in the Authorization
header), or Stalwart refuses it (401: the credential's ``allowedIps`` do not hold the
address PROXY v2 reports). Anything that answers the method is an error.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from ..findings import Finding
from .registry import Check, DoctorContext, error, ok, warning

GROUP = "management"
#: the vhost port (doctor's --port 443=N maps it in tests)
HTTPS_PORT = 443
#: the answer is read up to this size: the probe needs the status and the first bytes
READ_LIMIT = 64 * 1024
ADVICE = (
    "the management login works from outside STALWART_MANAGEMENT_NETWORKS: make sure those "
    "networks hold only the tailnet (and not the address this host reaches the edge from), "
    "then inv recover; rotate the password: inv rotate-management"
)


def probe_body(capability: str) -> bytes:
    return json.dumps(
        {
            "using": ["urn:ietf:params:jmap:core", capability],
            "methodCalls": [["x:Domain/get", {"ids": None}, "c0"]],
        }
    ).encode()


def _post(ctx: DoctorContext, body: bytes) -> tuple[int, bytes]:
    import urllib3

    from ..stalwart.management import login

    host = ctx.settings["MAIL_HOSTNAME"]
    user, password = login(ctx.settings)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
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
            "POST",
            "/jmap",
            body=body,
            headers={
                "Host": host,
                "Content-Type": "application/json",
                "Authorization": f"Basic {token}",
            },
            redirect=False,
            preload_content=False,
        )
        data = response.read(READ_LIMIT)
        response.release_conn()
        return response.status, data
    finally:
        pool.close()


def _answered(data: bytes) -> bool:
    """Did the server run the method (an answer that is not an error)?"""
    try:
        doc: Any = json.loads(data)
    except ValueError:
        return False
    calls = doc.get("methodResponses") if isinstance(doc, dict) else None
    return (
        isinstance(calls, list)
        and bool(calls)
        and isinstance(calls[0], list)
        and bool(calls[0])
        and calls[0][0] != "error"
    )


def internet_refused(ctx: DoctorContext) -> Finding:
    from ..stalwart.versions import CURRENT

    where = f"POST https://{ctx.settings['MAIL_HOSTNAME']}/jmap through the edge"
    try:
        status, data = _post(ctx, probe_body(CURRENT.capability))
    except Exception as exc:  # urllib3's errors carry no secret; say what failed
        return warning(
            f"{where}: no answer ({type(exc).__name__})",
            "is the edge host's main Caddy serving the JMAP vhost? (inv doctor --only tls)",
        )
    if status == 403:  # the vhost's wall, or Stalwart: a credential outside its allowedIps
        return ok(f"{where}: the management login is refused (403)")
    if status == 401:
        return ok(f"{where}: Stalwart refuses the management login from the internet (401)")
    if status == 200 and _answered(data):
        return error(f"{where}: the management login ran an x: method from the internet", ADVICE)
    if status == 200:
        return error(
            f"{where}: Stalwart accepted the management login from the internet "
            "(the method itself was refused)",
            ADVICE,
        )
    return warning(
        f"{where}: answered {status}, neither a refusal nor an answer",
        "look at the edge host's main Caddy and Stalwart's log",
    )


def checks(ctx: DoctorContext) -> list[Check]:
    if not ctx.settings["STALWART_MANAGEMENT_PASSWORD"]:
        return []
    title = "the management login is refused from the internet"
    return [Check("management.internet", GROUP, title, internet_refused)]
