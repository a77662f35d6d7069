"""inv doctor-schedule: the daily doctor's units (verified by systemd-analyze), its cron
line, and the install into a unit directory; the generic ``tailwart.schedule`` keeps the
backup's units as they were."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.testkit import ROOT, inv, need, write_env

SECRET = "0123456789abcdef0123456789abcdef"


def _analyze(*files: Path) -> subprocess.CompletedProcess[str]:
    analyze = Path("/usr/bin/systemd-analyze")
    need(analyze.exists(), "systemd-analyze is not installed (scripts/setup/20-deploy.sh)")
    return subprocess.run(
        [str(analyze), "verify", "--man=no", *map(str, files)], capture_output=True, text=True
    )


def test_doctor_schedule_prints_units_and_a_cron_line(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    env = write_env(tmp_path / ".env", {**example_values, "STALWART_DB_PASSWORD": SECRET})
    proc = inv("doctor-schedule", f"--env-file={env}", cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert SECRET not in out and "Traceback" not in out
    assert "# ---- /etc/systemd/system/tailwart-doctor.service" in out
    assert "# ---- /etc/systemd/system/tailwart-doctor.timer" in out
    exec_start = f'ExecStart="{sys.executable}" -m invoke doctor "--env-file={env}" --record --diff'
    assert exec_start in out
    assert f"WorkingDirectory={ROOT}" in out
    assert "OnCalendar=*-*-* 06:15:00" in out and "Persistent=true" in out
    assert "OnFailure=" in out  # the unit says how to be told of a failed run
    cron = [line for line in out.splitlines() if line.startswith("15 6 * * * ")]
    assert len(cron) == 1, out
    assert "flock -n /run/lock/tailwart-doctor.lock" in cron[0]
    assert f"-m invoke doctor --env-file={env} --record --diff" in cron[0]
    assert cron[0].endswith(">>/var/log/tailwart-doctor.log 2>&1")
    # no backup words leak into the doctor's units (one generic renderer, two jobs)
    assert "backup" not in out.replace(str(tmp_path), "")


def test_the_scheduled_run_reports_to_the_channels_the_env_sets(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    values = {**example_values, "DOCTOR_WEBHOOK_URL": "https://hooks.example.net/doctor"}
    env = write_env(tmp_path / ".env", values)
    proc = inv("doctor-schedule", f"--env-file={env}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f'"--env-file={env}" --record --diff --report-to=webhook\n' in proc.stdout
    mail = {
        **values,
        "DOCTOR_REPORT_TO": "postmaster@example.org",
        "DOCTOR_SMTP_USER": "doctor@example.org",
        "DOCTOR_SMTP_PASSWORD": SECRET,
    }
    env = write_env(tmp_path / ".env", mail)
    proc = inv("doctor-schedule", f"--env-file={env}", cwd=tmp_path)
    assert proc.stdout.count("--record --diff --report-to=mail,webhook") == 2  # unit and cron
    assert SECRET not in proc.stdout + proc.stderr


def test_doctor_schedule_bad_env_is_exit_2(tmp_path: Path, example_values: dict[str, str]) -> None:
    env = write_env(tmp_path / ".env", {**example_values, "STALWART_DB_PORT": "99999"})
    proc = inv("doctor-schedule", f"--env-file={env}", cwd=tmp_path)
    assert proc.returncode == 2 and "STALWART_DB_PORT" in proc.stderr
    assert "Traceback" not in proc.stderr


def _units(tmp_path: Path, values: dict[str, str]) -> tuple[Path, Path]:
    """An env file and an empty unit directory."""
    units = tmp_path / "units"
    units.mkdir()
    return write_env(tmp_path / ".env", values), units


def test_doctor_schedule_installs_units_systemd_analyze_accepts(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    env, units = _units(tmp_path, example_values)
    args = (f"--env-file={env}", "--install", f"--unit-dir={units}")
    proc = inv("doctor-schedule", *args, "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"would write {units}/tailwart-doctor.service" in proc.stdout
    assert not list(units.iterdir())
    proc = inv("doctor-schedule", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    names = ["tailwart-doctor.service", "tailwart-doctor.timer"]
    assert sorted(p.name for p in units.iterdir()) == names
    assert "crontab" in proc.stdout and "15 6 * * *" in proc.stdout
    again = inv("doctor-schedule", *args, cwd=tmp_path)
    assert again.stdout.count("unchanged ") == 2, again.stdout

    check = _analyze(*(units / name for name in names))
    assert check.returncode == 0 and "tailwart-doctor" not in check.stdout + check.stderr, (
        check.stdout + check.stderr
    )
    # the verifier does catch a broken service (so the pass above means something)
    service = units / "tailwart-doctor.service"
    service.write_text(service.read_text().replace("Type=oneshot", "Type=whenever"))
    check = _analyze(*(units / name for name in names))
    assert "whenever" in check.stdout + check.stderr


def test_a_symlinked_unit_is_refused_by_name(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    env, units = _units(tmp_path, example_values)
    (units / "tailwart-doctor.timer").symlink_to(tmp_path / "elsewhere")
    proc = inv("doctor-schedule", f"--env-file={env}", "--install", f"--unit-dir={units}")
    assert proc.returncode == 2
    assert "tailwart-doctor.timer there is a symlink" in proc.stderr
    assert not (tmp_path / "elsewhere").exists()
