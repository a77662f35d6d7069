"""``inv doctor-schedule``: a systemd service + timer (or a cron line) running
``inv doctor`` every morning (``tailwart.schedule`` renders and installs).

The run exits 1 on an error finding, so the unit fails and a unit named in
``OnFailure=`` can act.
"""

from __future__ import annotations

from ..schedule import Job

JOB = Job(
    name="doctor",
    task="doctor",
    args=(),
    templates="tailwart.doctor",
    on_calendar="*-*-* 06:15:00",
    cron_time="15 6 * * *",
)
