"""Loading and validating a .env file against the contract.

``load()`` reads the file, reports every problem at once and raises
``SettingsError`` (exit 2) before any task writes, uploads or starts anything.
"""

from __future__ import annotations

import difflib
import io
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from .contract import BY_NAME, KEYS
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


def mask(key: str, value: str) -> str:
    """Show a value for a message; a secret shows only its length."""
    spec = BY_NAME.get(key)
    if spec is not None and spec.secret:
        return f"<secret, {len(value)} chars>"
    return repr(value)


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
    for spec in KEYS:
        value = raw.get(spec.name, "")
        line = seen.get(spec.name)
        if value == "":
            if spec.default is not None:
                values[spec.name] = spec.default
            elif spec.required:
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
            problems.append(
                Problem(
                    spec.name,
                    f"{mask(spec.name, value)} {wrong}; expected {spec.kind.label}",
                    line=line,
                )
            )
        values[spec.name] = value
    problems += _cross_checks(values)
    warnings = tuple(p for p in problems if p.level == "warning")
    return Settings(values, source, warnings), problems


def _cross_checks(values: Mapping[str, str]) -> list[Problem]:
    """Rules that tie several keys together."""
    out: list[Problem] = []
    if values.get("STALWART_SMARTHOST_USER") and not values.get("STALWART_SMARTHOST_PASSWORD"):
        out.append(
            Problem(
                "STALWART_SMARTHOST_PASSWORD",
                "is missing while STALWART_SMARTHOST_USER is set; expected secret",
            )
        )
    if values.get("STALWART_SMARTHOST_PASSWORD") and not values.get("STALWART_SMARTHOST"):
        out.append(
            Problem(
                "STALWART_SMARTHOST",
                "is missing while smarthost credentials are set; expected host:port",
            )
        )
    if bool(values.get("TS_API_CLIENT_ID")) != bool(values.get("TS_API_CLIENT_SECRET")):
        out.append(
            Problem(
                "TS_API_CLIENT_SECRET" if values.get("TS_API_CLIENT_ID") else "TS_API_CLIENT_ID",
                "OAuth client id and secret go together; set both or neither",
            )
        )
    out += _backup_checks(values)
    mail_host = values.get("MAIL_HOSTNAME", "")
    mailbox = values.get("MAILBOX_FQDN", "")
    if mail_host and mailbox and mail_host.rstrip(".").lower() == mailbox.rstrip(".").lower():
        out.append(
            Problem(
                "MAILBOX_FQDN",
                "equals MAIL_HOSTNAME; the edge must dial the mailbox's MagicDNS "
                "name, not the public name (that loops back to the edge)",
            )
        )
    node = values.get("MAILBOX_NODE_NAME", "")
    if node and mailbox and mailbox.split(".", 1)[0].lower() != node.lower():
        out.append(
            Problem(
                "MAILBOX_FQDN",
                f"{mailbox!r} does not start with MAILBOX_NODE_NAME {node!r}; the edge "
                "would dial a name the sidecar never registers",
            )
        )
    return out


def _backup_checks(values: Mapping[str, str]) -> list[Problem]:
    """BACKUP_*: a repository needs its password, an s3: one its key, retention keeps one."""
    out: list[Problem] = []
    repo = values.get("BACKUP_REPOSITORY", "")
    if not repo:
        return out
    if not values.get("BACKUP_PASSWORD"):
        out.append(Problem("BACKUP_PASSWORD", "is missing while BACKUP_REPOSITORY is set"))
    if repo.startswith("s3:"):
        for name in ("BACKUP_S3_ACCESS_KEY", "BACKUP_S3_SECRET_KEY"):
            if not values.get(name):
                out.append(Problem(name, "is missing while BACKUP_REPOSITORY is an s3: bucket"))
    keep = ("BACKUP_KEEP_DAILY", "BACKUP_KEEP_WEEKLY", "BACKUP_KEEP_MONTHLY")
    if all(values.get(k, "0").isdigit() and int(values.get(k) or 0) == 0 for k in keep):
        out.append(
            Problem(
                "BACKUP_KEEP_DAILY", "every BACKUP_KEEP_* is 0: forget --prune would keep nothing"
            )
        )
    return out


def parse_text(text: str) -> tuple[list[tuple[str, str, int | None]], list[Problem]]:
    """Parse .env text (BOM, CRLF, quotes, ``export`` and comments tolerated)."""
    from dotenv.parser import parse_stream

    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    pairs: list[tuple[str, str, int | None]] = []
    problems: list[Problem] = []
    for binding in parse_stream(io.StringIO(text)):
        line = binding.original.line
        if binding.error:
            snippet = binding.original.string.strip()[:40]
            problems.append(Problem(f"line {line}", f"cannot be parsed: {snippet!r}", line=line))
            continue
        if binding.key is None:
            continue
        if binding.value is None:
            problems.append(Problem(binding.key, "has no '=' and no value", line=line))
            continue
        pairs.append((binding.key, binding.value, line))
    return pairs, problems


def load(path: Path, strict: bool = False) -> Settings:
    """Load and validate ``path``; raise SettingsError listing every problem."""
    source = str(path)
    if not path.exists():
        raise SettingsError(
            source,
            [Problem(".env", f"{path} does not exist; copy .env.example to {path} and fill it in")],
        )
    pairs, problems = parse_text(path.read_text(encoding="utf-8", errors="replace"))
    settings, more = validate(pairs, source)
    problems += more
    mode = stat.S_IMODE(path.stat().st_mode)
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
    "mask",
    "parse_text",
    "validate",
]
