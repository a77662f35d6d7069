"""`inv check`: each static check passes on the committed files and fails on a broken copy."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tailwart.checks import CheckContext
from tailwart.checks.run import collect
from tailwart.edge.render import rendered_files
from tailwart.findings import Finding, Status
from tailwart.settings import Settings, from_mapping
from tailwart.settings.example import example_values
from tailwart.stalwart.datastore import config_json
from tests.support.testkit import inv as run_inv
from tests.support.testkit import write_env

ROOT = Path(__file__).resolve().parents[2]
COPY = ["compose", "config", ".env.example", "acl-snippet.hujson", ".gitignore", "tasks.py", "src"]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the committed files plus rendered caddy files, in a fresh git repo."""
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, tmp_path / name)
    settings = from_mapping(example_values())
    files = {**rendered_files(settings), "config/config.json": config_json(settings)}
    for rel, content in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(content)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    return tmp_path


def findings(tree: Path, module: str, settings: Settings | None = None) -> dict[str, Finding]:
    ctx = CheckContext(settings or from_mapping(example_values()), tree)
    return {f.id: f for f in collect(ctx, (module,))}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"fixture edit target {old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1))


MODULES = ("envcontract", "proxy", "stalwart_keys", "hygiene")


@pytest.mark.parametrize("module", MODULES)
def test_committed_files_pass(tree: Path, module: str) -> None:
    result = findings(tree, module)
    bad = {i: f.message for i, f in result.items() if f.status is Status.ERROR}
    assert not bad


def config(tree: Path) -> Path:
    return tree / "config" / "config.json"


def compose(tree: Path) -> Path:
    return tree / "compose" / "docker-compose.yml"


def caddy(tree: Path) -> Path:
    return tree / "caddy" / "caddy.json"


def caddy_edit(fn: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    def apply(tree: Path) -> None:
        data = json.loads(caddy(tree).read_text())
        fn(data)
        caddy(tree).write_text(json.dumps(data))

    return apply


def _servers(d: dict) -> dict:  # type: ignore[type-arg]
    return d["apps"]["layer4"]["servers"]  # type: ignore[no-any-return]


# (check id, module, break the tree, words the message or advice must hold)
BROKEN: list[tuple[str, str, Callable[[Path], object], str]] = [
    (
        "env.macros-declared",
        "envcontract",
        lambda t: edit(config(t), '"STALWART_DB_PASSWORD"', '"STALWART_DB_PASSWD"'),
        "STALWART_DB_PASSWD",
    ),
    (
        "env.macros-passed",
        "envcontract",
        lambda t: edit(
            compose(t),
            "      STALWART_DB_PASSWORD: ${STALWART_DB_PASSWORD:?"
            "STALWART_DB_PASSWORD is required}\n",
            "",
        ),
        "STALWART_DB_PASSWORD",
    ),
    (
        "env.example",
        "envcontract",
        lambda t: (t / ".env.example").write_text(
            (t / ".env.example").read_text() + "# hand edit\n"
        ),
        "inv env-example",
    ),
    (
        "env.compose-declared",
        "envcontract",
        lambda t: edit(
            compose(t), "TS_HOSTNAME: ${MAILBOX_NODE_NAME}", "TS_HOSTNAME: ${MAILBOX_NODENAME}"
        ),
        "MAILBOX_NODENAME",
    ),
    (
        "env.stalwart-set",
        "envcontract",
        lambda t: edit(
            compose(t),
            "      STALWART_PUBLIC_URL: ${STALWART_PUBLIC_URL:?run through inv up}\n",
            "      STALWART_PUBLIC_URL: ${STALWART_PUBLIC_URL:?run through inv up}\n"
            "      TS_API_TOKEN: ${TS_API_TOKEN:-}\n",
        ),
        "TS_API_TOKEN",
    ),
    (
        "proxy.edge",
        "proxy",
        caddy_edit(
            lambda d: _servers(d)["smtp"]["routes"][0]["handle"][0].update(proxy_protocol="v1")
        ),
        "'v1'",
    ),
    ("proxy.edge", "proxy", caddy_edit(lambda d: _servers(d).pop("imaps")), ":993"),
    (
        "proxy.edge",
        "proxy",
        caddy_edit(lambda d: _servers(d)["imap"]["routes"][0].update(match=[{"tls": {}}])),
        "no matchers",
    ),
    (
        "proxy.admin",
        "proxy",
        caddy_edit(lambda d: d.update(admin={"listen": "localhost:2019"})),
        "unix socket",
    ),
    (
        "proxy.jmap",
        "proxy",
        lambda t: edit(t / "caddy" / "jmap.caddy", "proxy_protocol v2", "versions 1.1"),
        "PROXY v2",
    ),
    (
        "proxy.jmap",
        "proxy",
        lambda t: edit(t / "caddy" / "jmap.caddy", "\trespond @admin 403\n", ""),
        "to the internet",
    ),
    (
        "proxy.jmap",
        "proxy",
        lambda t: edit(
            t / "caddy" / "jmap.caddy", "handle /.well-known/acme-challenge/*", "handle /other/*"
        ),
        "certificate cannot be issued",
    ),
    (
        "proxy.jmap",
        "proxy",
        lambda t: edit(t / "caddy" / "jmap.caddy", "\trespond @management 403\n", ""),
        "does not refuse Basic logins as STALWART_MANAGEMENT_USER=tailwart-admin",
    ),
    (
        "proxy.jmap",
        "proxy",
        lambda t: edit(t / "caddy" / "jmap.caddy", "\trespond @odd_auth 403\n", ""),
        "unusual forms",
    ),
    (
        "proxy.jmap",
        "proxy",
        lambda t: edit(t / "caddy" / "jmap.caddy", "max_size 10000000", "max_size 10000000000"),
        "does not cap request bodies",
    ),
    (
        "proxy.jmap",
        "proxy",
        lambda t: edit(t / "caddy" / "jmap.caddy", "\trespond @refused 404\n", ""),
        "does not serve mta-sts.example.org, autoconfig.example.org",
    ),
    (
        "proxy.jmap",
        "proxy",
        lambda t: edit(t / "caddy" / "jmap.caddy", "\t\theader_up -Authorization\n", ""),
        "everything else 404",
    ),
    (
        "stalwart.config",
        "stalwart_keys",
        lambda t: edit(config(t), '"host":', '"hostname":'),
        "'hostname' is not a field of PostgreSql (nearest: host)",
    ),
    (
        "stalwart.config",
        "stalwart_keys",
        lambda t: edit(
            config(t),
            '"@type": "EnvironmentVariable",\n    "variableName": "STALWART_DB_PASSWORD"',
            '"@type": "Value",\n    "secret": "inline-password"',
        ),
        "not an EnvironmentVariable reference",
    ),
    (
        "stalwart.config",
        "stalwart_keys",
        lambda t: edit(config(t), '"port": 5432', '"port": 5433'),
        "differs from what .env describes",
    ),
    (
        "stalwart.config",
        "stalwart_keys",
        lambda t: edit(config(t), '"@type": "PostgreSql"', '"@type": "Postgres"'),
        "not a DataStore variant",
    ),
    (
        "hygiene.ignored",
        "hygiene",
        lambda t: (t / ".gitignore").write_text(
            (t / ".gitignore").read_text().replace(".env\n", "", 1).replace(".env.*\n", "")
        ),
        ".env",
    ),
    (
        "hygiene.tracked",
        "hygiene",
        lambda t: subprocess.run(
            ["git", "-C", str(t), "add", "-f", "caddy/caddy.json"], check=True
        ),
        "caddy/caddy.json",
    ),
]


@pytest.mark.parametrize(
    ("check_id", "module", "breaker", "words"),
    BROKEN,
    ids=[f"{b[0]}-{i}" for i, b in enumerate(BROKEN)],
)
def test_each_check_fails_on_a_broken_tree(
    tree: Path, check_id: str, module: str, breaker: Callable[[Path], None], words: str
) -> None:
    assert findings(tree, module)[check_id].status is Status.OK
    breaker(tree)
    found = findings(tree, module)[check_id]
    assert found.status is Status.ERROR
    assert words in found.message + found.advice
    assert found.advice


def test_redis_password_that_breaks_the_url_is_flagged(tree: Path) -> None:
    values = example_values()
    values["STALWART_REDIS_PASSWORD"] = "pa@ss/word:12"
    found = findings(tree, "envcontract", from_mapping(values))["env.redis-url-safe"]
    assert found.status is Status.ERROR
    assert "pa@ss" not in found.message  # the secret itself is never shown
    assert "hex" in found.advice


def test_trust_needs_both_edge_addresses() -> None:
    """Two IPv4 addresses (no /128) are refused with the .env, before any check runs."""
    from tailwart.settings import SettingsError

    values = example_values()
    values["EDGE_TAILNET_ADDR6"] = "100.64.0.11/32"
    with pytest.raises(SettingsError) as refused:
        from_mapping(values)
    assert "EDGE_TAILNET_ADDR6" in str(refused.value)
    assert "IPv6 tailnet address (/128)" in str(refused.value)


def test_trust_names_both_edge_addresses(tree: Path) -> None:
    found = findings(tree, "proxy")["proxy.trust"]
    assert found.status is Status.OK
    assert "100.64.0.10/32, fd7a:115c:a1e0::a/128" in found.message
    assert "global trust list stays empty" in found.message


def test_jmap_not_rendered_is_a_warning(tree: Path) -> None:
    (tree / "caddy" / "jmap.caddy").unlink()
    assert findings(tree, "proxy")["proxy.jmap"].status is Status.WARNING


def _unread(keys: list[str]) -> list[str]:
    """Keys no code of the repository names: src/ outside the contract, tasks.py, compose."""
    sources = [p for p in (ROOT / "src" / "tailwart").rglob("*.py") if p.name != "contract.py"]
    sources += [ROOT / "tasks.py", ROOT / "compose" / "docker-compose.yml"]
    text = "\n".join(path.read_text() for path in sources)
    return [name for name in keys if not re.search(rf"\b{name}\b", text)]


def test_every_declared_key_is_read_somewhere() -> None:
    """A declared key nothing reads is dead weight in .env (tailwart's own code, checked
    here rather than by `inv check` at run time, where it could block `inv up`)."""
    from tailwart.settings.contract import KEYS

    assert _unread([k.name for k in KEYS]) == []
    assert _unread(["NEVER_READ_ANYWHERE"]) == ["NEVER_READ_ANYWHERE"]  # the search can fail


def test_render_then_check_pass_on_the_example_values(tree: Path) -> None:
    """The Done-when of the operator surface: `inv render && inv check` on the example."""

    def inv(*args: str) -> subprocess.CompletedProcess[str]:
        return run_inv(*args, cwd=tree, root=tree, timeout=120)

    (tree / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    assert inv("render", "--example").returncode == 0
    human = inv("check", "--example")
    assert human.returncode == 0, human.stdout + human.stderr
    assert "0 error(s)" in human.stdout
    machine = inv("check", "--example", "--json")
    data = json.loads(machine.stdout)
    assert data["summary"]["error"] == 0
    ids = {f["id"] for f in data["findings"]}
    assert {"proxy.trust", "stalwart.config", "hygiene.tracked", "env.macros-passed"} <= ids
    # and a broken tree is bad input: exit 2 naming the check (as `inv up` refuses it)
    edit(config(tree), '"port": 5432', '"port": 1')
    broken = inv("check", "--example")
    assert broken.returncode == 2
    assert "ERROR stalwart.config" in broken.stdout


def test_inv_check_fails_when_an_alias_has_no_acme_route_or_the_login_changed(
    tree: Path,
) -> None:
    """acme-http with MAIL_HOSTNAME_ALIASES: Stalwart orders one certificate for every name,
    and the CA validates http-01 for each, so a vhost that routes the main name only fails
    the order; and a vhost rendered for another management login refuses the wrong one."""
    values = {**example_values(), "MAIL_HOSTNAME_ALIASES": "imap.example.org,SMTP.example.org"}
    env = write_env(tree / "aliases.env", values)

    def check() -> dict[str, str]:
        done = run_inv("check", f"--env-file={env}", "--json", cwd=tree, root=tree, timeout=120)
        assert "Traceback" not in done.stdout + done.stderr
        (row,) = [f for f in json.loads(done.stdout)["findings"] if f["id"] == "proxy.jmap"]
        assert (done.returncode == 2) == (row["status"] == "error")
        return {"status": row["status"], "text": row["message"] + " " + row["advice"]}

    (tree / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    vhost = tree / "caddy" / "jmap.caddy"
    # what an earlier tailwart rendered: the challenge route for MAIL_HOSTNAME only
    assert "\nhttp://mail.example.org {\n\thandle /.well-known/acme-challenge/* {" in (
        vhost.read_text()
    )
    got = check()
    assert got["status"] == "error"
    assert (
        "does not pass http://imap.example.org/.well-known/acme-challenge/, "
        "http://SMTP.example.org/.well-known/acme-challenge/ to the mailbox" in got["text"]
    )
    assert "inv render" in got["text"]
    assert run_inv("render", f"--env-file={env}", cwd=tree, root=tree).returncode == 0
    assert "\nhttp://mail.example.org, http://imap.example.org, http://SMTP.example.org {\n" in (
        vhost.read_text()
    )
    got = check()
    assert got == {
        "status": "ok",
        "text": "the JMAP vhost sends PROXY v2 to stalwart.tail1234.ts.net:8080, refuses "
        "/admin, /api, /metrics and the Basic login tailwart-admin, caps bodies; passes only "
        "Stalwart's documents on mta-sts.example.org, autoconfig.example.org, "
        "autodiscover.example.org, ua-auto-config.example.org; http-01 for "
        "mail.example.org, imap.example.org, SMTP.example.org reaches Stalwart ",
    }
    # a new STALWART_MANAGEMENT_USER without inv render: the vhost refuses the old name
    write_env(env, {**values, "STALWART_MANAGEMENT_USER": "ops-admin"})
    got = check()
    assert got["status"] == "error"
    assert "does not refuse Basic logins as STALWART_MANAGEMENT_USER=ops-admin" in got["text"]
