"""``inv doctor-schedule``: a systemd service + timer (or a cron line) running
``inv doctor --record --diff`` every morning (``tailwart.schedule`` renders and installs).

The run records its findings (``history``), prints what changed since the day
before (``diff``) and sends that report to the channels the .env configures
(``delivery``); it exits 1 on an error finding or a failed channel, so the unit
fails and a unit named in ``OnFailure=`` can act.
"""

from __future__ import annotations

from dataclasses import replace

from ..schedule import Job
from ..settings import Settings

JOB = Job(
    name="doctor",
    task="doctor",
    args=("--record", "--diff"),
    templates="tailwart.doctor",
    on_calendar="*-*-* 06:15:00",
    cron_time="15 6 * * *",
)


def doctor_job(settings: Settings) -> Job:
    """``JOB``, sending the report to every channel the .env configures
    (DOCTOR_REPORT_TO: mail, DOCTOR_WEBHOOK_URL: webhook)."""
    channels = [
        channel
        for channel, key in (("mail", "DOCTOR_REPORT_TO"), ("webhook", "DOCTOR_WEBHOOK_URL"))
        if settings[key]
    ]
    if not channels:
        return JOB
    return replace(JOB, args=(*JOB.args, f"--report-to={','.join(channels)}"))
