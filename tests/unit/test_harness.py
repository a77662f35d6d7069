"""The test harness itself: tool requirement switch, pinned dev tools."""

from __future__ import annotations

import re
import tomllib

import pytest

from tests.support.testkit import ROOT, _require_tools


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"CI": "true"}, True),
        ({"CI": "false"}, False),
        ({"TAILWART_REQUIRE_TOOLS": "1"}, True),
        ({"TAILWART_REQUIRE_TOOLS": "0"}, False),
        ({"TAILWART_REQUIRE_TOOLS": "0", "CI": "true"}, False),
        ({"TAILWART_REQUIRE_TOOLS": "false", "CI": "1"}, False),
        ({"TAILWART_REQUIRE_TOOLS": "yes"}, True),
    ],
)
def test_require_tools_switch(environ: dict[str, str], expected: bool) -> None:
    assert _require_tools(environ) is expected


def test_lint_pin_matches_the_dev_pin() -> None:
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"][
        "dev"
    ]
    pins = {re.split(r"[=<>]", d, maxsplit=1)[0]: d for d in dev}
    assert pins["ruff"].startswith("ruff==") and pins["mypy"].startswith("mypy==")
    noxfile = (ROOT / "noxfile.py").read_text()
    assert f'RUFF = "{pins["ruff"]}"' in noxfile
