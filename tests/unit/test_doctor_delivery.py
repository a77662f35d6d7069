"""inv doctor --report-to mail,webhook: the report submitted to a real SMTP server
(aiosmtpd on loopback, STARTTLS and AUTH demanded) and POSTed to a local HTTP
receiver; with the mailbox down the webhook still gets it and the run fails."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tailwart import clock
from tailwart.doctor import report
from tailwart.doctor.registry import DoctorOptions
from tailwart.doctor.report import ReportOptions
from tailwart.errors import OperationError, TailwartError
from tailwart.findings import Finding, Status
from tailwart.settings import Settings, from_mapping
from tailwart.testing.standin import free_port
from tests.support.backend_servers import Pki
from tests.support.testkit import inv, write_env
from tests.unit.test_doctor_history import T0, bad, checks, ok  # noqa: F401 (a fixture)

USER = "doctor@example.org"
PASSWORD = "Smtp-Subm1ssion-Pw-8f3e2a"
DB_SECRET = "Zq8-v3ryS3cretDbPassw0rd-77"


@dataclass
class Mailbox:
    """aiosmtpd on loopback: STARTTLS, then AUTH with USER/PASSWORD, messages kept."""

    port: int
    messages: list[email.message.EmailMessage] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki.create(tmp_path)


@pytest.fixture
def mailbox(pki: Pki) -> Iterator[Mailbox]:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    box = Mailbox(free_port())
    cert, key = pki.issue("smtp", ["127.0.0.1"], days=30)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        good = isinstance(data, LoginPassword) and (data.login, data.password) == (
            USER.encode(),
            PASSWORD.encode(),
        )
        if good:
            box.logins.append(data.login.decode())
        return AuthResult(success=good)

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            box.messages.append(
                email.message_from_bytes(envelope.content, policy=email.policy.default)
            )
            return "250 OK"

    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=box.port,
        tls_context=context,
        require_starttls=True,
        authenticator=authenticate,
        auth_require_tls=True,
    )
    controller.start()
    yield box
    controller.stop()


@dataclass
class Receiver:
    url: str
    bodies: list[dict[str, Any]]
    status: list[int]


@pytest.fixture
def webhook() -> Iterator[Receiver]:
    bodies: list[dict[str, Any]] = []
    status = [204]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            assert self.headers["Content-Type"] == "application/json"
            bodies.append(json.loads(self.rfile.read(length)))
            self.send_response(status[0])
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Receiver(f"http://127.0.0.1:{server.server_port}/hooks/t0k3n-path", bodies, status)
    server.shutdown()
    server.server_close()


@dataclass
class World:
    """The doctor's checks (injected), a mailbox, a webhook receiver and the CA."""

    tmp_path: Path
    values: dict[str, str]
    answers: dict[str, Finding]
    mailbox: Mailbox
    webhook: Receiver
    pki: Pki

    def settings(self, port: int = 0, password: str = PASSWORD) -> Settings:
        """Every doctor report key set; ``port``: the SMTP port (default the mailbox's)."""
        values = {
            **self.values,
            "STALWART_DB_PASSWORD": DB_SECRET,
            "DOCTOR_HISTORY_DIR": str(self.tmp_path / "history"),
            "DOCTOR_REPORT_TO": "postmaster@example.org",
            "DOCTOR_SMTP_HOST": f"127.0.0.1:{port or self.mailbox.port}",
            "DOCTOR_SMTP_USER": USER,
            "DOCTOR_SMTP_PASSWORD": password,
            "DOCTOR_WEBHOOK_URL": self.webhook.url,
        }
        return from_mapping(values, str(self.tmp_path / ".env"))

    def run(self, settings: Settings) -> str:
        """inv doctor --record --diff --report-to mail,webhook: "" or the failure (exit 1)."""
        options = DoctorOptions(ca_file=self.pki.ca_file, timeout=5)
        wanted = ReportOptions(record=True, diff=True, channels=("mail", "webhook"))
        try:
            report.doctor(settings, options, report=wanted)
        except OperationError as exc:
            return str(exc)
        return ""


@pytest.fixture
def world(
    tmp_path: Path,
    example_values: dict[str, str],
    checks: dict[str, Finding],  # noqa: F811
    mailbox: Mailbox,
    webhook: Receiver,
    pki: Pki,
) -> World:
    return World(tmp_path, example_values, checks, mailbox, webhook, pki)


def test_the_report_is_mailed_and_posted(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    answers, mailbox, webhook = world.answers, world.mailbox, world.webhook
    settings = world.settings()
    answers.update({"dns.mx": ok("dns.mx"), "dns.dkim": ok("dns.dkim")})
    with clock.frozen(T0):
        assert world.run(settings) == ""
    answers["dns.dkim"] = bad("dns.dkim", Status.WARNING, f"weak key; db {DB_SECRET}")
    with clock.frozen(T0 + dt.timedelta(days=1)):
        assert world.run(settings) == ""  # a warning: exit 0
    captured = capsys.readouterr()
    assert "report: mailed to postmaster@example.org through 127.0.0.1:" in captured.err
    assert "report: posted to the webhook at 127.0.0.1:" in captured.err
    assert "t0k3n-path" not in captured.out + captured.err  # the webhook's path is not shown

    assert mailbox.logins == [USER, USER]
    second = mailbox.messages[1]
    assert second["To"] == "postmaster@example.org" and second["From"] == USER
    assert second["Subject"].startswith(
        "tailwart doctor on mail.example.org: 0 error(s), 1 warning"
    )
    body = second.get_content().replace("\r\n", "\n")  # lines on the wire end in CRLF
    assert "new problems (1):\n  WARN  dns.dkim: weak key; db <secret>" in body
    assert body.startswith("changes since 2026-12-01 06:15 UTC")

    hook = webhook.bodies[1]
    assert hook["mail"] == {"delivered": True, "error": ""}
    assert hook["summary"] == {"ok": 1, "warning": 1, "error": 0}
    assert hook["problems"] == [
        {"id": "dns.dkim", "status": "warning", "message": "weak key; db <secret>"}
    ]
    assert hook["text"] == body
    everything = json.dumps(webhook.bodies) + "".join(m.as_string() for m in mailbox.messages)
    assert DB_SECRET not in everything and PASSWORD not in everything


def test_with_the_mailbox_down_the_webhook_still_gets_it_and_the_run_fails(
    world: World,
) -> None:
    answers, webhook = world.answers, world.webhook
    closed = free_port()  # nothing listens: the mailbox is down
    settings = world.settings(port=closed)
    answers["dns.mx"] = ok("dns.mx")  # every check passes: only the mail fails
    with clock.frozen(T0):
        failure = world.run(settings)
    where = urllib.parse.urlsplit(webhook.url).netloc
    assert failure.startswith(f"report: posted to the webhook at {where}\n"), failure
    assert f"report: mail to postmaster@example.org through 127.0.0.1:{closed} failed: " in failure
    assert "Connection refused" in failure or "ConnectionRefused" in failure
    (hook,) = webhook.bodies
    assert hook["mail"]["delivered"] is False
    assert f"127.0.0.1:{closed} failed" in hook["mail"]["error"]
    assert PASSWORD not in failure + json.dumps(hook)


def test_a_wrong_password_and_a_failing_webhook_both_fail_the_run(world: World) -> None:
    answers, mailbox, webhook = world.answers, world.mailbox, world.webhook
    wrong = "Not-The-Right-0ne-44"
    settings = world.settings(password=wrong)
    webhook.status[0] = 500
    answers["dns.mx"] = bad("dns.mx")
    with clock.frozen(T0):
        failure = world.run(settings)
    lines = failure.splitlines()
    # (aiosmtpd answers a refused login by stalling smtplib's next mechanism: a timeout)
    assert lines[0].startswith(
        f"report: mail to postmaster@example.org through 127.0.0.1:{mailbox.port} failed: "
    )
    assert lines[1].startswith("report: webhook at 127.0.0.1:") and "HTTP 500" in lines[1]
    assert lines[2] == "inv doctor: errors found (see above)"
    assert mailbox.messages == [] and wrong not in failure


def test_a_channel_without_its_keys_is_bad_input_before_any_check_runs(
    tmp_path: Path,
    example_values: dict[str, str],
    checks: dict[str, Finding],  # noqa: F811
) -> None:
    checks["dns.mx"] = ok("dns.mx")
    history = tmp_path / "history"
    values = {**example_values, "DOCTOR_HISTORY_DIR": str(history)}
    settings = from_mapping(values, str(tmp_path / ".env"))
    options = ReportOptions(record=True, channels=("mail", "webhook"))
    with pytest.raises(TailwartError) as raised:
        report.doctor(settings, DoctorOptions(), report=options)
    assert raised.value.exit_code == 2
    for key in (
        "DOCTOR_REPORT_TO",
        "DOCTOR_SMTP_USER",
        "DOCTOR_SMTP_PASSWORD",
        "DOCTOR_WEBHOOK_URL",
    ):
        assert key in str(raised.value)
    assert not history.exists()  # nothing ran, nothing was recorded


def test_report_to_names_its_channels(tmp_path: Path, example_values: dict[str, str]) -> None:
    env = write_env(tmp_path / ".env", example_values)
    flags = ("--report-to", "mail,pager", "--since", "x", "--json", "--diff")
    proc = inv("doctor", f"--env-file={env}", *flags)
    assert proc.returncode == 2
    assert "--report-to: unknown channel(s) pager; choose mail, webhook" in proc.stderr
    assert "--since 'x'" in proc.stderr  # every problem at once
    assert "--json with --diff: choose one" in proc.stderr
    proc = inv("doctor", f"--env-file={env}", "--since", "7d")
    assert proc.returncode == 2 and "--since: only with --diff" in proc.stderr
    assert "Traceback" not in proc.stderr
