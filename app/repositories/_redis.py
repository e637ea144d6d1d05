"""Redis plumbing shared by the Redis adapters: the one client factory (standalone, Cluster
or Sentinel), scripts that survive a failover, and the translation of its failures into
StoreUnavailable."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, ParamSpec, TypeAlias, TypeVar

import redis.asyncio
from redis import exceptions as rx
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from .base import StoreUnavailable

P = ParamSpec("P")
R = TypeVar("R")

RedisClient: TypeAlias = redis.asyncio.Redis | RedisCluster
RedisMode = Literal["standalone", "cluster", "sentinel"]

# BusyLoadingError (a restart) is a ConnectionError; ReadOnlyError means a failover is on;
# a Cluster answers CLUSTERDOWN / TRYAGAIN (or cannot be reached at all) while a replica is
# promoted; MasterNotFoundError (Sentinel) is a ConnectionError.
TRANSIENT: Final = (
    rx.ConnectionError,
    rx.TimeoutError,
    rx.ReadOnlyError,
    rx.ClusterDownError,
    rx.TryAgainError,
    rx.RedisClusterException,
    OSError,
)


@dataclass(frozen=True)
class RedisTarget:
    """Where the Redis is: a server (standalone), a Cluster (any node in `url`), or the
    master the sentinels name (`url` then gives only the password, database and TLS)."""

    url: str
    mode: RedisMode = "standalone"
    sentinels: Sequence[tuple[str, int]] = field(default_factory=tuple)
    sentinel_master: str | None = None


def socket_options(socket_timeout: float = 5.0) -> dict[str, float]:
    """The socket timeouts of every Redis connection of the app (the rate limiter's too).
    A healthy Redis answers a connect in milliseconds; a black-holed one must not hold a
    request past the 2 s the API promises for a 503."""
    return {"socket_timeout": socket_timeout, "socket_connect_timeout": min(socket_timeout, 0.75)}


def create_redis_client(
    target: RedisTarget | str, *, max_connections: int = 50, socket_timeout: float = 5.0
) -> RedisClient:
    # One per process (the composition root shares it between the stores and the limiter).
    if isinstance(target, str):
        target = RedisTarget(target)
    timeouts: dict[str, Any] = {
        **socket_options(socket_timeout),
        "retry": Retry(ExponentialWithJitterBackoff(cap=0.25, base=0.05), 1),
        "decode_responses": False,
    }
    if target.mode == "cluster":
        # The client learns the slots from any node and follows MOVED / a promoted replica.
        cluster = _WaitingCluster.from_url(target.url, max_connections=max_connections, **timeouts)
        assert isinstance(cluster, _WaitingCluster)  # from_url builds the class it is called on
        cluster.gate = asyncio.Semaphore(max_connections)
        return cluster
    if target.mode == "sentinel":
        from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

        assert target.sentinel_master is not None  # settings validation
        options = url_options(target.url)
        sentinel = Sentinel(
            list(target.sentinels),
            sentinel_kwargs=socket_options(0.75),
            **timeouts,
        )
        # Asks the sentinels for the master on every new connection: a promotion is
        # followed as soon as the old master's connections fail.
        master: redis.asyncio.Redis = sentinel.master_for(
            target.sentinel_master,
            redis_class=redis.asyncio.Redis,
            connection_pool_class=SentinelConnectionPool,
            max_connections=max_connections,
            **options,
        )
        return master
    # The blocking pool waits instead of raising "Too many connections"; the retries survive
    # a Redis restart (from_url alone never retries).
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        target.url,
        max_connections=max_connections,
        timeout=socket_timeout,
        retry_on_error=[rx.ConnectionError, rx.TimeoutError],
        health_check_interval=30,
        **timeouts,
    )
    return redis.asyncio.Redis.from_pool(pool)


class _WaitingCluster(RedisCluster):
    """A RedisCluster whose commands wait for a connection, as the standalone pool does.
    redis-py's Cluster raises MaxConnectionsError once a node's `max_connections` are all in
    use; a burst of turns would then answer 503. A command holds one connection at a time, so
    at most `max_connections` commands in flight keep every node's pool within its size."""

    gate: asyncio.Semaphore

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.gate:
            return await super().execute_command(*args, **kwargs)


def url_options(url: str) -> dict[str, Any]:
    """What REDIS_URL says besides the address: database, user, password, TLS."""
    from redis.asyncio.connection import parse_url

    parsed = parse_url(url)
    options = {k: parsed[k] for k in ("db", "username", "password") if parsed.get(k)}
    if url.startswith("rediss://"):
        options["ssl"] = True
    return options


def pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    """A flat HGETALL reply from a script ([field, value, ...]) as a dict, like HGETALL's."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


class Lua:
    """A Lua script run by its SHA, falling back to sending its text when the server does
    not know it (a promoted replica, a restarted or flushed server: the script cache is not
    replicated, and redis-py's own reload can reach another node of a Cluster)."""

    __slots__ = ("_client", "_script", "_sha")

    def __init__(self, client: RedisClient, script: str) -> None:
        self._client = client
        self._script = script
        self._sha = client.register_script(script).sha

    async def __call__(self, *, keys: Sequence[Any], args: Sequence[Any] = ()) -> Any:
        try:
            return await self._client.evalsha(self._sha, len(keys), *keys, *args)
        except rx.NoScriptError:
            return await self._client.eval(self._script, len(keys), *keys, *args)


@contextlib.contextmanager
def store_errors(store: str) -> Iterator[None]:
    try:
        yield
    except TRANSIENT as exc:
        # Only the type: messages can carry hosts or credentials from the URL.
        raise StoreUnavailable(store, type(exc).__name__) from exc


def guarded(
    store: str,
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """A decorator: the method's Redis failures become StoreUnavailable(store)."""

    def decorate(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with store_errors(store):
                return await fn(*args, **kwargs)

        return wrapper

    return decorate
