"""Issue 21: inv restore and inv backup against hostile snapshots, targets and servers.

Every test drives the real task runner against the real parts (Postgres reached at two
addresses and one that asks for a cleartext password, the garage binary, restic) and
asserts the exit code, the key or flag named, that nothing was written, uploaded or
restored, and that the output holds no secret, no raw control character and never the
``unexpected`` catch-all. Crafted snapshots are made by restic's own CLI from a real
backup; the oracles are the servers themselves, restic, and the bytes on the wire.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.backend_env import inv
from tests.support.backend_servers import PostgresServer
from tests.support.backup_world import (
    World,
    bucket_objects,
    make_database,
    restic_cli,
    snapshots,
    table_rows,
)
from tests.support.testkit import boundary_clean, write_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MESSAGES = 6
clean = boundary_clean


def backed_up(world: World) -> Path:
    env = world.env()
    proc = inv("backup", f"--env-file={env}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return env


def target_untouched(world: World) -> None:
    assert table_rows(world.pg, world.target) == {}
    assert bucket_objects(world.garage, world.target) == {}


# ------------------------------------------------------------------ crafted snapshots


def craft(world: World, edit: Callable[[Path], None]) -> str:
    """A snapshot made by restic from the newest real one, edited by ``edit``; its id."""
    snap = [s for s in snapshots(world) if s["hostname"] == "tailwart"][-1]  # a real one
    tree = world.base / f"craft-{secrets.token_hex(3)}"
    out = restic_cli(world, "restore", f"{snap['id']}:{snap['paths'][0]}", "--target", str(tree))
    assert out.returncode == 0, out.stderr
    edit(tree)
    made = restic_cli(world, "backup", "--json", "--tag", "tailwart", "--host", "x", str(tree))
    assert made.returncode == 0, made.stderr
    summary = [json.loads(line) for line in made.stdout.splitlines() if '"summary"' in line]
    return str(summary[-1]["snapshot_id"])


def _manifest(tree: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((tree / "manifest.json").read_text())
    return data


def _write_manifest(tree: Path, data: object) -> None:
    (tree / "manifest.json").write_text(json.dumps(data))


def _first_blob(tree: Path) -> Path:
    return sorted((tree / "blobs").iterdir())[0]


def restore_refused(world: World, env: Path, snap_id: str, *needles: str) -> str:
    """inv restore --force of ``snap_id``: exit 2 naming every needle; the target untouched."""
    proc = inv(
        "restore",
        f"--env-file={env}",
        f"--target-env={world.target_env()}",
        f"--snapshot={snap_id}",
        "--force",
    )
    text = clean(proc, world.password, world.target.password, world.source.password)
    assert proc.returncode == 2, text
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)
    target_untouched(world)
    return text


def test_a_symlink_or_special_file_in_a_snapshot_is_refused_before_anything_is_restored(
    world: World,
) -> None:
    """Finding 2: a symlink in the snapshot made restore upload any local file."""
    env = backed_up(world)
    local = world.base / "local-secret.txt"
    marker = "LOCAL-" + secrets.token_hex(16)
    local.write_text(marker)

    def blob_link(tree: Path) -> None:
        blob = _first_blob(tree)
        blob.unlink()
        blob.symlink_to(local)

    def listing_zero(tree: Path) -> None:
        (tree / "blobs.tsv").unlink()
        (tree / "blobs.tsv").symlink_to("/dev/zero")

    def fifo(tree: Path) -> None:
        os.mkfifo(tree / "blobs" / "a-fifo")

    def device(tree: Path) -> None:
        os.mknod(tree / "blobs" / "zero", stat.S_IFCHR | 0o600, os.makedev(1, 5))

    cases: list[tuple[Callable[[Path], None], str]] = [
        (blob_link, "symlink"),
        (listing_zero, "blobs.tsv is a symlink"),
        (fifo, "fifo"),
        (device, "dev"),
    ]
    for edit, needle in cases:
        snap_id = craft(world, edit)
        text = restore_refused(world, env, snap_id, "--snapshot", needle, "nothing was restored")
        assert marker not in text
    assert marker not in json.dumps(
        {
            k: v.decode(errors="replace")
            for k, v in bucket_objects(world.garage, world.target).items()
        }
    )


def test_a_manifest_that_leaves_the_snapshot_or_a_listing_past_its_bound_is_refused(
    world: World,
) -> None:
    """Finding 3: a dump path with '../'; listings and manifests read without a bound."""
    env = backed_up(world)

    def escape(tree: Path) -> None:
        data = _manifest(tree)
        data["postgres"]["dump"] = "postgres/../../../../etc/passwd"  # type: ignore[index]
        _write_manifest(tree, data)

    def huge_listing(tree: Path) -> None:
        listing = tree / "blobs.tsv"
        listing.write_bytes(listing.read_bytes() + b"0" * 64 + b"\t1\tx\n" * 200_000)

    def huge_manifest(tree: Path) -> None:
        data = _manifest(tree)
        data["versions"]["padding"] = "x" * (17 << 20)  # type: ignore[index]
        _write_manifest(tree, data)

    restore_refused(world, env, craft(world, escape), "$.postgres.dump", "does not match")
    restore_refused(world, env, craft(world, huge_listing), "blobs.tsv is larger than")
    restore_refused(world, env, craft(world, huge_manifest), "manifest.json is larger than")


def test_a_malformed_manifest_or_listing_is_named_never_the_catch_all(world: World) -> None:
    """Finding 4: strict schema; sizes in ASCII digits only (str.isdigit took '²')."""
    env = backed_up(world)

    def edit_manifest(change: Callable[[dict[str, object]], object]) -> Callable[[Path], None]:
        def edit(tree: Path) -> None:
            data = _manifest(tree)
            _write_manifest(tree, change(data))

        return edit

    def rows_text(data: dict[str, object]) -> object:
        data["postgres"]["rows"] = "many"  # type: ignore[index]
        data["blobs"]["count"] = -1  # type: ignore[index]
        return data

    def superscript(tree: Path) -> None:
        listing = tree / "blobs.tsv"
        lines = listing.read_text().splitlines(keepends=True)
        sha, _, key = lines[0].split("\t")
        lines[0] = f"{sha}\t\u00b2\t{key}"
        listing.write_text("".join(lines), encoding="utf-8")
        data = _manifest(tree)
        import hashlib

        data["blobs"]["listing_sha256"] = hashlib.sha256(listing.read_bytes()).hexdigest()  # type: ignore[index]
        _write_manifest(tree, data)

    restore_refused(world, env, craft(world, edit_manifest(lambda d: [])), "manifest.json", "$:")
    restore_refused(
        world, env, craft(world, edit_manifest(rows_text)), "$.postgres.rows", "$.blobs.count"
    )
    restore_refused(
        world,
        env,
        craft(world, edit_manifest(lambda d: {**d, "extra\x1b[31m": 1})),
        "$: holds a key a tailwart manifest does not have",
    )
    restore_refused(world, env, craft(world, superscript), "blobs.tsv", "line 1")


# ------------------------------------------------------------------ the live guard (1, 9)


def test_the_live_database_and_bucket_reached_another_way_are_refused(world: World) -> None:
    """Finding 1: the guard compared spellings; --force then overwrote live rows."""
    from tailwart.backends.garage import GarageAdmin

    need_second = world.pg.second_host
    assert need_second, "the pg_server fixture listens on a second address"
    env = backed_up(world)
    live_rows = table_rows(world.pg, world.source)
    live_blobs = bucket_objects(world.garage, world.source)
    # the live bucket under a second name (a Garage alias), the live database at the
    # server's second address and as an IPv4-mapped IPv6 address
    alias = f"alias-{secrets.token_hex(4)}"
    api = GarageAdmin(world.garage.admin_url, world.garage.admin_token)
    try:
        bucket = api.bucket(world.source.bucket)
        assert bucket is not None
        api.post("AddBucketAlias", {"bucketId": bucket["id"], "globalAlias": alias})
    finally:
        api.close()
    for host in (need_second, f"::ffff:{world.pg.tcp_host}"):
        values = world.source.values(world.pg, world.redis, world.garage)
        values.update(STALWART_DB_HOST=host, STALWART_S3_BUCKET=alias)
        target = write_env(world.base / "same.env", values)
        proc = inv("restore", f"--env-file={env}", f"--target-env={target}", "--force")
        clean(proc, world.password, world.source.password, world.source.key[1])
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "live mailbox" in proc.stderr and "--overwrite-live" in proc.stderr
        assert "STALWART_DB_NAME" in proc.stderr and "STALWART_S3_BUCKET" in proc.stderr
    assert table_rows(world.pg, world.source) == live_rows
    assert bucket_objects(world.garage, world.source) == live_blobs
    # the control: another database on the same server is not the live one
    proc = inv("restore", f"--env-file={env}", f"--target-env={world.target_env()}", "--dry-run")
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ------------------------------------------------------------------ --target-env (5)


def test_the_target_env_warns_about_its_mode_like_the_env_file(world: World) -> None:
    """Finding 5 (the refusals are unit tests): the mode warning, and --strict makes it an
    error before anything is contacted."""
    env = backed_up(world)
    target = world.target_env()
    target.chmod(0o644)
    proc = inv("restore", f"--env-file={env}", f"--target-env={target}", "--dry-run")
    clean(proc, world.password, world.target.password)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "mode 0644" in proc.stderr and str(target) in proc.stderr
    proc = inv("restore", f"--env-file={env}", f"--target-env={target}", "--strict")
    clean(proc, world.password, world.target.password)
    assert proc.returncode == 2 and "mode 0644" in proc.stderr, proc.stdout + proc.stderr
    target_untouched(world)


# ------------------------------------------------------------------ the settings snapshot (6)


class _BadMailbox(BaseHTTPRequestHandler):
    """Knows Stalwart v0.16.18's schema, then answers /jmap with a body that is not JSON."""

    def do_GET(self) -> None:
        from tailwart.stalwart.versions import CURRENT

        self.send_response(302)
        self.send_header("Location", f"/api/schema/{CURRENT.schema_hash}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = b"<html>\x1b[31m not json"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_settings_snapshot_on_a_bad_answer_is_marked_not_taken_and_the_backup_completes(
    world: World,
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BadMailbox)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        env = world.env(STALWART_MANAGEMENT_URL=url)
        proc = inv("backup", f"--env-file={env}")
    finally:
        server.shutdown()
        server.server_close()
    clean(proc, world.password, world.source.password)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the reason is the management client's own words for the answer (one line), or the
    # snapshot's when the client let it through
    said = next(line for line in proc.stdout.splitlines() if "settings snapshot:" in line)
    assert said.strip().startswith(f"settings snapshot: {url}: "), said
    assert "the Postgres dump still holds the objects" in said, said
    assert "nothing more was done" not in proc.stdout + proc.stderr
    # restic holds the snapshot, and its manifest says why the settings were not taken
    snaps = snapshots(world)
    assert len(snaps) == 1
    dumped = restic_cli(world, "dump", snaps[0]["id"], f"{snaps[0]['paths'][0]}/manifest.json")
    manifest = json.loads(dumped.stdout)
    assert manifest["settings_snapshot"]["status"] == "not-taken"
    assert manifest["settings_snapshot"]["detail"] in said, (manifest, said)


# ------------------------------------------------------------------ SCRAM only (8)


@dataclass
class Relay:
    """A TCP relay on the Postgres host's address that keeps what the client sent."""

    host: str
    upstream: int
    port: int = 0
    sent: bytearray = field(default_factory=bytearray)
    sock: socket.socket | None = None

    def start(self) -> Relay:
        self.sock = socket.socket()
        self.sock.bind((self.host, 0))
        self.sock.listen(8)
        self.port = int(self.sock.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        assert self.sock is not None
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection((self.host, self.upstream))
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, record: bool) -> None:
        try:
            while data := src.recv(65536):
                if record:
                    self.sent.extend(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for one in (src, dst):
                with contextlib.suppress(OSError):
                    one.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


@pytest.fixture(scope="module")
def pg_cleartext(pg_server: PostgresServer) -> Iterator[PostgresServer]:
    """A Postgres that asks clients from 198.18.0.0/15 for their password in cleartext."""
    server = PostgresServer.start(pg_server.tcp_host, host_auth="password")
    yield server
    server.close()


def test_backup_and_restore_never_send_a_password_to_a_cleartext_server(
    world: World, pg_cleartext: PostgresServer
) -> None:
    role = f"clear_{secrets.token_hex(4)}"
    password = secrets.token_hex(16)
    make_database(pg_cleartext, role, role, password)
    relay = Relay(pg_cleartext.tcp_host, pg_cleartext.port).start()
    try:
        env = world.env(
            STALWART_DB_PORT=str(relay.port),
            STALWART_DB_USER=role,
            STALWART_DB_NAME=role,
            STALWART_DB_PASSWORD=password,
        )
        proc = inv("backup", f"--env-file={env}")
        clean(proc, password, world.password)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "SCRAM" in proc.stderr and "cleartext" in proc.stderr, proc.stderr
        assert not world.repo.exists() and not world.staging.exists()

        # a restore into such a target: refused the same way, nothing restored
        good = world.env()
        assert inv("backup", f"--env-file={good}").returncode == 0
        values = world.target.values(world.pg, world.redis, world.garage)
        values.update(
            STALWART_DB_PORT=str(relay.port),
            STALWART_DB_USER=role,
            STALWART_DB_NAME=role,
            STALWART_DB_PASSWORD=password,
        )
        target = write_env(world.base / "clear.env", values)
        proc = inv("restore", f"--env-file={good}", f"--target-env={target}")
        clean(proc, password, world.password)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "SCRAM" in proc.stderr, proc.stderr
        assert bucket_objects(world.garage, world.target) == {}
    finally:
        relay.close()
    assert relay.sent, "the relay saw the clients"  # the oracle did watch the wire
    assert password.encode() not in relay.sent
    # the control: a client that does send it is seen by the relay (the oracle works)
    probe = Relay(pg_cleartext.tcp_host, pg_cleartext.port).start()
    try:
        subprocess.run(
            [
                "psql",
                "-w",
                "-c",
                "select 1",
                f"host={probe.host} port={probe.port} user={role} dbname={role}",
            ],
            env={**os.environ, "PGPASSWORD": password},
            capture_output=True,
            timeout=30,
            check=False,
        )
    finally:
        probe.close()
    assert password.encode() in probe.sent
