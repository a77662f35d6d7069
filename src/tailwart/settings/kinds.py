"""Value kinds of the .env contract: what each accepts and how it says so.

Every kind first applies the same hygiene (``hygiene``): a size limit of its own;
no control, format (bidi, zero-width), separator, surrogate, private-use or
unassigned character; no whitespace around the value. Then its own grammar, always
matched in full (``re.fullmatch`` on ASCII classes: ``$`` lets a final newline
through, ``str.isdigit`` accepts ``²``). A kind accepts only the characters it needs.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)", re.ASCII)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,62}", re.ASCII)
_TAG = re.compile(r"tag:[a-z0-9][a-z0-9-]*", re.ASCII)
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_IP_CHARS = re.compile(r"[0-9A-Fa-f:.]+", re.ASCII)
_CIDR = re.compile(r"([0-9A-Fa-f:.]+)/([0-9]{1,3})", re.ASCII)
#: a relay login: a user name or an e-mail address (user@example.com)
_LOGIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=@-]*", re.ASCII)
#: compose-spec: a project name is lower-case letters, digits, '-' and '_', led by a letter/digit
_COMPOSE_PROJECT = re.compile(r"[a-z0-9][a-z0-9_-]*", re.ASCII)
#: Garage's bucket rule (and S3's): lower-case letters, digits, '-', '.', led and ended by
#: a letter or digit, not an IP address, no 'xn--' label start, no '-s3alias' end
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", re.ASCII)
#: the local part of a tailnet name such as user@github or alice@example.com
_TAILNET_USER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._+-]{0,62}[A-Za-z0-9])?", re.ASCII)
# image references (the distribution/reference grammar, restricted to sha256 digests)
_DOMAIN_PART = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"(?:(?P<domain>localhost(?::[0-9]{{1,5}})?|{_DOMAIN_PART}(?:\.{_DOMAIN_PART})+(?::[0-9]{{1,5}})?"
    rf"|{_DOMAIN_PART}:[0-9]{{1,5}})/)?"
    rf"(?P<path>{_PATH_PART}(?:/{_PATH_PART})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?",
    re.ASCII,
)
_SSH_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,31}", re.ASCII)
#: an SSH alias (a ``Host`` of the SSH config) or a host name; never led by '-' (an option)
_SSH_HOST = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,252}", re.ASCII)
_SSH_TARGET = re.compile(
    r"(?:(?P<user>[^@]*)@)?(?:\[(?P<ip6>[^\]]*)\]|(?P<host>[^:@\[\]]*))(?::(?P<port>[^:]*))?",
    re.ASCII,
)
_DOTTED_DIGITS = re.compile(r"[0-9.]+", re.ASCII)
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9_.-]+", re.ASCII)
_URL = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?:\[(?P<ip6>[^\]/]*)\]|(?P<host>[^:/]*))"
    r"(?::(?P<port>[^/]*))?(?P<path>/.*)?",
    re.ASCII | re.DOTALL,
)
_URL_PATH = re.compile(r"/[A-Za-z0-9._~/-]*", re.ASCII)
#: printable ASCII without the space: what generated secrets are made of
_SECRET = re.compile(r"[!-~]+", re.ASCII)

#: Unicode categories no value may hold: controls, format (bidi, zero-width, BOM),
#: surrogates, private use, unassigned, line and paragraph separators
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})

PLACEHOLDERS = frozenset(
    {
        "changeme",
        "change-me",
        "change_me",
        "xxx",
        "xxxx",
        "secret",
        "password",
        "todo",
        "fixme",
        "placeholder",
        "replace-me",
        "example",
        "...",
    }
)


def hygiene(value: str, limit: int) -> str | None:
    """What every kind refuses: too long, invisible or control characters, outer whitespace.

    The message names the position and code point, never the character itself.
    """
    if len(value) > limit:
        return f"is {len(value)} characters long; at most {limit} are allowed"
    for index, char in enumerate(value, 1):
        category = unicodedata.category(char)
        if category in _FORBIDDEN_CATEGORIES:
            what = {
                "Cc": "a control character",
                "Cf": "an invisible format character (bidi, zero-width or BOM)",
                "Zl": "a line separator",
                "Zp": "a paragraph separator",
            }.get(category, "a character that is not text")
            return f"holds {what} (U+{ord(char):04X}) at position {index}"
    if value != value.strip():
        return "has whitespace around it; remove it"
    return None


def _labels(value: str, label: re.Pattern[str], allowed: str) -> tuple[list[str], str | None]:
    """The labels of a name written without its final dot, or what is wrong with it
    (``allowed``: what ``label`` lets a label hold, for the message)."""
    if not value or len(value) > 253:
        return [], "must be 1 to 253 characters"
    if value.endswith("."):
        # caddy refuses 'name.' as a site address (no certificate for it): write names plain
        return [], "must not end with '.'; write the name without the final dot"
    labels = value.split(".")
    bad = [each for each in labels if not label.fullmatch(each)]
    if bad:
        return [], f"label {bad[0]!r} is not a DNS label ({allowed})"
    return labels, None


def _hostname(value: str) -> str | None:
    labels, problem = _labels(
        value,
        _LABEL,
        "letters, digits and inner hyphens, no spaces, no leading or trailing hyphen, "
        "1-63 characters",
    )
    if problem:
        return problem
    if labels[-1].isdigit():
        return "ends in an all-digit label: neither a host name nor a valid IP address"
    return None


def _fqdn(value: str) -> str | None:
    if _IP_CHARS.fullmatch(value) and _ip_literal(value) is None:
        return "is an IP address; a fully qualified name is expected"
    problem = _hostname(value)
    if problem:
        return problem
    if "." not in value:
        return "must be a fully qualified name with at least one dot"
    return None


def _ip_literal(value: str) -> str | None:
    """An IPv4 or IPv6 address, plain: no zone/scope id, no brackets, ASCII only."""
    if "%" in value:
        return "carries an IPv6 zone id ('%…'); give the address alone"
    if not _IP_CHARS.fullmatch(value):
        return "is not an IPv4 or IPv6 address"
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return "is not an IPv4 or IPv6 address"
    return None


def _host(value: str) -> str | None:
    """A host name or an IP literal (IPv6 without brackets, no zone id)."""
    if "%" in value:
        return "carries an IPv6 zone id ('%…'); give the address alone"
    if ":" in value:
        return _ip_literal(value)
    if _ip_literal(value) is None:
        return None
    return _hostname(value)


def _label(value: str) -> str | None:
    if not _LABEL.fullmatch(value):
        return "must be one DNS label: letters, digits and inner hyphens, 1-63 characters, no dots"
    return None


def _port(value: str) -> str | None:
    if not _DIGITS.fullmatch(value):
        return "must be a whole number (ASCII digits)"
    if len(value) > 1 and value.startswith("0"):
        return "must be written without leading zeros"
    if len(value) > 5 or not 1 <= int(value) <= 65535:
        return "must be between 1 and 65535"
    return None


def _hostport(value: str) -> str | None:
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
        if not sep:
            return "must be [IPv6]:port"
        if not _IP_CHARS.fullmatch(host) or ":" not in host or _ip_literal(host):
            return "the bracketed part is not an IPv6 address"
    else:
        host, sep, port = value.rpartition(":")
        if not sep or not host:
            return "must be host:port"
        if ":" in host:
            return "an IPv6 address needs brackets: [addr]:port"
        problem = _host(host)
        if problem:
            return f"host {problem}"
    problem = _port(port)
    return f"port {problem}" if problem else None


def _ip(value: str) -> str | None:
    return _ip_literal(value)


_V4_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")


def _host_cidr(value: str) -> str | None:
    if "/" not in value:
        return "needs an explicit host prefix: /32 for IPv4, /128 for IPv6"
    match = _CIDR.fullmatch(value)
    if not match or _ip_literal(match[1]):
        return "is not address/prefix (e.g. 100.64.0.10/32 or fd7a:115c:a1e0::a/128)"
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        return f"is not a CIDR ({exc})"
    if net.prefixlen == 0:
        return "/0 would trust every address on the internet"
    if net.prefixlen != net.max_prefixlen:
        return (
            f"is a range of {net.num_addresses} addresses; must be one host (/{net.max_prefixlen})"
        )
    addr = net.network_address
    if isinstance(addr, ipaddress.IPv6Address) and (
        addr.ipv4_mapped is not None or addr.sixtofour is not None or addr.teredo is not None
    ):
        return (
            "embeds an IPv4 address (IPv4-mapped, 6to4 or Teredo); give the edge's own "
            "tailnet address (IPv4 with /32)"
        )
    if addr.is_loopback or addr.is_unspecified or addr in _V4_THIS_NETWORK:
        return "must be the edge's tailnet address, not loopback or unspecified"
    if addr.is_multicast or addr.is_link_local or addr.is_reserved:
        return "must be the edge's tailnet address, not multicast, link-local or reserved"
    if isinstance(addr, ipaddress.IPv6Address) and addr.is_site_local:
        return "must be the edge's tailnet address, not a deprecated site-local address"
    return None


def _url(value: str) -> str | None:
    match = _URL.fullmatch(value)
    if not match or match["scheme"] not in ("http", "https"):
        return "must be an http:// or https:// URL with a host"
    if "@" in value:
        return "must not carry credentials or '@'; API credentials have keys of their own"
    if match["ip6"] is not None:
        if ":" not in match["ip6"] or _ip_literal(match["ip6"]):
            return "the bracketed host is not an IPv6 address"
    else:
        problem = _host(match["host"]) if match["host"] else "is empty"
        if problem or ":" in match["host"]:
            return f"host {problem or 'needs brackets'}"
    if match["port"] is not None:
        problem = _port(match["port"])
        if problem:
            return f"port {problem}"
    if match["path"] is not None and not _URL_PATH.fullmatch(match["path"]):
        return (
            "path may hold only letters, digits and . _ ~ / - (no query, fragment, "
            "escapes or spaces)"
        )
    return None


def _tag(value: str) -> str | None:
    if not _TAG.fullmatch(value):
        return "must be a Tailscale tag like tag:stalwart (lower case, 'tag:' prefix)"
    return None


def _ident(value: str) -> str | None:
    if not _IDENT.fullmatch(value):
        return "must start with a letter or _ and hold only letters, digits, _ . - (max 63)"
    return None


def _login(value: str) -> str | None:
    if not _LOGIN.fullmatch(value):
        return (
            "must be a login name or an e-mail address: letters, digits and . _ + = @ -, "
            "led by a letter or digit"
        )
    return None


def _compose_project(value: str) -> str | None:
    if not _COMPOSE_PROJECT.fullmatch(value):
        return (
            "must hold only lower-case letters, digits, '-' and '_', and start with a "
            "letter or digit (docker compose's rule)"
        )
    return None


def _bucket(value: str) -> str | None:
    if not _BUCKET.fullmatch(value):
        return (
            "must be 3-63 lower-case letters, digits, '-' and '.', starting and ending "
            "with a letter or digit"
        )
    if ".." in value or ".-" in value or "-." in value:
        return "must not hold '..', '.-' or '-.'"
    if _ip_literal(value) is None:
        return "must not be an IP address"
    if value.startswith("xn--") or ".xn--" in value or value.endswith("-s3alias"):
        return "must not start a label with 'xn--' or end with '-s3alias'"
    return None


def _tailnet(value: str) -> str | None:
    """'-', or an organisation's tailnet name: a DNS name, optionally user@ in front."""
    if value == "-":
        return None
    user, at, domain = value.rpartition("@")
    if at and not _TAILNET_USER.fullmatch(user):
        return (
            "the part before '@' is not a user name (letters, digits, . _ + -; "
            "at most 64); expected '-', example.com or user@github"
        )
    if not domain:
        return "has nothing after '@'; expected '-', example.com or user@github"
    if domain.endswith("."):
        return "must not end with '.'; expected '-', example.com or user@github"
    problem = _hostname(domain) if not domain.isdigit() else "is all digits"
    if problem:
        return f"{problem}; expected '-', example.com or user@github"
    return None


def _uint(value: str) -> str | None:
    if not _DIGITS.fullmatch(value):
        return "must be a non-negative whole number (ASCII digits)"
    if len(value) > 1 and value.startswith("0"):
        return "must be written without leading zeros"
    return None


#: the most sessions EDGE_MAX_SESSIONS may plan for: far past what one edge host holds
#: (about 21 GiB of RSS at the measured 21.5 KiB per held session)
MOST_SESSIONS = 1_000_000


def _sessions(value: str) -> str | None:
    problem = _uint(value)
    if problem:
        return problem
    if not 1 <= int(value) <= MOST_SESSIONS:
        return f"must be between 1 and {MOST_SESSIONS}"
    return None


BOOL_TRUE = frozenset({"1", "true", "yes", "on"})
BOOL_FALSE = frozenset({"0", "false", "no", "off"})


def _bool(value: str) -> str | None:
    if value.lower() not in BOOL_TRUE | BOOL_FALSE:
        return "must be true or false"
    return None


def _secret(value: str) -> str | None:
    if not _SECRET.fullmatch(value):
        return (
            "must be printable ASCII without spaces (letters, digits, punctuation); "
            "generate one with: openssl rand -hex 32"
        )
    if value.lower() in PLACEHOLDERS or set(value.lower()) <= {"x", "*", "."}:
        return "is a placeholder; generate a real secret (e.g. openssl rand -hex 32)"
    if len(value) < 8:
        return "is shorter than 8 characters"
    return None


def _image(value: str) -> str | None:
    match = _IMAGE.fullmatch(value)
    if not match:
        return "must be an image reference like stalwartlabs/stalwart:v0.15.5"
    name = value.split("@", 1)[0].rsplit(":", 1)[0] if match["tag"] else value.split("@", 1)[0]
    if len(name) > 255:
        return "has a repository name over 255 characters"
    if match["tag"] is None and match["digest"] is None:
        return "must carry a pinned tag (never an implicit latest)"
    if match["tag"] == "latest":
        return "must be pinned; 'latest' floats across incompatible releases"
    return None


def _ssh_target(item: str) -> str | None:
    match = _SSH_TARGET.fullmatch(item)
    if not match:
        return "is not user@host[:port] or an SSH alias"
    if match["user"] is not None and not _SSH_USER.fullmatch(match["user"]):
        return "has a user that is not letters, digits, . _ - (not led by '-'; max 32)"
    if match["ip6"] is not None:
        if ":" not in match["ip6"] or _ip_literal(match["ip6"]):
            return "has a bracketed part that is not an IPv6 address"
    elif not match["host"] or not _SSH_HOST.fullmatch(match["host"]):
        return "has a host that is not a host name, an address or an SSH alias (not led by '-')"
    elif _DOTTED_DIGITS.fullmatch(match["host"]) and _ip_literal(match["host"]):
        # inet_aton would read '10.1' or '0' as an address: only a real IPv4 address may look so
        return "has a host of digits and dots that is not an IPv4 address"
    if match["port"] is not None and _port(match["port"]):
        return f"port {_port(match['port'])}"
    return None


def _ssh_targets(value: str) -> str | None:
    items = [item.strip() for item in value.split(",")]
    if len(items) > 64:
        return "lists more than 64 targets"
    for number, item in enumerate(items, 1):
        problem = _ssh_target(item) if item else "is empty"
        if problem:
            return (
                f"target {number} {problem}; expected user@host[:port] or an SSH alias "
                "(comma-separated list)"
            )
    return None


def _docker_host(item: str) -> str | None:
    """One docker endpoint: ``ssh://[user@]host[:port]`` or ``unix:///abs/path``."""
    scheme, sep, rest = item.partition("://")
    if not sep or scheme not in ("ssh", "unix"):
        return "is not ssh://[user@]host[:port] or unix:///path (tcp:// carries no TLS here)"
    if scheme == "unix":
        problem = _abspath(rest)
        return f"has a socket path that {problem}" if problem else None
    if not rest or "/" in rest:
        return "is ssh://[user@]host[:port] with nothing after the host (no path)"
    problem = _ssh_target(rest)
    return f"ssh:// {problem}" if problem else None


def _docker_hosts(value: str) -> str | None:
    for number, item in enumerate(value.split(","), 1):
        problem = _docker_host(item) if item else "is empty"
        if problem:
            return (
                f"endpoint {number} {problem}; expected one docker endpoint per MAILBOX_NODES "
                "entry, comma-separated, no spaces"
            )
    return None


def _abspath(value: str) -> str | None:
    if not value.startswith("/"):
        return "must be an absolute path (starting with /)"
    if value == "/":
        return "must not be / itself"
    segments = value[1:].split("/")
    for segment in segments:
        if not segment:
            return "must not hold '//' or end with '/'"
        if segment in (".", ".."):
            return "must not hold '.' or '..' segments"
        if not _PATH_SEGMENT.fullmatch(segment):
            return "may hold only letters, digits and _ . - between slashes (no spaces, no %)"
    return None


def _restic_repo(value: str) -> str | None:
    """A restic repository tailwart supports: a local absolute path or an S3 bucket."""
    if value.startswith("s3:"):
        url = value[3:]
        problem = _url(url)
        if problem:
            return f"S3 URL {problem}"
        path = urlsplit(url).path
        segments = path.split("/")[1:]
        if path in ("", "/"):
            return "an S3 repository must be s3:http(s)://host[:port]/bucket[/prefix]"
        if any(segment in ("", ".", "..") for segment in segments):
            return "an S3 repository path must not hold '//', '.' or '..' nor end with '/'"
        bucket = segments[0]
        problem = _bucket(bucket)
        return f"bucket {bucket!r} {problem}" if problem else None
    if not value.startswith("/"):
        return "must be an absolute path or s3:http(s)://host[:port]/bucket[/prefix]"
    return _abspath(value)


_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._+-]{0,62}[A-Za-z0-9])?", re.ASCII)


def _email(value: str) -> str | None:
    local, at, domain = value.rpartition("@")
    if not at or not _EMAIL_LOCAL.fullmatch(local) or ".." in local:
        return (
            "must be an e-mail address: a local part of letters, digits and . _ + -, "
            "then @ and a domain"
        )
    problem = _fqdn(domain)
    return f"domain {problem}" if problem else None


def _network_list(value: str) -> str | None:
    seen: set[str] = set()
    for number, item in enumerate(value.split(","), 1):
        match = _CIDR.fullmatch(item)
        if not match or _ip_literal(match[1]):
            return (
                f"entry {number} is not address/prefix; expected comma-separated networks "
                "such as 100.64.0.0/10,fd7a:115c:a1e0::/48 (no spaces)"
            )
        try:
            net = ipaddress.ip_network(item, strict=True)
        except ValueError as exc:
            return f"entry {number} is not a network ({exc})"
        if net.prefixlen == 0:
            return f"entry {number} is /0: every address on the internet"
        if str(net) in seen:
            return f"names {net} twice"
        seen.add(str(net))
    return None


def _fqdn_list(value: str) -> str | None:
    names = value.split(",")
    for number, name in enumerate(names, 1):
        if not name:
            return f"entry {number} is empty (two commas in a row, or one at an end)"
        problem = _fqdn(name)
        if problem:
            if not _LABEL_CHARS.fullmatch(name):
                return "must be comma-separated fully qualified names (no spaces)"
            return f"entry {number} {problem}"
    lowered = [n.lower() for n in names]
    if len(set(lowered)) != len(lowered):
        return "names a host twice"
    return None


_LABEL_CHARS = re.compile(r"[A-Za-z0-9.-]+", re.ASCII)


_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)", re.ASCII)


def _dns_name(value: str) -> str | None:
    """A fully qualified DNS name whose labels may also hold '_' (_spf.example.net)."""
    labels, problem = _labels(
        value, _DNS_LABEL, "letters, digits, '_' and inner hyphens, 1-63 characters"
    )
    if problem:
        return problem
    if len(labels) < 2:
        return "must be a fully qualified name with at least one dot"
    if labels[-1].isdigit():
        return "ends in an all-digit label"
    return None


def _ip_list(value: str) -> str | None:
    """Comma-separated public-looking IP addresses (no loopback, unspecified, multicast
    or link-local), each once."""
    seen: set[str] = set()
    items = value.split(",")
    if len(items) > 32:
        return "lists more than 32 addresses"
    for number, item in enumerate(items, 1):
        problem = _ip_literal(item) if item else "is empty"
        if problem:
            return f"entry {number} {problem}; expected comma-separated addresses (no spaces)"
        address = ipaddress.ip_address(item)
        if (
            address.is_loopback
            or address.is_unspecified
            or address.is_multicast
            or address.is_link_local
        ):
            return f"entry {number} is loopback, unspecified, multicast or link-local"
        if str(address) in seen:
            return f"names {address} twice"
        seen.add(str(address))
    return None


#: a Garage node id as `garage status` prints it: at least 8 of its 64 hex digits
_GARAGE_ID = re.compile(r"[0-9a-f]{8,64}", re.ASCII)
#: a Garage zone name: letters, digits and _ . -, led by a letter or digit
_GARAGE_ZONE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", re.ASCII)
#: the most Garage nodes and Redis Sentinels a list may name
MOST_MEMBERS = 64


def _garage_nodes(value: str) -> str | None:
    """Comma-separated ``node-id@zone``: ids of 8-64 lower-case hex digits (a prefix of the
    full id, as `garage status` shows it), none a prefix of another, zones simple names."""
    items = value.split(",")
    if len(items) > MOST_MEMBERS:
        return f"lists more than {MOST_MEMBERS} nodes"
    ids: list[str] = []
    for number, item in enumerate(items, 1):
        node, at, zone = item.partition("@")
        if not at:
            return f"entry {number} is not node-id@zone (e.g. 563e1ac825ee3323@dc1)"
        if not _GARAGE_ID.fullmatch(node):
            return (
                f"entry {number}: the node id must be 8 to 64 lower-case hex digits "
                "(the start of the id `garage status` shows)"
            )
        if not _GARAGE_ZONE.fullmatch(zone):
            return (
                f"entry {number}: the zone must be letters, digits and _ . -, led by a "
                "letter or digit (at most 63)"
            )
        ids.append(node)
    for number, node in enumerate(ids, 1):
        for other_number, other in enumerate(ids, 1):
            if number != other_number and other.startswith(node):
                if len(node) == len(other):
                    return f"names node {node} twice"
                return f"entry {number}'s id is a prefix of entry {other_number}'s: ambiguous"
    return None


def _hostport_list(value: str) -> str | None:
    """Comma-separated host:port ([IPv6]:port), each once."""
    items = value.split(",")
    if len(items) > MOST_MEMBERS:
        return f"lists more than {MOST_MEMBERS} addresses"
    seen: set[str] = set()
    for number, item in enumerate(items, 1):
        problem = _hostport(item) if item else "is empty"
        if problem:
            return f"entry {number} {problem} (no spaces around the commas)"
        if item.lower() in seen:
            return f"names {item} twice"
        seen.add(item.lower())
    return None


#: the mail ports the edge can carry (``tailwart.edge.render.MAIL_PORTS``, in that order)
MAIL_PORT_NUMBERS: tuple[int, ...] = (25, 465, 587, 143, 993)
#: inbound mail from the internet: always public (the edge is the only way in)
INBOUND_SMTP_PORT = 25


def _mail_ports(value: str) -> str | None:
    items = value.split(",")
    seen: set[str] = set()
    for number, item in enumerate(items, 1):
        if item == "":
            return f"has an empty item (number {number}); expected ports separated by single commas"
        if item not in {str(p) for p in MAIL_PORT_NUMBERS}:
            shown = item if _DIGITS.fullmatch(item) and len(item) <= 5 else f"item {number}"
            return f"names {shown}, not a mail port the edge carries"
        if item in seen:
            return f"names {item} more than once"
        seen.add(item)
    if str(INBOUND_SMTP_PORT) not in seen:
        return f"leaves out {INBOUND_SMTP_PORT}: inbound mail from the internet needs it public"
    return None


def _doctor_limits(value: str) -> str | None:
    from .limits import problem

    return problem(value)


def _choice(*options: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in options else f"must be one of: {', '.join(options)}"

    return check


class Kind(Enum):
    """Each kind: (what the example/README says is expected, validator, size limit)."""

    HOSTNAME = ("host name", _host, 253)
    LABEL = ("DNS label", _label, 63)
    FQDN = ("fully qualified domain name", _fqdn, 253)
    HOSTPORT = ("host:port", _hostport, 259)
    PORT = ("port 1-65535", _port, 5)
    IP = ("IP address", _ip, 45)
    HOST_CIDR = ("host CIDR (/32 or /128)", _host_cidr, 49)
    URL = ("http(s) URL", _url, 512)
    TAG = ("Tailscale tag", _tag, 128)
    IDENT = ("identifier", _ident, 63)
    LOGIN = ("login name or e-mail address", _login, 255)
    COMPOSE_PROJECT = ("compose project name", _compose_project, 63)
    BUCKET = ("S3 bucket name", _bucket, 63)
    TAILNET = ("tailnet name", _tailnet, 318)
    UINT = ("non-negative integer", _uint, 9)
    SESSIONS = (f"whole number 1-{MOST_SESSIONS}", _sessions, 7)
    BOOL = ("boolean", _bool, 5)
    SECRET = ("secret", _secret, 1024)
    IMAGE = ("pinned image reference", _image, 512)
    SSH_TARGETS = ("comma-separated SSH targets", _ssh_targets, 4096)
    ABSPATH = ("absolute path", _abspath, 255)
    DOCKER_HOSTS = (
        "comma-separated ssh://[user@]host[:port] or unix:///path",
        _docker_hosts,
        4096,
    )
    SMTP_TLS = ("starttls | implicit", _choice("starttls", "implicit"), 9)
    EMAIL = ("e-mail address", _email, 254)
    FQDN_LIST = ("comma-separated fully qualified names", _fqdn_list, 2048)
    NETWORKS = ("comma-separated IP networks", _network_list, 1024)
    TLS_MODE = (
        "acme-http | acme-dns | files",
        _choice("acme-http", "acme-dns", "files"),
        16,
    )
    TSIG_ALGORITHM = (
        "hmac-sha256 | hmac-sha384 | hmac-sha512",
        _choice("hmac-sha256", "hmac-sha384", "hmac-sha512"),
        16,
    )
    MAIL_PORTS = (
        "comma-separated mail ports from 25,465,587,143,993, 25 among them",
        _mail_ports,
        19,
    )
    DOCTOR_LIMITS = ("comma-separated name=number thresholds", _doctor_limits, 512)
    RESTIC_REPO = (
        "restic repository: /abs/path or s3:http(s)://host:port/bucket",
        _restic_repo,
        512,
    )
    IP_LIST = ("comma-separated IP addresses", _ip_list, 1600)
    DNS_NAME = ("DNS name (labels may hold _)", _dns_name, 253)
    DMARC_POLICY = (
        "none | quarantine | reject",
        _choice("none", "quarantine", "reject"),
        16,
    )
    MTA_STS_MODE = ("testing | enforce", _choice("testing", "enforce"), 16)
    GARAGE_NODES = ("comma-separated node-id@zone", _garage_nodes, 4800)
    HOSTPORT_LIST = ("comma-separated host:port", _hostport_list, 4200)

    def __init__(self, label: str, validator: Callable[[str], str | None], limit: int) -> None:
        self.label = label
        self.validator = validator
        self.limit = limit

    def check(self, value: str) -> str | None:
        """Return what is wrong with ``value``, or None when it is acceptable."""
        return hygiene(value, self.limit) or self.validator(value)


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    @classmethod
    def parse(cls, value: str) -> HostPort:
        if value.startswith("["):
            host, _, port = value[1:].partition("]:")
        else:
            host, _, port = value.rpartition(":")
        return cls(host, int(port))
