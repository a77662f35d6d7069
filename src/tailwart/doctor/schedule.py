"""``inv doctor-schedule``: a systemd service + timer (or a cron line) running
``inv doctor --record --diff`` every morning (``tailwart.schedule`` renders and installs).

The run records its findings (``history``) and prints what changed since the day
before (``diff``); it exits 1 on an error finding, so the unit fails and a unit named
in ``OnFailure=`` can act.
"""

from __future__ import annotations

from ..schedule import Job

JOB = Job(
    name="doctor",
    task="doctor",
    args=("--record", "--diff"),
    templates="tailwart.doctor",
    on_calendar="*-*-* 06:15:00",
    cron_time="15 6 * * *",
)
