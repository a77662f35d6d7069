"""MAILBOX_NODES: the key's validation, and the edge it renders (one node: as before it)."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from tailwart.edge.render import MAIL_PORTS, RenderError, caddy_json, layout_for, rendered_files
from tailwart.settings import from_mapping
from tailwart.settings.derived import mailbox_nodes
from tailwart.settings.example import example_values
from tailwart.settings.load import validate
from tests.support.testkit import inv

ROOT = Path(__file__).resolve().parents[2]
#: rendered by the code of commit 4d27a52, before MAILBOX_NODES existed
GOLDEN = ROOT / "tests" / "fixtures" / "edge" / "single-node"
FIRST = "stalwart.tail1234.ts.net"
SECOND = "stalwart-2.tail1234.ts.net"
VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    "files-aliases-ports": {
        "STALWART_TLS": "files",
        "STALWART_TLS_CERT_FILE": "/etc/ssl/mail.pem",
        "STALWART_TLS_KEY_FILE": "/etc/ssl/mail.key",
        "MAIL_HOSTNAME_ALIASES": "imap.example.org,smtp.example.org",
        "EDGE_PUBLIC_PORTS": "25,993",
        "EDGE_MAX_SESSIONS": "5000",
    },
}


@pytest.mark.parametrize("nodes", [None, FIRST, FIRST.upper()], ids=["absent", "fqdn", "upper"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_one_node_renders_byte_for_byte_what_it_rendered_before(
    variant: str, nodes: str | None
) -> None:
    values = {**example_values(), **VARIANTS[variant]}
    if nodes is not None:
        values["MAILBOX_NODES"] = nodes
    files = rendered_files(from_mapping(values))
    assert sorted(files) == ["caddy/caddy.json", "caddy/jmap.caddy"]
    for rel, text in files.items():
        assert text == (GOLDEN / f"{variant}.{Path(rel).name}").read_text(), rel


def test_the_golden_files_are_the_starting_commits_output() -> None:
    """The golden files are what 4d27a52's code wrote (its render module, run from git)."""
    code = subprocess.run(
        ["git", "show", "4d27a52:src/tailwart/edge/render.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if code.returncode != 0:
        pytest.skip("the starting commit is not in this clone's history")
    name = "tailwart.edge._render_4d27a52"
    old = types.ModuleType(name)
    old.__package__ = "tailwart.edge"
    sys.modules[name] = old  # dataclasses look their module up while the class is made
    try:
        exec(compile(code.stdout, "render.py@4d27a52", "exec"), old.__dict__)
        for variant, extra in VARIANTS.items():
            files = old.rendered_files(from_mapping({**example_values(), **extra}))
            for rel, text in files.items():
                assert text == (GOLDEN / f"{variant}.{Path(rel).name}").read_text(), rel
    finally:
        del sys.modules[name]


def _problems(nodes: str, **extra: str) -> list[str]:
    values = {**example_values(), **extra, "MAILBOX_NODES": nodes}
    _, problems = validate([(k, v, None) for k, v in values.items()])
    return [str(p) for p in problems if p.level == "error"]


HOSTILE: list[tuple[str, str, str]] = [
    ("duplicate", f"{FIRST},{SECOND},{SECOND}", "names a host twice"),
    ("duplicate-case", f"{FIRST},{SECOND},{SECOND.upper()}", "names a host twice"),
    ("space", f"{FIRST}, {SECOND}", "no spaces"),
    ("empty-entry", f"{FIRST},,{SECOND}", "entry 2"),
    ("trailing-comma", f"{FIRST},", "entry 2"),
    ("ip", f"{FIRST},100.64.0.7", "IP address"),
    ("single-label", f"{FIRST},stalwart2", "at least one dot"),
    ("placeholder", f"{FIRST},{{env.HOME}}.ts.net", "comma-separated fully qualified"),
    ("port", f"{FIRST},{SECOND}:25", "comma-separated fully qualified"),
    ("final-dot", f"{FIRST},{SECOND}.", "final dot"),
    ("newline", f"{FIRST}\n{SECOND}", "control character"),
    ("bidi", f"{FIRST},\u202estalwart.ts.net", "invisible format character"),
    ("without-mailbox-fqdn", SECOND, "does not name MAILBOX_FQDN"),
    ("public-name", f"{FIRST},mail.example.org", "a public name of the edge"),
    ("too-many", ",".join([FIRST, *(f"n{i}.tail1234.ts.net" for i in range(16))]), "at most 16"),
    ("too-long", ",".join([FIRST, *(f"{'n' * 60}{i}.tail1234.ts.net" for i in range(40))]), ""),
]


@pytest.mark.parametrize(("case", "value", "words"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_mailbox_nodes_are_refused_naming_the_key(
    case: str, value: str, words: str
) -> None:
    problems = _problems(value)
    mine = [p for p in problems if "MAILBOX_NODES" in p]
    assert mine, problems
    assert words in "\n".join(mine)


def test_an_alias_is_a_public_name_too() -> None:
    problems = _problems(f"{FIRST},imap.example.org", MAIL_HOSTNAME_ALIASES="imap.example.org")
    assert any("MAILBOX_NODES" in p and "public name" in p for p in problems), problems


def test_a_bad_node_list_exits_2_through_the_cli_and_writes_nothing(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    values = {**example_values(), "MAILBOX_NODES": f"{SECOND},{SECOND}"}
    env.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    env.chmod(0o600)
    result = inv("render", "--env-file", str(env), cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "MAILBOX_NODES" in result.stderr
    assert "names a host twice" in result.stderr
    assert "does not name MAILBOX_FQDN" not in result.stderr  # a refused key adds no noise
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env"]


def test_mailbox_nodes_helper() -> None:
    assert mailbox_nodes(from_mapping(example_values())) == [FIRST]
    both = from_mapping({**example_values(), "MAILBOX_NODES": f"{SECOND},{FIRST.upper()}"})
    assert mailbox_nodes(both) == [SECOND, FIRST]


def _handlers(text: str) -> dict[int, dict[str, object]]:
    servers = json.loads(text)["apps"]["layer4"]["servers"]
    ports = dict(MAIL_PORTS)
    return {ports[name]: s["routes"][0]["handle"][0] for name, s in servers.items()}


def test_several_nodes_are_every_ports_upstreams_with_balancing_and_health_checks() -> None:
    settings = from_mapping({**example_values(), "MAILBOX_NODES": f"{FIRST},{SECOND}"})
    handlers = _handlers(caddy_json(layout_for(settings)))
    assert sorted(handlers) == sorted(p for _, p in MAIL_PORTS)
    for port, handler in handlers.items():
        assert handler["proxy_protocol"] == "v2"
        assert handler["upstreams"] == [
            {"dial": [f"{FIRST}:{port}"]},
            {"dial": [f"{SECOND}:{port}"]},
        ]
        balancing = handler["load_balancing"]
        assert isinstance(balancing, dict)
        assert balancing["selection"] == {"policy": "round_robin"}
        checks = handler["health_checks"]
        assert isinstance(checks, dict)
        assert "port" not in checks["active"]  # buggy in caddy-l4 v0.1.2: never set
        assert checks["passive"]["max_fails"] == 1


def test_a_drained_node_is_no_upstream_and_the_last_one_cannot_be() -> None:
    settings = from_mapping({**example_values(), "MAILBOX_NODES": f"{FIRST},{SECOND}"})
    handlers = _handlers(caddy_json(layout_for(settings, drained=[SECOND])))
    for port, handler in handlers.items():
        assert handler["upstreams"] == [{"dial": [f"{FIRST}:{port}"]}]
        assert "health_checks" in handler  # still a several-node edge
    with pytest.raises(RenderError, match="every mailbox node is drained"):
        caddy_json(layout_for(settings, drained=[FIRST, SECOND]))
    with pytest.raises(RenderError, match="not mailbox nodes"):
        caddy_json(layout_for(settings, drained=["other.tail1234.ts.net"]))


def test_the_main_caddy_proxies_every_site_to_every_node() -> None:
    settings = from_mapping({**example_values(), "MAILBOX_NODES": f"{FIRST},{SECOND}"})
    text = rendered_files(settings)["caddy/jmap.caddy"]
    both = f"reverse_proxy {FIRST}:8080 {SECOND}:8080 {{"
    proxies = [line.strip() for line in text.splitlines() if "reverse_proxy" in line]
    # the JMAP vhost, the ACME http-01 site and the four service-name sites
    assert proxies == [both] * 6
    # ACME http-01 answers go to the first node that answers, MAILBOX_FQDN's listed first
    assert text.count("lb_policy round_robin") == 5
    assert text.count("lb_policy first") == 1
    swapped = from_mapping({**example_values(), "MAILBOX_NODES": f"{SECOND},{FIRST}"})
    challenge = rendered_files(swapped)["caddy/jmap.caddy"].split("acme-challenge/* {")[1]
    assert challenge.split("{")[0].strip() == f"reverse_proxy {FIRST}:8080 {SECOND}:8080"
    assert text.count("max_fails 1") == 6
