"""The real compose loader (`docker compose config`, Compose v2 built from its Go module)
on the committed compose file, and the mailbox rules on its normalised output."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from mailbox_support import ROOT, TOOL_CACHE, client_settings, edit, mock, need, write_env

from tailwart.checks import CheckContext, compose_rules
from tailwart.checks.run import collect, context_for
from tailwart.findings import Finding, Status
from tailwart.mailbox import loader
from tailwart.mailbox.errors import StackRefused
from tailwart.mailbox.stack import Stack
from tailwart.settings.example import example_settings

pytestmark = pytest.mark.integration

BINARY = TOOL_CACHE / "tools" / f"compose-{loader.LOADER_VERSION}" / "docker-compose"


@pytest.fixture
def binary() -> Path:
    need(
        BINARY.is_file() and os.access(BINARY, os.X_OK),
        f"compose loader not built at {BINARY} (scripts/setup/50-mailbox.sh)",
    )
    return BINARY


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, binary: Path) -> Path:
    root = tmp_path / "tree"
    for part in ("compose", "config"):
        shutil.copytree(ROOT / part, root / part)
    monkeypatch.chdir(root)
    return root


def rules(root: Path) -> dict[str, Finding]:
    ctx = context_for(client_settings(), root)
    assert ctx.compose_normalised is not None, "the loader did not run"
    return {f.id: f for f in compose_rules.run(ctx)}


def test_loader_is_the_pinned_compose(binary: Path) -> None:
    assert loader.available() == binary
    assert loader.version(binary) == loader.LOADER_VERSION.removeprefix("v")


def test_setup_step_builds_the_version_the_code_expects() -> None:
    script = (ROOT / "scripts/setup/50-mailbox.sh").read_text()
    assert f"compose_version={loader.LOADER_VERSION} " in script


def test_committed_compose_file_loads_and_normalises(binary: Path) -> None:
    settings = example_settings()
    doc = loader.load(settings, ROOT, binary)
    assert doc["name"] == "tailwart-mail"
    stalwart = doc["services"]["stalwart"]
    assert stalwart["network_mode"] == "service:ts-stalwart"
    assert "ports" not in stalwart and "networks" not in stalwart
    assert stalwart["depends_on"]["ts-stalwart"]["condition"] == "service_healthy"
    assert stalwart["image"] == settings["STALWART_IMAGE"]
    assert stalwart["user"] == "2000:2000"
    config = [v for v in stalwart["volumes"] if v["target"] == "/etc/stalwart/config.json"]
    assert config == [
        {
            "type": "bind",
            "source": str(ROOT / "config/config.json"),
            "target": "/etc/stalwart/config.json",
            "read_only": True,
            "bind": {"create_host_path": True},
        }
    ]
    # defaults and derived values reached the container environment
    env = stalwart["environment"]
    assert env["STALWART_PUBLIC_URL"] == f"https://{settings['MAIL_HOSTNAME']}"
    assert env["STALWART_DB_PASSWORD"] == settings["STALWART_DB_PASSWORD"]
    assert "STALWART_DB_HOST" not in env  # hosts live in config.json and the objects
    assert doc["networks"]["default"]["enable_ipv6"] is True


def test_every_rule_passes_on_the_normalised_committed_file(tree: Path) -> None:
    got = rules(tree)
    assert {k: f.message for k, f in got.items() if f.status is not Status.OK} == {}
    assert got["compose.loader"].message.startswith("validated and normalised by docker compose")


def test_files_mode_pem_mounts_as_the_loader_normalises_them(binary: Path) -> None:
    """STALWART_TLS=files: the two paths bind-mounted read-only, never a host directory
    created in their place; any other mode (even with the keys left in .env): /dev/null."""
    files = {
        "STALWART_TLS_CERT_FILE": "/etc/tailwart/tls/fullchain.pem",
        "STALWART_TLS_KEY_FILE": "/etc/tailwart/tls/privkey.pem",
    }
    for mode, sources in (
        ("files", list(files.values())),
        ("acme-http", ["/dev/null", "/dev/null"]),
        ("acme-dns", ["/dev/null", "/dev/null"]),
    ):
        extra = {**files, "STALWART_TLS": mode}
        if mode == "acme-dns":
            extra.update(
                ACME_DNS_SERVER="198.18.0.53",
                ACME_DNS_TSIG_KEY="tailwart-acme",
                ACME_DNS_TSIG_SECRET="c2VjcmV0LXNlY3JldC1zZWNyZXQh",
            )
        settings = client_settings(**extra)
        doc = loader.load(settings, ROOT, binary)
        mounts = [v for v in doc["services"]["stalwart"]["volumes"] if "/tls/" in v["target"]]
        assert mounts == [
            {"type": "bind", "source": source, "target": target, "read_only": True, "bind": {}}
            for source, target in zip(
                sources,
                ["/etc/stalwart/tls/fullchain.pem", "/etc/stalwart/tls/privkey.pem"],
                strict=True,
            )
        ], mode
        ctx = CheckContext(settings, ROOT, compose_normalised=doc)
        got = {f.id: f for f in compose_rules.run(ctx)}["compose.tls-files"]
        assert got.status is Status.OK, (mode, got.message)


@pytest.mark.parametrize(
    ("old", "new", "rule", "says"),
    [
        (
            "    network_mode: service:ts-stalwart\n",
            '    network_mode: service:ts-stalwart\n    ports:\n      - "25:25"\n',
            "compose.stalwart-ports",
            "host ports published by stalwart",
        ),
        (
            "      STALWART_S3_SECRET_KEY: ${STALWART_S3_SECRET_KEY:?STALWART_S3_SECRET_KEY "
            "is required}\n",
            "",
            "compose.env-passed",
            "not passed to stalwart: STALWART_S3_SECRET_KEY",
        ),
        ("config.json:ro\n", "config.json\n", "compose.volumes", "mounted writable"),
        (
            '      TS_ACCEPT_DNS: "true"\n',
            '      TS_ACCEPT_DNS: "false"\n',
            "compose.sidecar-boilerplate",
            "TS_ACCEPT_DNS='false'",
        ),
    ],
)
def test_rules_on_the_loaders_output(tree: Path, old: str, new: str, rule: str, says: str) -> None:
    edit(tree, old, new)
    got = rules(tree)
    assert got["compose.loader"].status is Status.OK
    assert got[rule].status is Status.ERROR
    assert says in got[rule].message


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        ("services:\n", "services:\n  - [unclosed\n", "yaml"),
        (
            "    restart: unless-stopped\n",
            "    restart: unless-stopped\n    bogus_key: 1\n",
            "additional properties 'bogus_key' not allowed",
        ),
        (
            "      STALWART_SMARTHOST_PASSWORD: ${STALWART_SMARTHOST_PASSWORD:-}\n",
            "      STALWART_SMARTHOST_PASSWORD: ${STALWART_SMARTHOST_PASSWORD:-}\n"
            "      X: ${NOT_A_KEY:?set NOT_A_KEY}\n",
            "NOT_A_KEY",
        ),
    ],
    ids=["broken-yaml", "schema-violation", "required-variable"],
)
def test_loader_rejections_are_errors(tree: Path, old: str, new: str, says: str) -> None:
    edit(tree, old, new)
    with pytest.raises(loader.LoaderError, match=says):
        loader.load(example_settings(), tree)
    ctx = context_for(example_settings(), tree)
    assert ctx.compose_normalised is None
    got = {f.id: f for f in compose_rules.run(ctx)}
    assert got["compose.loader"].status is Status.ERROR
    assert says in got["compose.loader"].message


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (
            "    network_mode: service:ts-stalwart\n",
            '    network_mode: service:ts-stalwart\n    ports:\n      - "25:25"\n',
        ),
        (
            "      STALWART_DB_PASSWORD: ${STALWART_DB_PASSWORD:?"
            "STALWART_DB_PASSWORD is required}\n",
            "",
        ),
        ("services:\n", "services:\n  - [unclosed\n"),
    ],
    ids=["ports-on-stalwart", "variable-missing", "broken-yaml"],
)
def test_up_refuses_with_the_real_loader_before_any_docker_command(
    tree: Path, old: str, new: str
) -> None:
    edit(tree, old, new)
    c = mock({})
    lines: list[str] = []
    stack = Stack(c, example_settings(), tree, ".env", out=lines.append, err=lines.append)
    with pytest.raises(StackRefused):
        stack.up(checks=lambda ctx: collect(ctx, ("compose_rules",)))
    assert c.run.call_args_list == []


def test_inv_check_reports_the_loader(
    tmp_path: Path, example_values: dict[str, str], binary: Path
) -> None:
    env = write_env(tmp_path / "mail.env", example_values)
    out = subprocess.run(
        [sys.executable, "-m", "invoke", "check", "--env-file", str(env)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert "compose.loader" in out.stdout
    line = next(row for row in out.stdout.splitlines() if "compose.loader" in row)
    assert line.split()[0] == "ok"
    assert "validated and normalised by docker compose config (v2.40.3)" in line


def test_check_context_without_loader_falls_back_to_raw_yaml(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(loader.LOADER_ENV, str(tmp_path / "absent"))
    ctx = context_for(example_settings(), ROOT)
    assert ctx.compose_normalised is None
    assert isinstance(ctx, CheckContext)
