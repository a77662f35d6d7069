"""Doctor group ``edge``: every public mail port (EDGE_PUBLIC_PORTS) answers through the
edge with its greeting; with EDGE_HOSTS, each host's limits let it hold EDGE_MAX_SESSIONS.

SMTP ports must greet with ``220``, IMAP with ``* OK``; 465 and 993 first
complete a TLS handshake (the edge passes TLS through to Stalwart). The limits are
read over SSH as ``inv edge-status`` reads them (the operator's known_hosts, keys and
SSH config; a new host key is never trusted here); when that login does not work, the
check says it was skipped and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

from ..edge.limits import KEY, Judgement
from ..edge.render import IMPLICIT_TLS_PORTS, MAIL_PORTS, public_ports
from ..errors import TailwartError
from ..findings import Finding
from ..greeting import EXPECTED
from ..masking import one_line
from .registry import Check, DoctorContext, error, ok, warning
from .wire import WireError, greet, short

if TYPE_CHECKING:
    from ..edge.targets import HostJob

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


SKIPPED_ADVICE = (
    "the limits are read over SSH as inv edge-status logs in (known_hosts, key, SSH "
    "config): run inv edge-status to fix the login, or to see the limits there"
)


def host_limits(ctx: DoctorContext) -> Finding:
    """Every EDGE_HOSTS host's limits against EDGE_MAX_SESSIONS, the hosts read at once."""
    from ..edge.session import is_link_error
    from ..edge.status import host_limits as read
    from ..edge.targets import targets_from

    try:
        targets = targets_from(ctx.settings, [], dry_run=True)
    except TailwartError as exc:
        return warning(f"skipped: {one_line(exc)}", SKIPPED_ADVICE)
    # half of the check's time for the login, half for the probe's one round trip
    ssh = replace(targets.ssh, connect_timeout=ctx.timeout / 2, io_timeout=ctx.timeout / 2)

    def one(job: HostJob) -> tuple[str, Judgement | str]:
        try:
            return str(job.target), read(job, ssh)
        except Exception as exc:
            if not isinstance(exc, TailwartError) and not is_link_error(exc):
                raise
            return str(job.target), str(exc) or type(exc).__name__

    with ThreadPoolExecutor(max_workers=min(8, len(targets.jobs))) as pool:
        results = list(pool.map(one, targets.jobs))
    return limits_finding(results, ctx.settings.integer("EDGE_MAX_SESSIONS"))


def limits_finding(results: Sequence[tuple[str, Judgement | str]], want: int) -> Finding:
    """One finding for all hosts, from each host's judgement or why it could not be read.
    Measured: the fewest sessions a host's limits allow, against ``want``."""
    judged = [(host, j) for host, j in results if isinstance(j, Judgement)]
    skipped = [f"skipped {host}: {one_line(why)}" for host, why in results if isinstance(why, str)]
    caps = [f"{host}: {'; '.join(c.message for c in j.caps)}" for host, j in judged if j.caps]
    fine = [host for host, j in judged if j.fine]
    allowed = [j.allowed for _, j in judged if j.allowed is not None]
    if caps:
        fixes = dict.fromkeys(c.advice for _, j in judged for c in j.caps if c.advice)
        found = warning(" | ".join(caps + skipped), " | ".join(fixes))
    else:
        said = f"{', '.join(fine)}: fine for {KEY}={want}" if fine else ""
        if allowed:
            said += f" (the limits allow {min(allowed)} sessions)"
        if skipped:
            found = warning(" | ".join(skipped + ([said] if said else [])), SKIPPED_ADVICE)
        else:
            found = ok(said)
    return found.measured(min(allowed), want, "sessions") if allowed else found


def checks(ctx: DoctorContext) -> list[Check]:
    """One check per port the edge serves (EDGE_PUBLIC_PORTS): the others are tailnet-only;
    with EDGE_HOSTS, one for the hosts' limits."""
    public = public_ports(ctx.settings)
    found = [
        Check(f"edge.{name}", GROUP, f"edge port {port} ({name})", partial(port_greeting, port))
        for name, port in MAIL_PORTS
        if port in public
    ]
    if ctx.settings["EDGE_HOSTS"]:
        found.append(
            Check("edge.limits", GROUP, "edge hosts' limits against EDGE_MAX_SESSIONS", host_limits)
        )
    return found
