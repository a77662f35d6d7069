"""`inv render`: caddy.json and the JMAP vhost, deterministic, atomic, only when changed."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tailwart.edge.render import (
    MAIL_PORTS,
    EdgeLayout,
    RenderError,
    caddy_json,
    jmap_vhost,
    layout_for,
)
from tailwart.files import write_atomic
from tailwart.settings import from_mapping
from tailwart.settings.example import example_values
from tests.support.testkit import inv

ROOT = Path(__file__).resolve().parents[2]


def test_one_layer4_server_per_mail_port_proxying_v2_to_the_same_port() -> None:
    settings = from_mapping(example_values())
    config = json.loads(caddy_json(layout_for(settings)))
    servers = config["apps"]["layer4"]["servers"]
    assert sorted(servers) == sorted(name for name, _ in MAIL_PORTS)
    for name, port in MAIL_PORTS:
        server = servers[name]
        assert server["listen"] == [f":{port}"]
        (route,) = server["routes"]
        assert "match" not in route
        (handler,) = route["handle"]
        assert handler == {
            "handler": "proxy",
            "proxy_protocol": "v2",
            "upstreams": [{"dial": [f"stalwart.tail1234.ts.net:{port}"]}],
        }
    assert config["admin"] == {"listen": "unix//run/tailwart-edge/admin.sock"}
    assert set(config["apps"]) == {"layer4"}


def test_layout_overrides_for_local_runs() -> None:
    layout = EdgeLayout(
        upstream_host="::1",
        listen_host="127.0.0.1",
        listen={25: 2525},
        upstream={25: 10025},
        admin_socket="/tmp/x/admin.sock",
    )
    config = json.loads(caddy_json(layout))
    smtp = config["apps"]["layer4"]["servers"]["smtp"]
    assert smtp["listen"] == ["127.0.0.1:2525"]
    assert smtp["routes"][0]["handle"][0]["upstreams"] == [{"dial": ["[::1]:10025"]}]
    assert config["admin"]["listen"] == "unix//tmp/x/admin.sock"


def test_output_is_byte_identical_for_the_same_input() -> None:
    values = example_values()
    first = caddy_json(layout_for(from_mapping(values)))
    values["STALWART_DB_PASSWORD"] = "another-secret-value"  # secrets do not reach the edge
    assert caddy_json(layout_for(from_mapping(values))) == first


def test_jmap_vhost_sends_proxy_v2_to_the_mailbox() -> None:
    text = jmap_vhost(from_mapping(example_values()))
    assert "mail.example.org {" in text
    assert "reverse_proxy stalwart.tail1234.ts.net:8080 {" in text
    assert "proxy_protocol v2" in text


def _allowed(text: str) -> dict[str, list[tuple[str, str]]]:
    """Per site of the rendered text: (method, URI regexp) of each request it passes."""
    sites: dict[str, list[tuple[str, str]]] = {}
    for site, body in re.findall(r"^(\S+) \{\n(.*?)^\}$", text, re.M | re.S):
        sites[site] = re.findall(
            r'\t\tnot \{\n\t\t\tmethod (\w+)\n\t\t\tvars_regexp \{http\.request\.uri\} "(.*)"',
            body,
        )
    return sites


def test_the_names_on_mail_domain_pass_only_stalwarts_documents() -> None:
    """Python's re reads the rendered allow-lists (the same syntax as Go's RE2 here); the
    URIs are written by hand from Stalwart v0.16.18's router."""
    values = {**example_values(), "MAIL_DOMAIN": "Example.ORG"}
    sites = _allowed(jmap_vhost(from_mapping(values)))
    names = ["mta-sts", "autoconfig", "autodiscover", "ua-auto-config"]
    # MAIL_HOSTNAME's https and http sites, then one site per name, in lower case
    assert list(sites)[2:] == [f"{n}.example.org" for n in names]
    passes = {
        "mta-sts": [("GET", "/.well-known/mta-sts.txt")],
        "autoconfig": [
            ("GET", "/mail/config-v1.1.xml?emailaddress=a%40example.org"),
            ("GET", "/.well-known/autoconfig/mail/config-v1.1.xml"),
        ],
        "autodiscover": [
            ("POST", "/autodiscover/autodiscover.xml"),
            ("POST", "/Autodiscover/Autodiscover.xml"),
            ("POST", "/AutoDiscover/AUTODISCOVER.XML"),
            ("GET", "/autodiscover/autodiscover.json/v1.0/a@example.org?Protocol=AutoDiscoverV1"),
            ("GET", "/autodiscover/autodiscover.json"),
        ],
        "ua-auto-config": [("GET", "/.well-known/user-agent-configuration.json")],
    }
    refused = [
        ("GET", "/"),
        ("POST", "/jmap"),
        ("GET", "/api/principal"),
        ("GET", "/admin"),
        ("GET", "/metrics/prometheus"),
        ("GET", "/api/../mail/config-v1.1.xml"),
        ("GET", "/mail/config-v1.1.xml/../../api"),
        ("GET", "/mail/config-v1.1.xmlx"),
        ("GET", "/autodiscover/autodiscover.json/../../api/x"),
        ("GET", "/autodiscover/autodiscover.json/%2e%2e/api"),
        ("GET", "/autodiscover/autodiscover.json//api"),
        ("POST", "/AUTODISCOVER/autodiscover.xml"),
        ("GET", "/autodiscover/autodiscover.xml"),
        ("POST", "/.well-known/mta-sts.txt"),
    ]

    def passed(name: str, method: str, uri: str) -> bool:
        return any(m == method and re.fullmatch(p, uri) for m, p in sites[f"{name}.example.org"])

    for name in names:
        for method, uri in passes[name]:
            assert passed(name, method, uri), (name, method, uri)
        others = [r for other in names if other != name for r in passes[other]]
        for method, uri in refused + others:
            assert not passed(name, method, uri), (name, method, uri)


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("MAIL_HOSTNAME", "MTA-STS.example.org", "a name the edge serves for mail clients"),
        ("MAIL_HOSTNAME_ALIASES", "imap.example.org,autoconfig.example.org", "choose another"),
        ("MAIL_DOMAIN", ".".join(["a" * 60] * 3 + ["b" * 56]), "as ua-auto-config.MAIL_DOMAIN"),
    ],
)
def test_a_service_name_that_cannot_be_a_site_is_refused(key: str, value: str, words: str) -> None:
    with pytest.raises(RenderError, match=words):
        jmap_vhost(from_mapping({**example_values(), key: value}))


def test_write_atomic_reports_change_and_keeps_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "f.json"
    assert write_atomic(path, "a\n") is True
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    path.chmod(0o600)
    inode = path.stat().st_ino
    assert write_atomic(path, "a\n") is False
    assert path.stat().st_ino == inode  # untouched
    assert write_atomic(path, "b\n") is True
    assert path.read_text() == "b\n"
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)
    assert [p.name for p in path.parent.iterdir()] == ["f.json"]  # no temp file left


def _inv(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return inv(*args, cwd=cwd, timeout=60)


def test_render_task_writes_then_reports_unchanged(tmp_path: Path) -> None:
    first = _inv(tmp_path, "render", "--example")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        "wrote caddy/caddy.json",
        "wrote caddy/jmap.caddy",
        "wrote config/config.json",
    ]
    mtime = (tmp_path / "caddy" / "caddy.json").stat().st_mtime_ns
    second = _inv(tmp_path, "render", "--example")
    unchanged = [
        "unchanged caddy/caddy.json",
        "unchanged caddy/jmap.caddy",
        "unchanged config/config.json",
    ]
    assert second.stdout.splitlines() == unchanged
    assert (tmp_path / "caddy" / "caddy.json").stat().st_mtime_ns == mtime


def test_inv_list_shows_every_task_with_help() -> None:
    result = _inv(ROOT, "--list")
    assert result.returncode == 0
    rows = [line.strip() for line in result.stdout.splitlines()[2:] if line.startswith("  ")]
    names = [row.split()[0] for row in rows if row and not row.startswith(" ")]
    assert {"render", "check", "env-example"} <= set(names)
    for line in result.stdout.splitlines()[2:]:
        if line.startswith("  ") and not line.startswith("    "):
            assert len(line.split()) > 1, f"task without help: {line!r}"


def test_readme_lists_every_task() -> None:
    result = _inv(ROOT, "--list")
    readme = (ROOT / "docs" / "reference" / "tasks.md").read_text()
    names = [
        line.split()[0]
        for line in result.stdout.splitlines()[2:]
        if line.startswith("  ") and not line.startswith("    ") and line.strip()
    ]
    assert len(names) >= 17
    missing = [name for name in names if f"| `inv {name}` |" not in readme]
    assert not missing, f"README's task table lacks {missing}"
