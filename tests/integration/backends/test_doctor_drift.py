"""The tls checks measure days left (``Finding.value``) against their next threshold, and
``inv doctor --diff`` sees a certificate that does not renew drift toward it, then turn
into a problem: real TLS servers on loopback, the doctor's clock moved forward."""

from __future__ import annotations

import datetime as dt

import pytest

from tailwart import clock
from tailwart.doctor import diff
from tailwart.doctor.history import Run
from tailwart.findings import Status
from tests.integration.backends.test_doctor_edge import TLS_CHECKS, TLS_PORTS, run_groups
from tests.support.backend_env import edge_servers
from tests.support.backend_servers import Pki, line_servers

pytestmark = pytest.mark.integration


def test_a_certificate_that_does_not_renew_drifts_then_warns(pki: Pki) -> None:
    start = clock.now()
    servers = edge_servers(pki, days=90)
    runs = []
    with line_servers(*(servers[p] for p in TLS_PORTS)):
        ports = {p: servers[p].port for p in TLS_PORTS}
        for later in (62.5, 70, 80):  # days after the certificate was issued
            at = start + dt.timedelta(days=later)
            with clock.frozen(at):
                found = run_groups(("tls",), ports, pki.ca_file)
            runs.append(Run(at, tuple(found[c] for c in TLS_CHECKS), ("tls",)))

    first, second, third = runs
    for f in first.findings:
        assert f.status is Status.OK and f.unit == "days left" and f.limit == 14
        assert f.value is not None and 27 < f.value < 28
    for f in third.findings:  # 10 days left: a warning, judged against the error's 3 days
        assert f.status is Status.WARNING and f.limit == 3, f
        assert f.value is not None and 9 < f.value < 10.5

    drifted = diff.compare(first, second)
    assert [d.id for d in drifted.drifting] == list(TLS_CHECKS)
    assert not drifted.worse and not drifted.better
    assert all(d.limit == 14 and d.after < d.before for d in drifted.drifting)

    warned = diff.compare(second, third)
    assert [f.id for _, f in warned.worse] == list(TLS_CHECKS) and not warned.drifting
    report = diff.render(warned)
    assert "new problems (4):" in report and "expires" in report
