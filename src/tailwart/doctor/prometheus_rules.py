"""``inv doctor --prometheus``: a scrape job and alert rules for operators who run Prometheus.

The same numbers and thresholds (DOCTOR_LIMITS) the doctor's stalwart group judges,
as Prometheus would: counters by their ``increase()`` over a day. The password is
never printed: the job reads it from a file the operator writes. The community
edition exports no queue gauge, so the queue stays the doctor's (stalwart.queue).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ..errors import UsageError
from ..settings import Settings
from ..settings.limits import BY_NAME, parse
from .stalwart import ADVICE, COUNTERS, PATH

JOB = "tailwart-stalwart"
#: where the job reads the endpoint's password (the operator writes it there, 0600)
PASSWORD_FILE = "/etc/prometheus/tailwart-stalwart.password"
#: the window counters are judged over (the daily report's)
WINDOW = "1d"
#: store errors: every counter of Stalwart's store events that names an error
STORE_ERROR_SERIES = '{__name__=~"store_.*_error|store_data_corruption|store_assert_value_failed"}'


def _target(settings: Settings) -> tuple[str, str]:
    """(scheme, host:port) of the endpoint: the management URL's."""
    from ..stalwart.provision import management_url

    url = urlsplit(management_url(settings))
    if not url.hostname:
        raise UsageError("STALWART_MANAGEMENT_URL has no host to scrape")
    port = url.port or (443 if url.scheme == "https" else 80)
    host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
    return url.scheme, f"{host}:{port}"


def scrape_config(settings: Settings) -> dict[str, Any]:
    """A ``scrape_configs`` entry for Stalwart's endpoint (prometheus.yml)."""
    from ..stalwart.desired import METRICS_USER

    scheme, target = _target(settings)
    return {
        "job_name": JOB,
        "scheme": scheme,
        "metrics_path": PATH,
        "scrape_interval": "1m",
        "basic_auth": {"username": METRICS_USER, "password_file": PASSWORD_FILE},
        "static_configs": [{"targets": [target]}],
    }


def _counter_rule(name: str, series: str, limit: int, severity: str) -> dict[str, Any]:
    about = BY_NAME[name]
    return {
        "alert": f"Stalwart{name.title().replace('-', '')}",
        "expr": f"sum(increase({series}[{WINDOW}])) > {limit}",
        "labels": {"severity": severity},
        "annotations": {
            "summary": f"{about.what.replace('since the last report', 'in a day')} over "
            f"{limit} (DOCTOR_LIMITS {name})",
            "description": ADVICE[name],
        },
    }


def alert_rules(settings: Settings) -> dict[str, Any]:
    """A rule file: one group, an alert per threshold Prometheus can see."""
    limits = parse(settings["DOCTOR_LIMITS"])
    rules = [
        {
            "alert": "StalwartDown",
            "expr": f'up{{job="{JOB}"}} == 0',
            "for": "5m",
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "Stalwart's metrics endpoint does not answer",
                "description": "check the mailbox: inv doctor",
            },
        },
    ]
    for name, names in COUNTERS.items():
        series = names[0] if len(names) == 1 else f'{{__name__=~"{"|".join(names)}"}}'
        rules.append(_counter_rule(name, series, limits[name], "warning"))
    rules.append(
        _counter_rule("store-errors", STORE_ERROR_SERIES, limits["store-errors"], "critical")
    )
    return {"groups": [{"name": JOB, "rules": rules}]}


def flag_problems(**given: object) -> list[str]:
    """The flags that make no sense with --prometheus (it checks nothing)."""
    return [
        f"--prometheus with --{name.replace('_', '-')}: --prometheus prints configuration and "
        "checks nothing"
        for name, value in given.items()
        if value
    ]


def render(settings: Settings) -> str:
    """Both files as YAML, each after a comment that says where it goes; UsageError (exit 2)
    when the endpoint is off."""
    import yaml

    if not settings["STALWART_METRICS_PASSWORD"]:
        raise UsageError(
            "inv doctor --prometheus: STALWART_METRICS_PASSWORD is empty, so Stalwart's "
            "endpoint is off; set it (openssl rand -hex 24), then inv up and inv provision"
        )

    def dump(data: Any) -> str:
        text: str = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=100)
        return text

    return (
        "# prometheus.yml: add under scrape_configs (write STALWART_METRICS_PASSWORD into\n"
        f"# {PASSWORD_FILE}, mode 0600, owned by prometheus)\n"
        + dump([scrape_config(settings)])
        + "---\n"
        "# tailwart-stalwart.rules.yml: list it under rule_files; the thresholds are\n"
        "# DOCTOR_LIMITS' (the queue is judged by inv doctor: no gauge for it here)\n"
        + dump(alert_rules(settings))
    )
