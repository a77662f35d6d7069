"""Plan and apply the desired records with octoDNS: ``Rfc2136Provider`` (octodns-bind)
reads the zone by AXFR and changes it by RFC 2136 UPDATE, both signed with TSIG.

tailwart owns only what carries its ownership TXT (octoDNS's ``OwnershipProcessor``:
``_tailwart.<TYPE>.<name>``, value ``OWNER_VALUE``), visible in the zone. It never
deletes a record without one. A record tailwart wants whose name and type the operator
already set differently (unowned) is a conflict: reported, left alone, unless ``force``.
At the apex the TXT set is shared: tailwart's value is the ``v=spf1`` one, the
operator's other TXT values there stay.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..settings import Settings
from . import DnsError
from .records import Desired

#: the ownership TXT records: ``_tailwart.<TYPE>[.<name>]``, with this value
OWNER_PREFIX = "_tailwart"
OWNER_VALUE = "managed by tailwart (inv dns)"
#: seconds an AXFR or an UPDATE may take
TIMEOUT = 15.0
EFFECT = "live"


@dataclass(frozen=True)
class Target:
    """Where the zone is and how to sign for it (DNS_* keys; the secret never printed)."""

    zone: str
    server: str
    port: int
    key_name: str
    algorithm: str
    secret: str = field(repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, zone: str) -> Target:
        settings.require(
            ("DNS_SERVER", "DNS_TSIG_KEY", "DNS_TSIG_SECRET"),
            "to publish (inv dns; without a DNS API use inv dns --zone)",
        )
        return cls(
            zone,
            settings["DNS_SERVER"],
            settings.port("DNS_PORT"),
            settings["DNS_TSIG_KEY"],
            settings["DNS_TSIG_ALGORITHM"],
            settings["DNS_TSIG_SECRET"],
        )

    @property
    def where(self) -> str:
        host = f"[{self.server}]" if ":" in self.server else self.server
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class DnsChange:
    action: str  # create | update | delete
    name: str
    type: str
    before: tuple[str, ...]
    after: tuple[str, ...]
    #: an ownership TXT record (tailwart's marker), not a record of the domain
    marker: bool = False

    def line(self) -> str:
        sign = {"create": "+", "update": "~", "delete": "-"}[self.action]
        what = " (ownership)" if self.marker else ""
        text = f"  {sign} {self.action} {self.type} {self.name}{what}"
        if self.action == "update":
            return f"{text}: {' '.join(self.before)} → {' '.join(self.after)}"
        return f"{text}: {' '.join(self.after or self.before)}"

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "name": self.name,
            "type": self.type,
            "before": list(self.before),
            "after": list(self.after),
            "ownership": self.marker,
            "effect": EFFECT,
        }


@dataclass(frozen=True)
class Conflict:
    """A record the operator set differently: reported, not changed (unless --force)."""

    name: str
    type: str
    found: tuple[str, ...]
    wanted: tuple[str, ...]
    why: str

    def line(self, force: bool) -> str:
        then = "--force replaces it" if not force else "replaced (--force)"
        return (
            f"  ! conflict {self.type} {self.name}: {self.why}; the zone holds "
            f"{' '.join(self.found) or '(other records)'}, tailwart wants "
            f"{' '.join(self.wanted)}; {then}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "found": list(self.found),
            "wanted": list(self.wanted),
            "why": self.why,
        }


@dataclass
class DnsPlan:
    """What ``inv dns`` would change in the zone (tailwart's Plan protocol)."""

    target: Target
    changes: list[DnsChange]
    conflicts: list[Conflict]
    force: bool = False
    #: octoDNS's plans, applied in order (clashing records first under --force)
    octo: list[Any] = field(default_factory=list)

    @property
    def effect(self) -> str:
        return EFFECT

    def describe(self) -> list[str]:
        head = f"dns zone {self.target.zone}. at {self.target.where}:"
        if not self.changes:
            lines = [f"{head} in step (nothing to change)"]
        else:
            lines = [f"{head} {len(self.changes)} change(s), live on the primary at once"]
            lines += [c.line() for c in self.changes]
        lines += [c.line(self.force) for c in self.conflicts]
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "area": "dns",
            "zone": self.target.zone,
            "server": self.target.where,
            "effect": self.effect,
            "changes": [c.to_json() for c in self.changes],
            "conflicts": [c.to_json() for c in self.conflicts],
        }


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """octoDNS logs and warns (deprecations, its validators) on the root logger: keep its
    chatter out of the operator's output; tailwart prints the plan itself."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(previous)


def _provider(target: Target) -> Any:
    from octodns_bind import Rfc2136Provider

    return Rfc2136Provider(
        "tailwart",
        target.server,
        port=target.port,
        timeout=TIMEOUT,
        key_name=target.key_name,
        key_secret=target.secret,
        key_algorithm=target.algorithm,
    )


def _ownership() -> Any:
    from octodns.processor.ownership import OwnershipProcessor

    return OwnershipProcessor("tailwart", txt_name=OWNER_PREFIX, txt_value=OWNER_VALUE)


def _values(record: Any) -> tuple[str, ...]:
    return tuple(record.to_rrset().rdatas)


def _marker_name(name: str, rtype: str) -> str:
    label = name.replace("*", "_wildcard")
    name = f"{OWNER_PREFIX}.{rtype}.{label}" if label else f"{OWNER_PREFIX}.{rtype}"
    return name.lower()  # octoDNS keeps record names in lower case


def _failure(what: str, exc: BaseException) -> DnsError:
    detail = " ".join(str(exc).split())[:300] or type(exc).__name__
    return DnsError(f"{what}: {detail}; nothing more was changed")


def read_zone(target: Target) -> Any:
    """The zone as the primary holds it (AXFR), as an octoDNS Zone."""
    from octodns.zone import Zone

    zone = Zone(target.zone + ".", [])
    try:
        with quiet():
            _provider(target).populate(zone, target=True, lenient=True)
    except Exception as exc:  # octoDNS wraps DNS errors in its own exception types
        raise _failure(f"reading {target.zone} from {target.where} (AXFR) failed", exc) from None
    return zone


def plan(
    target: Target, desired: Desired, *, force: bool = False, keep_dkim: bool = False
) -> DnsPlan:
    """Compare the zone with ``desired``: the changes tailwart may make, and the conflicts.

    ``keep_dkim``: DKIM was not read (--no-stalwart); the zone's owned DKIM records are
    wanted as they are, so nothing is deleted for want of them."""
    try:
        with quiet():
            return _plan(target, desired, force, keep_dkim)
    except DnsError:
        raise
    except Exception as exc:
        from octodns.processor.ownership import OwnershipException

        if isinstance(exc, OwnershipException):
            raise DnsError(
                f"{target.zone}: a record tailwart wants carries another tool's ownership "
                f"marker ({' '.join(str(exc).split())[:300]}); resolve it by hand"
            ) from None
        raise _failure(f"planning {target.zone} at {target.where} failed", exc) from None


def _plan(target: Target, desired: Desired, force: bool, keep_dkim: bool) -> DnsPlan:
    from octodns.provider.plan import Plan as OctoPlan
    from octodns.record import Create, Delete, Record, Update
    from octodns.record.rr import Rrset as OctoRrset
    from octodns.zone import Zone

    provider, ownership = _provider(target), _ownership()
    existing = read_zone(target)
    found = {(r.name, r._type): r for r in existing.records}
    owned = {
        ownership._decode_ownership_name(r) for r in existing.records if ownership._is_ownership(r)
    }
    wanted = Zone(target.zone + ".", [])
    shares: dict[tuple[str, str], str] = {}
    for rr in desired.records:
        name = wanted.hostname_from_fqdn(rr.fqdn())
        values = list(rr.values)
        if rr.shares and (name, rr.type) in found:
            shares[(name, rr.type)] = rr.shares
            theirs = [
                v for v in _values(found[(name, rr.type)]) if not _txt_text(v).startswith(rr.shares)
            ]
            values += [v for v in theirs if v not in values]
        record = Record.from_rrset(wanted, OctoRrset(rr.fqdn(), rr.type, rr.ttl, values))
        wanted.add_record(record)
    if keep_dkim:
        for (name, rtype), record in found.items():
            if rtype == "TXT" and name.endswith("._domainkey") and (name, rtype) in owned:
                wanted.add_record(record.copy(wanted), replace=True)
    wanted = ownership.process_source_zone(wanted, [])
    octo = provider.plan(wanted, processors=[ownership])
    if octo is not None:
        octo = ownership.process_plan(octo, [], provider)
    changes = list(octo.changes) if octo is not None else []

    conflicts: list[Conflict] = []
    dropped: set[tuple[str, str]] = set()
    clashing: list[Any] = []
    for change in changes:
        record = change.record
        key = (record.name, record._type)
        if ownership._is_ownership(record) or key in owned:
            continue
        if isinstance(change, Update):
            before, after = _values(change.existing), _values(change.new)
            prefix = shares.get(key)
            if prefix:
                before = tuple(v for v in before if _txt_text(v).startswith(prefix))
                after = tuple(v for v in after if _txt_text(v).startswith(prefix))
                if not before:
                    continue  # tailwart's value is added beside the operator's
            conflicts.append(
                Conflict(record.fqdn, record._type, before, after, "set by someone else")
            )
            dropped.add(key)
        elif isinstance(change, Create):
            others = [
                r
                for (n, t), r in found.items()
                if n == record.name
                and (record._type == "CNAME" or t == "CNAME")
                and t != record._type
                and (n, t) not in owned
            ]
            if others:
                conflicts.append(
                    Conflict(
                        record.fqdn,
                        record._type,
                        tuple(f"{r._type} {' '.join(_values(r))}" for r in others),
                        _values(record),
                        "a CNAME cannot share its name with other records",
                    )
                )
                dropped.add(key)
                clashing += others
    if not force:
        markers = {_marker_name(name, rtype) for name, rtype in dropped}
        changes = [
            c
            for c in changes
            if (c.record.name, c.record._type) not in dropped
            and not (isinstance(c, Create) and c.record.name in markers)
        ]
        clashing = []
    octo_plans: list[Any] = []
    if clashing:
        deletes = [Delete(r) for r in clashing]
        octo_plans.append(OctoPlan(existing, wanted, deletes, True))
    if changes and octo is not None:
        octo_plans.append(OctoPlan(octo.existing, octo.desired, changes, True))
    shown = [_shown(Delete(r)) for r in clashing] + [_shown(c) for c in changes]
    return DnsPlan(target, shown, conflicts, force, octo_plans)


def _txt_text(value: str) -> str:
    """The text of one TXT presentation value (its quoted strings joined)."""
    import shlex

    try:
        return "".join(shlex.split(value))
    except ValueError:
        return value


def _shown(change: Any) -> DnsChange:
    from octodns.record import Create, Update

    record = change.record
    marker = record._type == "TXT" and record.name.startswith(OWNER_PREFIX)
    if isinstance(change, Create):
        return DnsChange("create", record.fqdn, record._type, (), _values(change.new), marker)
    if isinstance(change, Update):
        before, after = _values(change.existing), _values(change.new)
        return DnsChange("update", record.fqdn, record._type, before, after, marker)
    return DnsChange("delete", record.fqdn, record._type, _values(change.existing), (), marker)


def apply(dns_plan: DnsPlan) -> int:
    """Send the plan's changes (RFC 2136 UPDATE, TSIG-signed); the number sent."""
    target = dns_plan.target
    provider = _provider(target)
    sent = 0
    try:
        with quiet():
            for octo in dns_plan.octo:
                provider.apply(octo)
                sent += len(octo.changes)
    except Exception as exc:
        raise _failure(
            f"updating {target.zone} at {target.where} failed after {sent} change(s)", exc
        ) from None
    return sent
