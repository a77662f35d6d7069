"""Value kinds of the .env contract: what each accepts and how it says so."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}$")
_TAG = re.compile(r"^tag:[a-z0-9][a-z0-9-]*$")
_IMAGE = re.compile(
    r"^(?:[A-Za-z0-9.-]+(?::\d{1,5})?/)?"  # optional registry host[:port]/
    r"[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9][A-Za-z0-9._-]{0,127})?(@sha256:[0-9a-f]{64})?$"
)
_SSH_TARGET = re.compile(
    r"^(?:[A-Za-z0-9._-]+@)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::\d{1,5})?$"
)

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


def _hostname(value: str) -> str | None:
    if not value or len(value) > 253:
        return "must be 1 to 253 characters"
    labels = value.rstrip(".").split(".")
    bad = [label for label in labels if not _LABEL.match(label)]
    if bad:
        return (
            f"label {bad[0]!r} is not a DNS label (letters, digits and inner hyphens, "
            "no spaces, no leading or trailing hyphen)"
        )
    return None


def _fqdn(value: str) -> str | None:
    problem = _hostname(value)
    if problem:
        return problem
    if "." not in value.rstrip("."):
        return "must be a fully qualified name with at least one dot"
    return None


def _host(value: str) -> str | None:
    """A host name or an IP literal (IPv6 without brackets)."""
    try:
        ipaddress.ip_address(value)
        return None
    except ValueError:
        return _hostname(value)


def _port(value: str) -> str | None:
    if not value.isdigit():
        return "must be a whole number"
    if not 1 <= int(value) <= 65535:
        return "must be between 1 and 65535"
    return None


def _hostport(value: str) -> str | None:
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
        if not sep:
            return "must be [IPv6]:port"
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"{host!r} is not an IPv6 address"
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
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return "is not an IPv4 or IPv6 address"
    return None


def _host_cidr(value: str) -> str | None:
    if "/" not in value:
        return "needs an explicit host prefix: /32 for IPv4, /128 for IPv6"
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
    if net.network_address.is_loopback or net.network_address.is_unspecified:
        return "must be the edge's tailnet address, not loopback or unspecified"
    return None


def _url(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL with a host"
    if " " in value:
        return "must not contain spaces"
    return None


def _tag(value: str) -> str | None:
    if not _TAG.match(value):
        return "must be a Tailscale tag like tag:stalwart (lower case, 'tag:' prefix)"
    return None


def _ident(value: str) -> str | None:
    if not _IDENT.match(value):
        return "must start with a letter or _ and hold only letters, digits, _ . - (max 63)"
    return None


def _uint(value: str) -> str | None:
    if not value.isdigit():
        return "must be a non-negative whole number"
    return None


BOOL_TRUE = frozenset({"1", "true", "yes", "on"})
BOOL_FALSE = frozenset({"0", "false", "no", "off"})


def _bool(value: str) -> str | None:
    if value.lower() not in BOOL_TRUE | BOOL_FALSE:
        return "must be true or false"
    return None


def _secret(value: str) -> str | None:
    if value.strip().lower() in PLACEHOLDERS or set(value.lower()) <= {"x", "*", "."}:
        return "is a placeholder; generate a real secret (e.g. openssl rand -hex 32)"
    if len(value) < 8:
        return "is shorter than 8 characters"
    return None


def _image(value: str) -> str | None:
    if not _IMAGE.match(value):
        return "must be an image reference like stalwartlabs/stalwart:v0.15.5"
    if ":" not in value.rsplit("/", 1)[-1] and "@" not in value:
        return "must carry a pinned tag (never an implicit latest)"
    if value.rsplit(":", 1)[-1] == "latest":
        return "must be pinned; 'latest' floats across incompatible releases"
    return None


def _ssh_targets(value: str) -> str | None:
    items = [item.strip() for item in value.split(",")]
    bad = [item for item in items if not _SSH_TARGET.match(item)]
    if bad:
        return f"{bad[0]!r} is not user@host[:port] or an SSH alias (comma-separated list)"
    return None


def _abspath(value: str) -> str | None:
    if not value.startswith("/") or "\n" in value or " " in value:
        return "must be an absolute path without spaces"
    return None


def _restic_repo(value: str) -> str | None:
    """A restic repository tailwart supports: a local absolute path or an S3 bucket."""
    if value.startswith("s3:"):
        parts = urlsplit(value[3:])
        bucket = parts.path.strip("/").split("/", 1)[0]
        if parts.scheme not in ("http", "https") or not parts.hostname or not bucket:
            return "an S3 repository must be s3:http(s)://host[:port]/bucket[/prefix]"
        if " " in value or parts.query or parts.fragment:
            return "must not contain spaces, a query or a fragment"
        return None
    if not value.startswith("/") or "\n" in value:
        return "must be an absolute path or s3:http(s)://host[:port]/bucket[/prefix]"
    return None


def _choice(*options: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in options else f"must be one of: {', '.join(options)}"

    return check


class Kind(Enum):
    """Each kind: (what the example/README says is expected, validator)."""

    HOSTNAME = ("host name", _host)
    FQDN = ("fully qualified domain name", _fqdn)
    HOSTPORT = ("host:port", _hostport)
    PORT = ("port 1-65535", _port)
    IP = ("IP address", _ip)
    HOST_CIDR = ("host CIDR (/32 or /128)", _host_cidr)
    URL = ("http(s) URL", _url)
    TAG = ("Tailscale tag", _tag)
    IDENT = ("identifier", _ident)
    UINT = ("non-negative integer", _uint)
    BOOL = ("boolean", _bool)
    SECRET = ("secret", _secret)
    IMAGE = ("pinned image reference", _image)
    SSH_TARGETS = ("comma-separated SSH targets", _ssh_targets)
    ABSPATH = ("absolute path", _abspath)
    SMTP_TLS = ("starttls | implicit", _choice("starttls", "implicit"))
    RESTIC_REPO = ("restic repository: /abs/path or s3:http(s)://host:port/bucket", _restic_repo)

    def __init__(self, label: str, validator: Callable[[str], str | None]) -> None:
        self.label = label
        self.validator = validator

    def check(self, value: str) -> str | None:
        """Return what is wrong with ``value``, or None when it is acceptable."""
        return self.validator(value)


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
