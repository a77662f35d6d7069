"""Delivering the doctor's report (``inv doctor --report-to mail,webhook``).

The first channel is mail to DOCTOR_REPORT_TO through the mailbox's own submission
port (DOCTOR_SMTP_HOST, default MAIL_HOSTNAME:587, STARTTLS or implicit TLS on
465, logged in as DOCTOR_SMTP_USER). The second is a JSON POST to
DOCTOR_WEBHOOK_URL, sent whatever became of the mail, and saying so: when the
mailbox itself is what is broken, the webhook still gets the report. Any channel
that fails makes the task fail (exit 1) after the others were tried, so that a
unit's ``OnFailure=`` can act.

The report is built from masked findings; what a server answers is masked again
and cut short before it is printed. The webhook's path may hold a token: only its
host is ever printed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import OperationError
from ..findings import Finding, Status, summary
from ..flags import printable
from ..masking import hide_sensitive, secret_values
from ..settings import Settings

CHANNELS = ("mail", "webhook")
#: the keys each channel needs
NEEDS = {
    "mail": ("DOCTOR_REPORT_TO", "DOCTOR_SMTP_USER", "DOCTOR_SMTP_PASSWORD"),
    "webhook": ("DOCTOR_WEBHOOK_URL",),
}
SUBMISSION = 587
IMPLICIT_TLS = 465


class DeliveryError(OperationError):
    """A channel could not deliver the report (the others were tried)."""


@dataclass(frozen=True)
class Report:
    """What is delivered: a subject line, the text printed, and the findings' gist."""

    subject: str
    text: str
    host: str
    at: str
    summary: dict[str, int]
    problems: tuple[dict[str, str], ...]

    def payload(self, mail_error: str = "") -> dict[str, Any]:
        """The webhook's JSON body."""
        return {
            "subject": self.subject,
            "host": self.host,
            "at": self.at,
            "summary": self.summary,
            "problems": list(self.problems),
            "text": self.text,
            "mail": {"delivered": not mail_error, "error": mail_error},
        }


def parse_channels(value: str) -> tuple[tuple[str, ...], str | None]:
    """``--report-to`` → channels, and the problem with it (None when fine)."""
    wanted = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    unknown = [c for c in wanted if c not in CHANNELS]
    if unknown:
        return (), f"--report-to: unknown channel(s) {', '.join(unknown)}; choose mail, webhook"
    return wanted, None


def require_keys(settings: Settings, channels: Sequence[str]) -> None:
    """Exit 2 (naming every key) when a chosen channel lacks its keys."""
    names = [name for channel in channels for name in NEEDS[channel]]
    settings.require(names, "by inv doctor --report-to " + ",".join(channels))


def build(settings: Settings, findings: Sequence[Finding], text: str, at: str) -> Report:
    counts = summary(findings)
    host = settings["MAIL_HOSTNAME"]
    state = (
        f"{counts['error']} error(s), {counts['warning']} warning(s)"
        if counts["error"] or counts["warning"]
        else "all ok"
    )
    headline = text.splitlines()[0] if text else ""
    subject = printable(f"tailwart doctor on {host}: {state}; {headline}", 200)
    problems = tuple(
        {"id": f.id, "status": f.status.value, "message": f.message}
        for f in findings
        if f.status is not Status.OK
    )
    return Report(subject, text, host, at, counts, problems)


def _server_said(settings: Settings, exc: BaseException) -> str:
    """An exception from a server or the network, masked, one short line."""
    said = hide_sensitive(f"{type(exc).__name__}: {exc}", secret_values(settings))
    return printable(said, 300)


def send_mail(settings: Settings, report: Report, ca_file: str, timeout: float) -> str:
    """Submit the report; the line to print. DeliveryError when it was not accepted."""
    import smtplib
    import ssl
    from email.message import EmailMessage
    from email.utils import make_msgid

    endpoint = settings.hostport("DOCTOR_SMTP_HOST")
    host, port = (
        (endpoint.host, endpoint.port) if endpoint else (settings["MAIL_HOSTNAME"], SUBMISSION)
    )
    user, to = settings["DOCTOR_SMTP_USER"], settings["DOCTOR_REPORT_TO"]
    msg = EmailMessage()
    msg["Subject"] = report.subject
    msg["From"] = user if "@" in user else to
    msg["To"] = to
    msg["Message-ID"] = make_msgid(domain=settings["MAIL_DOMAIN"])
    msg.set_content(report.text or "(empty report)")
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    try:
        smtp: smtplib.SMTP
        if port == IMPLICIT_TLS:
            smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
        else:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
        with smtp:
            if port != IMPLICIT_TLS:
                smtp.starttls(context=context)
            smtp.login(user, settings["DOCTOR_SMTP_PASSWORD"])
            smtp.send_message(msg)
    except (smtplib.SMTPException, OSError, ValueError) as exc:
        raise DeliveryError(
            f"report: mail to {to} through {host}:{port} failed: {_server_said(settings, exc)}"
        ) from None
    return f"report: mailed to {to} through {host}:{port}"


def post_webhook(settings: Settings, report: Report, timeout: float, mail_error: str) -> str:
    """POST the report as JSON; the line to print. DeliveryError unless a 2xx answered."""
    import urllib.parse

    import requests

    url = settings["DOCTOR_WEBHOOK_URL"]
    where = urllib.parse.urlsplit(url).netloc
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment
    try:
        with session:
            answer = session.post(
                url,
                data=json.dumps(report.payload(mail_error)),
                headers={"Content-Type": "application/json"},
                timeout=timeout,
                allow_redirects=False,
            )
    except requests.RequestException as exc:
        said = _server_said(settings, exc).replace(url, where)
        raise DeliveryError(f"report: webhook at {where} failed: {said}") from None
    if not 200 <= answer.status_code < 300:
        raise DeliveryError(f"report: webhook at {where} answered HTTP {answer.status_code}")
    return f"report: posted to the webhook at {where}"


def deliver(
    settings: Settings, report: Report, channels: Sequence[str], ca_file: str, timeout: float
) -> list[str]:
    """Every chosen channel, mail first; the lines to print. DeliveryError (after all
    were tried) naming each channel that failed."""
    said: list[str] = []
    failed: list[str] = []
    mail_error = ""
    if "mail" in channels:
        try:
            said.append(send_mail(settings, report, ca_file, timeout))
        except DeliveryError as exc:
            mail_error = str(exc)
            failed.append(mail_error)
    if "webhook" in channels:
        try:
            said.append(post_webhook(settings, report, timeout, mail_error))
        except DeliveryError as exc:
            failed.append(str(exc))
    if failed:
        raise DeliveryError("\n".join([*said, *failed]))
    return said
