"""The doctor's registry: check context, check declarations and result helpers."""

from __future__ import annotations

import importlib
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import UsageError
from ..findings import Finding, Status
from ..settings import Settings

#: groups in report order (also the values of --only)
GROUPS: tuple[str, ...] = (
    "backends",
    "edge",
    "dns",
    "tls",
    "management",
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


@dataclass(frozen=True)
class DoctorContext:
    settings: Settings
    options: DoctorOptions = field(default_factory=DoctorOptions)

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
}


def all_checks() -> list[Check]:
    """Every check ``inv doctor`` can run, with its id, group and title, in report order
    (the docs' reference is generated from it). Listed for the example .env with every
    optional feature on (a backup repository, the management login, no smarthost: the
    :25 probe); nothing is run. ``tailwart.checks.registry.all_rules()`` is the same
    for ``inv check``."""
    from ..settings import from_mapping
    from ..settings.example import example_values

    values = {**example_values(), **_EVERY_FEATURE}
    return registry(DoctorContext(from_mapping(values, "<every doctor check>")))
