"""Diff, plan and apply against a store seeded as reference §12 saw a fresh v0.16.18.

The in-memory store here only keeps objects (get/set by id, top-level patch, masked
secrets on read); what a real server answers is replayed from recorded exchanges in
test_stalwart_replay.py.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tailwart.settings import from_mapping
from tailwart.settings.example import example_values
from tailwart.stalwart import desired as d
from tailwart.stalwart.jmap import StalwartError
from tailwart.stalwart.plan import CREATE, DELETE, UPDATE, diff
from tailwart.stalwart.plan import shown as redact
from tailwart.stalwart.provision import EXIT_NEEDS_RESTART, Options, provision
from tailwart.stalwart.schema import load
from tailwart.stalwart.versions import CURRENT

SEEDED_LISTENERS = {
    "smtp": 25,
    "submissions": 465,
    "imaps": 993,
    "pop3s": 995,
    "sieve": 4190,
    "https": 443,
    "http": 8080,
}


class Store:
    """Objects by type and id, answering the JMAP calls the client makes."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, dict[str, Any]]] = {}
        self.next = 100
        self.actions: list[dict[str, Any]] = []
        self.refuse: set[str] = set()
        self.ignore_update: set[str] = set()
        for name, port in SEEDED_LISTENERS.items():
            self.add(
                CURRENT.listener,
                {
                    "name": name,
                    "bind": {f"[::]:{port}": True},
                    "protocol": {"imaps": "imap", "pop3s": "pop3", "sieve": "manageSieve"}.get(
                        name, "http" if "http" in name else "smtp"
                    ),
                    "useTls": True,
                    "tlsImplicit": port in (465, 993, 995, 443),
                    "overrideProxyTrustedNetworks": {},
                    "maxConnections": 8192,
                },
            )
        self.add(CURRENT.route, {"@type": "Mx", "name": "mx", "maxMxHosts": 5})
        self.add(CURRENT.route, {"@type": "Local", "name": "local"})
        self.add(CURRENT.tracer, {"@type": "Log", "path": "/var/log/stalwart", "level": "info"})
        one = CURRENT.singleton_id
        self.objects[CURRENT.system] = {
            one: {
                "id": one,
                "defaultHostname": "",
                "proxyTrustedNetworks": {},
                "maxConnections": 8192,
            }
        }
        self.objects[CURRENT.blob_store] = {one: {"id": one, "@type": "Default"}}
        self.objects[CURRENT.memory_store] = {one: {"id": one, "@type": "Default"}}
        self.objects[CURRENT.search_store] = {one: {"id": one, "@type": "Default"}}
        # upstream's seeded ban settings (x:Security's schema defaults; durations in ms)
        self.objects[CURRENT.security] = {
            one: {"id": one, "authBanRate": {"count": 100, "period": 86_400_000}}
        }
        self.objects[CURRENT.http] = {
            one: {
                "id": one,
                "allowedEndpoints": {"match": {}, "else": "200"},
                "useXForwarded": False,
            }
        }
        # a fresh store's metrics: the Prometheus endpoint off (recorded in 01-first-start)
        self.objects[CURRENT.metrics] = {
            one: {
                "id": one,
                "metrics": {},
                "metricsPolicy": "exclude",
                "openTelemetry": {"@type": "Disabled"},
                "prometheus": {"@type": "Disabled"},
            }
        }
        # a fresh store's MTA-STS policy: the schema's defaults (x:MtaSts)
        self.objects[CURRENT.mta_sts] = {
            one: {"id": one, "mode": "testing", "maxAge": 604_800_000, "mxHosts": {}}
        }
        self.objects[CURRENT.outbound] = {
            one: {
                "id": one,
                "route": {
                    "match": {"0": {"if": "is_local_domain(rcpt_domain)", "then": "'local'"}},
                    "else": "'mx'",
                },
                "tls": copy.deepcopy(d.MX_TLS_EXPRESSION),
            }
        }

    def add(self, type_name: str, obj: dict[str, Any]) -> str:
        ident = f"i{self.next}"
        self.next += 1
        self.objects.setdefault(type_name, {})[ident] = {"id": ident, **obj}
        return ident

    def read(self, obj: dict[str, Any]) -> dict[str, Any]:
        def mask(v: Any) -> Any:
            if isinstance(v, dict):
                if v.get("@type") == "Value" and "secret" in v:
                    return {"@type": "Value", "secret": "****"}
                return {k: mask(x) for k, x in v.items()}
            return v

        masked: dict[str, Any] = mask(copy.deepcopy(obj))
        return masked

    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        assert "urn:stalwart:jmap" in body["using"]
        (method, args, call) = body["methodCalls"][0]
        type_name, verb = method.split("/")
        objects = self.objects.setdefault(type_name, {})
        if verb == "get":
            ids = args["ids"]
            found = [self.read(o) for i, o in objects.items() if ids is None or i in ids]
            if ids is None and type_name in (CURRENT.system, CURRENT.http):
                found = []  # §12: singletons answer only to ids ["singleton"]
            return {"methodResponses": [[method, {"list": found, "state": None}, call]]}
        result: dict[str, Any] = {}
        if type_name == CURRENT.action:
            self.actions += list(args["create"].values())
            return {"methodResponses": [[method, {"created": {"reload": {"id": "a1"}}}, call]]}
        for key, value in (args.get("create") or {}).items():
            if type_name in self.refuse:
                result.setdefault("notCreated", {})[key] = {
                    "type": "invalidProperties",
                    "description": "refused",
                }
                continue
            result.setdefault("created", {})[key] = {"id": self.add(type_name, value)}
        for ident, patch in (args.get("update") or {}).items():
            if type_name not in self.ignore_update:
                objects[ident].update(copy.deepcopy(patch))
            result.setdefault("updated", {})[ident] = None
        for ident in args.get("destroy") or []:
            del objects[ident]
            result.setdefault("destroyed", []).append(ident)
        return {"methodResponses": [[method, result, call]]}

    def schema_hash(self) -> str:
        return CURRENT.schema_hash


def settings(**overrides: str) -> Any:
    return from_mapping({**example_values(), **overrides})


def run(store: Store, s: Any, **options: Any) -> tuple[int, list[str]]:
    lines: list[str] = []
    restarts: list[bool] = []
    code = provision(
        s, Options(**options), lines.append, restart=lambda: restarts.append(True), transport=store
    )
    if restarts:
        lines.append("<restarted>")
    return code, lines


def test_fresh_store_plan_creates_updates_and_deletes_only_owned_objects() -> None:
    store = Store()
    live = {
        t: [store.read(o) for o in store.objects.get(t, {}).values()] for t in CURRENT.owned_types()
    }
    plan = diff(d.desired_state(settings()), live, load())
    got = {(c.action, c.type, c.key) for c in plan.changes}
    assert (CREATE, CURRENT.listener, "submission") in got
    assert (CREATE, CURRENT.listener, "imap") in got
    assert (UPDATE, CURRENT.listener, "smtp") in got
    assert {k for a, t, k in got if a == DELETE and t == CURRENT.listener} == {
        "pop3s",
        "sieve",
        "https",
    }
    assert (DELETE, CURRENT.tracer, "Log") in got
    assert (CREATE, CURRENT.domain, "example.org") in got
    # mx and local exist as seeded: nothing to do
    assert not {k for _, t, k in got if t == CURRENT.route}
    assert plan.effect == d.RESTART
    smtp = next(c for c in plan.changes if c.key == "smtp")
    # only the differing owned fields are written: maxConnections is not tailwart's
    assert set(smtp.fields) == {"overrideProxyTrustedNetworks"}


def test_apply_then_second_run_changes_nothing() -> None:
    store = Store()
    s = settings()
    code, lines = run(store, s, restart="auto")
    assert code == 0, lines
    assert "verified: the server holds exactly what .env describes" in lines
    assert lines[-1] == "<restarted>"
    # one reload right after the ACME provider (before the domain starts an order), one
    # at the end
    assert store.actions == [{"@type": "ReloadSettings"}] * 2
    assert "  reloaded (x:Action ReloadSettings) before what follows" in lines
    domain_id = next(iter(store.objects[CURRENT.domain]))
    assert store.objects[CURRENT.system]["singleton"]["defaultDomainId"] == domain_id
    assert store.objects[CURRENT.system]["singleton"]["maxConnections"] == 8192  # untouched
    code, lines = run(store, s)
    assert (code, lines) == (0, ["no changes: the server holds exactly what .env describes"])
    assert run(store, s, check=True, certificate=False)[0] == 0
    # no drift, but no certificate yet (ACME issues it later): --check says so, exit 1
    code, lines = run(store, s, check=True)
    assert code == 1
    assert lines[:2] == [
        "no changes: the server holds exactly what .env describes",
        f"certificate problem: no valid certificate for {s['MAIL_HOSTNAME']}: Stalwart serves "
        "its own self-signed one",
    ]
    assert lines[2].startswith("  → STALWART_TLS=acme-http: check that the JMAP vhost")


def test_drift_is_detected_by_check_and_repaired() -> None:
    store = Store()
    s = settings()
    run(store, s)
    smtp = next(o for o in store.objects[CURRENT.listener].values() if o["name"] == "smtp")
    smtp["overrideProxyTrustedNetworks"] = {"0.0.0.0/0": True}
    code, lines = run(store, s, check=True)
    assert code == 1
    assert lines[0] == f"update  {CURRENT.listener} smtp  (needs a Stalwart restart)"
    assert smtp["overrideProxyTrustedNetworks"] == {"0.0.0.0/0": True}  # --check wrote nothing
    code, lines = run(store, s, restart="never")
    assert code == EXIT_NEEDS_RESTART
    assert lines[-2:] == [
        "still needs a Stalwart restart (listeners, stores, PROXY trust are fixed at start):",
        f"  update {CURRENT.listener} smtp",
    ]
    assert set(smtp["overrideProxyTrustedNetworks"]) == {"100.64.0.10/32", "fd7a:115c:a1e0::a/128"}


def test_secrets_are_compared_by_reference_and_never_printed() -> None:
    store = Store()
    s = settings(
        STALWART_SMARTHOST="relay.example.net:587",
        STALWART_SMARTHOST_USER="mailer",
        STALWART_SMARTHOST_PASSWORD="relay-password-0123",
    )
    run(store, s)
    relay = next(o for o in store.objects[CURRENT.route].values() if o["name"] == "smarthost")
    # an operator typed the password inline in the web admin: reads show "****"
    relay["authSecret"] = {"@type": "Value", "secret": "typed-inline"}
    _, lines = run(store, s, dry_run=True)
    text = "\n".join(lines)
    assert "authSecret" in text and "typed-inline" not in text and "****" in text
    assert s["STALWART_REDIS_PASSWORD"] not in text
    _, lines = run(store, s, as_json=True, dry_run=True)
    assert json.loads("\n".join(lines))["changes"][0]["key"] == "smarthost"


def test_redis_password_is_masked_in_the_plan() -> None:
    s = settings()
    shown = json.dumps(redact({"url": d.redis_url(s)}))
    assert s["STALWART_REDIS_PASSWORD"] not in shown and "redis://:****@" in shown


def test_any_refusal_is_a_failure_naming_the_object() -> None:
    store = Store()
    store.refuse.add(CURRENT.domain)
    with pytest.raises(StalwartError, match=r"x:Domain/set: notCreated new: refused"):
        run(store, settings())


def test_a_write_the_server_did_not_keep_is_drift_after_apply() -> None:
    store = Store()
    store.ignore_update.add(CURRENT.http)
    with pytest.raises(
        StalwartError, match=r"drift remains after apply \(update x:Http singleton\)"
    ):
        run(store, settings())


def test_unknown_schema_hash_is_refused_before_any_read() -> None:
    store = Store()
    store.schema_hash = lambda: "someOtherHash"  # type: ignore[method-assign]
    with pytest.raises(StalwartError, match="not one tailwart knows"):
        run(store, settings())
    assert store.actions == []


def test_objects_tailwart_does_not_own_are_never_touched() -> None:
    store = Store()
    extra = store.add(CURRENT.listener, {"name": "lmtp-internal", "bind": {"[::]:24": True}})
    otel = store.add(CURRENT.tracer, {"@type": "OtelHttp", "endpoint": "http://otel"})
    run(store, settings())
    assert extra in store.objects[CURRENT.listener] and otel in store.objects[CURRENT.tracer]


def test_management_url_defaults_to_the_mailbox_over_the_tailnet() -> None:
    from tailwart.stalwart.provision import management_url

    assert management_url(settings()) == "http://stalwart.tail1234.ts.net:8080"
    other = settings(STALWART_MANAGEMENT_URL="https://10.9.8.7:18080/")
    assert management_url(other) == "https://10.9.8.7:18080"


def test_a_malformed_recovery_admin_is_refused_without_showing_it() -> None:
    from tailwart.settings import SettingsError

    with pytest.raises(SettingsError) as raised:
        settings(STALWART_RECOVERY_ADMIN="no-password-" + "x" * 20 + ":")
    assert "STALWART_RECOVERY_ADMIN: must be a password, or name:password" in str(raised.value)
    assert "no-password-" not in str(raised.value)


def test_unknown_restart_mode_and_phase_are_usage_errors() -> None:
    from tailwart.errors import UsageError

    with pytest.raises(UsageError, match="--restart 'sometimes'"):
        run(Store(), settings(), restart="sometimes")
    with pytest.raises(UsageError, match="--phase 'listeners'"):
        run(Store(), settings(), phase="listeners")


class Recording(Store):
    """The store, keeping every x:Domain update in order (what Stalwart reacts to)."""

    def __init__(self) -> None:
        super().__init__()
        self.domain_updates: list[dict[str, Any]] = []

    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        method, args, _ = body["methodCalls"][0]
        if method == f"{CURRENT.domain}/set":
            self.domain_updates += list((args.get("update") or {}).values())
        return super().post(body)


def test_a_restart_after_an_order_passes_certificates_through_manual_again() -> None:
    """Stalwart starts a certificate order on Manual → Automatic; a restart while it runs
    leaves its task locked for an hour, so after the restart the transition is made again."""
    store = Recording()
    lines: list[str] = []
    seen_at_restart: list[int] = []
    code = provision(
        settings(),
        Options(restart="auto"),
        lines.append,
        restart=lambda: seen_at_restart.append(len(store.domain_updates)),
        transport=store,
    )
    assert code == 0, lines
    after = store.domain_updates[seen_at_restart[0] :]
    kinds = [u["certificateManagement"]["@type"] for u in after if "certificateManagement" in u]
    assert kinds == ["Manual", "Automatic"], after
    assert any("passed through Manual again after the restart" in line for line in lines)
    # a run that changes nothing orders nothing
    store.domain_updates.clear()
    assert run(store, settings(), restart="auto")[0] == 0
    assert store.domain_updates == []


def test_new_names_order_at_once_through_manual_and_never_restart_says_so() -> None:
    store = Recording()
    assert run(store, settings(), restart="auto")[0] == 0
    store.domain_updates.clear()
    code, lines = run(store, settings(MAIL_HOSTNAME_ALIASES="imap.example.org"), restart="never")
    # (this fake store masks the Redis URL's password, so it always asks for a restart)
    assert code == 3, lines
    assert any("a certificate order has started" in line for line in lines), lines
    kinds = [u["certificateManagement"]["@type"] for u in store.domain_updates]
    assert kinds == ["Manual", "Automatic"]
    assert any('(via {"@type": "Manual"})' in line for line in lines), lines
