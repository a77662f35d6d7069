"""``inv doctor --prometheus``: Prometheus's own promtool is the oracle.

promtool checks the scrape job (inside a whole prometheus.yml) and the rule file, then
runs rule tests: series that cross each DOCTOR_LIMITS threshold within a day fire the
alert, series that stay under it do not, and the endpoint going down fires after 5m.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tailwart.doctor.prometheus_rules import JOB, render
from tailwart.errors import UsageError
from tailwart.settings import from_mapping
from tests.support.testkit import TOOL_CACHE, need

PROMTOOL_VERSION = "v0.316.0"  # keep equal to scripts/setup/70-metrics.sh
PROMTOOL = TOOL_CACHE / "tools" / f"promtool-{PROMTOOL_VERSION}" / "promtool"
PASSWORD = "metrics-5e4d3c2b1a0f9e8d"


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    need(PROMTOOL.is_file(), f"promtool {PROMTOOL_VERSION} is not built (scripts/setup-machine.sh)")
    return subprocess.run(
        [str(PROMTOOL), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def _files(example_values: dict[str, str], tmp_path: Path, **extra: str) -> tuple[Path, Path]:
    values = {**example_values, "STALWART_METRICS_PASSWORD": PASSWORD, **extra}
    text = render(from_mapping(values))
    assert PASSWORD not in text
    scrape_text, rules_text = text.split("\n---\n")
    config = {"scrape_configs": yaml.safe_load(scrape_text), "rule_files": ["rules.yml"]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    (tmp_path / "rules.yml").write_text(rules_text)
    # the job reads the password from this file; promtool checks that it exists
    password_file = config["scrape_configs"][0]["basic_auth"]["password_file"]
    assert password_file.startswith("/etc/prometheus/")
    return tmp_path / "prometheus.yml", tmp_path / "rules.yml"


def test_promtool_accepts_the_scrape_job_and_the_rules(
    example_values: dict[str, str], tmp_path: Path
) -> None:
    config, rules = _files(example_values, tmp_path)
    checked = _promtool("check", "rules", str(rules), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 5 rules found" in checked.stdout
    # --syntax-only: the password file lives on the operator's Prometheus host
    checked = _promtool("check", "config", "--syntax-only", str(config), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _series(name: str, values: str) -> dict[str, str]:
    return {"series": f'{name}{{job="{JOB}"}}', "values": values}


def test_each_threshold_fires_above_it_and_stays_quiet_below_it(
    example_values: dict[str, str], tmp_path: Path
) -> None:
    _, rules = _files(
        example_values, tmp_path, DOCTOR_LIMITS="failed=3,deferred=5,auth-failures=10"
    )
    # what fires is promtool's verdict; the texts it must carry are the rule file's own
    annotations = {
        rule["alert"]: rule["annotations"]
        for rule in yaml.safe_load(rules.read_text())["groups"][0]["rules"]
    }

    def fires(name: str, at: str, **labels: str) -> dict[str, object]:
        expected = {"exp_labels": labels, "exp_annotations": annotations[name]}
        return {"eval_time": at, "alertname": name, "exp_alerts": [expected]}

    def quiet(name: str, at: str) -> dict[str, object]:
        return {"eval_time": at, "alertname": name, "exp_alerts": []}

    # a sample a minute for 13 hours: within the day, failures 0 → 4 (over 3), deferred
    # 0 → 4 (under 5), failed logins 0 → 30 (over 10), one store error; the endpoint
    # answers for 10 hours, then stops
    minutes = 13 * 60
    tests = {
        "rule_files": [rules.name],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    _series("delivery_dsn_perm_fail", f"0+1x4 4x{minutes}"),
                    _series("queue_rescheduled", f"0+1x4 4x{minutes}"),
                    _series("auth_failed", f"0+10x3 30x{minutes}"),
                    _series("store_postgresql_error", f"0 0 1 1x{minutes}"),
                    _series("up", f"1x600 0x{minutes - 600}"),
                ],
                "alert_rule_test": [
                    fires("StalwartFailed", "6h", severity="warning"),
                    quiet("StalwartDeferred", "6h"),
                    fires("StalwartAuthFailures", "6h", severity="warning"),
                    fires("StalwartStoreErrors", "6h", severity="critical"),
                    quiet("StalwartDown", "6h"),
                    # down since 10h: not yet after 3 minutes, firing after 5
                    quiet("StalwartDown", "10h3m"),
                    fires("StalwartDown", "12h", severity="critical", job=JOB),
                ],
            }
        ],
    }
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    ran = _promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "SUCCESS" in ran.stdout + ran.stderr


def test_without_a_metrics_password_nothing_is_printed(example_values: dict[str, str]) -> None:
    with pytest.raises(UsageError, match="STALWART_METRICS_PASSWORD is empty"):
        render(from_mapping({**example_values, "STALWART_METRICS_PASSWORD": ""}))
