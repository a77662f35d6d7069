"""Issue 21, backup and restore at the boundary, without servers: each finding driven
through the real task runner (exit code, the key or flag named, nothing written, no
secret, no raw control character and never the ``unexpected`` catch-all)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.testkit import RAW_CONTROL, boundary_clean, inv, write_env

SECRET = "0123456789abcdef0123456789abcdef"
clean = boundary_clean


def _env(tmp_path: Path, values: dict[str, str], **more: str) -> Path:
    merged = {**values, "BACKUP_PASSWORD": SECRET, **more}
    return write_env(tmp_path / ".env", {k: v for k, v in merged.items() if v != ""})


# ------------------------------------------------------------------ grammar (13, 14)


def test_a_snapshot_id_with_a_trailing_newline_is_refused(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    repo = tmp_path / "repo"
    env = _env(tmp_path, example_values, BACKUP_REPOSITORY=str(repo))
    target = write_env(tmp_path / "target.env", example_values)
    for bad in ("abcdef12\n", "latest\n", "abcdef12\r", "ABCDEF12", "abcdef1\u0662"):
        proc = inv(
            "restore",
            f"--env-file={env}",
            f"--target-env={target}",
            f"--snapshot={bad}",
            cwd=tmp_path,
        )
        clean(proc, SECRET)
        assert proc.returncode == 2, bad
        assert "--snapshot" in proc.stderr, bad
    assert not repo.exists()


@pytest.mark.parametrize(
    "repo",
    [
        "s3:http://198.18.0.9:3900/bucket/../other",
        "s3:http://198.18.0.9:3900/bucket//prefix",
        "s3:http://198.18.0.9:3900//bucket",
        "s3:http://198.18.0.9:3900/bucket/./prefix",
        "s3:http://198.18.0.9:3900/bucket/",
    ],
)
def test_an_s3_repository_path_with_dot_segments_or_empty_ones_is_refused(
    tmp_path: Path, example_values: dict[str, str], repo: str
) -> None:
    env = _env(
        tmp_path,
        example_values,
        BACKUP_REPOSITORY=repo,
        BACKUP_S3_ACCESS_KEY="GKabc",
        BACKUP_S3_SECRET_KEY="s3cr3t-" + SECRET,
    )
    proc = inv("backup", f"--env-file={env}", cwd=tmp_path)
    clean(proc, SECRET)
    assert proc.returncode == 2
    assert "BACKUP_REPOSITORY" in proc.stderr and "'..'" in proc.stderr
    # the same rule for --to
    env = _env(tmp_path, example_values, BACKUP_REPOSITORY=str(tmp_path / "repo"))
    proc = inv("backup", f"--env-file={env}", f"--to={repo}", cwd=tmp_path)
    clean(proc, SECRET)
    assert proc.returncode == 2 and "--to" in proc.stderr
    assert not (tmp_path / "repo").exists()


# ------------------------------------------------------------------ loopback (9)

LOOPBACK_SPELLINGS = ("::ffff:127.0.0.1", "::ffff:7f00:1", "127.0.0.2", "0.0.0.0", "::")


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_every_spelling_of_loopback_is_refused_for_backup_and_restore(
    tmp_path: Path, example_values: dict[str, str], host: str
) -> None:
    repo = tmp_path / "repo"
    env = _env(tmp_path, example_values, STALWART_DB_HOST=host, BACKUP_REPOSITORY=str(repo))
    proc = inv("backup", f"--env-file={env}", cwd=tmp_path)
    clean(proc, SECRET)
    assert proc.returncode == 2, proc.stderr
    assert "STALWART_DB_HOST" in proc.stderr and "SCRAM" in proc.stderr
    assert not repo.exists() and not (tmp_path / "staging").exists()

    live = _env(tmp_path, example_values, BACKUP_REPOSITORY=str(repo))
    target = write_env(
        tmp_path / "target.env",
        {
            **example_values,
            "STALWART_DB_HOST": host,
            "STALWART_DB_NAME": "scratch",
            "STALWART_S3_BUCKET": "scratch",
        },
    )
    proc = inv("restore", f"--env-file={live}", f"--target-env={target}", cwd=tmp_path)
    clean(proc, SECRET, example_values["STALWART_DB_PASSWORD"])
    assert proc.returncode == 2, proc.stderr
    assert "STALWART_DB_HOST (--target-env)" in proc.stderr and "SCRAM" in proc.stderr
    assert not repo.exists()


# ------------------------------------------------------------------ the root unit (10, 11, 12)


def _schedule_env(tmp_path: Path, values: dict[str, str], name: str = ".env") -> Path:
    folder = tmp_path / "envdir"
    folder.mkdir(exist_ok=True)
    merged = {**values, "BACKUP_PASSWORD": SECRET, "BACKUP_REPOSITORY": "/srv/repo"}
    return write_env(folder / name, merged)


def _units(tmp_path: Path) -> Path:
    units = tmp_path / "units"
    units.mkdir(exist_ok=True)
    return units


@pytest.mark.parametrize("char", ["\r", "\t", "\n", "\x1b", "\x85"])
def test_a_control_character_in_the_env_file_path_writes_no_unit(
    tmp_path: Path, example_values: dict[str, str], char: str
) -> None:
    env = _schedule_env(tmp_path, example_values, f"x{char}ExecStartPre=+touch pwned.env")
    units = _units(tmp_path)
    for flags in (["--schedule"], ["--schedule", "--install", f"--unit-dir={units}"]):
        proc = inv("backup", f"--env-file={env}", *flags, cwd=tmp_path)
        clean(proc, SECRET)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "--env-file" in proc.stderr and "control character" in proc.stderr
        assert "ExecStart" not in proc.stdout
    assert list(units.iterdir()) == []


def test_an_env_file_path_with_dollar_and_specifier_is_one_quoted_word(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    env = _schedule_env(tmp_path, example_values, "a$HOME-%n;b.env")
    units = _units(tmp_path)
    proc = inv("backup", f"--env-file={env}", "--schedule", "--install", f"--unit-dir={units}")
    clean(proc, SECRET)
    # '%' is refused (cron turns it into a newline); '$' alone is quoted
    assert proc.returncode == 2 and "--env-file" in proc.stderr and "%" in proc.stderr
    env = _schedule_env(tmp_path, example_values, "a$HOME;b.env")
    proc = inv("backup", f"--env-file={env}", "--schedule", "--install", f"--unit-dir={units}")
    clean(proc, SECRET)
    assert proc.returncode == 0, proc.stderr
    service = (units / "tailwart-backup.service").read_text()
    exec_lines = [line for line in service.splitlines() if line.startswith("Exec")]
    word = str(env).replace("$", "$$")  # systemd expands $ on Exec lines: doubled
    assert exec_lines == [
        f'ExecStart="{sys.executable}" -m invoke backup "--env-file={word}" --prune'
    ]
    analyze = Path("/usr/bin/systemd-analyze")
    if analyze.exists():
        check = subprocess.run(
            [str(analyze), "verify", "--man=no", str(units / "tailwart-backup.service")],
            capture_output=True,
            text=True,
        )
        assert check.returncode == 0, check.stdout + check.stderr


def test_the_unit_dir_must_be_an_existing_real_absolute_directory(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    env = _schedule_env(tmp_path, example_values)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = tmp_path / "link"
    link.symlink_to(elsewhere)
    cases = {
        "relative/units": "absolute",
        str(tmp_path / "missing"): "not an existing directory",
        str(link): "symlink",
        f"{tmp_path}/units/../elsewhere": "normalised",
        f"{tmp_path}//elsewhere": "normalised",
        f"{elsewhere}\nExecStartPre=x": "control character",
        str(env): "not an existing directory",
    }
    for unit_dir, why in cases.items():
        proc = inv("backup", f"--env-file={env}", "--schedule", f"--unit-dir={unit_dir}")
        clean(proc, SECRET)
        assert proc.returncode == 2, unit_dir
        assert "--unit-dir" in proc.stderr and why in proc.stderr, (unit_dir, proc.stderr)
    assert list(elsewhere.iterdir()) == []
    assert not (tmp_path / "relative").exists() and not (tmp_path / "missing").exists()
    # a unit file that is a symlink would be written through to its target: refused
    units = _units(tmp_path)
    (units / "tailwart-backup.service").symlink_to(elsewhere / "hijacked")
    proc = inv("backup", f"--env-file={env}", "--schedule", f"--unit-dir={units}")
    clean(proc, SECRET)
    assert proc.returncode == 2 and "symlink" in proc.stderr
    assert list(elsewhere.iterdir()) == []


def test_a_root_unit_is_refused_when_a_non_root_user_can_change_what_it_runs(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    import os

    if os.geteuid() != 0:
        pytest.skip("needs root to hand files to another user")
    env = _schedule_env(tmp_path, example_values)
    units = _units(tmp_path)
    nobody = 65534

    def refused(needle: str) -> None:
        proc = inv("backup", f"--env-file={env}", "--schedule", "--install", f"--unit-dir={units}")
        clean(proc, SECRET)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "--install" in proc.stderr and needle in proc.stderr, proc.stderr
        assert "chown" in proc.stderr
        assert list(units.iterdir()) == []

    os.chown(env.parent, nobody, nobody)  # the env file's directory: another user's
    refused(f"{env.parent}: owned by uid {nobody}")
    os.chown(env.parent, 0, 0)
    env.chmod(0o602)  # the env file itself: writable by everyone
    refused(f"{env}: writable by everyone")
    env.chmod(0o600)
    os.chown(units, 0, nobody)
    units.chmod(0o775)  # the unit directory: writable by another group
    refused(f"{units}: writable by group {nobody}")
    units.chmod(0o755)
    proc = inv("backup", f"--env-file={env}", "--schedule", "--install", f"--unit-dir={units}")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in units.iterdir()) == [
        "tailwart-backup.service",
        "tailwart-backup.timer",
    ]


# ------------------------------------------------------------------ the staging directory (7)


def test_a_staging_directory_others_can_read_or_own_is_refused_before_anything(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    import os

    repo = tmp_path / "repo"
    staging = tmp_path / "staging"
    staging.mkdir(mode=0o755)
    staging.chmod(0o755)
    env = _env(
        tmp_path, example_values, BACKUP_REPOSITORY=str(repo), BACKUP_STAGING_DIR=str(staging)
    )
    for flags in ([], ["--dry-run"]):
        proc = inv("backup", f"--env-file={env}", *flags, cwd=tmp_path)
        clean(proc, SECRET)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "BACKUP_STAGING_DIR" in proc.stderr and "chmod 700" in proc.stderr
    assert not repo.exists() and list(staging.iterdir()) == []
    if os.geteuid() == 0:
        staging.chmod(0o700)
        os.chown(staging, 65534, 65534)  # another user's directory, however private
        proc = inv("backup", f"--env-file={env}", cwd=tmp_path)
        clean(proc, SECRET)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "BACKUP_STAGING_DIR" in proc.stderr and "owned by uid 65534" in proc.stderr
        assert not repo.exists() and list(staging.iterdir()) == []


def test_tailwarts_own_staging_directory_is_made_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default staging directory (tailwart's cache) is tailwart's: its mode is fixed."""
    import stat

    from tailwart.backup.repository import prepare_staging
    from tailwart.settings.example import example_settings

    base = tmp_path / "backup"
    base.mkdir(mode=0o755)
    base.chmod(0o755)  # what an older run (or a umask) left
    monkeypatch.setenv("TAILWART_CACHE", str(tmp_path))
    leaf = prepare_staging(example_settings())
    assert stat.S_IMODE(base.stat().st_mode) == 0o700
    assert leaf.parent == base and stat.S_IMODE(leaf.stat().st_mode) == 0o700


# ------------------------------------------------------------------ --target-env (5)


def test_the_target_envs_secrets_are_masked_once_it_is_read(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    from tailwart.backup.restore import load_target
    from tailwart.cli import mask_message

    secret = "target-" + SECRET
    target = write_env(
        tmp_path / "target.env", {**example_values, "STALWART_S3_SECRET_KEY": secret}
    )
    assert secret in mask_message(f"S3 said {secret}")  # nothing known yet
    load_target(str(target))
    assert mask_message(f"S3 said {secret}") == "S3 said <secret>"


def test_a_target_env_that_is_not_a_small_regular_file_is_refused(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    import os

    env = _env(tmp_path, example_values, BACKUP_REPOSITORY=str(tmp_path / "repo"))
    fifo = tmp_path / "target.fifo"
    os.mkfifo(fifo)
    big = tmp_path / "big.env"
    big.write_text("# padding\n" * 200_000)
    for path, needle in ((fifo, "FIFO"), (big, "1 MiB"), (tmp_path, "directory")):
        proc = inv("restore", f"--env-file={env}", f"--target-env={path}", cwd=tmp_path)
        clean(proc, SECRET)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "(--target-env)" in proc.stderr and needle in proc.stderr, proc.stderr
    assert not (tmp_path / "repo").exists()


# ------------------------------------------------------------------ the manifest (3, 4)


def _good_manifest(tmp_path: Path) -> dict[str, object]:
    import json

    from tailwart.backup import manifest as mf

    dump = tmp_path / "stalwart.pgdump"
    dump.write_bytes(b"x")
    built = mf.build(
        versions={"tailwart": "1"},
        source={"db": "198.18.0.7:5432/stalwart", "bucket": "b", "s3_endpoint": "http://h:1"},
        dump=dump,
        dump_sha256="0" * 64,
        tables={"public.m": {"rows": 2, "checksum": "a" * 32}},
        blobs={"k": (1, "f" * 64)},
        vanished=[],
        listing_sha256="e" * 64,
        settings_snapshot={"status": "not-taken", "detail": "x"},
    )
    data: dict[str, object] = json.loads(built.to_json())
    return data


def test_the_manifest_schema_names_every_problem(tmp_path: Path) -> None:
    import json

    from tailwart.backup.manifest import Manifest, SnapshotRefused

    good = _good_manifest(tmp_path)
    Manifest.from_json(json.dumps(good))
    bad = json.loads(json.dumps(good))
    bad["postgres"]["dump"] = "postgres/../../etc/passwd"
    bad["postgres"]["dump_bytes"] = "\u00b2"
    bad["postgres"]["tables"]["public.\x1b[2J"] = {"rows": 1, "checksum": ""}
    bad["blobs"]["count"] = True
    bad["blobs"]["listing"] = "../blobs.tsv"
    del bad["settings_snapshot"]
    with pytest.raises(SnapshotRefused) as caught:
        Manifest.from_json(json.dumps(bad))
    text = str(caught.value)
    for where in (
        "$.postgres.dump:",
        "$.postgres.dump_bytes: expected integer",
        "$.postgres.tables:",
        "$.blobs.count: expected integer",
        "$.blobs.listing: expected",
        "$: expected the keys",
    ):
        assert where in text, (where, text)
    assert not RAW_CONTROL.search(text)
    for hostile in ('{"a": 1, "a": 2}', "NaN", "[" * 100_000, b"\xff\xfe"):
        with pytest.raises(SnapshotRefused, match="not JSON"):
            Manifest.from_json(hostile)


@pytest.mark.parametrize("size", ["\u00b2", "\u0661", "+1", "-1", " 1", "1.0", "01"])
def test_a_listing_size_must_be_plain_ascii_digits(size: str) -> None:
    from tailwart.backup.manifest import SnapshotRefused, parse_listing

    with pytest.raises(SnapshotRefused, match="line 1 "):
        parse_listing(f"{'a' * 64}\t{size}\tkey\n")
    assert parse_listing(f"{'a' * 64}\t10\tkey\n") == {"key": (10, "a" * 64)}
