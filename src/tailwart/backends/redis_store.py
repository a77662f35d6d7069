"""Redis for Stalwart: a logical DB index claimed with tailwart's marker key.

Nothing is created in Redis except the marker. An index that holds keys but no
marker belongs to another app: bootstrap refuses and names the keys it found.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from .. import clock
from ..settings import Settings
from .plan import Action, BackendError, Step

if TYPE_CHECKING:
    import redis

NAME = "redis"
MARKER_KEY = "tailwart:owner"
MARKER_PREFIX = "tailwart/stalwart"
#: how many foreign key names a refusal shows
SHOW_KEYS = 8


@dataclass(frozen=True)
class RedisTarget:
    host: str
    port: int
    db: int
    password: str

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisTarget:
        return cls(
            settings["STALWART_REDIS_HOST"],
            settings.port("STALWART_REDIS_PORT"),
            settings.integer("STALWART_REDIS_DB"),
            settings["STALWART_REDIS_PASSWORD"],
        )


def client(target: RedisTarget, timeout: float = 10) -> redis.Redis:
    import redis

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
        try:
            self.conn.ping()
            self.state = inspect(self.conn)
        except redis.RedisError as exc:
            raise BackendError(
                f"redis: {target.host}:{target.port} DB {target.db}: {exc}; check "
                "STALWART_REDIS_HOST/PORT/PASSWORD and that the DB index exists"
            ) from None

    def close(self) -> None:
        self.conn.close()

    def _claim(self) -> None:
        # NX: never overwrite a marker that appeared since the plan was made
        if not self.conn.set(MARKER_KEY, marker_value(), nx=True):
            raise BackendError(f"redis: DB {self.target.db} was claimed while planning; rerun")

    def steps(self) -> list[Step]:
        what = f"DB {self.target.db}"
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
