"""The management plane: the recovery admin only in recovery mode, tailwart's own login
restricted to STALWART_MANAGEMENT_NETWORKS and to the types tailwart owns.

Oracles: the permission names and object kinds come from upstream's full schema file
(read here, not through tailwart's extract); the compose file through the real compose
loader where the tests have it (tests/integration); .env refusals through the task runner.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest
import yaml

from tailwart.settings import from_mapping
from tailwart.settings.derived import compose_environment, recovery_values
from tailwart.stalwart.desired import Desired, allowed_endpoints, desired_state
from tailwart.stalwart.management import account_fields, login, permissions, role_fields
from tailwart.stalwart.rotate import replaced_text
from tailwart.stalwart.schema import load
from tailwart.stalwart.versions import CURRENT
from tests.support.testkit import ROOT, inv
from tests.unit.test_env_boundary import refused, write
from tests.unit.test_stalwart_model import full_schema

# ------------------------------------------------------------------ the recovery admin


def test_the_compose_file_passes_the_recovery_admin_only_through_the_recovery_variable() -> None:
    compose = yaml.safe_load((ROOT / "compose/docker-compose.yml").read_text())
    env = compose["services"]["stalwart"]["environment"]
    assert env["STALWART_RECOVERY_ADMIN"] == "${STALWART_RECOVERY_ADMIN_IN_RECOVERY:-}"
    # no other service, and no other variable, carries it
    text = (ROOT / "compose/docker-compose.yml").read_text()
    assert text.count("${STALWART_RECOVERY_ADMIN") == 1


def test_normal_starts_hand_compose_an_empty_recovery_admin(
    example_values: dict[str, str],
) -> None:
    settings = from_mapping(example_values)
    env = compose_environment(settings)
    assert env["STALWART_RECOVERY_ADMIN_IN_RECOVERY"] == ""
    assert env["STALWART_RECOVERY_MODE"] == ""
    recovery = recovery_values(settings)
    assert recovery == {
        "STALWART_RECOVERY_MODE": "1",
        "STALWART_RECOVERY_ADMIN_IN_RECOVERY": example_values["STALWART_RECOVERY_ADMIN"],
    }


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("adminonly:", "must be a password, or name:password"),
        (":" + secrets.token_hex(16), "must be a password, or name:password"),
        ("postmaster:1" + "x" * 7, "its password is shorter than 16 characters"),
        ("admin:" + "ab" * 10, "too predictable"),
        ("admin:passwordpassword", "too predictable"),
    ],
    ids=["no-password", "no-name", "short", "repeated", "word"],
)
def test_a_weak_or_shapeless_recovery_admin_is_refused(
    tmp_path: Path, example_values: dict[str, str], value: str, says: str
) -> None:
    refused(
        tmp_path,
        {**example_values, "STALWART_RECOVERY_ADMIN": value},
        "check",
        expect={"STALWART_RECOVERY_ADMIN": says},
        hidden=(value.partition(":")[2] or value,),
    )


def test_a_password_alone_is_the_recovery_admin_named_admin(
    example_values: dict[str, str],
) -> None:
    """What a new user writes after `cp .env.example .env`: only the generated secret."""
    password = secrets.token_hex(24)
    settings = from_mapping({**example_values, "STALWART_RECOVERY_ADMIN": password})
    # compose hands Stalwart the name:password form it reads, in recovery mode only
    assert recovery_values(settings)["STALWART_RECOVERY_ADMIN_IN_RECOVERY"] == (f"admin:{password}")
    assert compose_environment(settings)["STALWART_RECOVERY_ADMIN_IN_RECOVERY"] == ""


def test_management_password_weak_or_shared_and_bad_networks_all_at_once(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    shared = example_values["STALWART_RECOVERY_ADMIN"].partition(":")[2]
    refused(
        tmp_path,
        {
            **example_values,
            "STALWART_MANAGEMENT_PASSWORD": shared,
            "STALWART_MANAGEMENT_NETWORKS": "100.64.0.0/10,0.0.0.0/0",
        },
        "check",
        expect={
            "STALWART_MANAGEMENT_PASSWORD": "equals the recovery admin's password",
            "STALWART_MANAGEMENT_NETWORKS": "is /0",
        },
        hidden=(shared,),
    )
    refused(
        tmp_path,
        {
            **example_values,
            "STALWART_MANAGEMENT_PASSWORD": "aaaaaaaaaaaaaaaaaaaa",
            "STALWART_MANAGEMENT_NETWORKS": "100.64.0.0/10 ,10.0.0.0/8",
        },
        "check",
        expect={
            "STALWART_MANAGEMENT_PASSWORD": "too predictable",
            "STALWART_MANAGEMENT_NETWORKS": "entry 1 is not address/prefix",
        },
    )


def test_a_missing_management_password_names_how_to_make_one(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    values = dict(example_values)
    del values["STALWART_MANAGEMENT_PASSWORD"]
    refused(
        tmp_path,
        values,
        "check",
        expect={"STALWART_MANAGEMENT_PASSWORD": "openssl rand -hex 24"},
    )


# ------------------------------------------------------------------ the management login


def test_the_role_grants_exactly_the_owned_types_and_never_roles_or_accounts() -> None:
    full = full_schema()
    names = {v["name"] for v in full["enums"]["Permission"]}
    granted = set(permissions(CURRENT, load()))
    assert granted <= names
    # each owned type's read and write verbs, by the prefix upstream declares for it; the
    # cluster's coordinator and roles too, so that a node added later needs no wider login
    cluster = ("x:Coordinator", "x:ClusterRole")
    for owned in (*CURRENT.owned_types(), *cluster):
        prefix = full["objects"][owned]["permissionPrefix"]
        assert f"{prefix}Get" in granted, owned
        assert f"{prefix}Update" in granted, owned
    assert {"authenticate", "actionReloadSettings"} <= granted
    # nothing that could widen its own rights, read mail, or impersonate
    for forbidden in (
        "sysRoleUpdate",
        "sysRoleCreate",
        "sysAccountUpdate",
        "sysAccountCreate",
        "sysApiKeyCreate",
        "impersonate",
        "jmapEmailGet",
        "imapAuthenticate",
        "sysDataStoreUpdate",
        # the queue is read (inv doctor), never changed
        "sysQueuedMessageUpdate",
        "sysQueuedMessageDestroy",
        "sysQueuedMessageCreate",
        # the cluster's nodes are Stalwart's own leases
        "sysClusterNodeUpdate",
        "sysClusterNodeDestroy",
    ):
        assert forbidden not in granted, forbidden
    prefixes = {full["objects"][t]["permissionPrefix"] for t in (*CURRENT.owned_types(), *cluster)}
    # beyond the owned types: its own password, creating an x:Action (the reload), and
    # reading the outbound queue
    extra = {"sysAccountPasswordGet", "sysAccountPasswordUpdate", "sysActionCreate"}
    extra |= {"sysQueuedMessageGet", "sysQueuedMessageQuery"}
    extra |= {"sysClusterNodeGet", "sysClusterNodeQuery"}
    for name in granted:
        if name.startswith("sys"):
            assert any(name.startswith(p) for p in prefixes) or name in extra, name


def test_the_account_is_a_user_with_the_role_and_one_tailnet_only_password(
    example_values: dict[str, str],
) -> None:
    settings = from_mapping(
        {**example_values, "STALWART_MANAGEMENT_NETWORKS": "100.64.0.0/10,fd7a:115c:a1e0::/48"}
    )
    fields = account_fields(settings, "d1", "r1")
    full = full_schema()
    user_fields = full["fields"]["x:UserAccount"]["properties"]
    assert set(fields) - {"@type"} <= set(user_fields)
    assert fields["@type"] in {v["name"] for v in full["schemas"]["x:Account"]["variants"]}
    assert fields["roles"] == {"@type": "Custom", "roleIds": {"r1": True}}
    (credential,) = fields["credentials"].values()
    assert credential["@type"] == "Password"
    assert set(credential) - {"@type"} <= set(full["fields"]["x:PasswordCredential"]["properties"])
    assert credential["allowedIps"] == {"100.64.0.0/10": True, "fd7a:115c:a1e0::/48": True}
    assert credential["secret"] == example_values["STALWART_MANAGEMENT_PASSWORD"]
    assert login(settings) == (
        f"tailwart-admin@{example_values['MAIL_DOMAIN']}",
        example_values["STALWART_MANAGEMENT_PASSWORD"],
    )
    role = role_fields(CURRENT, load())
    assert set(role) <= set(full["fields"]["x:Role"]["properties"])


def test_admin_paths_open_only_to_the_management_networks(
    example_values: dict[str, str],
) -> None:
    settings = from_mapping({**example_values, "STALWART_MANAGEMENT_NETWORKS": "100.64.0.0/10"})
    expression = allowed_endpoints(settings)["match"]["0"]["if"]
    assert "is_ip_in_cidr(remote_ip, '100.64.0.0/10')" in expression
    # private ranges are not "inside" unless configured; nor loopback, which anything on
    # the edge host can claim through PROXY v2
    for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "198.18.0.0/15", "fc00::/7",
                "127.0.0.0/8", "::1/128"):  # fmt: skip
        assert net not in expression


def test_bans_and_http_rate_limits_are_owned_fields(example_values: dict[str, str]) -> None:
    state = {
        item.type: item
        for item in desired_state(from_mapping(example_values))
        if isinstance(item, Desired)
    }
    security = state["x:Security"].fields
    full = full_schema()
    assert set(security) <= set(full["fields"]["x:Security"]["properties"])
    # a rate of 10 failures in 10 minutes, banned for an hour (durations in ms)
    assert security == {"authBanRate": {"count": 10, "period": 600_000}, "authBanPeriod": 3_600_000}
    http = state["x:Http"].fields
    assert http["rateLimitAnonymous"] == {"count": 100, "period": 60_000}
    assert http["rateLimitAuthenticated"] == {"count": 1000, "period": 60_000}


# ------------------------------------------------------------------ rotation


def test_rotation_replaces_exactly_one_line() -> None:
    key = "STALWART_MANAGEMENT_PASSWORD"
    text = f"A=1\n# {key}=old comment\nexport {key}='old'\nB=2\n"
    assert replaced_text(text, "new") == f"A=1\n# {key}=old comment\nexport {key}=new\nB=2\n"


def test_rotation_refuses_an_env_file_others_can_read_and_writes_nothing(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    env = write(tmp_path / ".env", example_values)
    env.chmod(0o644)
    before = env.read_bytes()
    result: subprocess.CompletedProcess[str] = inv(
        "rotate-management", "--env-file", str(env), cwd=tmp_path, timeout=60
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "chmod 600" in result.stderr and "unexpected" not in result.stderr
    assert env.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env"]
    assert example_values["STALWART_MANAGEMENT_PASSWORD"] not in result.stdout + result.stderr


def test_rotation_refuses_a_duplicated_key(tmp_path: Path, example_values: dict[str, str]) -> None:
    env = write(tmp_path / ".env", example_values)
    env.write_text(env.read_text() + f"STALWART_MANAGEMENT_PASSWORD={secrets.token_hex(24)}\n")
    result = inv("rotate-management", "--env-file", str(env), cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "unexpected" not in result.stderr
