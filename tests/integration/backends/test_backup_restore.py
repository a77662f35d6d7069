"""inv backup / inv restore against real servers: Postgres (SCRAM over 198.18/15), the real
garage binary, and restic built from its module. Oracles are the servers themselves
(SQL rows, S3 listings and bytes) and restic's own CLI, never tailwart's backup code."""

from __future__ import annotations

import datetime as dt
import secrets

import pytest

from tests.support.backend_env import inv
from tests.support.backup_world import (
    World,
    bucket_objects,
    make_bucket,
    restic_cli,
    s3,
    snapshots,
    table_rows,
    tree_bytes,
)
from tests.support.doc_samples import check_sample

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: messages (rows + blobs) in the source mailbox
MESSAGES = 24
ODD_KEYS = ("nested/dir/ключ ü+%.eml", ".hidden", "..")


def clean(proc_out: str, *secrets_: str) -> None:
    assert "Traceback" not in proc_out
    for secret in secrets_:
        assert secret not in proc_out


def test_backup_then_restore_into_fresh_backends_is_identical(world: World) -> None:
    env = world.env()
    client = s3(world.garage, world.source.key)
    for odd in ODD_KEYS:  # keys a flat mirror must not mistake for paths
        client.put_object(Bucket=world.source.bucket, Key=odd, Body=odd.encode() * 3)
    source_rows = table_rows(world.pg, world.source)
    source_blobs = bucket_objects(world.garage, world.source)
    blobs = MESSAGES + len(ODD_KEYS)
    assert len(source_blobs) == blobs
    assert sum(len(r) for r in source_rows.values()) == 4 * MESSAGES + 2

    # a dry run reads, prints the plan and writes nothing
    proc = inv("backup", f"--env-file={env}", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "would be created" in proc.stdout and "5 tables" in proc.stdout
    assert f"{blobs} objects" in proc.stdout and "nothing was written" in proc.stdout
    check_sample("backup-dry-run", proc.stdout)  # docs/guides/backup.md, as each below
    assert not world.repo.exists() and not world.staging.exists()

    proc = inv("backup", f"--env-file={env}")
    assert proc.returncode == 0, proc.stderr
    clean(proc.stdout + proc.stderr, world.password, world.source.password)
    assert "repository created" in proc.stdout
    check_sample("backup-first", proc.stdout)
    first = snapshots(world)
    assert len(first) == 1 and "tailwart" in first[0]["tags"]
    first_repo_bytes = tree_bytes(world.repo)

    # restore: a dry run first (nothing written), then for real
    target_env = world.target_env()
    proc = inv("restore", f"--env-file={env}", f"--target-env={target_env}", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "database empty, bucket empty" in proc.stdout
    check_sample("restore-dry-run", proc.stdout)
    assert table_rows(world.pg, world.target) == {}
    assert bucket_objects(world.garage, world.target) == {}

    proc = inv("restore", f"--env-file={env}", f"--target-env={target_env}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    clean(proc.stdout + proc.stderr, world.password, world.target.password)
    assert "restore verified" in proc.stdout
    check_sample("restore", proc.stdout)
    # the oracles: every row and every blob, read from the servers directly
    assert table_rows(world.pg, world.target) == source_rows
    assert bucket_objects(world.garage, world.target) == source_blobs
    # the source was only read
    assert table_rows(world.pg, world.source) == source_rows

    # a second backup after a few new messages adds only the change
    world.populate(messages=2, start=MESSAGES)
    proc = inv("backup", f"--env-file={env}")
    assert proc.returncode == 0, proc.stderr
    assert "fetched 2 " in proc.stdout and f"unchanged {blobs}" in proc.stdout
    check_sample("backup-second", proc.stdout)
    assert len(snapshots(world)) == 2
    growth = tree_bytes(world.repo) - first_repo_bytes
    assert 0 < growth < first_repo_bytes / 4, (growth, first_repo_bytes)

    # a target that is not empty is refused, and left as it was
    proc = inv("restore", f"--env-file={env}", f"--target-env={target_env}")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "not empty" in proc.stderr
    check_sample("restore-not-empty", proc.stderr)
    clean(proc.stdout + proc.stderr, world.password)
    assert table_rows(world.pg, world.target) == source_rows

    # --force restores the newest snapshot over it (the two new messages arrive)
    proc = inv("restore", f"--env-file={env}", f"--target-env={target_env}", "--force")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert table_rows(world.pg, world.target) == table_rows(world.pg, world.source)
    assert bucket_objects(world.garage, world.target) == bucket_objects(world.garage, world.source)


def test_restore_never_lands_on_the_live_mailbox(world: World) -> None:
    env = world.env()
    assert inv("backup", f"--env-file={env}").returncode == 0
    before = table_rows(world.pg, world.source)
    # a target env naming the same database and bucket as .env: refused, even with --force
    for flags in ([], ["--force"]):
        proc = inv("restore", f"--env-file={env}", f"--target-env={env}", *flags)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "live mailbox" in proc.stderr
        assert "STALWART_DB_NAME" in proc.stderr and "STALWART_S3_BUCKET" in proc.stderr
        clean(proc.stdout + proc.stderr, world.password, world.source.password)
    check_sample("restore-live-refused", proc.stderr)  # with --force
    assert table_rows(world.pg, world.source) == before


def test_wrong_password_is_a_clean_error_and_the_repository_stays(world: World) -> None:
    env = world.env()
    assert inv("backup", f"--env-file={env}").returncode == 0
    wrong = secrets.token_hex(16)
    bad_env = world.env(BACKUP_PASSWORD=wrong)
    for task in (["backup"], ["restore", f"--target-env={world.target_env()}"]):
        proc = inv(*task, f"--env-file={bad_env}")
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "BACKUP_PASSWORD does not open" in proc.stderr
        clean(proc.stdout + proc.stderr, wrong, world.password)
    assert len(snapshots(world)) == 1
    assert restic_cli(world, "check").returncode == 0
    assert table_rows(world.pg, world.target) == {}


def test_postgres_refusing_the_login_fails_before_anything_is_written(world: World) -> None:
    wrong = secrets.token_hex(16)
    env = world.env(STALWART_DB_PASSWORD=wrong)
    proc = inv("backup", f"--env-file={env}")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "cannot log in" in proc.stderr and "password authentication failed" in proc.stderr
    clean(proc.stdout + proc.stderr, wrong, world.password)
    assert not world.repo.exists() and not world.staging.exists()


def test_backup_to_a_garage_s3_repository(world: World) -> None:
    backup_bucket = f"backup-{secrets.token_hex(4)}"
    key = world.source.key
    make_bucket(world.garage, backup_bucket, key)
    repo = f"s3:http://127.0.0.1:{world.garage.s3_port}/{backup_bucket}"
    env = world.env(BACKUP_S3_ACCESS_KEY=key[0], BACKUP_S3_SECRET_KEY=key[1])
    proc = inv("backup", f"--env-file={env}", f"--to={repo}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    clean(proc.stdout + proc.stderr, world.password, key[1])
    # restic's own CLI sees the snapshot; the bucket holds restic's layout
    extra = {
        "AWS_ACCESS_KEY_ID": key[0],
        "AWS_SECRET_ACCESS_KEY": key[1],
        "AWS_DEFAULT_REGION": world.garage.region,
    }
    proc = restic_cli(world, "snapshots", "--json", repo=repo, extra_env=extra)
    assert proc.returncode == 0, proc.stderr
    assert '"tailwart"' in proc.stdout
    listed = s3(world.garage, key).list_objects_v2(Bucket=backup_bucket)
    names = {obj["Key"].split("/")[0] for obj in listed.get("Contents", [])}
    assert {"config", "keys", "snapshots", "data", "index"} <= names
    assert not world.repo.exists()


def test_a_blob_purged_between_listing_and_copy_is_reported_not_fatal(world: World) -> None:
    from tailwart.backup.blobs import Bucket, mirror

    client = s3(world.garage, world.source.key)
    victim = sorted(
        o["Key"] for o in client.list_objects_v2(Bucket=world.source.bucket)["Contents"]
    )[0]
    bucket = Bucket(
        f"http://127.0.0.1:{world.garage.s3_port}",
        world.garage.region,
        world.source.bucket,
        *world.source.key,
    )
    said: list[str] = []

    def progress(line: str) -> None:
        said.append(line)
        if "objects listed" in line:  # the purge strikes after the listing
            client.delete_object(Bucket=world.source.bucket, Key=victim)

    out = mirror(bucket, world.base / "mirror", world.base / "state.json", progress)
    assert out.vanished == [victim]
    assert len(out.blobs) == MESSAGES - 1 and victim not in out.blobs
    assert any("vanished" in line for line in said)


def test_doctor_warns_when_the_newest_snapshot_is_old(world: World) -> None:
    env = world.env()
    proc = inv("doctor", f"--env-file={env}", "--only=backup")
    assert "no tailwart snapshot" in proc.stdout, proc.stdout + proc.stderr
    # an old snapshot, made by restic itself with a back-dated time
    restic_cli(world, "init")
    old = world.base / "old.txt"
    old.write_text("old")
    # three days before the machine's clock, which the doctor judges the age by
    stamp = f"{dt.datetime.now() - dt.timedelta(days=3):%Y-%m-%d %H:%M:%S}"
    made = restic_cli(world, "backup", "--tag", "tailwart", "--time", stamp, str(old))
    assert made.returncode == 0, made.stderr
    proc = inv("doctor", f"--env-file={env}", "--only=backup")
    assert "hours old" in proc.stdout and "warning" in proc.stdout.lower(), proc.stdout
    assert proc.returncode == 0
    assert inv("backup", f"--env-file={env}").returncode == 0
    proc = inv("doctor", f"--env-file={env}", "--only=backup", "--json")
    assert '"status": "ok"' in proc.stdout and "backup.snapshot.age" in proc.stdout


def test_verify_checks_the_repository_and_proves_a_trial_restore(world: World) -> None:
    env = world.env()
    assert inv("backup", f"--env-file={env}").returncode == 0
    target_env = world.target_env()
    proc = inv("backup", f"--env-file={env}", "--verify", "--dry-run", f"--target-env={target_env}")
    assert proc.returncode == 0 and "nothing was written" in proc.stdout, proc.stderr
    assert table_rows(world.pg, world.target) == {}
    proc = inv("backup", f"--env-file={env}", "--verify", f"--target-env={target_env}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "restic check: no errors" in proc.stdout and "restore verified" in proc.stdout
    check_sample("backup-verify", proc.stdout)
    assert table_rows(world.pg, world.target) == table_rows(world.pg, world.source)
    # a pack file lost from the repository: verify fails (exit 1), restic agrees
    packs = sorted((world.repo / "data").rglob("*"))
    packs = [p for p in packs if p.is_file()]
    packs[0].unlink()
    proc = inv("backup", f"--env-file={env}", "--verify")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    clean(proc.stdout + proc.stderr, world.password)
    assert "restic check failed" in proc.stderr
    assert restic_cli(world, "check").returncode != 0


def test_an_unreachable_repository_fails_fast_and_cleanly(world: World) -> None:
    from tests.support.backend_servers import closed_port

    key = world.source.key
    env = world.env(BACKUP_S3_ACCESS_KEY=key[0], BACKUP_S3_SECRET_KEY=key[1])
    repo = f"s3:http://127.0.0.1:{closed_port()}/backup"
    for task in (["backup", f"--to={repo}"], ["backup", "--dry-run", f"--to={repo}"]):
        proc = inv(*task, f"--env-file={env}")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "unreachable" in proc.stderr and "BACKUP_REPOSITORY" in proc.stderr
        clean(proc.stdout + proc.stderr, world.password, key[1])
    assert not world.staging.exists()


def test_an_interrupted_backup_is_followed_by_a_clean_run(world: World) -> None:
    import os
    import signal
    import subprocess
    import sys

    from tests.support.backend_env import ROOT

    env = world.env()
    # Ctrl-C as a terminal sends it. The child's SIGINT is reset to the default first: a
    # CI runner started in the background (a non-interactive shell's `&`) hands its
    # children SIGINT *ignored*, and a Python started that way never raises
    # KeyboardInterrupt, so the backup would simply finish.
    proc = subprocess.Popen(
        [sys.executable, "-m", "invoke", "-r", str(ROOT), "backup", f"--env-file={env}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # interrupt in the middle: while the blobs are copied
        if "objects listed" in line:
            os.killpg(proc.pid, signal.SIGINT)
            break
    _, rest = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in rest
    assert snapshots(world) == []  # no half snapshot
    done = inv("backup", f"--env-file={env}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(snapshots(world)) == 1
    assert restic_cli(world, "check", "--read-data").returncode == 0
    restored = world.base / "restored"
    snap = snapshots(world)[0]
    out = restic_cli(
        world, "restore", f"{snap['id']}:{snap['paths'][0]}", "--target", str(restored)
    )
    assert out.returncode == 0, out.stderr
    assert not list(restored.rglob("*.part"))
    assert len(list((restored / "blobs").iterdir())) == MESSAGES


@pytest.mark.parametrize("mode", ["valid", "huge"])
def test_a_hostile_management_api_leaves_no_secret_in_the_manifest(world: World, mode: str) -> None:
    """Issue 21: the settings snapshot reads Stalwart's management API; a server that
    echoes the credential (or answers 600 MiB) neither stops the backup nor gets a
    secret into the manifest or onto the terminal."""
    import json
    import unicodedata

    from tests.support.hostile_jmap import HostileJmap, echoes

    issuer = "CN={echo}\x1b[2J\rok"
    objects = {"x:Certificate": [{"id": "c1", "issuer": issuer}]}
    with HostileJmap(mode, objects=objects).running() as server:
        env = world.env(STALWART_MANAGEMENT_URL=server.url)
        proc = inv("backup", f"--env-file={env}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    admin = server.received[-1].credential()
    # the oracle: the server had the credential (tailwart's management login) to echo
    assert admin.startswith("tailwart-admin@")
    # the manifest as restic holds it (the staging mirror is private, and may be emptied)
    snap = snapshots(world)[-1]
    manifest = restic_cli(world, "dump", snap["id"], f"{snap['paths'][0]}/manifest.json").stdout
    snapshot = json.loads(manifest)["settings_snapshot"]
    assert snapshot["status"] == ("taken" if mode == "valid" else "not-taken")
    text = proc.stdout + proc.stderr
    for form in echoes(admin):
        assert form not in manifest and form not in text
    raw = [c for c in text if c != "\n" and unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp"}]
    assert raw == [] and "unexpected" not in text and "Traceback" not in text
