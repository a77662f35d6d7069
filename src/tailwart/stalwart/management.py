"""tailwart's own management login: an account that only the tailnet may use.

In Stalwart v0.16 management is JMAP itself (``POST /jmap`` with ``x:`` methods), so
no path filter keeps it private: the credential must. tailwart manages with
``STALWART_MANAGEMENT_USER@MAIL_DOMAIN``, a user whose one password credential
carries ``allowedIps`` = ``STALWART_MANAGEMENT_NETWORKS`` (Stalwart refuses the
login from any other source, checked at the server on the address PROXY v2 gives
it) and whose custom role grants exactly the types tailwart owns. The recovery
admin (``STALWART_RECOVERY_ADMIN``) reaches Stalwart only in recovery mode, which
is where this login's role and account are written: the login cannot widen its own
rights, since neither ``x:Role`` nor ``x:Account`` is among them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..settings import Settings
from ..settings.contract import split_pair
from .desired import management_networks
from .jmap import Client, StalwartError
from .schema import Schema
from .versions import Model

#: the role is found by its description (x:Role has no name)
ROLE_DESCRIPTION = "tailwart management"
#: what a type's permissions are called after its prefix
VERBS = ("Get", "Query", "Create", "Update", "Destroy")
#: beyond the owned types: signing in, the reloads provision triggers (an x:Action
#: create, each action also by its own permission; seen live: without sysActionCreate
#: Stalwart refuses the reload), changing its own password (inv rotate-management), and
#: reading the outbound queue (inv doctor's stalwart.queue; never changing it) and the
#: cluster's node leases (Stalwart's own)
EXTRA_PERMISSIONS = (
    "authenticate",
    "sysQueuedMessageGet",
    "sysQueuedMessageQuery",
    "sysClusterNodeGet",
    "sysClusterNodeQuery",
    "sysActionCreate",
    "actionReloadSettings",
    "actionReloadTlsCertificates",
    "sysAccountPasswordGet",
    "sysAccountPasswordUpdate",
)


def login(settings: Settings) -> tuple[str, str]:
    """(login name, password) tailwart manages with; the password is never shown."""
    return (
        f"{settings['STALWART_MANAGEMENT_USER']}@{settings['MAIL_DOMAIN']}",
        settings["STALWART_MANAGEMENT_PASSWORD"],
    )


def recovery_login(settings: Settings) -> tuple[str, str]:
    """(name, password) of STALWART_RECOVERY_ADMIN (the .env check refused any other form)."""
    return split_pair(settings["STALWART_RECOVERY_ADMIN"])


def permissions(model: Model, schema: Schema) -> list[str]:
    """Exactly what tailwart owns: each owned type's verbs that exist, and the extras. The
    cluster types are among them with one node too: a node added later needs no wider
    login."""
    known = schema.permissions()
    owned = model.write_order()
    wanted = [f"{schema.permission_prefix(t)}{verb}" for t in owned for verb in VERBS]
    out = [p for p in (*wanted, *EXTRA_PERMISSIONS) if p in known]
    missing = [p for p in EXTRA_PERMISSIONS if p not in known]
    if missing:
        raise StalwartError(f"the server's schema lacks the permissions {', '.join(missing)}")
    return sorted(set(out))


def role_fields(model: Model, schema: Schema) -> dict[str, Any]:
    return {
        "description": ROLE_DESCRIPTION,
        "enabledPermissions": dict.fromkeys(permissions(model, schema), True),
    }


def account_fields(settings: Settings, domain_id: str, role_id: str) -> dict[str, Any]:
    """The user, its custom role and its one password credential (secret included)."""
    return {
        "@type": "User",
        "name": settings["STALWART_MANAGEMENT_USER"],
        "domainId": domain_id,
        "description": "tailwart's management login (tailnet only)",
        "roles": {"@type": "Custom", "roleIds": {role_id: True}},
        "credentials": {
            "0": {
                "@type": "Password",
                "secret": settings["STALWART_MANAGEMENT_PASSWORD"],
                "allowedIps": dict.fromkeys(management_networks(settings), True),
            }
        },
    }


def _one(found: list[dict[str, Any]], what: str) -> dict[str, Any] | None:
    if len(found) > 1:
        raise StalwartError(f"{what}: {len(found)} objects match; expected at most one")
    return found[0] if found else None


def ensure(client: Client, settings: Settings, schema: Schema, out: Callable[[str], None]) -> None:
    """Create or correct the management role and account (recovery mode: the recovery
    admin is the caller). The password is written every time: it reads back masked."""
    model = client.model
    roles = client.call(f"{model.role}/get", {"ids": None}).get("list") or []
    role = _one([r for r in roles if r.get("description") == ROLE_DESCRIPTION], model.role)
    fields = role_fields(model, schema)
    if role is None:
        created = client.set(model.role, create={"new": fields})
        role_id = str(((created.get("created") or {}).get("new") or {}).get("id") or "")
        if not role_id:
            raise StalwartError(f"{model.role}/set created the role without an id")
        out(f"  create {model.role} {ROLE_DESCRIPTION!r}: done")
    else:
        role_id = str(role["id"])
        client.set(model.role, update={role_id: fields})
        out(f"  update {model.role} {ROLE_DESCRIPTION!r}: done")
    domains = client.call(f"{model.domain}/get", {"ids": None}).get("list") or []
    domain = _one([d for d in domains if d.get("name") == settings["MAIL_DOMAIN"]], model.domain)
    if domain is None:
        created = client.set(model.domain, create={"new": {"name": settings["MAIL_DOMAIN"]}})
        domain_id = str(((created.get("created") or {}).get("new") or {}).get("id") or "")
        out(f"  create {model.domain} {settings['MAIL_DOMAIN']}: done")
    else:
        domain_id = str(domain["id"])
    account = _find_account(client, settings, domain_id)
    fields = account_fields(settings, domain_id, role_id)
    if account is None:
        client.set(model.account, create={"new": fields})
        out(f"  create {model.account} {login(settings)[0]}: done")
    else:
        client.set(model.account, update={str(account["id"]): fields})
        out(f"  update {model.account} {login(settings)[0]}: done (password written again)")


def _find_account(client: Client, settings: Settings, domain_id: str) -> dict[str, Any] | None:
    model = client.model
    found = client.call(
        f"{model.account}/query", {"filter": {"name": settings["STALWART_MANAGEMENT_USER"]}}
    )
    ids = [str(i) for i in found.get("ids") or []]
    if not ids:
        return None
    got = client.call(f"{model.account}/get", {"ids": ids}).get("list") or []
    mine = [a for a in got if str(a.get("domainId")) == domain_id]
    return _one(mine, model.account)
