"""``inv dns``: the DNS records the split topology needs, computed, published, kept true.

One module per job:

- ``records``: the desired record set (pure: settings + DKIM keys → RRsets);
- ``spf``: the SPF of the real outbound path, and its RFC 7208 lookup count;
- ``dkim``: the DKIM TXT records out of Stalwart's computed zone (``dnsZoneFile``);
- ``publish``: plan and apply through octoDNS (RFC 2136 + AXFR, ownership TXT records);
- ``zone_text``: the BIND fragment for operators whose DNS has no API;
- ``run``: the task's flow (what ``inv dns`` calls).
"""

from __future__ import annotations

from ..errors import OperationError, UsageError


class DnsInputError(UsageError):
    """A record tailwart would publish is not valid (exit 2); nothing was published."""


class DnsError(OperationError):
    """Publishing or reading failed (exit 1)."""
