"""`inv check`: each static check passes on the committed files and fails on a broken copy."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tailwart.checks import CheckContext
from tailwart.checks.run import collect
from tailwart.edge.render import rendered_files
from tailwart.findings import Finding, Status
from tailwart.settings import Key, Kind, Settings, from_mapping
from tailwart.settings.example import example_values
from testkit import inv as run_inv

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
    for rel, content in rendered_files(settings).items():
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
    if module == "envcontract":  # keys read only by other areas' code are checked on the real tree
        bad.pop("env.unused-keys", None)
    assert not bad


def config(tree: Path) -> Path:
    return tree / "config" / "config.toml"


def compose(tree: Path) -> Path:
    return tree / "compose" / "docker-compose.yml"


def caddy(tree: Path) -> Path:
    return tree / "caddy" / "caddy.json"


def caddy_edit(fn: Callable[[dict], None]) -> Callable[[Path], None]:  # type: ignore[type-arg]
    def apply(tree: Path) -> None:
        data = json.loads(caddy(tree).read_text())
        fn(data)
        caddy(tree).write_text(json.dumps(data))

    return apply


def _servers(d: dict) -> dict:  # type: ignore[type-arg]
    return d["apps"]["layer4"]["servers"]  # type: ignore[no-any-return]


# (check id, module, break the tree, words the message or advice must hold)
BROKEN: list[tuple[str, str, Callable[[Path], None], str]] = [
    (
        "env.macros-declared",
        "envcontract",
        lambda t: edit(config(t), "%{env:STALWART_DB_NAME}%", "%{env:STALWART_DB_NAM}%"),
        "STALWART_DB_NAM",
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
            "      STALWART_DB_HOST: ${STALWART_DB_HOST}\n",
            "      STALWART_DB_HOST: ${STALWART_DB_HOST}\n      TS_API_TOKEN: ${TS_API_TOKEN:-}\n",
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
        "proxy.trust",
        "proxy",
        lambda t: edit(config(t), '["%{env:EDGE_TAILNET_ADDR}%"]', '["100.64.0.0/10"]'),
        "range",
    ),
    (
        "proxy.trust",
        "proxy",
        lambda t: edit(
            config(t),
            '["%{env:EDGE_TAILNET_ADDR}%"]',
            '["%{env:EDGE_TAILNET_ADDR}%", "127.0.0.1/32"]',
        ),
        "loopback",
    ),
    (
        "proxy.trust",
        "proxy",
        lambda t: edit(config(t), '["%{env:EDGE_TAILNET_ADDR}%"]', '["0.0.0.0/0"]'),
        "whole internet",
    ),
    (
        "proxy.listeners",
        "proxy",
        lambda t: edit(
            config(t),
            '[server.listener.imaptls]\nbind = ["[::]:993"]',
            '[server.listener.imaptls]\nbind = ["[::]:9993"]',
        ),
        "993",
    ),
    (
        "proxy.listeners",
        "proxy",
        lambda t: edit(
            config(t),
            'bind = ["[::]:465"]\nprotocol = "smtp"\ntls.implicit = true',
            'bind = ["[::]:465"]\nprotocol = "smtp"\ntls.implicit = false',
        ),
        "tls.implicit=false",
    ),
    (
        "proxy.overrides",
        "proxy",
        lambda t: edit(
            config(t),
            'bind = ["[::]:25"]\nprotocol = "smtp"',
            'bind = ["[::]:25"]\nprotocol = "smtp"\nproxy.trusted-networks = ["100.64.9.9/32"]',
        ),
        "smtp(:25)",
    ),
    (
        "proxy.jmap",
        "proxy",
        lambda t: edit(t / "caddy" / "jmap.caddy", "proxy_protocol v2", "versions 1.1"),
        "PROXY v2",
    ),
    (
        "stalwart.keys",
        "stalwart_keys",
        lambda t: edit(
            config(t), 'host = "%{env:STALWART_DB_HOST}%"', 'hostname = "%{env:STALWART_DB_HOST}%"'
        ),
        "nearest valid: store.*.host",
    ),
    (
        "stalwart.keys",
        "stalwart_keys",
        lambda t: edit(
            config(t), "[server.proxy]\ntrusted-networks", "[server.proxy]\ntrusted-network"
        ),
        "server.proxy.trusted-network",
    ),
    (
        "stalwart.references",
        "stalwart_keys",
        lambda t: edit(config(t), 'blob = "s3"', 'blob = "garage"'),
        "missing store 'garage'",
    ),
    (
        "stalwart.references",
        "stalwart_keys",
        lambda t: edit(config(t), 'tls.implicit = "%{env:STALWART_RELAY_IMPLICIT_TLS}%"\n', ""),
        "587/STARTTLS",
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


def test_unused_key_is_flagged(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tailwart.checks import envcontract

    extra = Key("NEVER_READ_ANYWHERE", Kind.IDENT, "nothing", "x", required=False)
    monkeypatch.setattr(envcontract, "KEYS", (*envcontract.KEYS, extra))
    found = findings(tree, "envcontract")["env.unused-keys"]
    assert found.status is Status.ERROR and "NEVER_READ_ANYWHERE" in found.message


def test_jmap_not_rendered_is_a_warning(tree: Path) -> None:
    (tree / "caddy" / "jmap.caddy").unlink()
    assert findings(tree, "proxy")["proxy.jmap"].status is Status.WARNING


def test_real_tree_reads_every_declared_key() -> None:
    """Every declared key is read by some code in the real repository."""
    found = findings(ROOT, "envcontract")["env.unused-keys"]
    assert found.status is Status.OK, found.message


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
    assert {"proxy.trust", "stalwart.keys", "hygiene.tracked", "env.macros-passed"} <= ids
    # and a broken tree makes the task exit 1 naming the check
    edit(config(tree), '["%{env:EDGE_TAILNET_ADDR}%"]', '["0.0.0.0/0"]')
    broken = inv("check", "--example")
    assert broken.returncode == 1
    assert "ERROR proxy.trust" in broken.stdout
