"""``inv dns --zone``: the desired records as a BIND zone fragment, for operators whose
DNS has no API (paste it into the zone, or import it in the provider's console)."""

from __future__ import annotations

from .records import Desired


def bind_fragment(desired: Desired) -> str:
    """Zone-file lines of every desired record (absolute names), ``$ORIGIN`` the zone."""
    lines = [
        f"; the records inv dns wants in {desired.zone}. (tailwart); paste into the zone",
        f"$ORIGIN {desired.zone}.",
    ]
    lines += [f"; {note}" for note in desired.notes]
    for record in desired.records:
        why = f"  ; {record.why}" if record.why else ""
        for value in record.values:
            lines.append(f"{record.fqdn()} {record.ttl} IN {record.type} {value}{why}")
            why = ""
    return "\n".join(lines) + "\n"
