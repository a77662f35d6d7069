"""inv doctor --record --diff end to end: a recorded run against real servers, then
changes behind tailwart's back (the DKIM record removed in knotd over RFC 2136, Redis
stopped), then the next run, whose report names exactly those checks."""

from __future__ import annotations

import base64
import re
import secrets
import time
from pathlib import Path

import dns.query
import dns.tsigkeyring
import dns.update
import pytest

from tailwart.backends.bootstrap import bootstrap
from tailwart.settings import from_mapping
from tests.support.backend_env import backend_values, garage_key, inv, zones
from tests.support.backend_servers import GarageServer, KnotServer, PostgresServer, RedisServer
from tests.support.doc_samples import check_sample
from tests.support.testkit import need_tool, write_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = ("tailwart-test", "hmac-sha256", base64.b64encode(secrets.token_bytes(32)).decode())


def _remove_dkim(knot: KnotServer) -> None:
    """Delete s1._domainkey.good.test's TXT record, as someone at the DNS host might."""
    keyring = dns.tsigkeyring.from_text({KEY[0]: (KEY[1], KEY[2])})
    update = dns.update.UpdateMessage("good.test", keyring=keyring, keyalgorithm=KEY[1])
    update.delete("s1._domainkey", "TXT")
    reply = dns.query.tcp(update, knot.host, port=knot.port, timeout=5)
    assert reply.rcode() == 0, reply


def _reported(out: str) -> dict[str, set[str]]:
    """{section: check ids} of a --diff report."""
    sections: dict[str, set[str]] = {}
    current = ""
    for line in out.splitlines():
        head = re.match(r"^([a-z][a-z ]+) \(\d+\):$", line)
        if head:
            current = head.group(1)
            sections[current] = set()
            continue
        row = re.match(r"^  (?:ok|WARN|ERROR)\s+(\S+?)(?: \(was \w+\))?:", line)
        if row:
            sections[current].add(row.group(1))
    return sections


def test_the_next_run_names_exactly_what_changed_behind_tailwarts_back(
    tmp_path: Path, pg_server: PostgresServer, garage_ready: GarageServer
) -> None:
    knot = KnotServer.start(
        need_tool("knotd"), zones(), update_key=KEY, update_names=("_domainkey.good.test.",)
    )
    redis = RedisServer.start(need_tool("redis-server"))
    try:
        tag = secrets.token_hex(4)
        names = {"role": f"hist_{tag}", "db": f"hist_{tag}", "bucket": f"hist-{tag}"}
        history = tmp_path / "history"
        env_values = backend_values(
            pg_server,
            redis,
            garage_ready,
            3,
            names,
            garage_key(),
            DNS_RESOLVER=knot.resolver,
            DKIM_SELECTOR="s1",
            STALWART_SMARTHOST="lo.relay.test:2525",
            DOCTOR_HISTORY_DIR=str(history),
        )
        bootstrap(
            from_mapping(env_values),
            say=lambda _: None,
            environ={"PG_ADMIN_PASSWORD": pg_server.admin_password},
        )
        env = write_env(tmp_path / ".env", env_values)
        # a bound, not a measurement (the debug-build Garage is slow under the suite's load)
        args = ("doctor", "--env-file", str(env), "--only", "backends,dns", "--timeout", "20")

        first = inv(*args, "--record", "--diff")
        assert first.returncode == 0, first.stdout + first.stderr
        assert first.stdout.startswith("no earlier recorded run to compare with"), first.stdout
        assert "no problems" in first.stdout
        assert len(list(history.glob("doctor-*.json"))) == 1
        time.sleep(1.1)  # one run file per second

        _remove_dkim(knot)
        redis.close()
        second = inv(*args, "--record", "--diff")
        assert second.returncode == 1, second.stdout + second.stderr
        assert second.stdout.startswith("changes since "), second.stdout
        reported = _reported(second.stdout)
        assert set(reported) == {"new problems"}, second.stdout  # nothing resolved, no drift
        new = reported["new problems"]
        assert "dns.dkim" in new
        others = new - {"dns.dkim"}
        assert others and all(id.startswith("backends.redis.") for id in others), new
        assert "s1._domainkey.good.test" in second.stdout
        assert second.stderr.strip() == "inv doctor: errors found (see above)"
        check_sample("doctor-diff", second.stdout)  # docs/guides/doctor.md

        stored = sorted(history.glob("doctor-*.json"))
        assert len(stored) == 2
        text = "".join(p.read_text() for p in stored)
        for secret in (
            env_values["STALWART_DB_PASSWORD"],
            env_values["STALWART_REDIS_PASSWORD"],
            env_values["STALWART_S3_SECRET_KEY"],
            env_values["GARAGE_ADMIN_TOKEN"],
        ):
            assert secret not in text + second.stdout + second.stderr
    finally:
        redis.close()
        knot.close()
