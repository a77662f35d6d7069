"""The open-files limit a real edge needs: the unit's LimitNOFILE and the supervised start."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tailwart.edge import commands as rc
from tailwart.edge.commands import Layout
from tailwart.edge.plan import Action
from tailwart.edge.unit import render_unit

L = Layout(root="/opt/tailwart-edge", admin_socket="/run/tailwart-edge/admin.sock")


def test_the_supervised_start_raises_the_limit_first() -> None:
    for action in (Action.FIRST_INSTALL, Action.START):
        cmd = rc.activation_command(L, "supervised", action, None)
        assert cmd == f"{rc.nofile_command()}; {rc.start_command(L, 'supervised')}"
    restart = rc.activation_command(L, "supervised", Action.RESTART, 7)
    assert restart == f"{rc.nofile_command()}; {rc.restart_command(L, 'supervised', 7)}"
    # a reload keeps the running process (and its limit); systemd has the unit's limit
    assert rc.activation_command(L, "supervised", Action.RELOAD, 7) == rc.reload_command(
        L, "supervised"
    )
    assert (
        rc.activation_command(L, "systemd", Action.START, None) == "systemctl start tailwart-edge"
    )


def test_the_limit_command_raises_the_soft_limit_in_a_real_shell() -> None:
    """Without the privilege to go to NOFILE, the soft limit still rises to the hard one."""
    out = subprocess.run(
        ["sh", "-c", f"ulimit -Sn 64; {rc.nofile_command()}; ulimit -Sn; ulimit -Hn"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    soft, hard = out
    assert soft == hard and int(soft) > 64


def test_the_unit_and_the_supervised_mode_agree_on_the_limit(tmp_path: Path) -> None:
    text = render_unit(str(tmp_path))
    assert f"LimitNOFILE={rc.NOFILE}" in text.splitlines()
