"""The doctor's registry: check context, check declarations and result helpers."""

from __future__ import annotations

import datetime as dt
import importlib
import ipaddress
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from ..findings import Finding, Status
from ..settings import Settings

#: groups in report order (also the values of --only)
GROUPS: tuple[str, ...] = (
    "backends",
    "mailbox",
    "edge",
    "dns",
    "zone",
    "tls",
    "management",
    "stalwart",
    "outbound",
    "backup",
)
DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True)
class DoctorOptions:
    """Flags of ``inv doctor`` that are not .env keys."""

    #: host the edge checks dial (default EDGE_PUBLIC_IP, else MAIL_HOSTNAME)
    edge_host: str = ""
    #: public port → port actually dialled (tests, port-forwarded edges)
    port_map: Mapping[int, int] = field(default_factory=dict)
    #: extra CA bundle trusted by the TLS checks (private CAs, tests)
    ca_file: str = ""
    #: seconds each check may take
    timeout: float = DEFAULT_TIMEOUT


class Shared:
    """What several checks of one run read once (a scrape, a query): the first check that
    asks computes it, the others wait for it and get the same value or the same error."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._results: dict[str, tuple[bool, Any]] = {}

    def once(self, key: str, compute: Callable[[], Any]) -> Any:
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._results:
                try:
                    self._results[key] = (True, compute())
                except Exception as exc:  # every asking check reports it
                    self._results[key] = (False, exc)
            done, value = self._results[key]
        if not done:
            raise value
        return value

    def get(self, key: str) -> Any:
        """The value computed for ``key``, or None (not asked, or it failed)."""
        with self._lock:
            done, value = self._results.get(key, (False, None))
        return value if done else None


@dataclass(frozen=True)
class Baseline:
    """Stalwart's counters as the newest recorded run saw them: what increases are
    judged against."""

    at: dt.datetime
    counters: Mapping[str, float]


@dataclass(frozen=True)
class DoctorContext:
    settings: Settings
    options: DoctorOptions = field(default_factory=DoctorOptions)
    #: the counters of the newest recorded run (None: no recorded run holds them)
    baseline: Baseline | None = None
    shared: Shared = field(default_factory=Shared, compare=False)

    @property
    def timeout(self) -> float:
        return self.options.timeout

    def edge_host(self) -> str:
        return (
            self.options.edge_host
            or self.settings["EDGE_PUBLIC_IP"]
            or self.settings["MAIL_HOSTNAME"]
        )

    def edge_port(self, public: int) -> int:
        return self.options.port_map.get(public, public)

    def address(self, host: str) -> str:
        """The address to dial for ``host``: asked of DNS_RESOLVER when set, like every name
        the doctor looks up; otherwise left to the system resolver."""
        if not self.settings["DNS_RESOLVER"]:
            return host
        try:
            ipaddress.ip_address(host)
            return host
        except ValueError:
            pass
        from .resolver import Dns, DnsFailure

        try:
            found = Dns(self.settings, self.timeout).addresses(host)
        except DnsFailure:
            return host  # the dns group reports the resolver; dialling tells its own story
        return str(found[0]) if found else host


CheckFn = Callable[[DoctorContext], Finding]


@dataclass(frozen=True)
class Check:
    id: str
    group: str
    title: str
    fn: CheckFn


def ok(message: str) -> Finding:
    """A result without id; the runner stamps the check's id and group on it."""
    return Finding("", Status.OK, message)


def warning(message: str, advice: str) -> Finding:
    return Finding("", Status.WARNING, message, advice)


def error(message: str, advice: str) -> Finding:
    return Finding("", Status.ERROR, message, advice)


def parse_only(value: str) -> tuple[str, ...]:
    """``--only`` value → groups; unknown names are a usage error (exit 2)."""
    if not value:
        return GROUPS
    wanted = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    unknown = [g for g in wanted if g not in GROUPS]
    if unknown or not wanted:
        raise UsageError(
            f"--only: unknown group(s) {', '.join(unknown) or '(none)'}; "
            f"choose from {', '.join(GROUPS)}"
        )
    return tuple(g for g in GROUPS if g in wanted)


def parse_port_map(values: list[str] | tuple[str, ...]) -> dict[int, int]:
    """``--port 25=2525`` values → {25: 2525} (``flags.port_map``: the syntax of
    ``inv edge-run --ports`` too); every problem reported at once (exit 2)."""
    from ..edge.render import MAIL_PORTS
    from ..flags import port_map

    # 443: the JMAP vhost the management check posts to
    out, problems = port_map("--port", values, {port for _, port in MAIL_PORTS} | {443})
    if problems:
        raise UsageError("; ".join(problems))
    return out


def doctor_options(
    only: str,
    edge: str,
    ports: list[str] | tuple[str, ...],
    ca_file: str,
    timeout: float,
    also: Sequence[str] = (),
) -> DoctorOptions:
    """Every ``inv doctor`` flag checked at once (UsageError, exit 2, naming each flag);
    ``also``: the problems of its other flags, reported with these."""
    from .. import flags

    problems: list[str] = list(also)
    port_map: dict[int, int] = {}
    try:
        parse_only(only)
    except UsageError as exc:
        problems.append(str(exc))
    try:
        port_map = parse_port_map(ports)
    except UsageError as exc:
        problems.append(str(exc))
    problems += filter(
        None,
        (
            flags.seconds("--timeout", timeout, at_most=600),
            flags.host("--edge", edge) if edge else None,
            flags.existing_file("--ca-file", ca_file) if ca_file else None,
        ),
    )
    if problems:
        raise UsageError(
            "inv doctor: nothing was checked:\n" + "\n".join(f"  {p}" for p in problems)
        )
    return DoctorOptions(edge, port_map, ca_file, timeout)


def registry(ctx: DoctorContext, groups: tuple[str, ...] = GROUPS) -> list[Check]:
    """Every check of ``groups``, in report order."""
    out: list[Check] = []
    for group in groups:
        module = importlib.import_module(f"{__package__}.{group}")
        out += module.checks(ctx)
    return out


#: what ``all_checks`` adds to the example values so that every conditional check is listed
_EVERY_FEATURE = {
    "EDGE_HOSTS": "root@edge1.example.org",
    "BACKUP_REPOSITORY": "/srv/tailwart-backup",
    "BACKUP_PASSWORD": "listing-only-0f1e2d3c4b5a69788796",
    "STALWART_METRICS_PASSWORD": "listing-only-7a6b5c4d3e2f10293847",
    "GARAGE_ADMIN_URL": "http://garage.tail1234.ts.net:3903",
    "GARAGE_ADMIN_TOKEN": "listing-only-5f4e3d2c1b0a99887766",
    "GARAGE_NODES": "563e1ac825ee3323@dc1,86f0f26ae4afbd59@dc2,a2b9d3f2e5c1b478@dc3",
    # Redis Sentinel in place of the single Redis (STALWART_REDIS_HOST is left out)
    "STALWART_REDIS_SENTINELS": "redis1.tail1234.ts.net:26379,redis2.tail1234.ts.net:26379",
    "STALWART_REDIS_MASTER": "mymaster",
    # two mailbox nodes: a check per node, and mailbox.cluster (their leases)
    "MAILBOX_NODES": "stalwart.tail1234.ts.net,stalwart-2.tail1234.ts.net",
}


def all_checks() -> list[Check]:
    """Every check ``inv doctor`` can run, with its id, group and title, in report order
    (the docs' reference is generated from it). Listed for the example .env with every
    optional feature on (a backup repository, the management login, Stalwart's metrics,
    two mailbox nodes, no smarthost: the :25 probe); nothing is run.
    ``tailwart.checks.registry.all_rules()`` is the same for ``inv check``."""
    from ..settings import from_mapping
    from ..settings.example import example_values

    values = {**example_values(), **_EVERY_FEATURE}
    values.pop("STALWART_REDIS_HOST", None)
    return registry(DoctorContext(from_mapping(values, "<every doctor check>")))
