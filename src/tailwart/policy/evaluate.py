"""Checking a tailnet policy the way the control plane does, without a control plane (pure).

- ``check_schema``: unknown fields and wrong types (Tailscale rejects them).
- ``check_references``: tags not declared in ``tagOwners``, undefined groups
  and host aliases.
- ``run_tests``: evaluates the policy's ``tests`` against its ``acls`` and
  ``grants``: for each test source and ``dst:port``, is some rule accepting it?
  ``run_ssh_tests`` does the same for ``sshTests`` against the ``ssh`` rules.

Used by ``inv acl --file`` before writing, by ``inv check`` on the snippet and
by the local Tailscale API server in the tests. Node inventory is unknown
here, so a tag only matches the same tag (or ``*``), and IP selectors match IP
test addresses through CIDR containment and host aliases.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

TOP_FIELDS = frozenset(
    {
        "acls",
        "grants",
        "groups",
        "hosts",
        "tagOwners",
        "tests",
        "sshTests",
        "ssh",
        "nodeAttrs",
        "autoApprovers",
        "postures",
        "defaultSrcPosture",
        "ipsets",
        "derpMap",
        "disableIPv4",
        "randomizeClientPort",
        "OneCGNATRoute",
        "attrConfig",
    }
)
ENTRY_FIELDS: dict[str, frozenset[str]] = {
    "acls": frozenset({"action", "src", "dst", "proto", "srcPosture", "users", "ports"}),
    "grants": frozenset({"src", "dst", "ip", "app", "srcPosture", "via"}),
    "tests": frozenset({"src", "srcPostureAttrs", "proto", "accept", "deny"}),
    "ssh": frozenset(
        {"action", "src", "dst", "users", "checkPeriod", "acceptEnv", "recorder", "enforceRecorder"}
    ),
    "sshTests": frozenset({"src", "dst", "accept", "check", "deny"}),
    "nodeAttrs": frozenset({"target", "attr", "app", "ipPool"}),
}
MAP_FIELDS = frozenset({"groups", "hosts", "tagOwners", "postures", "ipsets"})
AUTO_APPROVER_FIELDS = frozenset({"routes", "exitNode", "services"})
PROTOCOLS = {
    "icmp": 1,
    "igmp": 2,
    "tcp": 6,
    "egp": 8,
    "igp": 9,
    "udp": 17,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "ipv6-icmp": 58,
    "sctp": 132,
}
#: the protocols an ACL rule or grant without a protocol allows
DEFAULT_PROTOCOLS = frozenset({1, 6, 17, 58})


@dataclass(frozen=True)
class Problem:
    """Something the control plane would reject, at a path like ``acls[1].dst[0]``."""

    path: str
    message: str
    #: the string the problem is about, to find its line in the HuJSON text
    token: str = ""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class TestFailure:
    """One failing entry of ``tests``."""

    index: int
    src: str
    errors: tuple[str, ...]
    #: the ``dst:port`` strings that failed, to find their lines
    addresses: tuple[str, ...] = ()
    section: str = "tests"


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    failures: list[TestFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.failures


def validate(policy: Any) -> Report:
    """Schema, references and tests; tests only run when the rest is sound."""
    problems = check_schema(policy)
    if problems:
        return Report(problems)
    problems = check_references(policy)
    if problems:
        return Report(problems)
    return Report([], run_tests(policy) + run_ssh_tests(policy))


# ---------------------------------------------------------------- schema


def check_schema(policy: Any) -> list[Problem]:
    if not isinstance(policy, dict):
        return [Problem("(top)", "the policy must be a JSON object")]
    found: list[Problem] = []
    for key, value in policy.items():
        if key not in TOP_FIELDS:
            found.append(Problem(key, f"unknown field {key!r}", key))
            continue
        if key in ENTRY_FIELDS:
            if not isinstance(value, list):
                found.append(Problem(key, "must be an array"))
                continue
            for i, entry in enumerate(value):
                if not isinstance(entry, dict):
                    found.append(Problem(f"{key}[{i}]", "must be an object"))
                    continue
                for name in entry:
                    if name not in ENTRY_FIELDS[key]:
                        found.append(Problem(f"{key}[{i}]", f"unknown field {name!r}", name))
                found += _entry_types(key, i, entry)
        elif key in MAP_FIELDS and not isinstance(value, dict):
            found.append(Problem(key, "must be an object"))
        elif key == "autoApprovers":
            if not isinstance(value, dict):
                found.append(Problem(key, "must be an object"))
            else:
                for name in value:
                    if name not in AUTO_APPROVER_FIELDS:
                        found.append(Problem(key, f"unknown field {name!r}", name))
    for name, members in _dict(policy.get("groups")).items():
        if not name.startswith("group:"):
            found.append(Problem(f"groups.{name}", "group names start with 'group:'", name))
        if not _str_list(members):
            found.append(Problem(f"groups.{name}", "must be an array of strings", name))
    for name, owners in _dict(policy.get("tagOwners")).items():
        if not name.startswith("tag:"):
            found.append(Problem(f"tagOwners.{name}", "tag names start with 'tag:'", name))
        if not _str_list(owners):
            found.append(Problem(f"tagOwners.{name}", "must be an array of strings", name))
    for name, address in _dict(policy.get("hosts")).items():
        if not isinstance(address, str) or _network(address) is None:
            found.append(Problem(f"hosts.{name}", f"not an IP address or CIDR: {address!r}", name))
    return found


def _entry_types(section: str, i: int, entry: dict[str, Any]) -> list[Problem]:
    where = f"{section}[{i}]"
    found: list[Problem] = []
    if section == "acls":
        if entry.get("action") != "accept":
            found.append(Problem(where, "action must be 'accept'", str(entry.get("action", ""))))
        for name in ("src", "dst"):
            if not _str_list(entry.get(name)):
                found.append(Problem(where, f"{name} must be an array of strings"))
        for dst in entry.get("dst", []) if _str_list(entry.get("dst")) else []:
            if not split_address(dst)[1]:
                found.append(Problem(where, f"dst {dst!r} has no port (use {dst}:*)", dst))
    elif section == "grants":
        for name in ("src", "dst"):
            if not _str_list(entry.get(name)):
                found.append(Problem(where, f"{name} must be an array of strings"))
        if "ip" not in entry and "app" not in entry:
            found.append(Problem(where, "a grant needs ip or app"))
        if "ip" in entry and not _str_list(entry["ip"]):
            found.append(Problem(where, "ip must be an array of strings"))
    elif section == "tests":
        if not isinstance(entry.get("src"), str):
            found.append(Problem(where, "src must be a string"))
        for name in ("accept", "deny"):
            if name in entry and not _str_list(entry[name]):
                found.append(Problem(where, f"{name} must be an array of strings"))
            for address in entry.get(name, []) if _str_list(entry.get(name)) else []:
                if not _port_of(address):
                    found.append(Problem(where, f"{address!r} needs one port (host:port)", address))
    return found


# ---------------------------------------------------------------- references


def check_references(policy: dict[str, Any]) -> list[Problem]:
    """Tags not in tagOwners, groups not in groups, names that are no host alias."""
    declared_tags = set(_dict(policy.get("tagOwners")))
    groups = set(_dict(policy.get("groups")))
    hosts = set(_dict(policy.get("hosts")))
    ipsets = set(_dict(policy.get("ipsets")))
    found: list[Problem] = []
    seen: set[tuple[str, str]] = set()

    def ref(path: str, selector: str, host_ok: bool = True) -> None:
        key = (path, selector)
        if key in seen:
            return
        seen.add(key)
        if selector.startswith("tag:"):
            if selector not in declared_tags:
                found.append(
                    Problem(path, f'tag "{selector}" is not declared in tagOwners', selector)
                )
        elif selector.startswith("group:"):
            if selector not in groups:
                found.append(
                    Problem(path, f'group "{selector}" is not defined in groups', selector)
                )
        elif selector.startswith("ipset:"):
            if selector not in ipsets:
                found.append(Problem(path, f'ipset "{selector}" is not defined', selector))
        elif (
            host_ok
            and selector not in hosts
            and selector != "*"
            and "@" not in selector
            and not selector.startswith("autogroup:")
            and _network(selector) is None
        ):
            found.append(
                Problem(path, f'"{selector}" is not a host alias, tag, group, user or IP', selector)
            )

    for i, rule in enumerate(_list(policy.get("acls"))):
        for s in _strs(rule, "src"):
            ref(f"acls[{i}].src", s)
        for d in _strs(rule, "dst"):
            ref(f"acls[{i}].dst", split_address(d)[0])
    for i, grant in enumerate(_list(policy.get("grants"))):
        for name in ("src", "dst", "via"):
            for s in _strs(grant, name):
                ref(f"grants[{i}].{name}", s)
    for i, rule in enumerate(_list(policy.get("ssh"))):
        for name in ("src", "dst"):
            for s in _strs(rule, name):
                ref(f"ssh[{i}].{name}", s)
    for i, test in enumerate(_list(policy.get("tests"))):
        if isinstance(test, dict) and isinstance(test.get("src"), str):
            ref(f"tests[{i}].src", test["src"])
        for name in ("accept", "deny"):
            for address in _strs(test, name):
                ref(f"tests[{i}].{name}", split_address(address)[0])
    for i, test in enumerate(_list(policy.get("sshTests"))):
        if isinstance(test, dict) and isinstance(test.get("src"), str):
            ref(f"sshTests[{i}].src", test["src"])
        for d in _strs(test, "dst"):
            ref(f"sshTests[{i}].dst", d)
    for i, attr in enumerate(_list(policy.get("nodeAttrs"))):
        for t in _strs(attr, "target"):
            ref(f"nodeAttrs[{i}].target", t)
    for tag, owners in _dict(policy.get("tagOwners")).items():
        for owner in owners if _str_list(owners) else []:
            ref(f"tagOwners.{tag}", owner, host_ok=False)
    for name, members in _dict(policy.get("groups")).items():
        for member in members if _str_list(members) else []:
            if member.startswith("tag:"):
                found.append(Problem(f"groups.{name}", "groups cannot contain tags", member))
    auto = _dict(policy.get("autoApprovers"))
    for route, approvers in _dict(auto.get("routes")).items():
        for a in approvers if _str_list(approvers) else []:
            ref(f"autoApprovers.routes.{route}", a, host_ok=False)
    for a in _list(auto.get("exitNode")):
        if isinstance(a, str):
            ref("autoApprovers.exitNode", a, host_ok=False)
    return found


# ---------------------------------------------------------------- tests


def run_tests(policy: dict[str, Any]) -> list[TestFailure]:
    """Evaluate every ``tests`` entry; the failing ones, with one message per address."""
    failures: list[TestFailure] = []
    for index, test in enumerate(_list(policy.get("tests"))):
        if not isinstance(test, dict) or not isinstance(test.get("src"), str):
            continue
        src = test["src"]
        proto = _proto_number(test.get("proto", "tcp"))
        attrs = test.get("srcPostureAttrs") or {}
        errors, addresses = [], []
        for want, key in ((True, "accept"), (False, "deny")):
            for address in _strs(test, key):
                selector, port_text = split_address(address)
                port = int(port_text) if port_text.isdigit() else -1
                rule = first_accepting_rule(policy, src, selector, port, proto, attrs)
                if want and rule is None:
                    errors.append(
                        f'address "{address}": want: Accept, got: Drop (no rule allows '
                        f"{src} to reach it)"
                    )
                    addresses.append(address)
                elif not want and rule is not None:
                    errors.append(f'address "{address}": want: Drop, got: Accept ({rule})')
                    addresses.append(address)
        if errors:
            failures.append(TestFailure(index, src, tuple(errors), tuple(addresses)))
    return failures


def run_ssh_tests(policy: dict[str, Any]) -> list[TestFailure]:
    """Evaluate ``sshTests`` against the ``ssh`` rules (accept, check, deny per login user)."""
    failures: list[TestFailure] = []
    for index, test in enumerate(_list(policy.get("sshTests"))):
        if not isinstance(test, dict) or not isinstance(test.get("src"), str):
            continue
        src, errors = test["src"], []
        for dst in _strs(test, "dst"):
            for want in ("accept", "check", "deny"):
                for user in _strs(test, want):
                    got = ssh_action(policy, src, dst, user)
                    if got != want:
                        errors.append(f"{dst} as {user!r}: want: {want}, got: {got}")
        if errors:
            failures.append(TestFailure(index, src, tuple(errors), (), "sshTests"))
    return failures


def ssh_action(policy: dict[str, Any], src: str, dst: str, user: str) -> str:
    """``accept``, ``check`` or ``deny``: what the first matching ssh rule does."""
    for rule in _list(policy.get("ssh")):
        if not isinstance(rule, dict):
            continue
        if not any(_src_matches(policy, s, src) for s in _strs(rule, "src")):
            continue
        if not any(_dst_matches(policy, d, dst) for d in _strs(rule, "dst")):
            continue
        users = _strs(rule, "users")
        if user in users or (user != "root" and "autogroup:nonroot" in users):
            return "check" if rule.get("action") == "check" else "accept"
    return "deny"


def first_accepting_rule(
    policy: dict[str, Any],
    src: str,
    selector: str,
    port: int,
    proto: int | None,
    attrs: dict[str, Any] | None = None,
) -> str | None:
    """The first ``acls[i]``/``grants[i]`` letting ``src`` reach ``selector:port``, or None."""
    for i, rule in enumerate(_list(policy.get("acls"))):
        if not isinstance(rule, dict) or rule.get("action") != "accept":
            continue
        if not _posture_ok(policy, rule.get("srcPosture"), attrs):
            continue
        if not any(_src_matches(policy, s, src) for s in _strs(rule, "src")):
            continue
        if not _proto_ok(rule.get("proto"), proto):
            continue
        for dst in _strs(rule, "dst"):
            sel, ports = split_address(dst)
            if _dst_matches(policy, sel, selector) and _ports_ok(ports, port):
                return f"acls[{i}]"
    for i, grant in enumerate(_list(policy.get("grants"))):
        if not isinstance(grant, dict) or not _str_list(grant.get("ip")):
            continue
        if not _posture_ok(policy, grant.get("srcPosture"), attrs):
            continue
        if not any(_src_matches(policy, s, src) for s in _strs(grant, "src")):
            continue
        if not any(_dst_matches(policy, d, selector) for d in _strs(grant, "dst")):
            continue
        for spec in grant["ip"]:
            spec_proto, ports = _ip_spec(spec)
            if _proto_ok(spec_proto, proto) and _ports_ok(ports, port):
                return f"grants[{i}]"
    return None


def _src_matches(policy: dict[str, Any], rule_src: str, src: str) -> bool:
    if rule_src == "*" or rule_src == src:
        return True
    if rule_src.startswith("group:"):
        members = _dict(policy.get("groups")).get(rule_src, [])
        return src in members if isinstance(members, list) else False
    if rule_src == "autogroup:member":
        return "@" in src
    if rule_src == "autogroup:tagged":
        return src.startswith("tag:")
    return _net_contains(policy, rule_src, src)


def _dst_matches(policy: dict[str, Any], rule_dst: str, dst: str) -> bool:
    if rule_dst == "*" or rule_dst == dst:
        return True
    if rule_dst.startswith("group:"):
        members = _dict(policy.get("groups")).get(rule_dst, [])
        return dst in members if isinstance(members, list) else False
    if rule_dst == "autogroup:member":
        return "@" in dst
    if rule_dst == "autogroup:tagged":
        return dst.startswith("tag:")
    return _net_contains(policy, rule_dst, dst)


def _net_contains(policy: dict[str, Any], outer: str, inner: str) -> bool:
    """IP/CIDR/host-alias containment; tags, users and groups never match addresses."""
    a, b = _resolve(policy, outer), _resolve(policy, inner)
    if not a or not b:
        return False
    return any(
        n.version == m.version and m.subnet_of(n)  # type: ignore[arg-type]
        for n in a
        for m in b
    )


def _resolve(
    policy: dict[str, Any], name: str
) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    hosts = _dict(policy.get("hosts"))
    if name in hosts and isinstance(hosts[name], str):
        name = hosts[name]
    if name.startswith("ipset:"):
        out = []
        for member in _list(_dict(policy.get("ipsets")).get(name)):
            if isinstance(member, str) and not member.startswith("ipset:"):
                out += _resolve(policy, member.removeprefix("add "))
        return out
    net = _network(name)
    return [net] if net is not None else []


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _ports_ok(spec: str, port: int) -> bool:
    if spec == "*":
        return True
    for part in spec.split(","):
        low, _, high = part.partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            continue
        if int(low) <= port <= int(high or low):
            return True
    return False


def _ip_spec(spec: str) -> tuple[str | None, str]:
    """A grant's ``ip`` entry: ``"*"``, ``"443"``, ``"tcp:443"``, ``"tcp:*"`` → (proto, ports)."""
    if spec == "*":
        return None, "*"
    proto, sep, ports = spec.rpartition(":")
    return (proto or None) if sep else None, ports


def _proto_number(value: Any) -> int | None:
    if value is None or value == "":
        return None
    text = str(value).lower()
    if text.isdigit():
        return int(text)
    return PROTOCOLS.get(text, -1)


def _proto_ok(rule_proto: Any, proto: int | None) -> bool:
    wanted = _proto_number(rule_proto)
    if wanted is None:
        return proto is None or proto in DEFAULT_PROTOCOLS
    return proto is None or wanted == proto


_POSTURE = re.compile(r"^\s*([\w:.-]+)\s*(==|!=|>=|<=|>|<|NOT IN|IN)\s*(.+?)\s*$")


def _posture_ok(policy: dict[str, Any], postures: Any, attrs: dict[str, Any] | None) -> bool:
    """Whether the test's srcPostureAttrs satisfy every condition of the rule's postures."""
    if not postures:
        return True
    if not attrs:
        return False
    conditions = [c for p in _list(postures) for c in _list(_dict(policy.get("postures")).get(p))]
    for condition in conditions:
        match = _POSTURE.match(str(condition))
        if not match:
            return False
        name, op, raw = match.groups()
        have = attrs.get(name)
        values = [v.strip().strip("'\"") for v in raw.strip("[]").split(",")]
        value = values[0]
        if op == "IN" and str(have) not in values:
            return False
        if op == "NOT IN" and str(have) in values:
            return False
        if op == "==" and str(have) != value:
            return False
        if op == "!=" and str(have) == value:
            return False
        if op in (">=", "<=", ">", "<"):
            try:
                left, right = _version(str(have)), _version(value)
            except ValueError:
                return False
            ok = {">=": left >= right, "<=": left <= right, ">": left > right, "<": left < right}
            if not ok[op]:
                return False
    return True


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)) or (int(text),)


# ---------------------------------------------------------------- helpers


def split_address(address: str) -> tuple[str, str]:
    """``"tag:x:25"`` → ``("tag:x", "25")``; ``"[fd7a::1]:22"`` → ``("fd7a::1", "22")``."""
    if address.startswith("[") and "]:" in address:
        host, ports = address[1:].split("]:", 1)
        return host, ports
    if ":" not in address:
        return address, ""
    host, ports = address.rsplit(":", 1)
    if host in ("tag", "group", "autogroup", "ipset"):  # "tag:x" without a port
        return address, ""
    return host, ports


def _port_of(address: str) -> str:
    port = split_address(address)[1]
    return port if port.isdigit() else ""


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _strs(entry: Any, name: str) -> list[str]:
    if not isinstance(entry, dict):
        return []
    value = entry.get(name)
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
