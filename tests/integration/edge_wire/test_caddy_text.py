"""Values in the edge's generated text, read back by the real caddy (issue 14, output side).

Oracle: caddy itself. ``caddy adapt`` turns the rendered jmap.caddy snippet into JSON;
the site host and the upstream dial it reports must be exactly the .env values, for
every shape a valid value can take. Values that are not a plain host never reach the
text: ``inv render`` refuses them with exit 2 naming the key, and writes nothing.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest

from tailwart.edge.render import RenderError, caddy_json, jmap_vhost, layout_for
from tailwart.settings.example import example_settings
from tests.support.testkit import inv, write_env

pytestmark = pytest.mark.integration

VALID = [
    ("mail.example.org", "stalwart.tail1234.ts.net"),
    ("MAIL.Example.ORG", "xn--bcher-kva.tail1234.ts.net"),
    ("mail.example.org", "100.64.0.7"),
    ("mail-1.a-b.example", "fd7a:115c:a1e0::7"),
]
HOSTILE = [
    "stalwart.tail1234.ts.net\n",
    "stalwart {env.HOME}.ts.net",
    "a.ts.net {\n}\nevil.example {",
    'a.ts.net" b',
    "a.ts.net#x",
    "{$SECRET}",
    "::1%x 5432;touch pwned;true",  # an IPv6 literal with a scope id: Python parses it
    "fe80::1%eth0",
]


def _settings(**values: str):  # type: ignore[no-untyped-def]
    base = example_settings()
    return dataclasses.replace(base, values={**base.values, **values})  # past validation


@pytest.mark.parametrize(("host", "upstream"), VALID)
def test_caddy_reads_back_exactly_our_host_and_upstream(
    tmp_path: Path, caddy_binary: Path, host: str, upstream: str
) -> None:
    settings = _settings(MAIL_HOSTNAME=host, MAILBOX_FQDN=upstream)
    snippet = tmp_path / "jmap.caddy"
    snippet.write_text(jmap_vhost(settings))
    done = subprocess.run(
        [str(caddy_binary), "adapt", "--config", str(snippet), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    server = json.loads(done.stdout)["apps"]["http"]["servers"]["srv0"]
    # one site per name, each its own host matcher (so Caddy manages a certificate for
    # each): MAIL_HOSTNAME, folded to lower case by caddy, and the names on MAIL_DOMAIN
    by_host = {h: r for r in server["routes"] for m in r["match"] for h in m["host"]}
    services = [f"{n}.example.org" for n in ("mta-sts", "autoconfig", "autodiscover")]
    services.append("ua-auto-config.example.org")
    assert sorted(by_host) == sorted([host.lower(), *services])
    dial = f"[{upstream}]:8080" if ":" in upstream else f"{upstream}:8080"
    for route in by_host.values():
        handlers = [h for sub in route["handle"][0]["routes"] for h in sub["handle"]]
        (proxy,) = [h for h in handlers if h["handler"] == "reverse_proxy"]
        assert proxy["upstreams"] == [{"dial": dial}]
        assert proxy["transport"]["proxy_protocol"] == "v2"
    # and caddy.json (layer 4) carries the same upstream, json-escaped by json.dumps
    dials = {
        d
        for s in json.loads(caddy_json(layout_for(settings)))["apps"]["layer4"]["servers"].values()
        for d in s["routes"][0]["handle"][0]["upstreams"][0]["dial"]
    }
    assert all(d.startswith(dial.rsplit(":", 1)[0] + ":") for d in dials)


@pytest.mark.parametrize("value", HOSTILE)
def test_a_value_that_is_no_plain_host_never_reaches_the_text(value: str) -> None:
    for key in ("MAIL_HOSTNAME", "MAILBOX_FQDN"):
        settings = _settings(**{key: value})
        with pytest.raises(RenderError, match=key):
            jmap_vhost(settings)
    with pytest.raises(RenderError, match="MAILBOX_FQDN"):
        layout_for(_settings(MAILBOX_FQDN=value))


def test_inv_render_refuses_a_trailing_newline_and_writes_nothing(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    env = write_env(tmp_path / ".env", example_values)
    with env.open("a") as fh:
        fh.write('MAILBOX_FQDN="stalwart.tail1234.ts.net\\n"\n')
    done = inv("render", "--env-file", str(env), cwd=tmp_path, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "MAILBOX_FQDN" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "caddy").exists()
