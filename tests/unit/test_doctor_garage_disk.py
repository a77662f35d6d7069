"""backends.garage.disk reads GetClusterStatus: what a node reports is untrusted."""

from __future__ import annotations

from typing import Any

import pytest

from tailwart.doctor.backends import _disk_use


def test_the_percent_in_use_of_a_node() -> None:
    node = {"id": "a1", "hostname": "g1", "dataPartition": {"available": 25, "total": 100}}
    assert _disk_use(node) == ("g1", 75.0)
    assert _disk_use({"id": "a2", "dataPartition": None}) is None  # a node down says nothing


@pytest.mark.parametrize(
    "node",
    [
        "node",
        {"dataPartition": {"available": 5}},
        {"dataPartition": {"available": -1, "total": 10}},
        {"dataPartition": {"available": 11, "total": 10}},
        {"dataPartition": {"available": 0, "total": 0}},
        {"dataPartition": {"available": True, "total": 10}},
        {"dataPartition": {"available": "5", "total": 10}},
        {"dataPartition": [5, 10]},
    ],
)
def test_a_node_that_reports_nonsense_is_named(node: Any) -> None:
    with pytest.raises(ValueError, match=r"dataPartition is not two byte counts|not an object"):
        _disk_use(node)
