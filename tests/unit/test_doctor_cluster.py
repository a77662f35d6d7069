"""inv doctor's ``mailbox.cluster``: the nodes' leases, as a real Stalwart v0.16.18 answers.

The oracle is the recorded answer of ``x:ClusterNode/get`` (tests/fixtures/
stalwart-0.16.18/cluster-nodes.json, taken by the live suite's two-node cluster):
served from a loopback HTTP server, it must read as both nodes joined; the same answer
with one lease aged, or one node more in .env, must name that node.
"""

from __future__ import annotations

import copy
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tailwart.doctor.mailbox import cluster
from tailwart.doctor.registry import DoctorContext, DoctorOptions, registry
from tailwart.settings import from_mapping
from tailwart.settings.example import example_values

RECORDED = Path(__file__).resolve().parents[1] / "fixtures/stalwart-0.16.18/cluster-nodes.json"
FIRST, SECOND = "stalwart.tail0000.ts.net", "stalwart-2.tail0000.ts.net"


class Jmap:
    """Loopback ``POST /jmap`` answering ``x:ClusterNode/get`` with ``answer``."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.methods: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                method = body["methodCalls"][0][0]
                outer.methods.append(method)
                data = json.dumps({"methodResponses": [[method, outer.answer, "c0"]]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def recorded() -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(RECORDED.read_text())
    return answer


@pytest.fixture
def serve() -> Iterator[Any]:
    made: list[Jmap] = []

    def start(answer: Any) -> Jmap:
        made.append(Jmap(answer))
        return made[-1]

    yield start
    for each in made:
        each.close()


def ctx(url: str, nodes: str = f"{FIRST},{SECOND}") -> DoctorContext:
    values = {
        **example_values(),
        "MAILBOX_FQDN": FIRST,
        "MAILBOX_NODE_NAME": "stalwart",
        "MAILBOX_NODES": nodes,
        "STALWART_MANAGEMENT_URL": url,
    }
    return DoctorContext(from_mapping(values), DoctorOptions(timeout=5))


def test_the_recorded_leases_hold_both_nodes(serve: Any) -> None:
    answer = recorded()
    # what the live cluster answered: both nodes' names, each renewed within the hour
    assert sorted((n["hostname"], n["status"]) for n in answer["list"]) == [
        ("stalwart", "active"),
        ("stalwart-2", "active"),
    ]
    jmap = serve(answer)
    found = cluster(ctx(jmap.url))
    assert found.status == "ok", found.message
    assert found.message == "every node holds an active lease (2 leases in the store)"
    assert jmap.methods == ["x:ClusterNode/get"]


def test_a_node_without_a_lease_or_with_an_old_one_is_named(serve: Any) -> None:
    third = "stalwart-3.tail0000.ts.net"
    found = cluster(ctx(serve(recorded()).url, f"{FIRST},{SECOND},{third}"))
    assert found.status == "error"
    assert found.message == f"not in the cluster: {third} (stalwart-3: no lease)"
    aged = recorded()
    next(n for n in aged["list"] if n["hostname"] == "stalwart-2")["status"] = "stale"
    found = cluster(ctx(serve(aged).url))
    assert found.message == f"not in the cluster: {SECOND} (stalwart-2: stale)"
    assert "STALWART_HOSTNAME" in found.advice


def test_an_old_lease_beside_a_new_one_of_the_same_name_counts_as_new(serve: Any) -> None:
    both = recorded()
    old = copy.deepcopy(both["list"][0])
    old["status"], old["nodeId"] = "inactive", 99
    both["list"].insert(0, old)
    assert cluster(ctx(serve(both).url)).status == "ok"


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        ({"list": "nodes"}, "its list is not a list of at most 256 leases"),
        ({"list": [{"hostname": "x", "status": "active"}] * 300}, "at most 256 leases"),
        ({"list": [{"status": "active"}]}, "a lease has no hostname"),
        ({"list": [{"hostname": "", "status": "active"}]}, "a lease has no hostname"),
        ({"list": [{"hostname": "stalwart", "status": "up"}]}, "has no known status"),
        ({"list": [7]}, "a lease has no hostname"),
        ({}, "its list is not a list"),
    ],
)
def test_a_hostile_answer_is_one_clear_error(serve: Any, answer: Any, says: str) -> None:
    found = cluster(ctx(serve(answer).url))
    assert found.status == "error"
    assert found.message.startswith("the cluster's node leases could not be read: ")
    assert says in found.message


def test_the_check_exists_only_with_several_nodes() -> None:
    def ids(nodes: str) -> list[str]:
        return [c.id for c in registry(ctx("http://127.0.0.1:9", nodes), ("mailbox",))]

    assert ids(FIRST) == ["mailbox.stalwart"]
    assert ids(f"{FIRST},{SECOND}") == ["mailbox.stalwart", "mailbox.stalwart-2", "mailbox.cluster"]
    # a node whose first label is "cluster" is named in full, never shadowed
    odd = "cluster.tail0000.ts.net"
    assert ids(f"{FIRST},{odd}") == [
        f"mailbox.{FIRST}",
        f"mailbox.{odd}",
        "mailbox.cluster",
    ]
