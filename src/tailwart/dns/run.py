"""``inv dns``: compute the records, check them, then print a BIND fragment (``--zone``)
or plan and apply them through octoDNS (``publish``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..plan import Drift, PlanFlags, drift_message, show_plan
from ..settings import Settings
from . import DnsError
from .records import Desired, DkimKey, desired_records, zone_of
from .spf import TxtLookup, count_lookups, spf_text, txt_lookup


@dataclass(frozen=True)
class DnsOptions:
    flags: PlanFlags = field(default_factory=PlanFlags)
    #: print the BIND fragment and stop
    zone: bool = False
    #: replace records the operator set differently
    force: bool = False
    #: read the DKIM keys from Stalwart (False: leave the zone's DKIM records as they are)
    stalwart: bool = True


def desired_for(
    settings: Settings,
    stalwart: bool,
    read_dkim: Callable[[Settings], Sequence[DkimKey]] | None = None,
    lookup: TxtLookup | None = None,
) -> Desired:
    """The checked record set: the SPF built and its lookups counted, DKIM read."""
    spf = spf_text(settings)
    count_lookups(spf, lookup or txt_lookup(settings))
    dkim: Sequence[DkimKey] | None = None
    if stalwart:
        from .dkim import read_dkim as from_stalwart

        dkim = (read_dkim or from_stalwart)(settings)
    return desired_records(settings, spf, dkim)


def run_dns(
    settings: Settings,
    options: DnsOptions,
    out: Callable[[str], object],
    read_dkim: Callable[[Settings], Sequence[DkimKey]] | None = None,
    lookup: TxtLookup | None = None,
) -> int:
    """The whole ``inv dns``; the exit code (0, or 1: drift under --check, conflicts left)."""
    from . import publish
    from .zone_text import bind_fragment

    desired = desired_for(settings, options.stalwart, read_dkim, lookup)
    if options.zone:
        out(bind_fragment(desired).rstrip("\n"))
        return 0
    target = publish.Target.from_settings(settings, zone_of(settings))
    plan = publish.plan(target, desired, force=options.force, keep_dkim=not options.stalwart)
    notes = [f"note: {n}" for n in desired.notes]
    code = show_plan(
        plan,
        options.flags,
        out,
        problems=bool(plan.conflicts) and not options.force,
        notes=notes,
        extra={"notes": list(desired.notes)},
    )
    if code is not None:
        if code and plan.changes:
            raise Drift(drift_message("dns", plan))
        if code:
            raise Drift(
                f"dns --check: {len(plan.conflicts)} conflict(s) with records set by someone "
                "else; nothing was changed"
            )
        return 0
    sent = publish.apply(plan)
    after = publish.plan(target, desired, force=options.force, keep_dkim=not options.stalwart)
    if after.changes:
        raise DnsError(
            f"inv dns: {sent} change(s) sent, but the zone still differs in "
            f"{len(after.changes)} (another writer?); run inv dns --dry-run to see them"
        )
    if not options.flags.as_json:
        out(f"dns: {sent} change(s) applied; the zone holds what tailwart owns")
    if after.conflicts and not options.force:
        if not options.flags.as_json:
            out(
                f"dns: {len(after.conflicts)} conflict(s) left as the operator set them; "
                "inv dns --force replaces them"
            )
        return 1
    return 0
