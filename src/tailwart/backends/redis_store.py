"""Redis for Stalwart: a logical DB index claimed with tailwart's marker key.

Nothing is created in Redis except the marker. An index that holds keys but no
marker belongs to another app: bootstrap refuses and names the keys it found.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from .. import clock
from ..settings import Settings
from ..settings.kinds import HostPort
from .plan import Action, BackendError, Step

if TYPE_CHECKING:
    import redis
    import redis.retry
    import redis.sentinel

NAME = "redis"
MARKER_KEY = "tailwart:owner"
MARKER_PREFIX = "tailwart/stalwart"
#: how many foreign key names a refusal shows
SHOW_KEYS = 8


@dataclass(frozen=True)
class RedisTarget:
    """One Redis (host, port), or the sentinels that name the master of ``master``."""

    host: str
    port: int
    db: int
    password: str
    sentinels: tuple[HostPort, ...] = ()
    master: str = ""
    sentinel_password: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisTarget:
        sentinels = tuple(
            HostPort.parse(item) for item in settings["STALWART_REDIS_SENTINELS"].split(",") if item
        )
        if sentinels:
            # Stalwart's RedisSentinel store has no DB index: it uses DB 0 (settings check it)
            return cls(
                "",
                0,
                0,
                settings["STALWART_REDIS_PASSWORD"],
                sentinels,
                settings["STALWART_REDIS_MASTER"],
                settings["STALWART_REDIS_SENTINEL_PASSWORD"],
            )
        return cls(
            settings["STALWART_REDIS_HOST"],
            settings.port("STALWART_REDIS_PORT"),
            settings.integer("STALWART_REDIS_DB"),
            settings["STALWART_REDIS_PASSWORD"],
        )

    @property
    def where(self) -> str:
        """How messages name it: host:port, or the master's name and its sentinels."""
        if self.sentinels:
            return f"master {self.master!r} (via {len(self.sentinels)} sentinel(s))"
        return f"{self.host}:{self.port}"


def no_retry() -> redis.retry.Retry:
    """One attempt: a probe says what it found at once (redis-py's default retries a
    refused connection three times, with backoff)."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), 0)


def sentinel(target: RedisTarget, timeout: float = 10) -> redis.sentinel.Sentinel:
    """A Sentinel client over ``target.sentinels`` (their own password, if any)."""
    from redis.sentinel import Sentinel

    return Sentinel(
        [(hp.host, hp.port) for hp in target.sentinels],
        sentinel_kwargs={
            "password": target.sentinel_password or None,
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "retry": no_retry(),  # a down sentinel is skipped, the next one asked
        },
        password=target.password or None,
        db=target.db,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )


def master_address(target: RedisTarget, timeout: float = 10) -> tuple[str, int]:
    """The master the sentinels name now (redis MasterNotFoundError when none does)."""
    return sentinel(target, timeout).discover_master(target.master)  # type: ignore[no-any-return]


def client(target: RedisTarget, timeout: float = 10) -> redis.Redis:
    """A client of the single Redis, or of the current master through the sentinels."""
    import redis

    if target.sentinels:
        conn: redis.Redis = sentinel(target, timeout).master_for(
            target.master, decode_responses=True
        )
        return conn
    return redis.Redis(
        host=target.host,
        port=target.port,
        db=target.db,
        password=target.password or None,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
    )


@dataclass(frozen=True)
class DbState:
    size: int
    marker: str | None
    sample: tuple[str, ...]


def inspect(conn: redis.Redis) -> DbState:
    """Size, marker and a few key names of the selected DB (raises redis errors)."""
    marker = conn.get(MARKER_KEY)
    size = int(conn.dbsize())
    sample: list[str] = []
    if size and marker is None:
        for name in conn.scan_iter(count=100):
            sample.append(str(name))
            if len(sample) >= SHOW_KEYS:
                break
    return DbState(size, None if marker is None else str(marker), tuple(sorted(sample)))


def describe_foreign(state: DbState) -> str:
    names = ", ".join(state.sample)
    more = state.size - len(state.sample)
    return names + (f" (+{more} more)" if more > 0 else "")


def marker_value() -> str:
    return f"{MARKER_PREFIX} claimed {clock.utc_stamp()}"


class RedisBootstrap:
    def __init__(self, target: RedisTarget) -> None:
        import redis

        self.target = target
        self.conn = client(target)
        self.master = ""
        try:
            if target.sentinels:
                host, port = master_address(target)
                self.master = f" at {_hostport(host, port)}"
            self.conn.ping()
            self.state = inspect(self.conn)
        except redis.RedisError as exc:
            check = (
                "STALWART_REDIS_SENTINELS/MASTER/PASSWORD (and SENTINEL_PASSWORD)"
                if target.sentinels
                else "STALWART_REDIS_HOST/PORT/PASSWORD and that the DB index exists"
            )
            where = f"master {target.master!r}{self.master}" if self.master else target.where
            raise BackendError(
                f"redis: {where} DB {target.db}: {_said(exc)}; check {check}"
            ) from None

    def close(self) -> None:
        self.conn.close()

    def _claim(self) -> None:
        # NX: never overwrite a marker that appeared since the plan was made
        if not self.conn.set(MARKER_KEY, marker_value(), nx=True):
            raise BackendError(f"redis: DB {self.target.db} was claimed while planning; rerun")

    def steps(self) -> list[Step]:
        named = f" on master {self.target.master!r}{self.master}" if self.master else ""
        what = f"DB {self.target.db}{named}"
        state = self.state
        if state.marker is not None and state.marker.startswith(MARKER_PREFIX):
            return [Step(NAME, Action.KEEP, what, f"carries tailwart's marker ({MARKER_KEY})")]
        if state.marker is not None:
            return [
                Step(
                    NAME,
                    Action.REFUSE,
                    what,
                    f"{MARKER_KEY} holds a foreign value",
                    advice="choose another STALWART_REDIS_DB",
                )
            ]
        if state.size == 0:
            return [
                Step(
                    NAME,
                    Action.CREATE,
                    f"{what} marker",
                    f"empty: claim it with {MARKER_KEY}",
                    run=partial(self._claim),
                )
            ]
        return [
            Step(
                NAME,
                Action.REFUSE,
                what,
                f"another app uses it: {state.size} key(s) without tailwart's marker: "
                f"{describe_foreign(state)}",
                advice="choose a free STALWART_REDIS_DB (an empty index)",
            )
        ]


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _said(exc: Exception) -> str:
    """A redis error in one printable line (a server's words are untrusted input)."""
    from ..flags import printable

    return printable(str(exc).rstrip(".") or type(exc).__name__, 200)


@dataclass(frozen=True)
class SentinelAnswer:
    """What one sentinel says about the master: its address, or why it could not say."""

    sentinel: str
    master: str | None = None
    problem: str = ""


def _one_attempt(host: str, port: int, password: str, timeout: float) -> Any:
    """A redis-py client that tries once (no backoff), so a down member is named fast."""
    import redis

    return redis.Redis(
        host=host,
        port=port,
        password=password or None,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
        retry=no_retry(),
    )


def ask_sentinels(target: RedisTarget, timeout: float = 10) -> list[SentinelAnswer]:
    """Ask every sentinel, one by one, which address it names as ``target.master``."""
    import redis

    out: list[SentinelAnswer] = []
    for hp in target.sentinels:
        name = _hostport(hp.host, hp.port)
        conn = _one_attempt(hp.host, hp.port, target.sentinel_password, timeout)
        try:
            addr = conn.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", target.master)
        except redis.AuthenticationError as exc:
            out.append(SentinelAnswer(name, problem=f"refuses the password: {_said(exc)}"))
            continue
        except redis.RedisError as exc:
            out.append(SentinelAnswer(name, problem=f"is down: {_said(exc)}"))
            continue
        finally:
            conn.close()
        if not addr:
            out.append(SentinelAnswer(name, problem=f"does not monitor {target.master!r}"))
            continue
        try:
            host, port = str(addr[0]), int(addr[1])
        except (TypeError, ValueError, IndexError):
            out.append(SentinelAnswer(name, problem="answered something that is not host, port"))
            continue
        out.append(SentinelAnswer(name, _hostport(host, port)))
    return out


@dataclass(frozen=True)
class MasterState:
    role: str
    replicas: int


def master_state(target: RedisTarget, address: str, timeout: float = 10) -> MasterState:
    """``ROLE`` of the node at ``address`` (host:port) with the data nodes' password;
    raises redis errors."""

    where = HostPort.parse(address)
    conn = _one_attempt(where.host, where.port, target.password, timeout)
    try:
        role = conn.execute_command("ROLE")
    finally:
        conn.close()
    name = str(role[0]) if isinstance(role, list | tuple) and role else "?"
    replicas = (
        len(role[2]) if name == "master" and len(role) > 2 and isinstance(role[2], list) else 0
    )
    return MasterState(name, replicas)
