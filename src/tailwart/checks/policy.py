"""The policy snippet matches what the deployment uses (ids ``policy.*``).

- ``policy.snippet``: acl-snippet.hujson is HuJSON without duplicate keys, its
  tags are declared, its fields known, and its own ``tests`` pass.
- ``policy.tags``: the tags the sidecar advertises (compose ``TS_EXTRA_ARGS``),
  ``MAILBOX_TAG`` and ``EDGE_TAG`` are declared in the snippet's ``tagOwners``.
- ``policy.ports``: the snippet lets the edge tag reach the mailbox tag on every
  port caddy.json dials and Stalwart's HTTP listener (provisioned), and the
  mailbox tag reach the Postgres, Redis and Garage ports of .env; ports opened
  to the mailbox that nothing listens on are a warning.
- ``policy.members``: tailnet members reach the mailbox on every mail port
  EDGE_PUBLIC_PORTS keeps tailnet-only (they connect directly, without PROXY).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from functools import partial
from typing import Any

from ..findings import Finding
from . import SNIPPET_FILE, CheckContext
from .registry import RuleFn, rules, run_rules

GROUP = "policy"


def _parsed(ctx: CheckContext) -> dict[str, Any] | str | None:
    """The snippet parsed; its parse error as text; None when the file is missing."""
    from ..policy.errors import PolicyInputError
    from ..policy.hujson import parse

    text = ctx.text(SNIPPET_FILE)
    if text is None:
        return None
    try:
        value: dict[str, Any] = parse(text, SNIPPET_FILE).value
    except PolicyInputError as exc:
        return str(exc).replace("\n", " ")
    return value


def snippet(ctx: CheckContext) -> Finding:
    """acl-snippet.hujson is there, parses, and its own tests pass."""
    from ..policy.evaluate import validate

    parsed = _parsed(ctx)
    if parsed is None:
        return Finding.error(
            "policy.snippet",
            f"{SNIPPET_FILE} is missing",
            "restore it from git: inv acl merges it into the tailnet policy",
            GROUP,
        )
    if isinstance(parsed, str):
        return Finding.error(
            "policy.snippet", parsed, "fix the snippet: HuJSON only, each key once", GROUP
        )
    report = validate(parsed)
    if report.ok:
        count = len(parsed.get("tests", []))
        return Finding.ok(
            "policy.snippet", f"{SNIPPET_FILE} is valid and its {count} test(s) pass", GROUP
        )
    problems = [str(p) for p in report.problems] + [
        f"{f.section}[{f.index}]: {e}" for f in report.failures for e in f.errors
    ]
    return Finding.error(
        "policy.snippet",
        "; ".join(problems),
        "fix acl-snippet.hujson until its own tests pass",
        GROUP,
    )


def _on_snippet(judge: Callable[[CheckContext, dict[str, Any]], Finding | None]) -> RuleFn:
    """A rule over the parsed snippet; it does not apply when the snippet does not parse."""

    def rule(ctx: CheckContext) -> Finding | None:
        parsed = _parsed(ctx)
        return judge(ctx, parsed) if isinstance(parsed, dict) else None

    rule.__name__, rule.__doc__ = judge.__name__, judge.__doc__
    return rule


def advertised_tags(compose: dict[str, Any] | None) -> dict[str, list[str]]:
    """Tags each compose service advertises through ``TS_EXTRA_ARGS --advertise-tags``."""
    out: dict[str, list[str]] = {}
    for name, service in ((compose or {}).get("services") or {}).items():
        env = (service or {}).get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) for item in env if "=" in item)
        args = str(env.get("TS_EXTRA_ARGS") or "")
        try:
            words = shlex.split(args)
        except ValueError:
            words = args.split()
        tags: list[str] = []
        for i, word in enumerate(words):
            if word.startswith("--advertise-tags="):
                tags += word.split("=", 1)[1].split(",")
            elif word == "--advertise-tags" and i + 1 < len(words):
                tags += words[i + 1].split(",")
        if tags:
            out[name] = [t for t in tags if t]
    return out


def _interpolated(ctx: CheckContext) -> dict[str, Any] | None:
    """The compose document with the values ``inv up`` hands to compose filled in."""
    if ctx.compose_normalised is not None or ctx.compose is None:
        return ctx.compose
    from ..settings.derived import compose_environment
    from .compose_rules import InterpolationError, interpolate_tree

    try:
        doc: dict[str, Any] = interpolate_tree(ctx.compose, compose_environment(ctx.settings))
    except InterpolationError:  # compose.loader reports it; judge the tags as written
        return ctx.compose
    return doc


@_on_snippet
def tags(ctx: CheckContext, snippet: dict[str, Any]) -> Finding:
    """The snippet owns the tags compose advertises, MAILBOX_TAG and EDGE_TAG."""
    owners = snippet.get("tagOwners") or {}
    mailbox, edge = ctx.settings["MAILBOX_TAG"], ctx.settings["EDGE_TAG"]
    problems = []
    for key, tag in (("MAILBOX_TAG", mailbox), ("EDGE_TAG", edge)):
        if tag and tag not in owners:
            problems.append(f"{key}={tag} is not declared in the snippet's tagOwners")
    for service, tags in advertised_tags(_interpolated(ctx)).items():
        for tag in tags:
            if tag not in owners:
                problems.append(f"compose service {service} advertises {tag}, not in tagOwners")
            if tag != mailbox:
                problems.append(
                    f"compose service {service} advertises {tag} but MAILBOX_TAG is {mailbox}"
                )
    if problems:
        return Finding.error(
            "policy.tags",
            "; ".join(problems),
            "use the same tags in acl-snippet.hujson, compose and .env",
            GROUP,
        )
    return Finding.ok(
        "policy.tags", f"{mailbox} and {edge} are declared and match compose and .env", GROUP
    )


#: who reaches the tailnet-only mail ports directly: the tailnet's users' devices
MEMBERS = "autogroup:member"


@_on_snippet
def members(ctx: CheckContext, snippet: dict[str, Any]) -> Finding:
    """Tailnet members reach the tailnet-only mail ports and the management URL.

    Every mail port EDGE_PUBLIC_PORTS keeps off the edge, and :8080, the management URL
    inv provision and inv first-start use."""
    from ..edge.render import JMAP_PORT, MAIL_PORTS, public_ports
    from ..policy.evaluate import first_accepting_rule

    mailbox = ctx.settings["MAILBOX_TAG"]
    private = [p for _, p in MAIL_PORTS if p not in public_ports(ctx.settings)]
    wanted = [*private, JMAP_PORT]
    closed = [p for p in wanted if first_accepting_rule(snippet, MEMBERS, mailbox, p, 6) is None]
    if closed:
        mail = [p for p in closed if p != JMAP_PORT]
        why = [f"EDGE_PUBLIC_PORTS keeps {', '.join(map(str, mail))} tailnet-only"] if mail else []
        if JMAP_PORT in closed:
            why.append(f"the operator's inv provision needs :{JMAP_PORT} (the management URL)")
        return Finding.error(
            "policy.members",
            f"{' and '.join(why)}, but acl-snippet.hujson does not let {MEMBERS} reach "
            f"{mailbox} there: nobody could",
            f"add them to the snippet's {MEMBERS} rule, then inv acl",
            GROUP,
        )
    return Finding.ok(
        "policy.members",
        f"{MEMBERS} reaches {mailbox} on every tailnet-only mail port "
        f"({', '.join(map(str, private)) or 'none: all are public'}) and the management "
        f"URL's :{JMAP_PORT}",
        GROUP,
    )


def _port(address: str) -> int | None:
    match = re.search(r":(\d+)$", address.strip())
    return int(match.group(1)) if match else None


def edge_ports(ctx: CheckContext) -> dict[int, str]:
    """Ports the edge dials on the mailbox (caddy.json) and Stalwart's HTTP listener port."""
    ports: dict[int, str] = {}
    servers = ctx.caddy_config.get("apps", {}).get("layer4", {}).get("servers", {})
    for name, server in servers.items():
        for route in server.get("routes", []):
            for handler in route.get("handle", []):
                for upstream in handler.get("upstreams", []):
                    for dial in upstream.get("dial", []):
                        port = _port(str(dial))
                        if port is not None:
                            ports[port] = f"caddy.json {name}"
    from ..stalwart.desired import listener_specs

    for name, port, protocol in listener_specs():
        if protocol == "http":
            ports.setdefault(port, f"Stalwart listener {name}")
    return ports


def listening_ports(ctx: CheckContext) -> set[int]:
    """Ports of the listeners inv provision keeps on Stalwart."""
    from ..stalwart.desired import listener_specs

    return {port for _, port, _ in listener_specs()}


def _opened(snippet: dict[str, Any], src: str, dst: str) -> set[int]:
    """Single ports the snippet opens from tag ``src`` to tag ``dst`` (acls and grants)."""
    from ..policy.evaluate import split_address

    out: set[int] = set()
    for rule in snippet.get("acls") or []:
        if src not in (rule.get("src") or []):
            continue
        for address in rule.get("dst") or []:
            selector, ports = split_address(address)
            if selector == dst:
                out |= {int(p) for p in ports.split(",") if p.isdigit()}
    for grant in snippet.get("grants") or []:
        if src in (grant.get("src") or []) and dst in (grant.get("dst") or []):
            for spec in grant.get("ip") or []:
                port = spec.rpartition(":")[2]
                if port.isdigit():
                    out.add(int(port))
    return out


@_on_snippet
def ports(ctx: CheckContext, snippet: dict[str, Any]) -> Finding:
    """The edge reaches the mailbox on every port it dials; the mailbox the backends."""
    from ..policy.evaluate import first_accepting_rule

    mailbox, edge = ctx.settings["MAILBOX_TAG"], ctx.settings["EDGE_TAG"]
    missing = [
        f"{port} ({source})"
        for port, source in sorted(edge_ports(ctx).items())
        if first_accepting_rule(snippet, edge, mailbox, port, 6) is None
    ]
    s = ctx.settings
    sentinels = [
        item.rpartition(":")[2] for item in s["STALWART_REDIS_SENTINELS"].split(",") if item
    ]
    redis = [("STALWART_REDIS_SENTINELS", port) for port in dict.fromkeys(sentinels)] or [
        ("STALWART_REDIS_PORT", s["STALWART_REDIS_PORT"])
    ]
    backends = [
        ("STALWART_DB_PORT", s["STALWART_DB_PORT"]),
        *redis,
        ("STALWART_S3_PORT", s["STALWART_S3_PORT"]),
    ]
    for key, value in backends:
        if not value.isdigit():
            continue
        allowed = any(
            str(rule_port) == value
            for rule in (snippet.get("acls") or [])
            if mailbox in (rule.get("src") or [])
            for address in rule.get("dst") or []
            for rule_port in address.rpartition(":")[2].split(",")
        ) or any(
            spec.rpartition(":")[2] == value
            for grant in (snippet.get("grants") or [])
            if mailbox in (grant.get("src") or [])
            for spec in grant.get("ip") or []
        )
        if not allowed:
            missing.append(f"{value} ({key}, from {mailbox})")
    if missing:
        return Finding.error(
            "policy.ports",
            f"acl-snippet.hujson does not allow {edge} → {mailbox} or "
            f"{mailbox} → backends on: {', '.join(missing)}",
            "add the ports to the snippet's acls (and its tests), then inv acl",
            GROUP,
        )
    return Finding.ok(
        "policy.ports",
        f"{edge} → {mailbox} on every port the edge dials, and {mailbox} → "
        "Postgres, Redis, Garage ports",
        GROUP,
    )


@_on_snippet
def ports_unused(ctx: CheckContext, snippet: dict[str, Any]) -> Finding | None:
    """The snippet opens no port to the mailbox that Stalwart does not listen on."""
    mailbox, edge = ctx.settings["MAILBOX_TAG"], ctx.settings["EDGE_TAG"]
    listening = listening_ports(ctx)
    idle = sorted(_opened(snippet, edge, mailbox) - listening) if listening else []
    if not idle:
        return None
    return Finding.warning(
        "policy.ports-unused",
        f"the snippet opens {edge} → {mailbox} on {', '.join(map(str, idle))}, where "
        "Stalwart has no provisioned listener",
        "remove those ports from the snippet",
        GROUP,
    )


RULES = rules(GROUP, snippet, tags, ports, members, ports_unused)
run = partial(run_rules, rules=RULES)
