"""Sample outputs in docs/ held against real runs.

A page marks a sample with ``<!-- sample: NAME -->`` on the line before a fenced
block. The test that runs the command for real passes what it printed to
``check_sample``: every line of the sample (after ``normalise``, which blurs what
differs from run to run: numbers, hex ids, temp paths) must appear in the output in
the same order. A line that is only ``…`` in the sample stands for lines left out,
and a line starting with ``$ `` is the command. So a sample can go stale only by
failing a test. ``TAILWART_UPDATE_SAMPLES=1`` writes the run's own output into the
page instead (then read the diff before committing it).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
MARK = "<!-- sample: {} -->"


def _locate(name: str) -> tuple[Path, list[str], int, int]:
    """(page, its lines, first and past-last line of the sample's block body)."""
    mark = MARK.format(name)
    found = [p for p in sorted(DOCS.rglob("*.md")) if mark in p.read_text()]
    assert len(found) == 1, f"sample {name!r}: marked on {len(found)} pages, expected one"
    lines = found[0].read_text().split("\n")
    at = lines.index(mark)
    assert lines[at + 1].startswith("```"), f"sample {name!r}: no fenced block after the mark"
    end = next(i for i in range(at + 2, len(lines)) if lines[i].startswith("```"))
    return found[0], lines, at + 2, end


def sample(name: str) -> list[str]:
    """The lines of the sample ``name``."""
    _, lines, start, end = _locate(name)
    return lines[start:end]


def normalise(line: str) -> str:
    """What two runs of the same code print alike: hex ids, Stalwart's object ids,
    IPv6 addresses, numbers, temp paths and runs of spaces blurred."""
    line = re.sub(r"/tmp/[^\s'\"/]+(/[^\s'\"]*)?", "/tmp/…", line)
    # IPv6 addresses (a test network's ULA prefix changes from run to run)
    line = re.sub(r"(?<![\w:])[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}(?![\w:])", "v6", line)
    # hex ids and hashes: 6 or more hex digits, at least one a digit (a CA's name suffix too)
    line = re.sub(r"(?<![0-9a-z])(?=[0-9a-f]*\d)[0-9a-f]{6,}(?![0-9A-Za-z])", "h", line)
    # Stalwart's object ids: 10 to 14 lowercase letters and digits, quoted or after a type
    line = re.sub(r'"[a-z0-9]{10,14}"', '"i"', line)
    line = re.sub(r"(x:\w+ )[a-z0-9]{10,14}(?![\w.-])", r"\1i", line)
    line = re.sub(r"\d+", "0", line)
    return " ".join(line.split())


def _missing(wanted: list[str], output: str) -> list[str]:
    """Sample lines not found, in order, among the output's lines."""
    have = [normalise(line) for line in output.splitlines()]
    at = 0
    missing = []
    for line in wanted:
        if line.strip() in ("…", "...") or line.startswith("$ ") or not line.strip():
            continue
        norm = normalise(line)
        try:
            at = have.index(norm, at) + 1
        except ValueError:
            missing.append(line)
    return missing


def check_sample(name: str, output: str) -> None:
    """Fail unless the sample ``name`` is what ``output`` shows (see the module's doc)."""
    if os.environ.get("TAILWART_UPDATE_SAMPLES") == "1":
        page, lines, start, end = _locate(name)
        commands = [line for line in lines[start:end] if line.startswith("$ ")][:1]
        body = commands + output.rstrip("\n").split("\n")
        page.write_text("\n".join([*lines[:start], *body, *lines[end:]]))
        return
    missing = _missing(sample(name), output)
    assert not missing, (
        f"docs sample {name!r} is no longer what the code prints; lines not seen "
        f"(in order): {missing}\n--- the run printed:\n{output}"
    )
