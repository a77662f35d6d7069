"""Edge hosts: parsing SSH targets and opening verified Fabric connections.

Host keys are always verified against an explicit known_hosts file: an unknown
key is refused with its fingerprint unless the operator trusts it on first use
(``--accept-new-host-key``); a changed key is always refused.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import OperationError, UsageError

if TYPE_CHECKING:
    from fabric import Connection

_TARGET = re.compile(
    r"^(?:(?P<user>[A-Za-z0-9._-]+)@)?(?:\[(?P<ip6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9._-]+))"
    r"(?::(?P<port>\d{1,5}))?$"
)


class HostError(OperationError):
    """A host could not be reached or verified."""


@dataclass(frozen=True)
class HostTarget:
    """One SSH target: ``user@host[:port]`` or an alias resolved through the SSH config."""

    host: str
    user: str | None = None
    port: int | None = None

    @property
    def label(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{user}{host}{port}"

    def __str__(self) -> str:
        return self.label


def parse_target(text: str) -> HostTarget:
    """Parse one target; raise ValueError naming what is wrong."""
    match = _TARGET.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not user@host[:port] or an SSH alias")
    port = match["port"]
    if port is not None and not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: port {port} is out of range")
    return HostTarget(
        host=match["ip6"] or match["host"],
        user=match["user"],
        port=int(port) if port else None,
    )


def parse_targets(flags: Iterable[str], env_value: str = "") -> list[HostTarget]:
    """Targets from repeatable ``--host`` flags, else from ``EDGE_HOSTS`` (comma-separated).

    Every bad entry is reported at once (UsageError, exit 2); duplicates are refused too.
    """
    items = [item for flag in flags for item in flag.split(",") if item.strip()]
    source = "--host"
    if not items:
        items = [item for item in env_value.split(",") if item.strip()]
        source = "EDGE_HOSTS"
    if not items:
        raise UsageError(
            "no edge host: pass --host user@host[:port] (repeatable) or set EDGE_HOSTS"
        )
    problems: list[str] = []
    targets: list[HostTarget] = []
    for item in items:
        try:
            target = parse_target(item)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if target in targets:
            problems.append(f"{item!r} is given twice")
        targets.append(target)
    if problems:
        lines = [f"{source}: {len(problems)} problem(s); nothing was changed:"]
        lines += [f"  {p}" for p in problems]
        raise UsageError("\n".join(lines))
    return targets


def fingerprint(key: Any) -> str:
    """OpenSSH-style SHA256 fingerprint of a paramiko public key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class SshOptions:
    """How to reach the hosts; nothing here defaults to reading the operator's files in tests."""

    known_hosts: Path
    identity: Path | None = None
    ssh_config: Path | None = None
    accept_new_host_key: bool = False
    #: save an accepted key to known_hosts (False in dry runs: they change nothing)
    save_new_host_key: bool = True
    connect_timeout: float = 10.0
    #: seconds a command or a transfer may stall before the link counts as lost
    io_timeout: float = 60.0


def default_known_hosts() -> Path:
    return Path.home() / ".ssh" / "known_hosts"


class _HostKeyPolicy:
    """Missing-host-key policy: refuse with the fingerprint, or trust on first use."""

    def __init__(self, options: SshOptions) -> None:
        self.options = options

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        if not self.options.accept_new_host_key:
            raise HostError(
                f"{hostname}: unknown host key {key.get_name()} {fingerprint(key)}; "
                f"check it against the host and rerun with --accept-new-host-key to trust it "
                f"(recorded in {self.options.known_hosts})"
            )
        client.get_host_keys().add(hostname, key.get_name(), key)
        if self.options.save_new_host_key:
            path = self.options.known_hosts
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as fh:
                fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        print(f"{hostname}: trusting new host key {key.get_name()} {fingerprint(key)}")


class _PeerErrors:
    """paramiko's transport thread logs why a handshake died (e.g. no SSH banner) instead of
    raising it; keep those words for the error message and out of the operator's stderr."""

    def __init__(self) -> None:
        import logging

        self.messages: list[str] = []
        outer = self

        class Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if record.levelno >= logging.ERROR:
                    text = record.getMessage()
                    if text.startswith("Exception (client): "):
                        outer.messages.append(text.removeprefix("Exception (client): "))

        self.logger = logging.getLogger("paramiko")
        self.handler = Handler()

    def __enter__(self) -> _PeerErrors:
        self.logger.addHandler(self.handler)
        self.logger.propagate = False  # no traceback through logging's last-resort handler
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self.handler)


def _ssh_config(options: SshOptions) -> Any:
    from fabric import Config

    overrides: dict[str, Any] = {"load_ssh_configs": True}
    return Config(overrides=overrides, runtime_ssh_path=str(options.ssh_config or "") or None)


def ssh_input_problems(targets: Iterable[HostTarget], options: SshOptions) -> list[str]:
    """Every problem of the known_hosts file and the SSH config for ``targets``, before any
    connection: a line paramiko cannot read, a Port that is not a port."""
    from ..flags import control, port_number

    problems: list[str] = []
    kh = options.known_hosts
    if kh.exists():
        problems += _known_hosts_problems(kh)
    try:
        config = _ssh_config(options)
        ssh = config.base_ssh_config
    except Exception as exc:  # paramiko's ConfigParseError, an unreadable file...
        where = options.ssh_config or "the SSH config"
        return [*problems, f"--ssh-config {where}: cannot be read: {exc}"]
    where = f"--ssh-config {options.ssh_config}" if options.ssh_config else "SSH config"
    for target in targets:
        try:
            entry = ssh.lookup(target.host)
        except Exception as exc:
            problems.append(f"{where}: Host {target.host}: {exc}")
            continue
        port = entry.get("port")
        if target.port is None and port is not None and port_number(str(port)) is None:
            problems.append(f"{where}: Host {target.host}: Port {port!r} is not a port 1-65535")
        name = str(entry.get("hostname", target.host))
        if control("HostName", name) or not name.strip():
            problems.append(f"{where}: Host {target.host}: HostName {name!r} is not a host")
    return problems


def _known_hosts_problems(path: Path) -> list[str]:
    from paramiko.hostkeys import HostKeyEntry

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        return [f"--known-hosts {path}: cannot be read ({exc})"]
    problems = []
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            HostKeyEntry.from_line(line, n)
        except Exception as exc:
            reason = exc.args[1] if len(exc.args) > 1 else exc
            problems.append(
                f"--known-hosts {path} line {n}: not a known_hosts entry ({reason}); "
                "fix or delete that line"
            )
    return problems


def connect(target: HostTarget, options: SshOptions) -> Connection:
    """An open Fabric connection to ``target`` with its host key verified."""
    import paramiko
    from fabric import Connection

    problems = ssh_input_problems([target], options)
    if problems:
        raise UsageError("\n".join(problems))
    config = _ssh_config(options)
    connect_kwargs: dict[str, Any] = {"banner_timeout": options.connect_timeout}
    if options.identity is not None:
        connect_kwargs.update(
            key_filename=[str(options.identity)], look_for_keys=False, allow_agent=False
        )
    conn = Connection(
        target.host,
        user=target.user,
        port=target.port,
        config=config,
        connect_kwargs=connect_kwargs,
        connect_timeout=options.connect_timeout,
    )
    client = conn.client
    client._host_keys = paramiko.HostKeys()  # never the operator's implicit files
    client._system_host_keys = paramiko.HostKeys()
    if options.known_hosts.exists():
        client.get_host_keys().load(str(options.known_hosts))
    client.set_missing_host_key_policy(_HostKeyPolicy(options))
    with _PeerErrors() as peer:
        try:
            conn.open()
        except HostError:
            raise
        except paramiko.BadHostKeyException as exc:
            raise HostError(
                f"{target}: HOST KEY CHANGED: expected {fingerprint(exc.expected_key)}, got "
                f"{exc.key.get_name()} {fingerprint(exc.key)}; refusing (fix "
                f"{options.known_hosts} only once you know why)"
            ) from None
        except Exception as exc:  # SSHException, OSError, EOFError, a key file paramiko rejects
            why = "; ".join(dict.fromkeys(peer.messages)) or f"{exc}" or type(exc).__name__
            hint = " (the port answers but does not speak SSH)" if "protocol banner" in why else ""
            raise HostError(f"{target}: cannot connect over SSH: {why}{hint}") from None
    return conn
