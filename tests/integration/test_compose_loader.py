"""The real compose loader (`docker compose config`, Compose v2 built from its Go module)
on the committed compose file, and the mailbox rules on its normalised output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tailwart.checks import CheckContext, compose_rules
from tailwart.checks import compose_loader as loader
from tailwart.checks.run import collect, context_for
from tailwart.findings import Finding, Status
from tailwart.mailbox.errors import StackRefused
from tailwart.mailbox.stack import Stack
from tailwart.settings.example import example_settings
from tests.support.mailbox_fakes import (
    ROOT,
    TOOL_CACHE,
    calls,
    client_settings,
    edit,
    mock,
    need,
    need_tool,
    write_env,
)

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
    assert loader.cached_loader_path() == binary
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
    assert got["compose.loader"].message.startswith("validated and normalised by ")


def test_a_dollar_in_a_secret_reaches_stalwart_unchanged(tree: Path) -> None:
    """`config` prints '$' as '$$': the rules compare what the container gets, so a
    password holding '$' (or '$$') is passed as written, not reported as another value."""
    settings = client_settings(STALWART_DB_PASSWORD="pa$word$$with-dollars")
    doc = loader.load(settings, tree)
    got = doc["services"]["stalwart"]["environment"]["STALWART_DB_PASSWORD"]
    assert got == "pa$word$$with-dollars"
    ctx = context_for(settings, tree)
    found = {f.id: f for f in compose_rules.run(ctx)}
    assert found["compose.env-passed"].status is Status.OK, found["compose.env-passed"].message


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
        built = loader.Loader((str(binary),), "the built loader")
        ctx = CheckContext(settings, ROOT, compose_loaded=loader.Loaded(built, doc))
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
    assert calls(c) == []


def _path_with(tmp_path: Path, *tools: str) -> str:
    """A PATH holding only ``tools`` (symlinks to the real ones)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in tools:
        (bin_dir / tool).symlink_to(need_tool(tool))
    return str(bin_dir)


def _loader_line(tmp_path: Path, example_values: dict[str, str], env: dict[str, str]) -> str:
    env_file = write_env(tmp_path / "mail.env", example_values)
    out = subprocess.run(
        [sys.executable, "-m", "invoke", "check", "--env-file", str(env_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env},
    )
    line = next(row for row in out.stdout.splitlines() if "compose.loader" in row)
    assert line.split()[0] == "ok", out.stdout + out.stderr
    return line


def test_inv_check_uses_the_operators_docker_compose_first(
    tmp_path: Path, example_values: dict[str, str], binary: Path
) -> None:
    """On a host with Docker, `inv check` loads the file with the operator's own
    `docker compose` (the real docker CLI and its compose plugin), not tailwart's copy."""
    plugins = tmp_path / "docker-config" / "cli-plugins"
    plugins.mkdir(parents=True)
    (plugins / "docker-compose").symlink_to(binary)
    path = _path_with(tmp_path, "docker", "git")
    line = _loader_line(
        tmp_path,
        example_values,
        {"PATH": path, "DOCKER_CONFIG": str(plugins.parent), "TAILWART_COMPOSE_LOADER": ""},
    )
    version = loader.LOADER_VERSION.removeprefix("v")
    assert f"validated and normalised by docker compose {version} from PATH" in line


def test_inv_check_falls_back_to_the_built_loader_without_docker(
    tmp_path: Path, example_values: dict[str, str], binary: Path
) -> None:
    line = _loader_line(
        tmp_path,
        example_values,
        {"PATH": _path_with(tmp_path, "git"), "TAILWART_COMPOSE_LOADER": ""},
    )
    assert f"validated and normalised by tailwart's built loader {loader.LOADER_VERSION}" in line


def test_check_context_without_loader_falls_back_to_raw_yaml(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(loader.LOADER_ENV, str(tmp_path / "absent"))
    ctx = context_for(example_settings(), ROOT)
    assert ctx.compose_normalised is None
    assert isinstance(ctx, CheckContext)


#: what every interpolation case sees: a set, an empty and (by absence) an unset variable
CASE_ENV = {"SET": "val", "EMPTY": "", "DOLLAR": "a$b"}
INTERPOLATION_CASES = [
    "plain",
    "${SET}",
    "$SET",
    "$SET-x",
    "$SET_x",
    "${UNSET}",
    "$UNSET",
    "${DOLLAR}",
    "${SET}${SET}",
    "{$SET}",
    "${SET}}",
    # defaults: unset vs empty
    "${SET:-d}",
    "${SET-d}",
    "${EMPTY:-d}",
    "${EMPTY-d}",
    "${UNSET:-d}",
    "${UNSET-d}",
    "${UNSET:-}",
    "${SET-}",
    "${UNSET:--x}",
    "${UNSET---x}",
    "${UNSET:-a:b}",
    "${UNSET:-with space}",
    "${UNSET:-}}",
    "${UNSET-a}b}",
    "${UNSET:-{x}}",
    "${UNSET:-\\}}",
    # replacements
    "${SET:+r}",
    "${EMPTY:+r}",
    "${EMPTY+r}",
    "${UNSET+r}",
    "${SET:+}",
    # escapes
    "$$",
    "a$$b",
    "$${SET}",
    "$$SET",
    "${SET:-}$$",
    "${UNSET:-$$}",
    "${UNSET:-$${SET}}",
    "$",
    "a$",
    "$1",
    "$-",
    "100$ each",
    # nested
    "${UNSET:-${SET}}",
    "${UNSET:-${SET}x}",
    "${UNSET:-$SET}",
    "${SET:+--flag=${SET}}",
    "${UNSET:-${UNSET2:-deep}}",
    "${SET:+a${UNSET:-q}b}",
    "${TS_LOGIN_SERVER:+--login-server=${TS_LOGIN_SERVER}}",
    # required values: compose refuses the file
    "${SET:?err}",
    "${SET:?}",
    "${EMPTY?ok}",
    "${EMPTY:?boom}",
    "${UNSET?boom}",
    "${UNSET:?}",
    "${UNSET:?${SET}}",
    "${UNSET:-${UNSET2:?deep}}",
    "${UNSET:+${X:?never}}",
    "${SET:-${X:?eager}}",
    # malformed templates
    "${SET",
    "${SET:-${UNSET}",
    "${1}",
    "${}",
    "${ UNSET }",
    "${SET:=x}",
    "${SET:x}",
    "${SET/x/y}",
    "${#SET}",
]


def _real(binary: Path, tmp_path: Path, value: str) -> str:
    """What the real loader makes of ``value``: the string, or ``error: <message>``."""
    compose = tmp_path / "compose.yml"
    compose.write_text(json.dumps({"services": {"a": {"image": "x", "environment": {"V": value}}}}))
    out = subprocess.run(
        [str(binary), "-f", str(compose), "-p", "cases", "config", "--format", "json"],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), **CASE_ENV},
        timeout=60,
        check=False,
    )
    if out.returncode != 0:
        message = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else ""
        return f"error: {message}"
    got = json.loads(out.stdout)["services"]["a"]["environment"]["V"]
    return str(got).replace("$$", "$")  # `config` prints '$' as '$$' (its re-loadable form)


def _fallback(value: str) -> str:
    try:
        return compose_rules.interpolate(value, CASE_ENV)
    except compose_rules.InterpolationError as exc:
        return f"error: {exc}"


def _agree(real: str, ours: str) -> bool:
    if not real.startswith("error: "):
        return ours == real
    if not ours.startswith("error: "):
        return False
    # a missing required value: the same message (compose prefixes where it was)
    return "required variable" not in real or real.endswith(ours.removeprefix("error: "))


def test_fallback_interpolation_agrees_with_the_real_loader(binary: Path, tmp_path: Path) -> None:
    """The oracle is the real compose loader: for every case the fallback gives the same
    string, or refuses where compose refuses (with compose's message for a missing
    required value)."""
    differ = {}
    for value in INTERPOLATION_CASES:
        real, ours = _real(binary, tmp_path, value), _fallback(value)
        if not _agree(real, ours):
            differ[value] = (real, ours)
    assert differ == {}
    refused = [v for v in INTERPOLATION_CASES if _fallback(v).startswith("error: ")]
    assert len(refused) == 16  # the table exercises both outcomes
