"""The judge of an edge host's limits against EDGE_MAX_SESSIONS, and the key itself.

The open-files samples are real ``/proc/<pid>/limits`` files of this test machine
(``tests/fixtures/edge/``: ``cat /proc/self/limits``, and the same under
``prlimit --nofile=1024:20000``). Expected figures are worked out here from the rule
the docs state: two descriptors per held session plus 1024, one local port per
session toward a mailbox address:port, a backlog of at least 4096.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tailwart.edge.limits import HostLimits, Judgement, judge, nofile_soft
from tailwart.findings import Finding, Status
from tailwart.settings import SettingsError, from_mapping
from tailwart.settings.example import example_values

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "edge"
#: this machine's own /proc/self/limits: Max open files 20000 (soft) 20000 (hard)
REAL = (FIXTURES / "proc-limits.txt").read_text()
#: the same, written by the kernel for a process under prlimit --nofile=1024:20000
SOFT_1024 = (FIXTURES / "proc-limits-soft-1024.txt").read_text()

HEALTHY = HostLimits(
    nofile=REAL,
    somaxconn="4096",
    port_range="32768\t60999",
    file_max="9223372036854775807",
    nr_open="1048576",
)


def by_id(j: Judgement) -> dict[str, Finding]:
    return {f.id.removeprefix("edge.limits."): f for f in j.findings}


def test_the_soft_limit_is_read_from_real_proc_limits_files() -> None:
    assert nofile_soft(REAL) == 20000
    assert nofile_soft(SOFT_1024) == 1024  # the soft column, not the hard one
    line = next(x for x in SOFT_1024.splitlines() if x.startswith("Max open files"))
    assert nofile_soft(line) == 1024  # the probe sends only this line


def test_a_host_that_allows_the_planned_sessions_is_fine() -> None:
    j = judge(HEALTHY, 1000, systemd=False, pid=4242)
    assert j.fine and j.unreadable == ()
    assert [f.status for f in j.findings] == [Status.OK] * 5
    nofile = j.findings[0]
    assert (nofile.value, nofile.limit, nofile.unit) == (20000, 2 * 1000 + 1024, "open files")
    # 60999 - 32768 + 1 ports; (20000 - 1024) / 2 sessions of open files
    assert j.allowed == min(28232, 9488)
    assert j.lines() == [
        "limits:          fine for EDGE_MAX_SESSIONS=1000: open files 20000 (needs 3024), "
        "28232 local ports, somaxconn 4096, fs.file-max 9223372036854775807, "
        "fs.nr_open 1048576"
    ]


def test_too_few_open_files_caps_the_edge_and_names_the_key_and_the_fix() -> None:
    supervised = judge(HEALTHY, 20000, systemd=False, pid=4242)
    assert not supervised.fine
    [cap] = supervised.caps
    assert cap.id == "edge.limits.nofile" and cap.status is Status.WARNING
    assert (cap.value, cap.limit) == (20000, 41024)
    assert "EDGE_MAX_SESSIONS=20000 needs 41024" in cap.message
    assert "caddy (pid 4242) may open 20000" in cap.message
    assert "at most 9488 sessions" in cap.message
    assert "hard nofile 1048576" in cap.advice and "/etc/security/limits.conf" in cap.advice
    assert supervised.allowed == 9488
    lines = supervised.lines()
    assert lines[0] == "limits:          WARNING: 1 problem(s) for EDGE_MAX_SESSIONS=20000"
    assert lines[1] == f"  {cap.message}" and lines[2] == f"    fix: {cap.advice}"

    systemd = judge(HEALTHY, 20000, systemd=True, pid=4242).caps[0]
    assert (
        "LimitNOFILE=1048576 under [Service] in "
        "/etc/systemd/system/tailwart-edge.service.d/limits.conf" in systemd.advice
    )
    # past what the unit's LimitNOFILE holds, the fix asks for what the sessions need
    big = {c.id: c for c in judge(HEALTHY, 600000, systemd=True, pid=1).caps}
    assert "LimitNOFILE=1201024 " in big["edge.limits.nofile"].advice
    assert "sysctl -w fs.nr_open=1201024" in big["edge.limits.nr-open"].advice
    assert set(big) == {"edge.limits.nofile", "edge.limits.nr-open", "edge.limits.ports"}


def test_a_narrow_port_range_caps_the_sessions_per_mail_port() -> None:
    narrow = HostLimits(**{**HEALTHY.__dict__, "port_range": "40000 40999"})
    j = judge(narrow, 5000, systemd=False, pid=1)
    [cap] = j.caps
    assert cap.id == "edge.limits.ports"
    assert (cap.value, cap.limit, cap.unit) == (1000, 5000, "local ports")
    assert "net.ipv4.ip_local_port_range 40000 40999 holds 1000 sessions" in cap.message
    assert "fewer than EDGE_MAX_SESSIONS=5000" in cap.message
    assert cap.advice.startswith('sysctl -w net.ipv4.ip_local_port_range="1024 65535"; ')
    assert (
        "'net.ipv4.ip_local_port_range = 1024 65535' in /etc/sysctl.d/60-tailwart-edge.conf"
        in cap.advice
    )
    assert j.allowed == 1000
    # 1024..65535 is 64512 ports: more sessions than that need more mailbox addresses
    wide = HostLimits(**{**HEALTHY.__dict__, "port_range": "1024 65535", "nofile": ""})
    assert judge(wide, 64512, systemd=False, pid=None).caps[0].id == "edge.limits.unreadable"
    over = judge(wide, 64513, systemd=False, pid=None).caps
    assert over[0].id == "edge.limits.ports" and "more addresses" in over[0].advice


def test_a_low_somaxconn_and_host_wide_file_limits_warn() -> None:
    low = HostLimits(nofile=REAL, somaxconn="128", port_range="1024 65535", file_max="30000")
    j = judge(low, 1000, systemd=False, pid=1)
    found = by_id(j)
    backlog = found["somaxconn"]
    assert backlog.status is Status.WARNING
    assert (backlog.value, backlog.limit) == (128, 4096)
    assert "sysctl -w net.core.somaxconn=4096" in backlog.advice
    assert found["file-max"].status is Status.OK
    j = judge(low, 20000, systemd=False, pid=1)
    file_max = by_id(j)["file-max"]
    assert file_max.status is Status.WARNING
    assert "fs.file-max 30000: the whole host" in file_max.message
    assert j.allowed == min(9488, (30000 - 1024) // 2)


HOSTILE = [
    "",
    "   ",
    "abc",
    "-1",
    "1e6",
    "0x1000",
    "4096\n4096",
    "\u0664\u0660\u0669\u0666",  # Arabic-Indic digits: int() would take them
    "\uff14\uff10\uff19\uff16",  # fullwidth digits
    "9" * 40,
    "\x1b[2J4096",
    "4096 4096",
]


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_garbled_values_are_named_on_one_line_never_guessed(value: str) -> None:
    for field, name in (
        ("somaxconn", "net.core.somaxconn"),
        ("port_range", "net.ipv4.ip_local_port_range"),
        ("file_max", "fs.file-max"),
        ("nr_open", "fs.nr_open"),
        ("nofile", "open files of the running caddy"),
    ):
        if field == "port_range" and value == "4096 4096":
            continue  # a one-port range is a range
        bad = HostLimits(**{**HEALTHY.__dict__, field: value})
        j = judge(bad, 1000, systemd=False, pid=7)
        [unreadable] = [f for f in j.findings if f.status is not Status.OK]
        assert unreadable.id == "edge.limits.unreadable"
        assert unreadable.message.startswith(f"not judged: {name}: "), unreadable.message
        assert "\x1b" not in unreadable.message and "\n" not in unreadable.message
        assert len(unreadable.message) < 200
        others = [f.id for f in j.findings if f.status is Status.OK]
        assert len(others) == 4  # the other values are still judged
        text = "\n".join(j.lines())
        assert text.count("\n") == 2 and "not judged" in text


@pytest.mark.parametrize(
    "value",
    ["65535 1024", "0 100", "1 99999", "1 2 3", "1024", "1024-65535", "1024\t65535\t1"],
)
def test_a_port_range_is_two_ports_low_then_high(value: str) -> None:
    bad = HostLimits(**{**HEALTHY.__dict__, "port_range": value})
    [cap] = judge(bad, 1000, systemd=False, pid=7).caps
    assert cap.message.startswith("not judged: net.ipv4.ip_local_port_range: unreadable")


@pytest.mark.parametrize(
    "text",
    [
        "Max open files            lots                 20000                files",
        "Max open files            20000                20000",
        "Max open files            -5                   20000                files",
        "Max open files 20000 20000 files\nMax open files 1 1 files",
        REAL.replace("Max open files", "Max open fails"),
        "",
    ],
)
def test_a_garbled_limits_file_is_named(text: str) -> None:
    bad = HostLimits(**{**HEALTHY.__dict__, "nofile": text})
    [cap] = judge(bad, 1000, systemd=False, pid=7).caps
    assert cap.message.startswith("not judged: open files of the running caddy: ")


def test_a_stopped_edge_is_not_judged_on_open_files_but_the_kernel_is() -> None:
    j = judge(HEALTHY, 1000, systemd=True, pid=None)
    assert "the edge is not running" in j.caps[0].message
    assert {f.id for f in j.findings if f.status is Status.OK} == {
        "edge.limits.ports",
        "edge.limits.somaxconn",
        "edge.limits.file-max",
        "edge.limits.nr-open",
    }


# ------------------------------------------------------------------ EDGE_MAX_SESSIONS


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("0", "between 1 and 1000000"),
        ("1000001", "between 1 and 1000000"),
        ("99999999", "at most 7 are allowed"),
        ("-5", "whole number"),
        ("abc", "whole number"),
        ("1e4", "whole number"),
        ("+5", "whole number"),
        ("20_000", "whole number"),
        ("\uff12\uff10", "whole number"),  # fullwidth digits
        ("020000", "leading zeros"),
        ("20000 ", "whitespace"),
    ],
)
def test_a_bad_edge_max_sessions_is_refused_naming_the_key(value: str, words: str) -> None:
    with pytest.raises(SettingsError) as err:
        from_mapping({**example_values(), "EDGE_MAX_SESSIONS": value})
    [problem] = err.value.problems
    assert problem.key == "EDGE_MAX_SESSIONS" and words in problem.message, problem
    assert err.value.exit_code == 2


@pytest.mark.parametrize("value", ["1", "20000", "1000000"])
def test_edge_max_sessions_reaches_the_edge_layout(value: str) -> None:
    from tailwart.edge.render import layout_for

    settings = from_mapping({**example_values(), "EDGE_MAX_SESSIONS": value})
    assert layout_for(settings).max_sessions == int(value)


def test_edge_max_sessions_defaults_to_20000() -> None:
    from tailwart.edge.render import layout_for

    assert layout_for(from_mapping(example_values())).max_sessions == 20000


# ------------------------------------------------------------------ the probe


def test_the_probe_reads_a_real_process_limits_and_the_kernel_in_a_real_shell(
    tmp_path: Path,
) -> None:
    """The probe command of every edge task, run by sh here: the open-files line of the
    process the pidfile names (started under prlimit), and this kernel's values."""
    import subprocess

    from tailwart.edge.commands import Layout, parse_probe, probe_command

    sleeper = subprocess.Popen(["prlimit", "--nofile=1536:4096", "sleep", "60"])
    try:
        layout = Layout(root=str(tmp_path / "edge"))
        (tmp_path / "edge" / "run").mkdir(parents=True)
        (tmp_path / "edge" / "run" / "caddy.pid").write_text(f"{sleeper.pid}\n")
        out = subprocess.run(
            ["sh", "-c", probe_command(layout)], capture_output=True, text=True, check=True
        ).stdout
    finally:
        sleeper.kill()
        sleeper.wait()
    state = parse_probe(out, layout)
    assert state.running_pid == sleeper.pid
    assert nofile_soft(state.limits.nofile) == 1536
    proc = Path("/proc/sys")
    assert state.limits.somaxconn == (proc / "net/core/somaxconn").read_text().strip()
    assert state.limits.port_range.split() == (
        (proc / "net/ipv4/ip_local_port_range").read_text().split()
    )
    assert state.limits.file_max == (proc / "fs/file-max").read_text().strip()
    assert state.limits.nr_open == (proc / "fs/nr_open").read_text().strip()
    assert judge(state.limits, 10, systemd=False, pid=state.running_pid).fine


def test_edge_status_prints_the_limits_line_of_each_host() -> None:
    from tailwart.edge.plan import RemoteState
    from tailwart.edge.status import HostStatus, judge_limits

    state = RemoteState("linux", "amd64", False, running_pid=4242, limits=HEALTHY)
    fine = HostStatus("h", state, "v2.11.9", limits=judge_limits(state, 1000)).render()
    assert "\n  limits:          fine for EDGE_MAX_SESSIONS=1000: open files 20000" in fine
    capped = HostStatus("h", state, "v2.11.9", limits=judge_limits(state, 20000)).render()
    lines = capped.splitlines()
    at = lines.index("  limits:          WARNING: 1 problem(s) for EDGE_MAX_SESSIONS=20000")
    assert lines[at + 1].startswith("    open files: caddy (pid 4242) may open 20000")
    assert lines[at + 2].startswith("      fix: the supervised start raises it")
