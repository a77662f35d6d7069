"""inv doctor's ``mailbox`` group with three nodes: one ready, one up without its data
store, one down. The nodes' names resolve through a real knotd (DNS_RESOLVER) to
loopback addresses of their own; each answers ``GET /healthz/ready`` as Stalwart
v0.16.18 does (200 ready, 503 while the data store is not open:
crates/http/src/request.rs), and the live suite asks the real server the same."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from tailwart.doctor.registry import DoctorContext, DoctorOptions, registry
from tailwart.doctor.runner import run
from tailwart.settings import from_mapping
from tailwart.settings.example import example_values
from tests.support.backend_servers import KnotServer, free_port
from tests.support.testkit import need_root, need_tool

pytestmark = pytest.mark.integration
ZONE = "tail.test"
NODES = {"n1": ("127.0.0.21", 200), "n2": ("127.0.0.22", 503), "n3": ("127.0.0.23", None)}


class Ready(http.server.BaseHTTPRequestHandler):
    status = 200
    paths: list[str]

    def do_GET(self) -> None:
        self.paths.append(self.path)
        self.send_response(self.status if self.path == "/healthz/ready" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def nodes() -> Iterator[tuple[KnotServer, int, dict[str, list[str]]]]:
    need_root()
    port = free_port()
    records = "".join(f"{name} IN A {address}\n" for name, (address, _) in NODES.items())
    zone = f"$ORIGIN {ZONE}.\n$TTL 300\n@ IN SOA ns1 h 1 3600 600 86400 300\n@ IN NS ns1\n"
    knot = KnotServer.start(need_tool("knotd"), {ZONE: zone + "ns1 IN A 127.0.0.20\n" + records})
    servers = []
    seen: dict[str, list[str]] = {}
    for name, (address, status) in NODES.items():
        if status is None:
            continue  # down: nothing listens there
        seen[name] = []
        handler = type(f"Ready{name}", (Ready,), {"status": status, "paths": seen[name]})
        server = http.server.ThreadingHTTPServer((address, port), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    try:
        yield knot, port, seen
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
        knot.close()


def test_each_node_is_named_ready_not_ready_or_down(
    nodes: tuple[KnotServer, int, dict[str, list[str]]],
) -> None:
    knot, port, seen = nodes
    values = {
        **example_values(),
        "MAILBOX_NODE_NAME": "n1",
        "MAILBOX_FQDN": f"n1.{ZONE}",
        "MAILBOX_NODES": ",".join(f"{name}.{ZONE}" for name in NODES),
        "STALWART_MANAGEMENT_URL": f"http://n1.{ZONE}:{port}",
        "DNS_RESOLVER": knot.resolver,
    }
    ctx = DoctorContext(from_mapping(values), DoctorOptions(timeout=3))
    checks = registry(ctx, ("mailbox",))
    assert [c.id for c in checks] == ["mailbox.n1", "mailbox.n2", "mailbox.n3", "mailbox.cluster"]
    found = {f.id: f for f in run(ctx, checks)}
    assert found["mailbox.n1"].status == "ok"
    assert found["mailbox.n1"].message == (
        f"node n1.{ZONE} is ready (http://n1.{ZONE}:{port}/healthz/ready)"
    )
    assert found["mailbox.n2"].status == "error"
    assert found["mailbox.n2"].message == (
        f"node n2.{ZONE} is up but not ready: its data store is not open"
    )
    assert found["mailbox.n3"].status == "error"
    assert found["mailbox.n3"].message.startswith(f"node n3.{ZONE} is down: ")
    assert "n3.tail.test" in found["mailbox.n3"].advice
    # the leases are asked of MAILBOX_FQDN's node, which speaks no JMAP here
    assert found["mailbox.cluster"].status == "error"
    assert found["mailbox.cluster"].message.startswith("the cluster's node leases could not")
    # each node was asked for its readiness, by its own address
    assert seen == {"n1": ["/healthz/ready"], "n2": ["/healthz/ready"]}
