"""``inv acl --headscale`` against a real headscale v0.29 (database policy mode) on 127.0.0.1.

headscale is built once by scripts/setup/40-policy.sh. The server gets a temp
config that keeps it off the internet: no DERP map URL (a local map file), no
update check, no logtail, no DNS override, no OIDC. Tagged nodes are created
with its debug CLI so that the policy's ``tests`` resolve to real addresses and
run on the server itself when the merged policy is stored.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tailwart.policy.hujson import comment_tokens, parse
from tests.support.testkit import TOOL_CACHE, inv, need, write_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
VERSION = "v0.29.2"  # keep equal to scripts/setup/40-policy.sh
BINARY = TOOL_CACHE / "tools" / f"headscale-{VERSION}" / "headscale"
NODES = {
    "edge": "tag:reverse-proxy",
    "stalwart": "tag:stalwart",
    "postgres": "tag:postgres",
    "redis": "tag:redis",
    "garage": "tag:garage",
}

#: the headscale admin's policy before tailwart: comments, a group, owners for the tags
BEFORE = """// headscale policy of the mail tailnet (stored in the database).
{
	// people
	"groups": {
		"group:admins": ["ops@"], // the on-call account
	},

	/* Tags of the shared infrastructure; admins assign them. */
	"tagOwners": {
		"tag:reverse-proxy": ["group:admins"],
		"tag:stalwart": ["group:admins"],
		"tag:postgres": ["group:admins"],
		"tag:redis": ["group:admins"],
		"tag:garage": ["group:admins"],
	},

	"acls": [
		// admins reach everything over ssh
		{"action": "accept", "src": ["group:admins"], "dst": ["*:22"]},
	],
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Headscale:
    url: str
    config: Path
    workdir: Path

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(BINARY), "-c", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.workdir,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"headscale {' '.join(args)}: {done.stdout}{done.stderr}")
        return done


def write_config(tmp: Path, port: int) -> Path:
    derp = tmp / "derp.yaml"
    derp.write_text(
        "regions:\n"
        "  900:\n"
        "    regionid: 900\n"
        "    regioncode: local\n"
        "    regionname: loopback only\n"
        "    nodes:\n"
        "      - name: 900a\n"
        "        regionid: 900\n"
        "        hostname: 127.0.0.1\n"
        "        ipv4: 127.0.0.1\n"
        "        stunport: -1\n"
    )
    config = tmp / "config.yaml"
    config.write_text(f"""
server_url: http://127.0.0.1:{port}
listen_addr: 127.0.0.1:{port}
metrics_listen_addr: 127.0.0.1:{free_port()}
grpc_listen_addr: 127.0.0.1:{free_port()}
grpc_allow_insecure: false
noise:
  private_key_path: {tmp}/noise_private.key
prefixes:
  v4: 100.64.0.0/10
  v6: fd7a:115c:a1e0::/48
  allocation: sequential
derp:
  server:
    enabled: false
  urls: []
  paths:
    - {derp}
  auto_update_enabled: false
disable_check_updates: true
database:
  type: sqlite
  sqlite:
    path: {tmp}/db.sqlite
    write_ahead_log: true
log:
  level: warn
  format: text
policy:
  mode: database
dns:
  magic_dns: false
  override_local_dns: false
  nameservers:
    global: []
unix_socket: {tmp}/headscale.sock
unix_socket_permission: "0770"
logtail:
  enabled: false
""")
    return config


@contextlib.contextmanager
def running_headscale(tmp_path: Path) -> Iterator[Headscale]:
    """headscale serving on 127.0.0.1 from ``tmp_path`` (config, sqlite, socket), then stopped."""
    need(BINARY.is_file(), f"headscale {VERSION} is not built (scripts/setup/40-policy.sh)")
    port = free_port()
    config = write_config(tmp_path, port)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    log = (tmp_path / "headscale.log").open("w")
    server = subprocess.Popen(
        [str(BINARY), "-c", str(config), "serve"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tmp_path,
    )
    hs = Headscale(f"http://127.0.0.1:{port}", config, tmp_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    pass
                if (tmp_path / "headscale.sock").exists():
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise AssertionError(
                    "headscale did not start:\n" + (tmp_path / "headscale.log").read_text()[-3000:]
                )
            time.sleep(0.2)
        yield hs
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture
def headscale(tmp_path: Path) -> Iterator[Headscale]:
    with running_headscale(tmp_path) as hs:
        yield hs


def tagged_nodes(hs: Headscale) -> None:
    """One node per tag, registered through headscale's debug CLI, then tagged."""
    import json

    hs.cli("users", "create", "ops")
    for name in NODES:
        auth_id = "hskey-authreq-" + uuid.uuid4().hex[:24]
        hs.cli("debug", "create-node", "--user", "ops", "--name", name, "--key", auth_id)
        hs.cli("auth", "register", "--user", "ops", "--auth-id", auth_id)
    nodes = json.loads(hs.cli("nodes", "list", "-o", "json").stdout)
    ids = {n["name"]: n["id"] for n in nodes}
    for name, tag in NODES.items():
        hs.cli("nodes", "tag", "-i", str(ids[name]), "-t", tag)


def world(hs: Headscale, tags: list[str], emails: list[str]) -> dict[str, list[str]]:
    """A node per tag and per user (``name@domain``), then no policy: tests can resolve.

    headscale tags a node only with a tag its current policy declares, so a policy
    owning every tag is stored first, and the empty policy after the nodes are made.
    Returns the tailnet addresses by tag or user.
    """
    import json

    hs.cli("users", "create", "ops")
    owners = {tag: ["ops@"] for tag in tags}
    (hs.workdir / "world.hujson").write_text(json.dumps({"tagOwners": owners}))
    hs.cli("policy", "set", "-f", str(hs.workdir / "world.hujson"))
    for n in range(len(tags)):
        auth_id = "hskey-authreq-" + uuid.uuid4().hex[:24]
        hs.cli("debug", "create-node", "--user", "ops", "--name", f"t{n}", "--key", auth_id)
        hs.cli("auth", "register", "--user", "ops", "--auth-id", auth_id)
    for n, email in enumerate(emails):
        hs.cli("users", "create", f"u{n}", "--email", email)
        auth_id = "hskey-authreq-" + uuid.uuid4().hex[:24]
        hs.cli("debug", "create-node", "--user", f"u{n}", "--name", f"u{n}", "--key", auth_id)
        hs.cli("auth", "register", "--user", f"u{n}", "--auth-id", auth_id)
    nodes = json.loads(hs.cli("nodes", "list", "-o", "json").stdout)
    ids = {n["name"]: n["id"] for n in nodes}
    for n, tag in enumerate(tags):
        hs.cli("nodes", "tag", "-i", str(ids[f"t{n}"]), "-t", tag)
    (hs.workdir / "world.hujson").write_text("{}\n")
    hs.cli("policy", "set", "-f", str(hs.workdir / "world.hujson"))
    named = {f"t{n}": tag for n, tag in enumerate(tags)} | {
        f"u{n}": e for n, e in enumerate(emails)
    }
    return {named[n["name"]]: n["ip_addresses"] for n in nodes}


def run_inv(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return inv("acl", *args, cwd=workdir, timeout=120)


def test_merged_policy_passes_headscale_and_its_tests_run_there(
    headscale: Headscale, tmp_path: Path, example_values: dict[str, str]
) -> None:
    hs = headscale
    (hs.workdir / "before.hujson").write_text(BEFORE)
    hs.cli("policy", "set", "-f", str(hs.workdir / "before.hujson"))
    tagged_nodes(hs)
    key = hs.cli("apikeys", "create", "--expiration", "1h").stdout.strip().splitlines()[-1]
    work = tmp_path / "checkout"
    work.mkdir()
    (work / "acl-snippet.hujson").write_text((ROOT / "acl-snippet.hujson").read_text())
    env_file = write_env(work / ".env", {**example_values, "HEADSCALE_API_KEY": key})

    dry = run_inv(work, "--headscale", hs.url, "--env-file", str(env_file), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "+\t\t// added by tailwart" in dry.stdout
    assert "dry run: nothing sent" in dry.stdout
    assert "headscale has no autogroup:admin" in dry.stderr
    assert hs.cli("policy", "get").stdout.strip() == BEFORE.strip()

    done = run_inv(work, "--headscale", hs.url, "--env-file", str(env_file))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "policy check passed (including its tests)" in done.stdout
    assert "policy updated" in done.stdout
    assert key not in done.stdout + done.stderr

    stored = hs.cli("policy", "get").stdout
    assert [c for c in comment_tokens(stored) if "tailwart" not in c] == comment_tokens(BEFORE)
    merged = parse(stored, "stored").value
    assert merged["tagOwners"]["tag:stalwart"] == ["group:admins", "tag:stalwart"]
    assert len(merged["tests"]) == 2
    # headscale's own check of the stored policy (its tests evaluated against the tagged nodes)
    (hs.workdir / "stored.hujson").write_text(stored)
    hs.cli("policy", "check", "-f", str(hs.workdir / "stored.hujson"))
    [backup] = (work / ".tailwart" / "acl-backups").iterdir()
    assert backup.read_text().strip() == BEFORE.strip()
    assert key not in backup.read_text()

    again = run_inv(work, "--headscale", hs.url, "--env-file", str(env_file))
    assert again.returncode == 0, again.stderr
    assert "already holds the snippet; nothing to send" in again.stdout


def test_headscale_rejects_a_policy_failing_its_tests_and_nothing_is_written(
    headscale: Headscale, tmp_path: Path, example_values: dict[str, str]
) -> None:
    hs = headscale
    # the admin's own test says the edge never reaches the mailbox's HTTP: the snippet grants it
    edge_never_on_8080 = BEFORE.replace(
        '\t"acls": [',
        '\t"tests": [{"src": "tag:reverse-proxy", "deny": ["tag:stalwart:8080"]}],\n\t"acls": [',
    )
    assert edge_never_on_8080 != BEFORE
    (hs.workdir / "before.hujson").write_text(edge_never_on_8080)
    world(hs, list(NODES.values()), [])
    hs.cli("policy", "set", "-f", str(hs.workdir / "before.hujson"))
    key = hs.cli("apikeys", "create").stdout.strip().splitlines()[-1]
    work = tmp_path / "checkout"
    work.mkdir()
    (work / "acl-snippet.hujson").write_text((ROOT / "acl-snippet.hujson").read_text())
    env_file = write_env(
        work / ".env", {**example_values, "HEADSCALE_URL": hs.url, "HEADSCALE_API_KEY": key}
    )
    done = run_inv(work, "--headscale", "--env-file", str(env_file))
    assert done.returncode == 1
    assert "headscale policy check failed" in done.stderr
    assert "test(s) failed" in done.stderr
    assert "line 17: tag:reverse-proxy -> tag:stalwart:8080: expected DENIED, got ALLOWED" in (
        done.stderr
    )
    assert "nothing was written" in done.stderr
    assert hs.cli("policy", "get").stdout.strip() == edge_never_on_8080.strip()
    assert not (work / ".tailwart").exists()


@pytest.mark.parametrize("broad", ["16-allow-all-json.hujson", "17-broad-rules.hujson"])
def test_broad_policy_is_merged_with_a_warning_and_headscale_runs_the_kept_tests(
    headscale: Headscale, tmp_path: Path, example_values: dict[str, str], broad: str
) -> None:
    """The allow-all default and broad rules: merged, warned about, accepted by headscale."""
    hs = headscale
    text = (ROOT / "tests" / "policy_corpus" / broad).read_text()
    world(hs, [*NODES.values(), "tag:ci"], ["rae@corp.example", "sol@corp.example"])
    (hs.workdir / "before.hujson").write_text(text)
    hs.cli("policy", "set", "-f", str(hs.workdir / "before.hujson"))
    key = hs.cli("apikeys", "create").stdout.strip().splitlines()[-1]
    work = tmp_path / "checkout"
    work.mkdir()
    (work / "acl-snippet.hujson").write_text((ROOT / "acl-snippet.hujson").read_text())
    env_file = write_env(work / ".env", {**example_values, "HEADSCALE_API_KEY": key})
    done = run_inv(work, "--headscale", hs.url, "--env-file", str(env_file))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "policy check passed (including its tests)" in done.stdout
    assert "policy updated" in done.stdout
    who = "every device" if broad.startswith("16") else "every user's device"
    assert f"lets {who} in the tailnet reach tag:stalwart on 25, 465, 587, 143, 993, 8080" in (
        done.stderr
    )
    assert "WARNING: left out the snippet's deny test(s) tag:reverse-proxy -> " in done.stderr
    stored = parse(hs.cli("policy", "get").stdout, "stored").value
    kept = [
        t.get("deny") for t in stored["tests"] if t["src"] in ("tag:reverse-proxy", "tag:stalwart")
    ]
    if broad.startswith("16"):
        assert kept == [None, None]
    else:  # autogroup:tagged -> *:22 defeats only the ssh denials
        assert kept == [["tag:stalwart:9002", "tag:postgres:5432"], ["tag:garage:3903"]]


def test_wrong_api_key_is_explained(
    headscale: Headscale, tmp_path: Path, example_values: dict[str, str]
) -> None:
    work = tmp_path / "checkout"
    work.mkdir()
    (work / "acl-snippet.hujson").write_text((ROOT / "acl-snippet.hujson").read_text())
    bogus = "hskey-api-notreal.0000000000000000000000"
    env_file = write_env(work / ".env", {**example_values, "HEADSCALE_API_KEY": bogus})
    done = run_inv(work, "--headscale", headscale.url, "--env-file", str(env_file))
    assert done.returncode == 1
    assert "headscale refused the API key" in done.stderr
    assert "headscale apikeys create" in done.stderr
    assert bogus not in done.stdout + done.stderr


def test_concurrent_edit_is_detected_by_updated_at_and_both_edits_kept(
    headscale: Headscale, tmp_path: Path
) -> None:
    from tailwart.policy.apply import Output, apply_headscale
    from tailwart.policy.headscale_api import HeadscaleAPI

    hs = headscale
    (hs.workdir / "before.hujson").write_text(BEFORE)
    hs.cli("policy", "set", "-f", str(hs.workdir / "before.hujson"))
    tagged_nodes(hs)
    key = hs.cli("apikeys", "create").stdout.strip().splitlines()[-1]
    colleague = BEFORE.replace(
        '"group:admins": ["ops@"], // the on-call account',
        '"group:admins": ["ops@"], // the on-call account\n'
        '\t\t"group:audit": ["ops@"], // added meanwhile',
    )
    (hs.workdir / "colleague.hujson").write_text(colleague)

    class RacedHeadscale(HeadscaleAPI):
        raced = False

        def check(self, text: str) -> str | None:
            if not self.raced:  # a colleague stores a policy between our read and our write
                self.raced = True
                hs.cli("policy", "set", "-f", str(hs.workdir / "colleague.hujson"))
            return super().check(text)

    lines: list[str] = []
    api = RacedHeadscale(hs.url, key)
    snippet = (ROOT / "acl-snippet.hujson").read_text()
    assert apply_headscale(api, snippet, tmp_path, io=Output(lines.append, lines.append))
    assert any("changed since it was fetched; re-merging" in line for line in lines)
    stored = hs.cli("policy", "get").stdout
    merged = parse(stored, "stored").value
    assert merged["groups"]["group:audit"] == ["ops@"]
    assert "// added meanwhile" in stored
    assert len(merged["tests"]) == 2
