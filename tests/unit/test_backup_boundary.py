"""Issue 21, backup and restore at the boundary, without servers: each finding driven
through the real task runner (exit code, the key or flag named, nothing written, no
secret, no raw control character and never the ``unexpected`` catch-all)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from testkit import inv, write_env

SECRET = "0123456789abcdef0123456789abcdef"
#: what a terminal would act on: C0 (the newline aside), DEL, C1
RAW_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def clean(proc: subprocess.CompletedProcess[str], *secrets: str) -> str:
    """The combined output, after asserting the boundary's promises about it."""
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text, text
    assert "unexpected" not in text, text
    assert not RAW_CONTROL.search(text), repr(text)
    for secret in secrets:
        assert secret not in text, text
    return text


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
