"""EDGE_PUBLIC_PORTS (issue 11, item 6): the edge serves only those ports, Stalwart trusts
the edge for PROXY only there, tailnet members reach the others directly, and ``inv check``
fails when caddy.json, the snippet or Stalwart's listeners disagree with it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tailwart.checks import CheckContext
from tailwart.checks.run import collect
from tailwart.edge.render import MAIL_PORTS, rendered_files
from tailwart.findings import Finding, Status
from tailwart.settings import SettingsError, validate
from tailwart.settings.example import example_values
from tailwart.settings.kinds import MAIL_PORT_NUMBERS
from tailwart.stalwart.desired import Desired, desired_state

ROOT = Path(__file__).resolve().parents[2]
EDGE = {"100.64.0.10/32", "fd7a:115c:a1e0::a/128"}  # the example's EDGE_TAILNET_ADDR(6)


def load(**values: str) -> tuple[Any, list[str]]:
    pairs = [(k, v, None) for k, v in {**example_values(), **values}.items()]
    settings, problems = validate(pairs, "<test>")
    return settings, [f"{p.key}: {p.message}" for p in problems if p.level == "error"]


# ------------------------------------------------------------------ the .env key


def test_default_is_all_five_and_the_kind_knows_the_edge_ports() -> None:
    settings, problems = load()
    assert problems == []
    assert settings["EDGE_PUBLIC_PORTS"] == "25,465,587,143,993"
    assert tuple(port for _, port in MAIL_PORTS) == MAIL_PORT_NUMBERS


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("25,2525", "names 2525, not a mail port"),
        ("25,465,25", "names 25 more than once"),
        ("25,,993", "has an empty item (number 2)"),
        ("25,", "has an empty item (number 2)"),
        ("465,993", "leaves out 25"),
        ("25, 993", "names item 2, not a mail port"),
        ("25;993", "names item 1, not a mail port"),
        ("", "is empty; expected comma-separated mail ports"),
    ],
)
def test_bad_values_are_refused_naming_the_key(value: str, words: str) -> None:
    _, problems = load(EDGE_PUBLIC_PORTS=value)
    assert len(problems) == 1, problems
    assert problems[0].startswith("EDGE_PUBLIC_PORTS: ") and words in problems[0], problems


def test_every_problem_is_reported_at_once() -> None:
    _, problems = load(EDGE_PUBLIC_PORTS="993", STALWART_DB_PORT="x")
    assert {p.split(":")[0] for p in problems} == {"EDGE_PUBLIC_PORTS", "STALWART_DB_PORT"}
    pairs = [(k, v, None) for k, v in {**example_values(), "EDGE_PUBLIC_PORTS": "1"}.items()]
    text = str(SettingsError("<test>", validate(pairs, "<test>")[1]))
    assert "EDGE_PUBLIC_PORTS" in text


# ------------------------------------------------------------------ the three ends, rendered


def listeners(settings: Any) -> dict[int, dict[str, Any]]:
    out = {}
    for item in desired_state(settings):
        if isinstance(item, Desired) and item.type.endswith("NetworkListener"):
            (bind,) = item.fields["bind"]
            out[int(bind.rsplit(":", 1)[1])] = item.fields
    return out


def test_only_25_public_renders_one_server_and_direct_listeners() -> None:
    settings, _ = load(EDGE_PUBLIC_PORTS="25")
    caddy = json.loads(rendered_files(settings)["caddy/caddy.json"])
    servers = caddy["apps"]["layer4"]["servers"]
    assert list(servers) == ["smtp"]
    assert servers["smtp"]["listen"] == [":25"]
    by_port = listeners(settings)
    assert set(by_port) == {25, 465, 587, 143, 993, 8080}  # Stalwart still listens on all
    assert set(by_port[25]["overrideProxyTrustedNetworks"]) == EDGE
    assert set(by_port[8080]["overrideProxyTrustedNetworks"]) == EDGE  # the JMAP vhost
    for port in (465, 587, 143, 993):
        assert by_port[port]["overrideProxyTrustedNetworks"] == {}, port


def test_the_order_written_does_not_matter() -> None:
    a, _ = load(EDGE_PUBLIC_PORTS="993,25,143")
    b, _ = load(EDGE_PUBLIC_PORTS="25,143,993")
    assert rendered_files(a) == rendered_files(b)
    assert list(json.loads(rendered_files(a)["caddy/caddy.json"])["apps"]["layer4"]["servers"]) == [
        "imap",
        "imaps",
        "smtp",
    ]


# ------------------------------------------------------------------ inv check: disagreements


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """acl-snippet.hujson and compose as committed; caddy files rendered for all five."""
    for rel in ("acl-snippet.hujson", "compose/docker-compose.yml"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    write_rendered(tmp_path, load()[0])
    return tmp_path


def write_rendered(root: Path, settings: Any) -> None:
    for rel, content in rendered_files(settings).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(content)


def check(root: Path, settings: Any, *modules: str) -> dict[str, Finding]:
    return {f.id: f for f in collect(CheckContext(settings, root), modules)}


def test_rendered_for_25_the_three_ends_agree(tree: Path) -> None:
    settings, _ = load(EDGE_PUBLIC_PORTS="25")
    write_rendered(tree, settings)
    found = check(tree, settings, "proxy", "policy")
    errors = {k: f.message for k, f in found.items() if f.status is not Status.OK}
    assert errors == {}
    assert "not served: 465, 587, 143, 993" in found["proxy.edge"].message
    assert "direct only: 465, 587, 143, 993" in found["proxy.trust"].message
    assert "(465, 587, 143, 993)" in found["policy.members"].message


def test_caddy_json_serving_a_tailnet_only_port_fails(tree: Path) -> None:
    """caddy.json rendered for all five, .env now says 25: stale edge config."""
    settings, _ = load(EDGE_PUBLIC_PORTS="25")
    found = check(tree, settings, "proxy")["proxy.edge"]
    assert found.status is Status.ERROR
    assert ":993 (imaps) is served, but EDGE_PUBLIC_PORTS keeps it tailnet-only" in found.message
    assert "inv render" in found.advice


def test_caddy_json_missing_a_public_port_fails(tree: Path) -> None:
    settings, _ = load(EDGE_PUBLIC_PORTS="25")
    write_rendered(tree, settings)
    found = check(tree, load()[0], "proxy")["proxy.edge"]  # .env back to all five
    assert found.status is Status.ERROR
    assert ":465 (submissions) has no layer4 server (EDGE_PUBLIC_PORTS lists it)" in found.message


def test_snippet_without_the_member_rule_fails_when_ports_are_tailnet_only(tree: Path) -> None:
    settings, _ = load(EDGE_PUBLIC_PORTS="25,993")
    write_rendered(tree, settings)
    snippet = tree / "acl-snippet.hujson"
    text = snippet.read_text()
    assert '"tag:stalwart:465,587,143,993,8080"' in text
    snippet.write_text(
        text.replace('"tag:stalwart:465,587,143,993,8080"', '"tag:stalwart:465,587,8080"')
    )
    found = check(tree, settings, "policy")["policy.members"]
    assert found.status is Status.ERROR
    assert "keeps 143 tailnet-only" in found.message
    assert "autogroup:member" in found.advice
    # with every port public, the members' rule is needed for :8080 alone
    all_public = load()[0]
    write_rendered(tree, all_public)
    assert check(tree, all_public, "policy")["policy.members"].status is Status.OK
    snippet.write_text(text.replace('"tag:stalwart:465,587,143,993,8080"', '"tag:stalwart:465"'))
    found = check(tree, all_public, "policy")["policy.members"]
    assert found.status is Status.ERROR
    assert "the operator's inv provision needs :8080 (the management URL)" in found.message


def test_snippet_without_a_public_port_for_the_edge_fails(tree: Path) -> None:
    snippet = tree / "acl-snippet.hujson"
    text = snippet.read_text()
    edge_rule = '"tag:stalwart:25,465,587,143,993,8080"'
    snippet.write_text(text.replace(edge_rule, '"tag:stalwart:8080"'))
    settings, _ = load(EDGE_PUBLIC_PORTS="25")
    write_rendered(tree, settings)
    found = check(tree, settings, "policy")["policy.ports"]
    assert found.status is Status.ERROR
    assert "25 (caddy.json smtp)" in found.message


def stalwart_end(settings: Any) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    state = [i for i in desired_state(settings) if isinstance(i, Desired)]
    found = {i.key: dict(i.fields) for i in state if i.type.endswith("NetworkListener")}
    system = next(i.fields for i in state if i.type.endswith("SystemSettings"))
    return found, dict(system)


def test_stalwart_trusting_the_edge_on_a_tailnet_only_port_fails() -> None:
    from tailwart.checks.proxy import trust_problems

    settings, _ = load(EDGE_PUBLIC_PORTS="25")
    found, system = stalwart_end(settings)
    assert trust_problems(found, system, settings) == []
    # the plan made for all five (Stalwart not re-provisioned after .env changed)
    stale, _ = stalwart_end(load()[0])
    problems = trust_problems(stale, system, settings)
    assert problems == [
        f"listener {name} (:{port}) trusts {', '.join(sorted(EDGE))} for PROXY, but "
        "EDGE_PUBLIC_PORTS keeps it tailnet-only (direct connections only)"
        for name, port in MAIL_PORTS
        if port != 25
    ]


def test_stalwart_not_trusting_the_edge_on_a_public_port_fails() -> None:
    from tailwart.checks.proxy import trust_problems

    settings = load()[0]
    stale, system = stalwart_end(load(EDGE_PUBLIC_PORTS="25,143")[0])
    problems = trust_problems(stale, system, settings)
    assert problems == [
        f"listener {name} (:{port}) does not trust exactly the edge"
        for name, port in MAIL_PORTS
        if port not in (25, 143)
    ]


# ------------------------------------------------------------------ doctor and the CLI


def test_doctor_probes_only_the_public_ports() -> None:
    from tailwart.doctor import edge
    from tailwart.doctor.registry import DoctorContext

    ids = [c.id for c in edge.checks(DoctorContext(load(EDGE_PUBLIC_PORTS="25,993")[0]))]
    assert ids == ["edge.smtp", "edge.imaps"]
    assert len(edge.checks(DoctorContext(load()[0]))) == 5


def test_inv_check_refuses_a_bad_value_naming_the_key(tmp_path: Path) -> None:
    from tests.support.testkit import inv, write_env

    env = write_env(tmp_path / ".env", {**example_values(), "EDGE_PUBLIC_PORTS": "465,993,465"})
    done = inv("check", f"--env-file={env}", cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "EDGE_PUBLIC_PORTS" in done.stderr and "465 more than once" in done.stderr
    assert "Traceback" not in done.stderr


# ------------------------------------------------------------------ what clients are told


def _system(settings: Any) -> dict[str, Any]:
    (system,) = [
        d
        for d in desired_state(settings)
        if isinstance(d, Desired) and d.type == "x:SystemSettings"
    ]
    return dict(system.fields["services"])


@pytest.mark.parametrize(
    ("ports", "imap", "smtp"),
    [
        # Stalwart lists a service's implicit-TLS port whenever it lists the service, and
        # its STARTTLS port only with cleartext (v0.16.18 legacy_autoconfig.rs)
        ("25,465,587,143,993", {"cleartext": True}, {"cleartext": True}),
        ("25,465,993", {"cleartext": False}, {"cleartext": False}),
        ("25,993", {"cleartext": False}, None),
        ("25,587,143", None, None),
        ("25", None, None),
    ],
)
def test_autoconfig_advertises_only_what_the_edge_opens(
    ports: str, imap: dict[str, bool] | None, smtp: dict[str, bool] | None
) -> None:
    settings, problems = load(EDGE_PUBLIC_PORTS=ports)
    assert problems == []
    services = _system(settings)
    dav = {"hostname": None, "cleartext": False}
    expected = {"caldav": dav, "carddav": dav, "jmap": dav, "webdav": dav}
    if imap is not None:
        expected["imap"] = {"hostname": None, **imap}
    if smtp is not None:
        expected["smtp"] = {"hostname": None, **smtp}
    assert services == expected  # never pop3 or managesieve: no edge forwards them


def test_the_mta_sts_policy_is_exactly_the_mx_mode_and_max_age() -> None:
    settings, problems = load(
        MAIL_HOSTNAME="Mail.Example.org", MTA_STS_MODE="enforce", MTA_STS_MAX_AGE="86400"
    )
    assert problems == []
    (policy,) = [
        d for d in desired_state(settings) if isinstance(d, Desired) and d.type == "x:MtaSts"
    ]
    assert policy.fields == {
        "mode": "enforce",
        "maxAge": 86_400_000,  # the schema's durations are milliseconds
        "mxHosts": {"mail.example.org": True},
    }
