"""inv drain / undrain: the drained file, the per-host plan, the refusals (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tailwart.edge import commands as rc
from tailwart.edge.commands import Layout, parse_probe
from tailwart.edge.drain import (
    DrainedFileError,
    DrainRefused,
    check_node,
    drained_text,
    for_render,
    parse_drained,
    plan_drain,
)
from tailwart.errors import UsageError
from tailwart.settings.example import example_values
from tests.support.testkit import inv

A, B, C = "stalwart.tail1234.ts.net", "stalwart-2.tail1234.ts.net", "stalwart-3.tail1234.ts.net"
NODES = (A, B, C)


def test_the_file_round_trips_sorted_lower_cased_with_its_header() -> None:
    text = drained_text([C, B.upper()])
    assert text.startswith("# ")
    assert text.splitlines()[1:] == [B, C]
    assert parse_drained(text.splitlines(), "edge1") == frozenset({B, C})
    assert parse_drained(["", "  # note", f" {B} "], "edge1") == frozenset({B})


@pytest.mark.parametrize(
    "line",
    [
        "100.64.0.7:25",
        "fe80::1%eth0",
        "-stalwart.ts.net",
        "$(reboot)",
        "a.b; rm -rf /",
        "stalwart\x1b[31m.ts.net",
        "x" * 300 + ".ts.net",
        "{env.HOME}.ts.net",
    ],
)
def test_a_line_that_is_no_host_name_fails_the_host_naming_the_line(line: str) -> None:
    with pytest.raises(DrainedFileError) as caught:
        parse_drained(["# header", B, line], "root@edge1")
    message = str(caught.value)
    assert message.startswith("root@edge1: line 3 of drained")
    assert "\x1b" not in message  # escaped, never printed raw
    assert not isinstance(caught.value, UsageError)  # exit 1: the host's state, not input


def test_check_node_spells_the_node_as_mailbox_nodes_does() -> None:
    assert check_node(B.upper(), NODES) == B
    with pytest.raises(DrainRefused, match="is not a mailbox node; MAILBOX_NODES lists"):
        check_node("other.tail1234.ts.net", NODES)
    with pytest.raises(DrainRefused, match="the only mailbox node"):
        check_node(A, (A,))


def test_plan_drain_and_undrain() -> None:
    plan = plan_drain("edge1", NODES, frozenset(), B, drain=True)
    assert plan.changes and plan.after == frozenset({B})
    text = "\n".join(plan.describe(NODES))
    assert f"new sessions go to: {A}, {C}" in text
    assert f"sessions already on {B} run on" in text

    again = plan_drain("edge1", NODES, frozenset({B}), B, drain=True)
    assert not again.changes
    assert "already so, nothing to change" in again.describe(NODES)[0]

    back = plan_drain("edge1", NODES, frozenset({B, C}), B, drain=False)
    assert back.after == frozenset({C})
    assert for_render(NODES, back.after) == frozenset({C})


def test_the_last_serving_node_is_never_drained() -> None:
    with pytest.raises(DrainRefused, match="would leave no mailbox node serving"):
        plan_drain("edge1", NODES, frozenset({A, B}), C, drain=True)
    with pytest.raises(DrainRefused, match="no mailbox node serving"):
        plan_drain("edge1", (A, B), frozenset({A}), B, drain=True)


def test_names_no_longer_in_mailbox_nodes_are_dropped_and_said() -> None:
    plan = plan_drain("edge1", (A, B), frozenset({"gone.tail1234.ts.net"}), B, drain=True)
    assert plan.before == frozenset()
    assert plan.after == frozenset({B})
    assert "  ignored (no longer in MAILBOX_NODES): gone.tail1234.ts.net" in plan.describe((A, B))


def test_the_probe_reads_the_file_and_its_lines_come_back_raw() -> None:
    layout = Layout(root="/opt/tw")
    command = rc.probe_command(layout)
    assert 'head -n 64 "$R/drained"' in command and "sed 's/^/drained /'" in command
    state = parse_probe(
        f"drained # header\ndrained {B}\ndrained x y\n--- current caddy.json ---\n", layout
    )
    assert state.drained_lines == ("# header", B, "x y")
    assert rc.write_drained_command(layout, "/opt/tw/.drained.new") == (
        "mv -f /opt/tw/.drained.new /opt/tw/drained"
    )


def _env(tmp_path: Path, **extra: str) -> Path:
    env = tmp_path / ".env"
    values = {**example_values(), "EDGE_HOSTS": "root@edge1.example.org", **extra}
    env.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    env.chmod(0o600)
    return env


@pytest.mark.parametrize(
    ("args", "extra", "words"),
    [
        (
            ["--node", "other.tail1234.ts.net"],
            {"MAILBOX_NODES": f"{A},{B}"},
            "is not a mailbox node",
        ),
        ([], {"MAILBOX_NODES": f"{A},{B}"}, "--node is missing"),
        (["--node", A], {}, "the only mailbox node"),
        (["--node", B, "--mode", "bogus"], {"MAILBOX_NODES": f"{A},{B}"}, "--mode 'bogus'"),
    ],
    ids=["unknown-node", "no-node", "single-node", "bad-flag"],
)
def test_bad_drain_input_exits_2_before_any_connection(
    tmp_path: Path, args: list[str], extra: dict[str, str], words: str
) -> None:
    env = _env(tmp_path, **extra)
    for task in ("drain", "undrain"):
        result = inv(task, "--env-file", str(env), *args, cwd=tmp_path, timeout=60)
        assert result.returncode == 2, result.stderr
        assert words in result.stderr
        assert "Traceback" not in result.stderr
        assert "edge1.example.org:" not in result.stdout  # no host was reached
