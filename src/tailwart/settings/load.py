"""Loading and validating a .env file against the contract.

``load()`` reads the file, reports every problem at once and raises
``SettingsError`` (exit 2) before any task writes, uploads or starts anything.
"""

from __future__ import annotations

import difflib
import io
import ipaddress
import math
import re
import stat
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from .contract import BY_NAME, KEYS, password_part, split_pair
from .kinds import BOOL_TRUE, HostPort, Kind


@dataclass(frozen=True)
class Problem:
    """One finding about the .env file."""

    key: str
    message: str
    level: str = "error"  # or "warning"
    line: int | None = None

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        return f"{self.level}: {self.key}{where}: {self.message}"


class SettingsError(UsageError):
    """The .env file is not usable; carries every problem found."""

    def __init__(self, source: str, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        errors = sum(1 for p in self.problems if p.level == "error")
        warnings = len(self.problems) - errors
        lines = [f"{source}: {errors} error(s), {warnings} warning(s); nothing was changed:"]
        lines += [f"  {p}" for p in self.problems]
        super().__init__("\n".join(lines))


#: how much of a long (non-secret) value an error message shows
SHOWN_CHARS = 48


def mask_value(key: str, value: str) -> str:
    """A ``.env`` value shown in a message: a secret only by its length, a URL with '@' not
    at all, a long value cut short (``repr`` escapes what is invisible)."""
    spec = BY_NAME.get(key)
    if spec is not None and spec.secret:
        return f"<secret, {len(value)} chars>"
    if spec is not None and spec.kind is Kind.URL and "@" in value:
        return f"<URL with '@' (credentials?), {len(value)} chars, not shown>"
    if len(value) > SHOWN_CHARS:
        return f"{value[:SHOWN_CHARS]!r}… ({len(value)} chars)"
    return repr(value)


#: the largest .env tailwart reads (a real one is a few KiB)
ENV_SIZE_CAP = 1024 * 1024
#: what a key name may be (POSIX environment variable names)
_KEY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}", re.ASCII)


@dataclass(frozen=True)
class Settings:
    """Validated settings: every declared key, defaults applied ('' when unset)."""

    values: Mapping[str, str]
    source: str = "<built-in>"
    warnings: tuple[Problem, ...] = field(default=())

    def __getitem__(self, name: str) -> str:
        if name not in BY_NAME:
            raise KeyError(f"{name} is not declared in the .env contract")
        return self.values.get(name, "")

    def is_set(self, name: str) -> bool:
        return bool(self[name])

    def port(self, name: str) -> int:
        return int(self[name])

    def integer(self, name: str) -> int:
        return int(self[name])

    def flag(self, name: str) -> bool:
        return self[name].lower() in BOOL_TRUE

    def hostport(self, name: str) -> HostPort | None:
        value = self[name]
        return HostPort.parse(value) if value else None

    def require(self, names: Iterable[str], why: str) -> None:
        """Raise SettingsError naming every key in ``names`` that is unset."""
        missing = [
            Problem(n, f"is required {why}; expected {BY_NAME[n].kind.label}")
            for n in names
            if not self[n]
        ]
        if missing:
            raise SettingsError(self.source, missing)

    def environment(self) -> dict[str, str]:
        """Every declared key that has a value, as process environment."""
        return {k: v for k, v in self.values.items() if v}


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(name, list(BY_NAME), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def validate(
    pairs: Iterable[tuple[str, str, int | None]], source: str = "<values>"
) -> tuple[Settings, list[Problem]]:
    """Check (key, value, line) pairs against the contract; return settings and problems."""
    problems: list[Problem] = []
    seen: dict[str, int | None] = {}
    raw: dict[str, str] = {}
    for key, value, line in pairs:
        if key in seen:
            first = f" (first at line {seen[key]})" if seen[key] else ""
            problems.append(Problem(key, f"is set more than once{first}; keep one", line=line))
            continue
        seen[key] = line
        if key not in BY_NAME:
            problems.append(Problem(key, f"is not a tailwart key{_suggest(key)}", "warning", line))
            continue
        raw[key] = value
    values: dict[str, str] = {}
    refused: set[str] = set()
    for spec in KEYS:
        value = raw.get(spec.name, "")
        line = seen.get(spec.name)
        if value == "":
            if spec.name in raw and not spec.empty_is_default:
                refused.add(spec.name)
                problems.append(
                    Problem(
                        spec.name,
                        f"is empty; expected {spec.kind.label} (leave the key out for "
                        f"the default {spec.default})",
                        line=line,
                    )
                )
                values[spec.name] = spec.default or ""
            elif spec.default is not None:
                values[spec.name] = spec.default
            elif spec.required and not (spec.required_unless and raw.get(spec.required_unless)):
                what = "secret is empty" if spec.secret and spec.name in raw else "is missing"
                problems.append(
                    Problem(
                        spec.name, f"{what}; expected {spec.kind.label}: {spec.help}", line=line
                    )
                )
                values[spec.name] = ""
            else:
                values[spec.name] = ""
            continue
        wrong = spec.kind.check(value)
        if wrong:
            refused.add(spec.name)
            problems.append(
                Problem(
                    spec.name,
                    f"{mask_value(spec.name, value)} {wrong}; expected {spec.kind.label}",
                    line=line,
                )
            )
        values[spec.name] = value
    # rules across keys see only values that passed their kind (never a huge or hostile one)
    problems += _cross_checks(values, refused)
    problems += _scale_checks(values, refused, frozenset(k for k, v in raw.items() if v))
    warnings = tuple(p for p in problems if p.level == "warning")
    return Settings(values, source, warnings), problems


def _cross_checks(values: Mapping[str, str], refused: Set[str] = frozenset()) -> list[Problem]:
    """Rules that tie several keys together; a rule is skipped when one of its keys was
    already refused (its problem is reported; the rule would only add noise)."""
    out: list[Problem] = []

    def ok(*names: str) -> bool:
        return not any(name in refused for name in names)

    if (
        ok("STALWART_SMARTHOST_USER", "STALWART_SMARTHOST_PASSWORD")
        and values.get("STALWART_SMARTHOST_USER")
        and not values.get("STALWART_SMARTHOST_PASSWORD")
    ):
        out.append(
            Problem(
                "STALWART_SMARTHOST_PASSWORD",
                "is missing while STALWART_SMARTHOST_USER is set; expected secret",
            )
        )
    if (
        ok("STALWART_SMARTHOST_PASSWORD", "STALWART_SMARTHOST")
        and values.get("STALWART_SMARTHOST_PASSWORD")
        and not values.get("STALWART_SMARTHOST")
    ):
        out.append(
            Problem(
                "STALWART_SMARTHOST",
                "is missing while smarthost credentials are set; expected host:port",
            )
        )
    if ok("TS_API_CLIENT_ID", "TS_API_CLIENT_SECRET") and bool(
        values.get("TS_API_CLIENT_ID")
    ) != bool(values.get("TS_API_CLIENT_SECRET")):
        out.append(
            Problem(
                "TS_API_CLIENT_SECRET" if values.get("TS_API_CLIENT_ID") else "TS_API_CLIENT_ID",
                "OAuth client id and secret go together; set both or neither",
            )
        )
    out += _backup_checks(values, refused)
    families = (
        ("EDGE_TAILNET_ADDR", 4, "/32", "EDGE_TAILNET_ADDR6"),
        ("EDGE_TAILNET_ADDR6", 6, "/128", "EDGE_TAILNET_ADDR"),
    )
    for name, version, prefix, other in families:
        value = values.get(name, "")
        if value and ok(name) and ipaddress.ip_network(value, strict=False).version != version:
            out.append(
                Problem(
                    name,
                    f"must be the edge's IPv{version} tailnet address ({prefix}); the other "
                    f"family goes in {other}",
                )
            )
    out += _tls_checks(values, refused)
    out += _dns_checks(values, refused)
    out += _management_checks(values, refused)
    out += _secret_checks(values, refused)
    out += _management_url_checks(values, refused)
    mail_host = values.get("MAIL_HOSTNAME", "") if ok("MAIL_HOSTNAME") else ""
    mailbox = values.get("MAILBOX_FQDN", "") if ok("MAILBOX_FQDN") else ""
    if mail_host and mailbox and mail_host.rstrip(".").lower() == mailbox.rstrip(".").lower():
        out.append(
            Problem(
                "MAILBOX_FQDN",
                "equals MAIL_HOSTNAME; the edge must dial the mailbox's MagicDNS "
                "name, not the public name (that loops back to the edge)",
            )
        )
    out += _mailbox_node_checks(values, refused)
    out += _docker_host_checks(values, refused)
    node = values.get("MAILBOX_NODE_NAME", "") if ok("MAILBOX_NODE_NAME") else ""
    if node and mailbox and mailbox.split(".", 1)[0].lower() != node.lower():
        out.append(
            Problem(
                "MAILBOX_FQDN",
                f"{mailbox!r} does not start with MAILBOX_NODE_NAME {node!r}; the edge "
                "would dial a name the sidecar never registers",
            )
        )
    return out


#: the most mailbox nodes the edge dials (each node is one upstream of every port)
MAX_MAILBOX_NODES = 16


def _mailbox_node_checks(values: Mapping[str, str], refused: Set[str]) -> list[Problem]:
    """MAILBOX_NODES (its kind already checked names and duplicates) holds MAILBOX_FQDN,
    the node inv provision and first-start talk to, and never a public name of the edge
    (the edge would dial itself)."""
    nodes = values.get("MAILBOX_NODES", "")
    if not nodes or "MAILBOX_NODES" in refused:
        return []
    names = [n.lower() for n in nodes.split(",")]
    out: list[Problem] = []
    if len(names) > MAX_MAILBOX_NODES:
        out.append(
            Problem("MAILBOX_NODES", f"lists {len(names)} nodes; at most {MAX_MAILBOX_NODES}")
        )
    mailbox = values.get("MAILBOX_FQDN", "")
    if mailbox and "MAILBOX_FQDN" not in refused and mailbox.lower() not in names:
        out.append(
            Problem(
                "MAILBOX_NODES",
                f"does not name MAILBOX_FQDN {mailbox!r}; list every node, the one "
                "MAILBOX_FQDN names among them",
            )
        )
    public = {
        name.lower()
        for key in ("MAIL_HOSTNAME", "MAIL_HOSTNAME_ALIASES")
        if key not in refused
        for name in values.get(key, "").split(",")
        if name
    }
    looped = [n for n in names if n in public]
    if looped:
        out.append(
            Problem(
                "MAILBOX_NODES",
                f"names {looped[0]!r}, a public name of the edge; the edge must dial the "
                "nodes' MagicDNS names (a public name loops back to the edge)",
            )
        )
    return out


def _docker_host_checks(values: Mapping[str, str], refused: Set[str]) -> list[Problem]:
    """MAILBOX_DOCKER_HOSTS (its kind already checked each endpoint) names one engine per
    mailbox node; the nodes' names (each one's first label: STALWART_HOSTNAME, TS_HOSTNAME)
    differ, or two nodes would share one cluster id."""
    if "MAILBOX_NODES" in refused:
        return []
    nodes = [n for n in values.get("MAILBOX_NODES", "").split(",") if n]
    out: list[Problem] = []
    labels = [n.split(".", 1)[0].lower() for n in nodes]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        out.append(
            Problem(
                "MAILBOX_NODES",
                f"names two nodes {twice[0]!r}.…: each node's first label is its name (its "
                "sidecar's TS_HOSTNAME and its cluster id), so the first labels must differ",
            )
        )
    hosts = values.get("MAILBOX_DOCKER_HOSTS", "")
    if hosts and "MAILBOX_DOCKER_HOSTS" not in refused:
        count, wanted = len(hosts.split(",")), max(len(nodes), 1)
        if count != wanted:
            out.append(
                Problem(
                    "MAILBOX_DOCKER_HOSTS",
                    f"lists {count} docker endpoint(s) for {wanted} mailbox node(s); expected "
                    "one per MAILBOX_NODES entry, in the same order",
                )
            )
    return out


#: what Garage's layout needs at least: one node per replica
MOST_REPLICAS = 7
#: single-Redis keys that mean nothing with Sentinel
SINGLE_REDIS_KEYS = ("STALWART_REDIS_HOST", "STALWART_REDIS_PORT")


def _scale_checks(values: Mapping[str, str], refused: Set[str], given: Set[str]) -> list[Problem]:
    """Redis Sentinel keys go together and exclude the single-Redis ones (Stalwart's
    RedisSentinel store has no DB index: DB 0); GARAGE_NODES holds enough nodes for
    GARAGE_REPLICATION. ``given``: the keys the file sets (not their defaults)."""
    out: list[Problem] = []
    sentinels, master = values.get("STALWART_REDIS_SENTINELS"), values.get("STALWART_REDIS_MASTER")
    if sentinels and not master and "STALWART_REDIS_MASTER" not in refused:
        out.append(
            Problem(
                "STALWART_REDIS_MASTER",
                "is missing while STALWART_REDIS_SENTINELS is set; expected the master name "
                "the sentinels monitor",
            )
        )
    if not sentinels and "STALWART_REDIS_SENTINELS" not in refused:
        for name in ("STALWART_REDIS_MASTER", "STALWART_REDIS_SENTINEL_PASSWORD"):
            if values.get(name):
                out.append(Problem(name, "is set but STALWART_REDIS_SENTINELS is not"))
    if sentinels:
        for name in SINGLE_REDIS_KEYS:
            if name in given:
                out.append(
                    Problem(
                        name,
                        "is set together with STALWART_REDIS_SENTINELS; with Sentinel the "
                        "sentinels name the master: leave it out",
                    )
                )
        db = values.get("STALWART_REDIS_DB")
        if "STALWART_REDIS_DB" in given and db != "0" and "STALWART_REDIS_DB" not in refused:
            out.append(
                Problem(
                    "STALWART_REDIS_DB",
                    "must be 0 (or left out) with STALWART_REDIS_SENTINELS: Stalwart's "
                    "RedisSentinel store has no DB index and always uses DB 0",
                )
            )
    nodes = values.get("GARAGE_NODES", "")
    replication = values.get("GARAGE_REPLICATION", "")
    if replication and "GARAGE_REPLICATION" not in refused:
        factor = int(replication)
        if not 1 <= factor <= MOST_REPLICAS:
            out.append(
                Problem(
                    "GARAGE_REPLICATION",
                    f"must be between 1 and {MOST_REPLICAS} (garage.toml's replication_factor)",
                )
            )
        elif nodes and "GARAGE_NODES" not in refused and len(nodes.split(",")) < factor:
            out.append(
                Problem(
                    "GARAGE_NODES",
                    f"lists {len(nodes.split(','))} node(s), fewer than GARAGE_REPLICATION "
                    f"({factor}): Garage keeps each block on {factor} distinct nodes",
                )
            )
    if nodes and "GARAGE_NODES" not in refused:
        for name in ("GARAGE_ADMIN_URL", "GARAGE_ADMIN_TOKEN"):
            if not values.get(name) and name not in refused:
                out.append(Problem(name, "is missing while GARAGE_NODES is set"))
    return out


#: a management password: at least this long, and at least this many bits by its alphabet
STRONG_LENGTH, STRONG_BITS = 16, 64


def weakness(password: str) -> str | None:
    """Why a password is too weak to guard the management plane, or None.

    Length times the bits of the character classes it uses (lower, upper, digits,
    punctuation) must reach STRONG_BITS, with at least STRONG_LENGTH characters and
    8 different ones."""
    if len(password) < STRONG_LENGTH:
        return f"is shorter than {STRONG_LENGTH} characters"
    pool = sum(
        size
        for test, size in (
            (str.islower, 26),
            (str.isupper, 26),
            (str.isdigit, 10),
            (lambda ch: not ch.isalnum(), 32),
        )
        if any(test(ch) for ch in password)
    )
    if len(set(password)) < 8 or len(password) * math.log2(max(pool, 2)) < STRONG_BITS:
        return "is too predictable (repeated characters or a small alphabet)"
    return None


def _management_checks(values: Mapping[str, str], refused: Set[str] = frozenset()) -> list[Problem]:
    """The recovery admin is a strong password (or name:password); the management
    password is strong and not the recovery admin's."""
    out: list[Problem] = []
    admin = values.get("STALWART_RECOVERY_ADMIN", "")
    recovery_password = ""
    if admin and "STALWART_RECOVERY_ADMIN" not in refused:
        name, recovery_password = split_pair(admin)
        if not name or not recovery_password:
            out.append(
                Problem(
                    "STALWART_RECOVERY_ADMIN",
                    "must be a password, or name:password with a name and a password "
                    "(Stalwart ignores it otherwise); expected e.g. $(openssl rand -hex 24)",
                )
            )
        else:
            why = weakness(recovery_password)
            if why:
                out.append(
                    Problem(
                        "STALWART_RECOVERY_ADMIN",
                        f"its password {why}; generate one with: openssl rand -hex 24",
                    )
                )
    password = values.get("STALWART_MANAGEMENT_PASSWORD", "")
    if password and "STALWART_MANAGEMENT_PASSWORD" not in refused:
        why = weakness(password)
        if why:
            out.append(
                Problem(
                    "STALWART_MANAGEMENT_PASSWORD",
                    f"{why}; generate one with: openssl rand -hex 24",
                )
            )
        elif recovery_password and password == recovery_password:
            out.append(
                Problem(
                    "STALWART_MANAGEMENT_PASSWORD",
                    "equals the recovery admin's password; give each its own",
                )
            )
    return out


#: what tailwart says about generating a secret
GENERATE = "generate one with: openssl rand -hex 32"


def _secret_checks(values: Mapping[str, str], refused: Set[str] = frozenset()) -> list[Problem]:
    """Secrets that masking would give away (see masking.py): the password of a
    ``name:password`` key under 8 characters, a word-like strong secret
    (only letters or only digits), a secret inside another key's value. Nothing here
    shows the value or says which other key holds it."""
    shown = [v for k, v in values.items() if v and k not in refused and not BY_NAME[k].secret]
    out: list[Problem] = []
    for spec in KEYS:
        value = values.get(spec.name, "")
        if not spec.secret or not value or spec.name in refused:
            continue
        secret = value
        if spec.pair and ":" in value:  # without one, the task that logs in says so
            secret = password_part(value)
            if len(secret) < 8:
                out.append(
                    Problem(spec.name, f"its password is shorter than 8 characters; {GENERATE}")
                )
                continue
        if spec.strong and (secret.isalpha() or secret.isdigit()):
            out.append(
                Problem(
                    spec.name,
                    "is word-like (only letters, or only digits): a mask in the output would "
                    f"show where it stands; {GENERATE}",
                )
            )
        elif any(secret in other for other in shown):
            out.append(
                Problem(
                    spec.name,
                    "occurs inside another key's value: masking it there would show it; use "
                    f"a secret of its own ({GENERATE})",
                )
            )
    return out


def _management_url_checks(
    values: Mapping[str, str], refused: Set[str] = frozenset()
) -> list[Problem]:
    """An http:// STALWART_MANAGEMENT_URL sends the management credential in clear: only
    to loopback, a tailnet address or MagicDNS name, or STALWART_MANAGEMENT_NETWORKS."""
    from urllib.parse import urlsplit

    url = values.get("STALWART_MANAGEMENT_URL", "")
    networks = "STALWART_MANAGEMENT_NETWORKS"
    if not url.startswith("http://") or {"STALWART_MANAGEMENT_URL", networks} & refused:
        return []
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    mailbox = values.get("MAILBOX_FQDN", "").rstrip(".").lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if host == "localhost" or host.endswith(".ts.net") or (mailbox and host == mailbox):
            return []
    else:
        listed = [ipaddress.ip_network(n.strip()) for n in values.get(networks, "").split(",")]
        if address.is_loopback or any(address in net for net in listed):
            return []
    return [
        Problem(
            "STALWART_MANAGEMENT_URL",
            f"http:// to {host} would send the management credential in clear outside the "
            "tailnet; use https://, a tailnet address or MagicDNS name, or list its network "
            f"in {networks}",
        )
    ]


def _unparseable(original: str) -> str:
    """What is wrong with a line python-dotenv could not parse, without quoting it."""
    first = original.split("\n", 1)[0].strip()
    body = first.removeprefix("export ").lstrip() if first.startswith("export ") else first
    key, eq, value = body.partition("=")
    spanned = original.rstrip("\n").count("\n")
    skipped = f"; the {spanned} line(s) after it were skipped too" if spanned else ""
    if eq and not key.strip():
        return "has no key before '='; expected KEY=value"
    if eq and any(char.isspace() for char in key.strip()):
        return "has whitespace inside the key; expected KEY=value"
    if eq and value.lstrip()[:1] in ("'", '"'):
        return (
            "has a quoted value that does not end cleanly (a quote never closed, or text "
            f"after the closing quote){skipped}"
        )
    return f"is not KEY=value{skipped}"


#: keys that belong to one STALWART_TLS mode only
TLS_MODE_KEYS = {
    "acme-dns": (
        "ACME_DNS_SERVER",
        "ACME_DNS_ZONE",
        "ACME_DNS_TSIG_KEY",
        "ACME_DNS_TSIG_SECRET",
    ),
    "files": ("STALWART_TLS_CERT_FILE", "STALWART_TLS_KEY_FILE"),
}
#: what each mode cannot go without
TLS_MODE_NEEDS = {
    "acme-dns": ("ACME_DNS_SERVER", "ACME_DNS_TSIG_KEY", "ACME_DNS_TSIG_SECRET"),
    "files": ("STALWART_TLS_CERT_FILE", "STALWART_TLS_KEY_FILE"),
}


def _tls_checks(values: Mapping[str, str], refused: Set[str] = frozenset()) -> list[Problem]:
    """STALWART_TLS: each mode's keys present, other modes' keys flagged, an https
    directory, a base64 TSIG secret."""

    out: list[Problem] = []
    if "STALWART_TLS" in refused:
        return out
    mode = values.get("STALWART_TLS") or "acme-http"
    for name in TLS_MODE_NEEDS.get(mode, ()):
        if not values.get(name) and name not in refused:
            out.append(Problem(name, f"is missing while STALWART_TLS={mode}"))
    for other, names in TLS_MODE_KEYS.items():
        if other == mode:
            continue
        for name in names:
            if values.get(name) and name not in refused:
                out.append(
                    Problem(
                        name,
                        f"is set but STALWART_TLS={mode} does not use it (it belongs to {other})",
                        level="warning",
                    )
                )
    directory = values.get("ACME_DIRECTORY", "")
    if directory and "ACME_DIRECTORY" not in refused and not directory.startswith("https://"):
        out.append(Problem("ACME_DIRECTORY", "must be an https:// URL (ACME runs over TLS)"))
    out += _tsig_secret(values, "ACME_DNS_TSIG_SECRET", refused)
    cert, key = values.get("STALWART_TLS_CERT_FILE"), values.get("STALWART_TLS_KEY_FILE")
    if cert and key and cert == key:
        out.append(Problem("STALWART_TLS_KEY_FILE", "is the same path as STALWART_TLS_CERT_FILE"))
    return out


def _tsig_secret(values: Mapping[str, str], name: str, refused: Set[str]) -> list[Problem]:
    """A TSIG secret: base64 of at least 16 bytes (checked once its kind accepted it)."""
    import base64
    import binascii

    secret = values.get(name, "")
    if not secret or name in refused:
        return []
    try:
        raw = base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) >= 16:
        return []
    return [
        Problem(
            name, "must be base64 of at least 16 bytes (what `keymgr -t` or `tsig-keygen` print)"
        )
    ]


def _dns_checks(values: Mapping[str, str], refused: Set[str] = frozenset()) -> list[Problem]:
    """DNS_*: a base64 TSIG secret, MAIL_DOMAIN inside DNS_ZONE, an RFC 8461 max_age."""

    out: list[Problem] = []
    out += _tsig_secret(values, "DNS_TSIG_SECRET", refused)
    zone = values.get("DNS_ZONE", "").lower()
    domain = values.get("MAIL_DOMAIN", "").lower()
    outside = domain != zone and not domain.endswith("." + zone)
    if zone and domain and outside and not {"DNS_ZONE", "MAIL_DOMAIN"} & refused:
        out.append(Problem("DNS_ZONE", f"does not hold MAIL_DOMAIN {domain!r}"))
    max_age = values.get("MTA_STS_MAX_AGE", "")
    if max_age and "MTA_STS_MAX_AGE" not in refused and not 86400 <= int(max_age) <= 31557600:
        out.append(
            Problem("MTA_STS_MAX_AGE", "must be between 86400 (a day) and 31557600 (RFC 8461)")
        )
    ttl = values.get("DNS_TTL", "")
    if ttl and "DNS_TTL" not in refused and not 60 <= int(ttl) <= 604800:
        out.append(Problem("DNS_TTL", "must be between 60 and 604800 seconds"))
    return out


def _backup_checks(values: Mapping[str, str], refused: Set[str] = frozenset()) -> list[Problem]:
    """BACKUP_*: a repository needs its password, an s3: one its key, retention keeps one.
    Keys already refused are left to their own problem."""
    out: list[Problem] = []
    repo = values.get("BACKUP_REPOSITORY", "")
    if not repo:
        return out
    if not values.get("BACKUP_PASSWORD"):
        out.append(Problem("BACKUP_PASSWORD", "is missing while BACKUP_REPOSITORY is set"))
    if repo.startswith("s3:") and "BACKUP_REPOSITORY" not in refused:
        for name in ("BACKUP_S3_ACCESS_KEY", "BACKUP_S3_SECRET_KEY"):
            if not values.get(name):
                out.append(Problem(name, "is missing while BACKUP_REPOSITORY is an s3: bucket"))
    keep = ("BACKUP_KEEP_DAILY", "BACKUP_KEEP_WEEKLY", "BACKUP_KEEP_MONTHLY")
    if not any(k in refused for k in keep) and all(int(values.get(k) or 0) == 0 for k in keep):
        out.append(
            Problem(
                "BACKUP_KEEP_DAILY", "every BACKUP_KEEP_* is 0: forget --prune would keep nothing"
            )
        )
    return out


def parse_text(text: str) -> tuple[list[tuple[str, str, int | None]], list[Problem]]:
    """Parse .env text (BOM, CRLF, quotes, ``export`` and comments tolerated).

    A line that cannot be parsed is named by its number, never quoted: it may hold a secret.
    """
    from dotenv.parser import parse_stream

    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    pairs: list[tuple[str, str, int | None]] = []
    problems: list[Problem] = []
    for binding in parse_stream(io.StringIO(text)):
        line = binding.original.line
        if binding.error:
            message = f"cannot be parsed: it {_unparseable(binding.original.string)}"
            problems.append(Problem(".env", message, line=line))
            continue
        if binding.key is None:
            continue
        if binding.key not in BY_NAME and not _KEY_NAME.fullmatch(binding.key):
            problems.append(
                Problem(
                    ".env",
                    "has a key that is not a variable name (letters, digits and _, not led "
                    "by a digit); the line is not shown",
                    line=line,
                )
            )
            continue
        if binding.value is None:
            if binding.key in BY_NAME:
                problems.append(Problem(binding.key, "has no '=' and no value", line=line))
            else:  # a lone word may be a pasted secret: never echo it
                problems.append(
                    Problem(
                        ".env",
                        "has no '='; expected KEY=value (the line is not shown)",
                        line=line,
                    )
                )
            continue
        pairs.append((binding.key, binding.value, line))
    return pairs, problems


def read_env_file(path: Path) -> tuple[str, int]:
    """The text and permission bits of ``path``; SettingsError unless it is a readable
    regular file of at most ``ENV_SIZE_CAP`` bytes in UTF-8 (``files.read_bounded``)."""
    from ..files import ReadRefused, read_bounded

    source = str(path)

    def refuse(message: str, line: int | None = None) -> SettingsError:
        return SettingsError(source, [Problem(".env", message, line=line)])

    if source in ("", "."):
        raise refuse("the .env path is empty (or '.'); name the file, e.g. --env-file .env")
    cap = f"at most {ENV_SIZE_CAP} bytes (1 MiB) are read"
    try:
        data, now = read_bounded(path, ENV_SIZE_CAP)
    except ReadRefused as exc:
        then = {
            "missing": f"; copy .env.example to {path} and fill it in",
            "type": "; the .env must be a regular file",
            "size": f"; {cap}",
        }.get(exc.reason, "")
        raise refuse(f"{exc}{then}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise refuse("is not valid UTF-8; save the .env as UTF-8", line=line) from None
    return text, stat.S_IMODE(now.st_mode)


def load(
    path: Path,
    strict: bool = False,
    *,
    source: str = "",
    only: Set[str] | None = None,
    require: Iterable[str] = (),
) -> Settings:
    """Load and validate ``path``; raise SettingsError listing every problem.

    ``only``: judge just these keys (a second env file naming some backends: a problem
    of another declared key is not this use's business); ``require``: these keys must
    be set in the file or have a default, whatever the contract says elsewhere.
    """
    source = source or str(path)
    text, mode = read_env_file(path)
    pairs, problems = parse_text(text)
    settings, more = validate(pairs, source)
    problems += more
    if only is not None:
        problems = [p for p in problems if p.key in only or p.key not in BY_NAME]
    given = {key for key, _, _ in pairs}
    for key in require:
        if (
            key not in given
            and BY_NAME[key].default is None
            and not any(p.key == key for p in problems)
        ):
            spec = BY_NAME[key]
            problems.append(Problem(key, f"is missing; expected {spec.kind.label}: {spec.help}"))
    if mode & 0o077:
        problems.append(
            Problem(
                ".env",
                f"mode {mode:04o} lets group/others read secrets; chmod 600 {path}",
                "warning",
            )
        )
    if strict:  # --strict: every warning (permissions, unknown keys) is an error
        problems = [Problem(p.key, p.message, "error", p.line) for p in problems]
    if any(p.level == "error" for p in problems):
        raise SettingsError(source, problems)
    warnings = tuple(p for p in problems if p.level == "warning")
    return Settings(settings.values, source, warnings)


def from_mapping(values: Mapping[str, str], source: str = "<built-in>") -> Settings:
    """Validate a mapping (demo values, tests); raise SettingsError on any error."""
    settings, problems = validate(((k, v, None) for k, v in values.items()), source)
    if any(p.level == "error" for p in problems):
        raise SettingsError(source, problems)
    return settings


__all__ = [
    "HostPort",
    "Kind",
    "Problem",
    "Settings",
    "SettingsError",
    "from_mapping",
    "load",
    "mask_value",
    "parse_text",
    "read_env_file",
    "validate",
]
