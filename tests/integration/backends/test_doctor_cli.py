"""inv doctor end to end: every group against real servers, table and --json, exit codes."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from tailwart.backends.bootstrap import bootstrap
from tailwart.settings import from_mapping
from tailwart.testing.standin import TlsFiles
from tests.integration.test_doctor_management import Vhost
from tests.support.backend_env import backend_values, edge_servers, garage_key, inv, values
from tests.support.backend_servers import (
    GarageServer,
    KnotServer,
    LineServer,
    Pki,
    PostgresServer,
    RedisServer,
)
from tests.support.doc_samples import check_sample
from tests.support.testkit import write_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_all_groups_pass_on_a_healthy_setup_and_fail_on_a_broken_one(
    tmp_path: Path,
    pg_server: PostgresServer,
    redis_server: RedisServer,
    garage_ready: GarageServer,
    knot: KnotServer,
    pki: Pki,
) -> None:
    tag = secrets.token_hex(4)
    names = {"role": f"cli_{tag}", "db": f"cli_{tag}", "bucket": f"cli-{tag}"}
    redis_server.client(28).flushdb()
    relay = LineServer("220 relay.test ESMTP", ehlo=["STARTTLS", "AUTH PLAIN"])
    servers = edge_servers(pki)
    with relay_and(relay, servers):
        env_values = backend_values(
            pg_server,
            redis_server,
            garage_ready,
            28,
            names,
            garage_key(),
            DNS_RESOLVER=knot.resolver,
            DKIM_SELECTOR="s1",
            STALWART_SMARTHOST=f"lo.relay.test:{relay.port}",
        )
        bootstrap(
            from_mapping(env_values),
            say=lambda _: None,
            environ={"PG_ADMIN_PASSWORD": pg_server.admin_password},
        )
        # the Garage data disk is this machine's own: not judged against the default 85%
        env_values["DOCTOR_LIMITS"] = "disk-percent=99"
        env = write_env(tmp_path / ".env", env_values)
        # every group but zone, which test_doctor_zone.py and test_doctor_documents.py
        # test against servers of its own (this zone is not inv dns's)
        groups = "backends,edge,dns,tls,management,stalwart,outbound,backup"
        # a bound, not a measurement: under the full suite's load the debug-build Garage's
        # admin API once took over 7 s (5 s + the runner's 2) to answer GetClusterStatus
        flags = ["--edge", "127.0.0.1", "--ca-file", pki.ca_file, "--timeout", "20"]
        for public, server in servers.items():
            flags += ["--port", f"{public}={server.port}"]
        # the JMAP vhost, refusing the management login as Stalwart does from the internet
        host = env_values["MAIL_HOSTNAME"]
        cert, key = pki.issue("vhost", [host], days=30)
        vhost = Vhost(tmp_path, host, TlsFiles(Path(cert), Path(key), host))
        vhost.status = 403
        flags += ["--port", f"443={vhost.port}"]

        table = inv("doctor", "--env-file", str(env), "--only", groups, *flags)
        assert table.returncode == 0, table.stdout + table.stderr
        lines = table.stdout.splitlines()
        assert lines[-1] == "27 ok, 0 warning(s), 0 error(s)"
        assert all(line.startswith("ok ") for line in lines[:-2]), table.stdout
        (tmp_path / "doctor-table.txt").write_text(table.stdout)
        check_sample("doctor", table.stdout)  # docs/guides/doctor.md

        as_json = inv("doctor", "--env-file", str(env), "--json", "--only", groups, *flags)
        assert as_json.returncode == 0
        data = json.loads(as_json.stdout)
        assert data["summary"] == {"ok": 27, "warning": 0, "error": 0}
        assert [row["group"] for row in data["findings"]] == (
            ["backends"] * 10
            + ["edge"] * 5
            + ["dns"] * 6
            + ["tls"] * 4
            + ["management"]
            + ["outbound"]
        )
        assert set(data["findings"][0]) == {"id", "group", "status", "message", "advice"}
        check_sample("doctor-json", as_json.stdout)

        # the same setup with a drifted DB password and a wrong DNS zone: exit 1, errors named
        broken = write_env(
            tmp_path / "broken.env",
            {
                **env_values,
                "STALWART_DB_PASSWORD": secrets.token_hex(16),
                "MAIL_DOMAIN": "bad.test",
                "MAIL_HOSTNAME": "mail.bad.test",
                "EDGE_PUBLIC_IP": "198.18.5.26",
            },
        )
        run = inv("doctor", "--env-file", str(broken), "--json", "--only", "backends,dns", *flags)
        assert run.returncode == 1
        assert "inv doctor: errors found" in run.stderr
        found = {row["id"]: row for row in json.loads(run.stdout)["findings"]}
        assert {row["group"] for row in found.values()} == {"backends", "dns"}
        assert found["backends.postgres.login"]["status"] == "error"
        assert found["dns.mx"]["status"] == "error"
        assert found["backends.redis.db"]["status"] == "ok"
        errors = inv("doctor", "--env-file", str(broken), "--only", "backends,dns", *flags)
        check_sample("doctor-errors", errors.stdout)
        for secret in (
            env_values["STALWART_DB_PASSWORD"],
            env_values["STALWART_REDIS_PASSWORD"],
            env_values["STALWART_S3_SECRET_KEY"],
        ):
            assert secret not in table.stdout + as_json.stdout + run.stdout + run.stderr


def relay_and(relay: LineServer, servers: dict[int, LineServer]):  # type: ignore[no-untyped-def]
    from tests.support.backend_servers import line_servers

    return line_servers(relay, *servers.values())


def test_bad_flags_are_usage_errors(tmp_path: Path) -> None:
    env = write_env(tmp_path / ".env", values())
    run = inv("doctor", "--env-file", str(env), "--only", "dns,nope")
    assert run.returncode == 2
    said = "unknown group(s) nope; choose from backends, mailbox, edge, dns, zone, tls"
    assert said in run.stderr
    run = inv("doctor", "--env-file", str(env), "--port", "25:2525", "--port", "x=1")
    assert run.returncode == 2
    assert "--port '25:2525': expected MAILPORT=PORT" in run.stderr
    assert "--port 'x=1'" in run.stderr
