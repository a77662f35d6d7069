"""Issue 21: the boundary holds for what Stalwart's management API sends back.

``inv provision --check`` runs through the real task runner (tests/support/testkit.py) against
a hostile management API on 127.0.0.1 (hostile_jmap.py): redirects to another origin,
a 600 MiB answer, answers that trickle (body or headers), malformed JSON and wrong
shapes, control characters, and echoes of the credential in many encodings. Each test
asserts the exit code, the key or variable named, that no secret appears in any
encoding, that no raw control character reaches the terminal, and that nothing ends
in the ``unexpected`` catch-all. The oracles are the bytes the servers received and
the standard library's encoders (hostile_jmap.echoes), never tailwart's masking.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from tests.support.hostile_jmap import HostileJmap, echoes
from tests.support.testkit import counting_listener, inv

pytestmark = pytest.mark.integration

#: the management password holds what each encoding changes: " and \ (JSON),
#: / + & % = (percent), so every echo below is a different string
PASSWORD = 'h2"\\/+&%=Zq9~' + "5e0c7a1b9d"
#: what the server receives as Basic credentials: tailwart's management login
ADMIN = f"tailwart-admin@example.org:{PASSWORD}"
#: a line a hostile server would like the operator to see, after clearing the screen
FORGED = "\x1b[2J\x1b[H\rok: no changes: the server holds exactly what .env describes"
UNPRINTABLE = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def env_file(tmp_path: Path, values: dict[str, str], url: str) -> Path:
    """A .env for ``url``; the management password single-quoted (python-dotenv keeps \\
    there)."""
    values = {**values, "STALWART_MANAGEMENT_URL": url}
    values.pop("STALWART_MANAGEMENT_PASSWORD")
    path = tmp_path / ".env"
    lines = [f"{k}={v}\n" for k, v in values.items()]
    path.write_text("".join(lines) + f"STALWART_MANAGEMENT_PASSWORD='{PASSWORD}'\n")
    path.chmod(0o600)
    return path


def provision_check(
    tmp_path: Path, values: dict[str, str], url: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return inv(
        "provision",
        "--check",
        "--env-file",
        str(env_file(tmp_path, values, url)),
        cwd=tmp_path,
        env_extra=env,
        timeout=120,
    )


def safe(done: subprocess.CompletedProcess[str], values: dict[str, str]) -> str:
    """The combined output, after asserting: no traceback, no catch-all, no raw control
    character, and no secret of the .env in any encoding."""
    text = done.stdout + done.stderr
    assert "Traceback" not in text, text
    assert "unexpected" not in text, text
    raw = [c for c in text if c != "\n" and unicodedata.category(c) in UNPRINTABLE]
    assert raw == [], text
    secrets = [ADMIN] + [v for k, v in values.items() if "PASSWORD" in k or "SECRET" in k]
    for secret in secrets:
        for form in echoes(secret if ":" in secret else f"x:{secret}"):
            if len(form) >= 8:
                assert form not in text, f"{form!r} shown: {text}"
    return text


def test_a_clean_server_is_reached_with_the_env_credential(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    """The baseline the other tests change one thing of: a server holding nothing."""
    with HostileJmap().running() as server:
        done = provision_check(tmp_path, example_values, server.url)
    safe(done, example_values)
    assert done.returncode == 1, done.stderr  # --check: everything is still to create
    assert "create" in done.stdout
    assert [r.credential() for r in server.received] == [ADMIN] * len(server.received)


# ---------------------------------------------------------------- finding 1: redirects


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_origin_is_not_followed(
    tmp_path: Path, example_values: dict[str, str], status: int
) -> None:
    with counting_listener() as (port, elsewhere):
        where = f"http://127.0.0.1:{port}/jmap"
        with HostileJmap("redirect", status=status, redirect_to=where).running() as server:
            done = provision_check(tmp_path, example_values, server.url)
    text = safe(done, example_values)
    assert done.returncode == 1, text
    assert f"answered {status}, a redirect" in done.stderr
    assert "STALWART_MANAGEMENT_URL" in done.stderr
    assert elsewhere == []  # the body (and its secrets) went nowhere else
    assert [r.method for r in server.received] == ["GET", "POST"]


# ---------------------------------------------------------------- finding 2: the environment


def test_proxy_variables_and_netrc_from_the_environment_are_ignored(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".netrc").write_text("machine 127.0.0.1 login intruder password netrc-password-1\n")
    (home / ".netrc").chmod(0o600)
    with counting_listener() as (port, proxied), HostileJmap().running() as server:
        proxy = f"http://127.0.0.1:{port}"
        names = ("http_proxy", "https_proxy", "all_proxy")
        variables = {name: proxy for name in names} | {n.upper(): proxy for n in names}
        done = provision_check(
            tmp_path,
            example_values,
            server.url,
            HOME=str(home),
            no_proxy="",
            NO_PROXY="",
            **variables,
        )
    safe(done, example_values)
    assert done.returncode == 1, done.stderr
    assert proxied == []
    assert server.received and all(r.credential() == ADMIN for r in server.received)


# ---------------------------------------------------------------- finding 3: size and time


def test_a_huge_answer_is_cut_at_the_cap(tmp_path: Path, example_values: dict[str, str]) -> None:
    with HostileJmap("huge").running() as server:
        done = provision_check(tmp_path, example_values, server.url)
    text = safe(done, example_values)
    assert done.returncode == 1, text
    assert "larger than 32 MiB" in done.stderr and "STALWART_MANAGEMENT_URL" in done.stderr
    # tailwart hung up soon after 32 MiB: most of the 600 MiB were never sent
    assert server.sent_bytes < 100 * 1024 * 1024


@pytest.mark.parametrize("mode", ["trickle", "trickle-headers"])
def test_a_trickling_answer_meets_the_deadline(
    tmp_path: Path, example_values: dict[str, str], mode: str
) -> None:
    """Each byte arrives well within the read timeout; only the overall deadline ends it
    (testkit's inv() would raise TimeoutExpired after 120 s if nothing did)."""
    with HostileJmap(mode).running() as server:
        done = provision_check(
            tmp_path, example_values, server.url, TAILWART_MANAGEMENT_DEADLINE="2"
        )
    text = safe(done, example_values)
    assert done.returncode == 1, text
    assert "no complete answer within 2 s" in done.stderr
    assert "STALWART_MANAGEMENT_URL" in done.stderr


@pytest.mark.parametrize("value", ["0", "soon", "1e9", "nan"])
def test_a_bad_deadline_is_refused_naming_the_variable(
    tmp_path: Path, example_values: dict[str, str], value: str
) -> None:
    with HostileJmap().running() as server:
        done = provision_check(
            tmp_path, example_values, server.url, TAILWART_MANAGEMENT_DEADLINE=value
        )
    safe(done, example_values)
    assert done.returncode == 2, done.stderr
    assert "TAILWART_MANAGEMENT_DEADLINE" in done.stderr
    assert server.received == []


# ---------------------------------------------------------------- finding 4: JSON and shapes


def _calls(*entries: Any) -> bytes:
    return json.dumps({"methodResponses": list(entries)}).encode()


SHAPES: dict[str, bytes] = {
    "html": b"<html><body>\x1b[2J ok</body></html>",
    "truncated-json": b'{"methodResponses": [["x:BlobStore/get", {',
    "not-utf8": b'{"methodResponses": "\xff\xfe"}',
    "deeply-nested": b"[" * 200_000 + b"]" * 200_000,
    "a-list": b"[1, 2, 3]",
    "a-string": b'"methodResponses"',
    "responses-a-string": _calls()[:-2] + b'"x"}',
    "response-of-two": _calls(["x:BlobStore/get", {}]),
    "response-name-a-number": _calls([1, {}, "c0"]),
    "arguments-a-list": _calls(["x:BlobStore/get", [], "c0"]),
    "list-of-numbers": _calls(["x:BlobStore/get", {"list": [1, "a"]}, "c0"]),
    "list-an-object": _calls(["x:BlobStore/get", {"list": {"id": "x"}}, "c0"]),
    "object-without-id": _calls(["x:BlobStore/get", {"list": [{"@type": "S3"}]}, "c0"]),
    "error-not-an-object": _calls(["error", "boom", "c0"]),
}


@pytest.mark.parametrize("name", list(SHAPES))
def test_malformed_json_or_a_wrong_shape_is_one_clear_error(
    tmp_path: Path, example_values: dict[str, str], name: str
) -> None:
    with HostileJmap("raw", body=SHAPES[name]).running() as server:
        done = provision_check(tmp_path, example_values, server.url)
    text = safe(done, example_values)
    assert done.returncode == 1, text
    assert "STALWART_MANAGEMENT_URL" in done.stderr, text
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


# ------------------------------------------------- findings 6-8: what the server says, shown


def certificate(issuer: str, **more: Any) -> dict[str, Any]:
    """A certificate object valid now for mail.example.org (example_values' MAIL_HOSTNAME):
    from yesterday for 90 days, by the machine's clock the task judges it with."""
    now = dt.datetime.now(dt.UTC)
    return {
        "id": "c1",
        "issuer": issuer,
        "notValidBefore": f"{now - dt.timedelta(days=1):%Y-%m-%dT%H:%M:%SZ}",
        "notValidAfter": f"{now + dt.timedelta(days=90):%Y-%m-%dT%H:%M:%SZ}",
        "subjectAlternativeNames": {"mail.example.org": True},
        **more,
    }


def test_control_characters_in_an_answer_are_escaped_on_stdout(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    issuer = f"CN=x\u202e\u2066\x9b2J\x00\x7f\n{FORGED}"
    objects = {"x:Certificate": [certificate(issuer, id="c1\x1b]0;pwned\x07")]}
    with HostileJmap(objects=objects).running() as server:
        done = provision_check(tmp_path, example_values, server.url)
    safe(done, example_values)
    assert done.returncode == 1, done.stderr
    (line,) = [row for row in done.stdout.splitlines() if row.startswith("certificate for")]
    assert "\\x1b[2J\\x1b[H\\x0dok: no changes" in line  # shown, escaped, on its own line
    assert "\\u202e" in line and "\\x9b" in line and "\\x0a" in line
    assert not any(row.startswith("ok: no changes") for row in done.stdout.splitlines())


def test_control_characters_in_a_refusal_are_escaped_on_stderr(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    with HostileJmap("error", description=f"denied\n{FORGED}\x07").running() as server:
        done = provision_check(tmp_path, example_values, server.url)
    safe(done, example_values)
    assert done.returncode == 1, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "\\x1b[2J" in done.stderr


def test_an_echoed_credential_is_masked_in_every_encoding(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    """The server quotes the credential it received: in a refusal (stderr) ..."""
    with HostileJmap("error", description="you sent {echo}").running() as server:
        done = provision_check(tmp_path, example_values, server.url)
    safe(done, example_values)
    assert done.returncode == 1 and "you sent <secret>" in done.stderr, done.stderr
    # the oracle: the server really had the credential to echo
    assert server.received[-1].credential() == ADMIN


def test_an_echoed_credential_in_an_object_is_masked_on_stdout(
    tmp_path: Path, example_values: dict[str, str]
) -> None:
    """... and inside an object tailwart prints (the certificate line on stdout)."""
    objects = {"x:Certificate": [certificate("CN={echo}")]}
    with HostileJmap(objects=objects).running() as server:
        done = provision_check(tmp_path, example_values, server.url)
    safe(done, example_values)
    assert done.returncode == 1, done.stderr
    assert "issuer CN=<secret>" in done.stdout
    basic = base64.b64encode(ADMIN.encode()).decode()
    assert basic in json.dumps([r.headers for r in server.received])


def test_the_settings_snapshot_of_a_backup_holds_no_echoed_secret(
    example_values: dict[str, str],
) -> None:
    """inv backup's settings snapshot (written into the manifest) from the same server:
    the objects as answered, every echo masked; a hostile answer is a NOT_TAKEN line."""
    from tailwart.backup.settings_snapshot import tailwart_settings_snapshot
    from tailwart.settings import from_mapping

    objects = {"x:Certificate": [certificate("CN={echo}\x1b[2J")]}
    with HostileJmap(objects=objects).running() as server:
        values = {**example_values, "STALWART_MANAGEMENT_PASSWORD": PASSWORD}
        settings = from_mapping({**values, "STALWART_MANAGEMENT_URL": server.url})
        taken = tailwart_settings_snapshot(settings)
    with HostileJmap("huge").running() as server:
        settings = from_mapping({**values, "STALWART_MANAGEMENT_URL": server.url})
        refused = tailwart_settings_snapshot(settings)
    assert taken["status"] == "taken"
    assert refused["status"] == "not-taken" and "larger than 32 MiB" in refused["detail"]
    manifest = json.dumps([taken, refused])
    for form in echoes(ADMIN):
        assert form not in manifest and json.dumps(form)[1:-1] not in manifest
    assert "CN=<secret>" in manifest


# ------------------------------------- the other clients tailwart points at its own servers


def _proxies(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{port}")
        monkeypatch.setenv(name.upper(), f"http://127.0.0.1:{port}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)


def test_garage_admin_follows_no_redirect_and_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """inv bootstrap's Garage client: an ImportKey body carries the S3 secret key."""
    from tailwart.backends.garage import GarageAdmin
    from tailwart.backends.plan import BackendError

    token, secret = "garage-token-5e0c7a1b9d", "9f" * 32
    with counting_listener() as (port, elsewhere):
        _proxies(monkeypatch, port)
        hostile = HostileJmap("redirect", redirect_to=f"http://127.0.0.1:{port}/v2/ImportKey")
        refused = pytest.raises(BackendError, match=r"redirect.*GARAGE_ADMIN_URL")
        with hostile.running() as server, refused as raised:
            GarageAdmin(server.url, token).post("ImportKey", {"secretAccessKey": secret})
    assert elsewhere == []  # neither the proxy nor the other origin saw the token or the key
    (seen,) = server.received
    assert seen.headers["Authorization"] == f"Bearer {token}" and secret.encode() in seen.body
    assert token not in str(raised.value) and secret not in str(raised.value)


def test_garage_admin_answer_that_is_not_json_is_one_clear_error() -> None:
    from tailwart.backends.garage import GarageAdmin
    from tailwart.backends.plan import BackendError

    refused = pytest.raises(BackendError, match="not JSON; check GARAGE_ADMIN_URL")
    with HostileJmap("raw", body=SHAPES["html"]).running() as server, refused:
        GarageAdmin(server.url, "garage-token-5e0c7a1b9d").post("GetClusterStatus", None)


def test_the_policy_api_over_plain_http_takes_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy from the environment would read a headscale key sent over http://."""
    from tailwart.policy.http import Transport

    with counting_listener() as (port, proxied):
        _proxies(monkeypatch, port)
        with HostileJmap("raw", body=b"{}").running() as server:
            response = Transport(attempts=1).request(
                "POST", f"{server.url}/api/v1/policy", "headscale policy", json={}
            )
    assert response.status_code == 200 and proxied == []
    assert [r.path for r in server.received] == ["/api/v1/policy"]
