"""The edge's systemd unit holds hostile-but-valid paths literally (issue 14, finding 5).

Oracle: systemd itself. ``systemd-analyze verify`` fails with "is not executable"
when an ExecStart= path does not parse to an existing file, so a unit that verifies
while the binary exists ONLY at the literal hostile path proves systemd read the path
back byte for byte (quotes, %, $, backslash, spaces). The control is a path that
differs by one character: it must fail.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.testkit import need

ANALYZE = Path("/usr/bin/systemd-analyze")

HOSTILE = [
    "edge root with spaces",
    "percent %n %i %% %",
    "dollar $HOME ${PATH} $$ and `tick`",
    "semi;colon &amp | pipe {brace}",
    "ExecStartPre=+ not-a-line",
    "tab-free unicode \u00e9\u00df",
]
#: characters systemd refuses in an executable's path (recorded from systemd-analyze 252)
SYSTEMD_REFUSES = ['"', "'", "\\"]


def _verify(unit: Path) -> subprocess.CompletedProcess[str]:
    need(ANALYZE.exists(), "systemd-analyze is not installed (scripts/setup/20-deploy.sh)")
    return subprocess.run(
        [str(ANALYZE), "verify", "--man=no", str(unit)], capture_output=True, text=True
    )


def _release_at(root: Path) -> None:
    (root / "current").mkdir(parents=True)
    exe = root / "current" / "caddy"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)


@pytest.mark.parametrize("name", HOSTILE)
def test_systemd_reads_back_exactly_the_hostile_root(tmp_path: Path, name: str) -> None:
    from tailwart.edge.unit import render_unit

    root = tmp_path / name
    _release_at(root)
    text = render_unit(str(root))
    assert not any(line.startswith("ExecStartPre") for line in text.splitlines())
    unit = tmp_path / "tailwart-edge.service"
    unit.write_text(text)
    proc = _verify(unit)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "tailwart-edge" not in proc.stdout + proc.stderr
    # control: the same unit for a path one character off is refused by systemd
    other = tmp_path / "other.service"
    other.write_text(render_unit(str(root) + "x"))
    proc = _verify(other)
    assert proc.returncode != 0 and "is not executable" in proc.stdout + proc.stderr


@pytest.mark.parametrize("char", SYSTEMD_REFUSES)
def test_paths_systemd_cannot_run_are_refused_before_rendering(tmp_path: Path, char: str) -> None:
    from tailwart.edge.unit import TEMPLATE, render_unit
    from tailwart.systemd_words import UnitValueError, systemd_word

    root = tmp_path / f"a{char}b"
    _release_at(root)
    with pytest.raises(UnitValueError, match="systemd refuses"):
        render_unit(str(root))
    # the oracle: the correctly quoted path is still refused by systemd itself
    good = render_unit(str(tmp_path / "ab"))
    assert TEMPLATE.endswith(".j2")
    quoted = good.replace(
        systemd_word(f"{tmp_path / 'ab'}/current/caddy"),
        systemd_word(f"{root}/current/caddy"),
    )
    unit = tmp_path / "tailwart-edge.service"
    unit.write_text(quoted)
    proc = _verify(unit)
    assert proc.returncode != 0 and "special characters" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "bad", ["/srv/a\nExecStartPre=+/bin/id", "/srv/a\rb", "/srv/\x00", "/a\u2028b"]
)
def test_a_control_character_never_reaches_the_unit(bad: str) -> None:
    from tailwart.edge.unit import render_unit
    from tailwart.systemd_words import UnitValueError

    with pytest.raises(UnitValueError, match="control character"):
        render_unit(bad)
