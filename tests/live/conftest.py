"""``nox -s live -- --stalwart-bin PATH``: acceptance against a real Stalwart v0.16.18.

Not part of the default suite: without TAILWART_STALWART_BIN (set by the nox session
from --stalwart-bin) every test here is skipped. The binary is built by hand from
upstream source and never committed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
BINARY = os.environ.get("TAILWART_STALWART_BIN", "")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if BINARY:
        return
    skip = pytest.mark.skip(reason="live suite: run nox -s live -- --stalwart-bin PATH")
    for item in items:
        if str(item.fspath).startswith(str(HERE)):
            item.add_marker(skip)
