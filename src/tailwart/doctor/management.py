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
from .edge_https import EdgeHttpError, fetch
from .registry import Check, DoctorContext, error, ok, warning

GROUP = "management"
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
    from ..stalwart.management import login

    user, password = login(ctx.settings)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    headers = {"Content-Type": "application/json", "Authorization": f"Basic {token}"}
    answer = fetch(ctx, ctx.settings["MAIL_HOSTNAME"], "/jmap", "POST", body, headers)
    return answer.status, answer.body


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
    except EdgeHttpError as exc:
        return warning(
            f"{where}: no answer: {exc}",
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
