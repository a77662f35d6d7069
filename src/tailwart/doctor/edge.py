"""Doctor group ``edge``: every public mail port (EDGE_PUBLIC_PORTS) answers through the
edge with its greeting.

SMTP ports must greet with ``220``, IMAP with ``* OK``; 465 and 993 first
complete a TLS handshake (the edge passes TLS through to Stalwart).
"""

from __future__ import annotations

from functools import partial

from ..edge.render import IMPLICIT_TLS_PORTS, MAIL_PORTS, public_ports
from ..findings import Finding
from ..greeting import EXPECTED
from .registry import Check, DoctorContext, error, ok
from .wire import WireError, greet, short

GROUP = "edge"


def port_greeting(public: int, ctx: DoctorContext) -> Finding:
    host, port = ctx.address(ctx.edge_host()), ctx.edge_port(public)
    where = f"{host}:{port}" + ("" if port == public else f" (public :{public})")
    tls = public in IMPLICIT_TLS_PORTS
    want = EXPECTED[public]
    try:
        got = greet(host, port, ctx.timeout, tls=tls, sni=ctx.settings["MAIL_HOSTNAME"])
    except WireError as exc:
        advice = (
            "the edge must pass TLS through to Stalwart's implicit-TLS listener"
            if "TLS" in str(exc)
            else "is caddy-l4 running, the port open in the firewall, and the mailbox up?"
        )
        return error(f"{where}: {exc}", advice)
    if not got.banner.startswith(want):
        seen = short(got.banner) or "(nothing: the connection closed)"
        return error(
            f"{where}: expected {want!r} greeting, got {seen!r}",
            "the edge reaches the wrong service, or the mailbox rejects the PROXY header",
        )
    via = f"{got.tls_version}, " if tls else ""
    return ok(f"{where}: {via}{short(got.banner)}")


def checks(ctx: DoctorContext) -> list[Check]:
    """One check per port the edge serves (EDGE_PUBLIC_PORTS): the others are tailnet-only."""
    public = public_ports(ctx.settings)
    return [
        Check(f"edge.{name}", GROUP, f"edge port {port} ({name})", partial(port_greeting, port))
        for name, port in MAIL_PORTS
        if port in public
    ]
