"""inv backup / inv restore: bad input (exit 2, every key named, nothing contacted), the
schedule units (verified by systemd-analyze), and restic's command line (no secret in argv)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.doc_samples import check_sample
from tests.support.testkit import ROOT, inv, need, write_env

SECRET = "0123456789abcdef0123456789abcdef"


def _env(tmp_path: Path, values: dict[str, str], **more: str) -> Path:
    merged = {**values, **more}
    return write_env(tmp_path / ".env", {k: v for k, v in merged.items() if v != ""})


def _clean(proc: subprocess.CompletedProcess[str], *secrets: str) -> str:
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out
    for secret in secrets:
        assert secret not in out
    return out


def test_bad_backup_keys_exit_2_naming_every_key(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    env = _env(
        tmp_path,
        example_values,
        BACKUP_REPOSITORY="relative/repo",
        BACKUP_KEEP_WEEKLY="five",
        BACKUP_STAGING_DIR="staging",
    )
    proc = inv("backup", f"--env-file={env}", cwd=tmp_path)
    out = _clean(proc)
    assert proc.returncode == 2, out
    for key in ("BACKUP_REPOSITORY", "BACKUP_KEEP_WEEKLY", "BACKUP_STAGING_DIR", "BACKUP_PASSWORD"):
        assert key in proc.stderr, key
    assert not (tmp_path / "relative").exists()


def test_s3_repository_needs_its_keys_and_the_secret_is_masked(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    env = _env(
        tmp_path,
        example_values,
        BACKUP_REPOSITORY="s3:ftp://garage:3900/",
        BACKUP_PASSWORD="short",
    )
    proc = inv("backup", f"--env-file={env}", cwd=tmp_path)
    out = _clean(proc, "short'")
    assert proc.returncode == 2, out
    assert "BACKUP_REPOSITORY" in proc.stderr and "s3:http(s)://" in proc.stderr
    assert "BACKUP_PASSWORD" in proc.stderr and "<secret, 5 chars>" in proc.stderr

    env = _env(
        tmp_path,
        example_values,
        BACKUP_REPOSITORY="s3:http://198.18.0.9:3900/backup",
        BACKUP_PASSWORD=SECRET,
    )
    proc = inv("backup", f"--env-file={env}", cwd=tmp_path)
    _clean(proc, SECRET)
    assert proc.returncode == 2
    assert "BACKUP_S3_ACCESS_KEY" in proc.stderr and "BACKUP_S3_SECRET_KEY" in proc.stderr


def test_backup_without_a_repository_or_with_a_bad_to(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    env = _env(tmp_path, example_values)
    proc = inv("backup", f"--env-file={env}", cwd=tmp_path)
    _clean(proc)
    assert proc.returncode == 2
    assert "BACKUP_REPOSITORY" in proc.stderr and "BACKUP_PASSWORD" in proc.stderr
    env = _env(tmp_path, example_values, BACKUP_REPOSITORY="/srv/repo", BACKUP_PASSWORD=SECRET)
    proc = inv("backup", f"--env-file={env}", "--to=not/absolute", cwd=tmp_path)
    _clean(proc, SECRET)
    assert proc.returncode == 2 and "--to" in proc.stderr


def test_backup_refuses_a_loopback_database_host(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    repo = tmp_path / "repo"
    env = _env(
        tmp_path,
        example_values,
        STALWART_DB_HOST="127.0.0.1",
        BACKUP_REPOSITORY=str(repo),
        BACKUP_PASSWORD=SECRET,
    )
    proc = inv("backup", f"--env-file={env}", cwd=tmp_path)
    _clean(proc, SECRET)
    assert proc.returncode == 2
    assert "STALWART_DB_HOST" in proc.stderr and "SCRAM" in proc.stderr
    assert not repo.exists()


def test_restore_bad_flags_and_an_incomplete_target_env(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    env = _env(tmp_path, example_values, BACKUP_REPOSITORY="/srv/repo", BACKUP_PASSWORD=SECRET)
    proc = inv("restore", f"--env-file={env}", cwd=tmp_path)
    assert proc.returncode == 2 and "--target-env" in _clean(proc, SECRET)
    proc = inv("restore", f"--env-file={env}", "--target-env=x", "--snapshot=;rm", cwd=tmp_path)
    assert proc.returncode == 2 and "--snapshot" in _clean(proc, SECRET)
    target = write_env(
        tmp_path / "target.env",
        {"STALWART_DB_HOST": "198.18.0.7", "STALWART_DB_PORT": "99999", "MAIL_DOMAIN": "x"},
    )
    proc = inv("restore", f"--env-file={env}", f"--target-env={target}", cwd=tmp_path)
    _clean(proc, SECRET)
    assert proc.returncode == 2
    for key in ("STALWART_DB_PORT", "STALWART_DB_PASSWORD", "STALWART_S3_HOST"):
        assert f"{key} (--target-env)" in proc.stderr, key
    # a .env without a repository and a bad target: both reported in one go
    bare = write_env(tmp_path / "bare.env", example_values)
    proc = inv("restore", f"--env-file={bare}", f"--target-env={target}", cwd=tmp_path)
    assert proc.returncode == 2
    assert "BACKUP_REPOSITORY" in proc.stderr and "STALWART_DB_PORT (--target-env)" in proc.stderr
    assert "MAIL_HOSTNAME" not in proc.stderr  # keys a restore does not use are not demanded


def test_schedule_prints_units_systemd_analyze_accepts(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    env = _env(tmp_path, example_values, BACKUP_REPOSITORY="/srv/repo", BACKUP_PASSWORD=SECRET)
    proc = inv("backup", f"--env-file={env}", "--schedule", cwd=tmp_path)
    out = _clean(proc, SECRET)
    assert proc.returncode == 0, out
    assert "OnCalendar=*-*-* 03:30:00" in out and "Persistent=true" in out
    assert f"backup --env-file={env} --prune" in out
    cron = [line for line in out.splitlines() if line.startswith("30 3 * * * ")]
    assert len(cron) == 1 and "flock -n" in cron[0]
    # docs/guides/backup.md shows it with the checkout at /srv/tailwart
    shown = out.replace(str(env), "/srv/tailwart/.env")
    shown = shown.replace(sys.executable, "/srv/tailwart/.venv/bin/python")
    check_sample("backup-schedule", shown.replace(str(ROOT), "/srv/tailwart"))
    proc = inv("backup", f"--env-file={env}", "--schedule", "--to=/elsewhere", cwd=tmp_path)
    assert proc.returncode == 2 and "--to" in _clean(proc, SECRET)

    # --install into a directory: --dry-run writes nothing, then both units are written
    units = tmp_path / "units"
    units.mkdir()
    proc = inv("backup", f"--env-file={env}", f"--unit-dir={units}", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0 and "would write" in proc.stdout and not list(units.iterdir())
    proc = inv("backup", f"--env-file={env}", f"--unit-dir={units}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in units.iterdir()) == [
        "tailwart-backup.service",
        "tailwart-backup.timer",
    ]
    assert "crontab" in proc.stdout

    analyze = Path("/usr/bin/systemd-analyze")
    need(analyze.exists(), "systemd-analyze is not installed (scripts/setup/20-deploy.sh)")
    files = [str(units / "tailwart-backup.service"), str(units / "tailwart-backup.timer")]
    check = subprocess.run(
        [str(analyze), "verify", "--man=no", *files], capture_output=True, text=True
    )
    assert check.returncode == 0 and "tailwart-backup" not in check.stdout + check.stderr, (
        check.stdout + check.stderr
    )
    # the verifier does catch a broken timer (so the pass above means something)
    bad = units / "tailwart-backup.timer"
    bad.write_text(bad.read_text().replace("OnCalendar=*-*-* 03:30:00", "OnCalendar=nightly-ish"))
    check = subprocess.run(
        [str(analyze), "verify", "--man=no", *files], capture_output=True, text=True
    )
    assert "nightly-ish" in check.stdout + check.stderr


def test_restic_gets_secrets_only_through_its_environment(tmp_path: Path) -> None:
    """restic's argv never holds the password or the S3 secret (a recording stand-in)."""
    from tailwart.backup.repository import Repository
    from tailwart.backup.restic import Restic

    record = tmp_path / "calls.jsonl"
    fake = tmp_path / "restic"
    fake.write_text(
        "#!/usr/bin/env python3\nimport json, os, sys\n"
        f"open({str(record)!r}, 'a').write(json.dumps("
        "{'argv': sys.argv, 'env': {k: v for k, v in os.environ.items() "
        "if k.startswith(('RESTIC_', 'AWS_'))}}) + '\\n')\n"
        "print(json.dumps([]))\n"
    )
    fake.chmod(0o755)
    repo = Repository("s3:http://198.18.0.9:3900/backup", SECRET, "GKabc", "s3cr3t-" + SECRET)
    restic = Restic(repo, binary=str(fake))
    restic._reached = True  # no reachability probe: this test opens no socket
    restic.snapshots(["tailwart"])
    call = json.loads(record.read_text().splitlines()[0])
    argv = " ".join(call["argv"])
    assert SECRET not in argv and "s3cr3t" not in argv
    assert call["env"]["RESTIC_PASSWORD"] == SECRET
    assert call["env"]["AWS_SECRET_ACCESS_KEY"] == "s3cr3t-" + SECRET
    assert "s3.bucket-lookup=path" in argv and "--tag tailwart" in argv
    assert os.environ.get("RESTIC_PASSWORD") is None


@pytest.mark.parametrize(
    ("value", "hours"),
    [
        ("2026-11-30T05:00:00.123456789+00:00", 0.0),
        ("2026-11-30T06:00:00.5+01:00", 0.0),
        ("2026-11-30T04:00:00Z", 1.0),
        ("2026-11-29T05:00:00+00:00", 24.0),
    ],
)
def test_restic_snapshot_times_parse(value: str, hours: float) -> None:
    import datetime as dt

    from tailwart.doctor.backup import parse_time

    base = dt.datetime(2026, 11, 30, 5, 0, tzinfo=dt.UTC)
    assert abs((base - parse_time(value)).total_seconds() / 3600 - hours) < 0.01


# ------------------------------------------------------------------ the pure core

ODD_KEYS = ["plain", "a/b/c", "ü ключ+%.eml", "tab\there", "new\nline", "..", ".", ".hidden"]
ODD_KEYS += ["/lead", "%41", "%2E.", "k" * 900, "k" * 901]


def test_blob_listing_round_trips_any_key() -> None:
    from tailwart.backup.blobs import file_name
    from tailwart.backup.manifest import listing_text, parse_listing

    blobs = {key: (len(key), f"{i:064x}") for i, key in enumerate(ODD_KEYS)}
    assert parse_listing(listing_text(blobs)) == blobs
    names = [file_name(k) for k in ODD_KEYS]
    assert len(set(names)) == len(ODD_KEYS)
    assert all("/" not in n and not n.startswith(".") and "\n" not in n for n in names)
    assert all(0 < len(n) <= 200 for n in names)


def test_a_damaged_listing_or_manifest_is_named() -> None:
    from tailwart.backup.manifest import Manifest, SnapshotRefused, parse_listing

    with pytest.raises(SnapshotRefused, match=r"blobs\.tsv .*\n  line 2 ") as caught:
        parse_listing(f"{'a' * 64}\t1\tk\nbroken\n")
    assert "line 1" not in str(caught.value)
    with pytest.raises(SnapshotRefused, match="not a tailwart-backup/1 manifest"):
        Manifest.from_json('{"format": "other"}')
    with pytest.raises(SnapshotRefused, match="not JSON"):
        Manifest.from_json("{")


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("/srv/backup", True),
        ("s3:http://198.18.0.9:3900/bucket", True),
        ("s3:https://s3.example.org/bucket/prefix", True),
        ("relative/repo", False),
        ("s3:http://host:3900/", False),
        ("s3:ftp://host/bucket", False),
        ("sftp:host:/srv", False),
        ("s3:http://host/bucket?x=1", False),
    ],
)
def test_restic_repository_kind(value: str, ok: bool) -> None:
    from tailwart.settings import Kind

    assert (Kind.RESTIC_REPO.check(value) is None) is ok


def test_retention_flags_and_the_live_guard(
    example_values: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard's decision, its servers stood in for (the integration tests ask real ones)."""
    from tailwart.backup import blobs, pgdump
    from tailwart.backup.errors import BackupError
    from tailwart.backup.repository import keep_policy
    from tailwart.backup.restore import live_guard
    from tailwart.settings import SettingsError, from_mapping

    def unreachable(*_: object) -> object:
        raise BackupError("unreachable")

    monkeypatch.setattr(pgdump, "identity", unreachable)
    monkeypatch.setattr(blobs, "fingerprint", unreachable)
    live = from_mapping(
        {**example_values, "STALWART_DB_HOST": "127.0.0.1", "BACKUP_KEEP_WEEKLY": "0"}
    )
    assert keep_policy(live) == ["--keep-daily", "7", "--keep-monthly", "12"]
    # live servers that cannot be asked: the same database reached by another name (or an
    # IPv4-mapped spelling) for the same address is the live one
    for host in ("localhost", "::ffff:127.0.0.1"):
        same = from_mapping({**example_values, "STALWART_DB_HOST": host})
        with pytest.raises(SettingsError, match="STALWART_DB_NAME") as caught:
            live_guard(live, same, overwrite_live=False)
        assert "STALWART_S3_BUCKET" in str(caught.value)
        live_guard(live, same, overwrite_live=True)  # the explicit flag lifts it
    other = from_mapping(
        {
            **example_values,
            "STALWART_DB_HOST": "localhost",
            "STALWART_DB_NAME": "scratch",
            "STALWART_S3_BUCKET": "scratch",
        }
    )
    live_guard(live, other, overwrite_live=False)
    # servers that answer: what they ARE decides, not how they are spelled
    monkeypatch.setattr(pgdump, "identity", lambda source: ("7300000000000000001", 16384))
    monkeypatch.setattr(blobs, "fingerprint", lambda bucket: (("k", 1, "e", "t"),))
    with pytest.raises(SettingsError, match="STALWART_DB_NAME") as caught:
        live_guard(live, other, overwrite_live=False)
    assert "STALWART_S3_BUCKET" in str(caught.value)
    monkeypatch.setattr(
        pgdump, "identity", lambda source: ("7300000000000000001", 1 + len(source.dbname))
    )
    monkeypatch.setattr(blobs, "fingerprint", lambda bucket: ((bucket.name, 1, "e", "t"),))
    live_guard(live, other, overwrite_live=False)
