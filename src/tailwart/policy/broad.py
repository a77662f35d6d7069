"""What a policy's broad rules do to the snippet (pure): deny tests they defeat, reach they open.

A new tailnet's policy allows everything (``"src": ["*"], "dst": ["*:*"]``), and
many keep rules like ``autogroup:member → *:*``. The snippet's grants still go
in; its ``deny`` tests go in only where they hold under the policy's existing
rules (a deny test an existing rule defeats would make the whole policy fail
to save). ``broad_reach`` names the rules that let more than the snippet's own
sources reach the snippet's destinations (the mailbox, including :8080).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from .evaluate import TOP_FIELDS, _list, _proto_number, _strs, first_accepting_rule, split_address

#: a source no rule names, for each kind of device a broad rule can cover
PROBES = (
    ("every user's device", "someone@tailwart.invalid"),
    ("every tagged device", "tag:tailwart-probe"),
)
#: what a port of the mailbox serves, for the warning
PORT_NOTES = {"8080": "8080 (Stalwart's HTTP: JMAP and the /admin and /api management)"}


@dataclass(frozen=True)
class Dropped:
    """A snippet deny test left out: ``rule`` (``acls[i]``/``grants[i]``) already allows it."""

    src: str
    address: str
    rule: str


@dataclass(frozen=True)
class BroadReach:
    """``rule`` lets ``who`` (every user's / tagged device) reach ``targets`` (dst, ports)."""

    rule: str
    who: tuple[str, ...]
    targets: tuple[tuple[str, tuple[str, ...]], ...]


def sections(policy: Any) -> dict[str, Any]:
    """The policy with its top-level keys in their canonical case (``"ACLs"`` → ``acls``)."""
    if not isinstance(policy, dict):
        return {}
    canonical = {name.lower(): name for name in TOP_FIELDS}
    return {canonical.get(str(k).lower(), str(k)): v for k, v in policy.items()}


def holding_denies(snippet: Any, policy: Any) -> tuple[Any, list[Dropped]]:
    """The snippet without the deny tests the policy's rules already defeat, and those left out.

    An entry keeps its ``accept`` list; an entry left with nothing to assert is dropped.
    """
    if not isinstance(snippet, dict) or not isinstance(snippet.get("tests"), list):
        return snippet, []
    rules = sections(policy)
    dropped: list[Dropped] = []
    tests: list[Any] = []
    for test in snippet["tests"]:
        if not isinstance(test, dict) or not isinstance(test.get("src"), str):
            tests.append(test)
            continue
        denies = test.get("deny")
        if not isinstance(denies, list):
            tests.append(test)
            continue
        proto = _proto_number(test.get("proto", "tcp"))
        kept = []
        for address in denies:
            rule = _reach(rules, test["src"], address, proto) if isinstance(address, str) else None
            if rule is None:
                kept.append(address)
            else:
                dropped.append(Dropped(test["src"], address, rule))
        if len(kept) == len(denies):
            tests.append(test)
            continue
        entry = {k: v for k, v in test.items() if k != "deny" or kept}
        if kept:
            entry["deny"] = kept
        if entry.get("accept") or entry.get("deny"):
            tests.append(entry)
    out = copy.copy(snippet)
    out["tests"] = tests
    return out, dropped


def broad_reach(snippet: Any, policy: Any) -> list[BroadReach]:
    """The policy's rules that let every user's or tagged device reach a snippet destination."""
    rules = sections(policy)
    wanted: dict[str, list[str]] = {}  # destination → the ports the snippet opens on it
    for acl in _list(sections(snippet).get("acls")):
        for dst in _strs(acl, "dst"):
            selector, spec = split_address(dst)
            wanted.setdefault(selector, []).extend(p for p in spec.split(",") if p.isdigit())
    for grant in _list(sections(snippet).get("grants")):
        numbers = [spec.rpartition(":")[2] for spec in _strs(grant, "ip")]
        for selector in _strs(grant, "dst"):
            wanted.setdefault(selector, []).extend(p for p in numbers if p.isdigit())
    found: dict[str, tuple[list[str], dict[str, list[str]]]] = {}
    for selector, opened in wanted.items():
        for port in dict.fromkeys(opened):
            for who, probe in PROBES:
                rule = first_accepting_rule(rules, probe, selector, int(port), 6)
                if rule is None:
                    continue
                whos, targets = found.setdefault(rule, ([], {}))
                if who not in whos:
                    whos.append(who)
                reached = targets.setdefault(selector, [])
                if port not in reached:
                    reached.append(port)
    return [
        BroadReach(rule, tuple(whos), tuple((d, tuple(p)) for d, p in targets.items()))
        for rule, (whos, targets) in found.items()
    ]


def describe_reach(reach: BroadReach, where: str) -> str:
    """One loud line: the rule (``where`` = its path and line), who it lets in, and where."""
    who = "every device" if len(reach.who) == len(PROBES) else reach.who[0]
    targets = "; ".join(
        f"{dst} on {', '.join(PORT_NOTES.get(p, p) for p in ports)}" for dst, ports in reach.targets
    )
    return (
        f"{where} lets {who} in the tailnet reach {targets}: not only the sources the snippet "
        "names. Narrow that rule to keep the mailbox private to its edge."
    )


def _reach(rules: dict[str, Any], src: str, address: str, proto: int | None) -> str | None:
    selector, port = split_address(address)
    if not port.isdigit():
        return None
    return first_accepting_rule(rules, src, selector, int(port), proto)
