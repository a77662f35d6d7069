"""The object model: the committed schema extract, and the desired state checked against it.

The oracle is upstream's schema file (the server serves the same document at
/api/schema/<hash>); tailwart's desired objects must use only its types, fields,
variants and enum values.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tailwart.settings import from_mapping
from tailwart.settings.example import example_values
from tailwart.stalwart import desired as d
from tailwart.stalwart.schema import load, render_extract
from tailwart.stalwart.versions import CURRENT, MODELS, refusal

FULL_SCHEMA = Path(
    os.environ.get(
        "TAILWART_STALWART_SCHEMA", "/work/shared/reference/stalwart-0.16.18-schema.json.gz"
    )
)
EXTRACT = Path(__file__).resolve().parents[2] / "src/tailwart/stalwart" / CURRENT.extract


def full_schema() -> dict[str, Any]:
    if not FULL_SCHEMA.exists():
        pytest.skip(f"upstream's schema file is not here ({FULL_SCHEMA}); the live suite checks it")
    data: dict[str, Any] = json.loads(gzip.decompress(FULL_SCHEMA.read_bytes()))
    return data


def test_schema_file_is_the_one_the_model_is_keyed_by() -> None:
    full_schema()
    digest = hashlib.sha256(FULL_SCHEMA.read_bytes()).digest()
    assert base64.urlsafe_b64encode(digest).decode().rstrip("=") == CURRENT.schema_hash
    assert MODELS[CURRENT.schema_hash] is CURRENT


def test_committed_extract_is_regenerated_byte_for_byte() -> None:
    assert EXTRACT.read_text() == render_extract(full_schema())


def settings(**overrides: str) -> Any:
    return from_mapping({**example_values(), **overrides})


def _enum(full: dict[str, Any], type_: dict[str, Any]) -> list[str]:
    return [e["name"] for e in full["enums"][type_["enumName"]]]


def _check(full: dict[str, Any], schema_name: str, fields: dict[str, Any], where: str) -> None:
    """Every field exists in ``schema_name`` and every enum/variant value is one it allows."""
    props = full["fields"][schema_name]["properties"]
    for name, value in fields.items():
        if name == "@type":
            continue
        assert name in props, f"{where}: {name} is not a field of {schema_name}"
        type_ = props[name]["type"]
        assert props[name]["update"] != "serverSet", f"{where}: {name} is server-set"
        if isinstance(value, d.Ref):
            # a reference names the type the schema says the field points at
            assert type_ == {
                "type": "objectId",
                "objectName": value.type,
                **({"nullable": True} if type_.get("nullable") else {}),
            }, f"{where}: {name} → {value.type}"
            continue
        if type_["type"] == "enum":
            assert value in _enum(full, type_), f"{where}: {name}={value!r}"
        if type_["type"] == "object" and isinstance(value, dict):
            _check_object(full, type_["objectName"], value, f"{where}.{name}")


def _check_object(full: dict[str, Any], type_name: str, value: dict[str, Any], where: str) -> None:
    schema = full["schemas"][type_name]
    if schema["type"] == "multiple":
        variants = {v["name"]: v.get("schemaName") for v in schema["variants"]}
        assert value.get("@type") in variants, f"{where}: @type {value.get('@type')!r}"
        target = variants[value["@type"]]
        if target:
            _check(full, target, value, where)
        else:
            assert set(value) == {"@type"}, f"{where}: fields on a variant that has none"
    else:
        _check(full, schema["schemaName"], value, where)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"STALWART_SMARTHOST": "relay.example.net:587"},
        {
            "STALWART_SMARTHOST": "relay.example.net:465",
            "STALWART_SMARTHOST_TLS": "implicit",
            "STALWART_SMARTHOST_USER": "mailer",
            "STALWART_SMARTHOST_PASSWORD": "relay-password-0123",
        },
        {"STALWART_TLS": "acme-http", "MAIL_HOSTNAME_ALIASES": "imap.example.org"},
        {
            "STALWART_TLS": "acme-dns",
            "ACME_DNS_SERVER": "192.0.2.53",
            "ACME_DNS_TSIG_KEY": "tailwart-acme",
            "ACME_DNS_TSIG_SECRET": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0",
        },
        {
            "STALWART_TLS": "files",
            "STALWART_TLS_CERT_FILE": "/etc/tls/fullchain.pem",
            "STALWART_TLS_KEY_FILE": "/etc/tls/privkey.pem",
        },
        {"MAILBOX_NODES": "stalwart.tail1234.ts.net,stalwart-2.tail1234.ts.net"},
    ],
)
def test_every_desired_object_is_valid_for_the_schema(overrides: dict[str, str]) -> None:
    full = full_schema()
    for item in d.desired_state(settings(**overrides)):
        assert item.type in full["objects"], item.type
        if isinstance(item, d.Desired):
            _check_object(full, item.type, dict(item.fields), f"{item.type} {item.key}")
            singleton = full["objects"][item.type]["type"] == "singleton"
            assert singleton == (item.key_field is None), item.type


def test_listeners_trust_exactly_both_edge_addresses_and_nothing_global() -> None:
    state = d.desired_state(settings())
    listeners = {i.key: i for i in state if isinstance(i, d.Desired) and i.type == CURRENT.listener}
    assert sorted(listeners) == ["http", "imap", "imaps", "smtp", "submission", "submissions"]
    for item in listeners.values():
        assert item.fields["overrideProxyTrustedNetworks"] == {
            "100.64.0.10/32": True,
            "fd7a:115c:a1e0::a/128": True,
        }
        assert item.effect == d.RESTART
    ports = {k: next(iter(v.fields["bind"])) for k, v in listeners.items()}
    assert ports == {
        "smtp": "[::]:25",
        "submissions": "[::]:465",
        "submission": "[::]:587",
        "imap": "[::]:143",
        "imaps": "[::]:993",
        "http": "[::]:8080",
    }
    assert [k for k, v in listeners.items() if v.fields["tlsImplicit"]] == ["submissions", "imaps"]
    assert listeners["http"].fields["useTls"] is False
    absent = {i.key for i in state if isinstance(i, d.Absent) and i.type == CURRENT.listener}
    assert absent == {"pop3s", "sieve", "https"}
    system = next(i for i in state if isinstance(i, d.Desired) and i.type == CURRENT.system)
    assert system.fields["proxyTrustedNetworks"] == {}


def _by(state: d.State, type_name: str) -> dict[str, d.Desired]:
    return {i.key: i for i in state if isinstance(i, d.Desired) and i.type == type_name}


def test_relay_without_login_sends_no_credentials_and_requires_verified_tls() -> None:
    state = d.desired_state(settings(STALWART_SMARTHOST="relay.example.net:587"))
    relay = _by(state, CURRENT.route)["smarthost"].fields
    assert relay["authUsername"] is None and relay["authSecret"] == {"@type": "None"}
    assert relay["implicitTls"] is False and relay["allowInvalidCerts"] is False
    tls = _by(state, CURRENT.tls_strategy)["smarthost-tls"].fields
    assert tls["startTls"] == "require" and tls["allowInvalidCerts"] is False
    outbound = _by(state, CURRENT.outbound)["singleton"].fields
    # one TLS strategy on every attempt: no "invalid-tls" after a TLS error
    assert outbound["tls"] == {"match": {}, "else": "'smarthost-tls'"}
    assert outbound["route"]["else"] == "'smarthost'"


def test_relay_with_login_references_the_password_by_name() -> None:
    state = d.desired_state(
        settings(
            STALWART_SMARTHOST="relay.example.net:465",
            STALWART_SMARTHOST_TLS="implicit",
            STALWART_SMARTHOST_USER="mailer",
            STALWART_SMARTHOST_PASSWORD="relay-password-0123",
        )
    )
    relay = _by(state, CURRENT.route)["smarthost"].fields
    assert relay["authUsername"] == "mailer" and relay["implicitTls"] is True
    assert relay["authSecret"] == {
        "@type": "EnvironmentVariable",
        "variableName": "STALWART_SMARTHOST_PASSWORD",
    }
    assert "relay-password-0123" not in json.dumps(relay)


def test_without_smarthost_mail_goes_to_mx_and_no_relay_remains() -> None:
    state = d.desired_state(settings())
    assert _by(state, CURRENT.outbound)["singleton"].fields["route"]["else"] == "'mx'"
    absent = {(i.type, i.key) for i in state if isinstance(i, d.Absent)}
    assert (CURRENT.route, "smarthost") in absent
    assert (CURRENT.tls_strategy, "smarthost-tls") in absent


def test_stores_keep_secrets_out_of_the_objects_except_the_redis_url() -> None:
    s = settings()
    state = d.desired_state(s)
    blob = _by(state, CURRENT.blob_store)["singleton"].fields
    text = json.dumps(blob)
    assert s["STALWART_S3_SECRET_KEY"] not in text and s["STALWART_S3_ACCESS_KEY"] not in text
    memory = _by(state, CURRENT.memory_store)["singleton"].fields
    assert memory["url"].endswith(f"@{s['STALWART_REDIS_HOST']}:6379/3")


def test_admin_paths_are_refused_off_the_tailnet_on_both_ends() -> None:
    from tailwart.edge.render import jmap_vhost

    s = settings()
    http = _by(d.desired_state(s), CURRENT.http)["singleton"].fields["allowedEndpoints"]
    rule = http["match"]["0"]
    assert rule["then"] == "403" and http["else"] == "200"
    for path in ("/admin", "/api"):
        assert f"starts_with(path, '{path}')" in rule["if"]
        assert f" {path}* " in jmap_vhost(s).replace("\n", " \n")
    assert rule["if"].startswith("!(is_ip_in_cidr(remote_ip, '100.64.0.0/10') || ")
    assert "\trespond @admin 403\n" in jmap_vhost(s)


@pytest.mark.parametrize(
    ("version", "reason"),
    [
        ((0, 15, 5), "v0.15 (TOML) release"),
        ((0, 14, 1), "predates v0.15"),
        ((0, 16, 14), "older than 0.16.15"),
        ((1, 1, 0), "cannot open a 0.16 store"),
        ((0, 16, 18), None),
        ((0, 16, 15), None),
    ],
)
def test_versions_refused_with_a_reason(version: tuple[int, int, int], reason: str | None) -> None:
    got = refusal(version)
    assert (got is None) if reason is None else (reason in (got or ""))


def test_extract_answers_what_the_planner_asks() -> None:
    schema = load()
    assert schema.is_singleton(CURRENT.system) and not schema.is_singleton(CURRENT.listener)
    assert schema.fields(CURRENT.listener)["name"].update == "immutable"
    assert schema.fields(CURRENT.route, "Relay")["authSecret"].secret
    assert not schema.fields(CURRENT.route, "Relay")["authUsername"].secret
    assert schema.defaults(CURRENT.tls_strategy)["startTls"] == "optional"
