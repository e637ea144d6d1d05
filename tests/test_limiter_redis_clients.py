"""The rate limiter's Redis clients on Cluster and Sentinel, where `limits` builds its own:
they get the app's factory options (socket timeouts, TLS for rediss://, REDIS_MAX_CONNECTIONS)
and the limiter's `aclose` closes every one of them. Read from the clients' options: no
connection is made (the addresses lead nowhere).
"""

from __future__ import annotations

from typing import Any

from redis.asyncio.connection import SSLConnection
from redis.asyncio.sentinel import SentinelManagedSSLConnection

from app.container import redis_target
from app.ratelimit import RateLimiter, build_rate_limiter
from app.settings import Settings

NOWHERE = "rediss://:s3cret@127.0.0.1:1/0"


def limiter_for(**settings: Any) -> RateLimiter:
    config = Settings(  # type: ignore[call-arg]
        _env_file=None, rate_limit_turns="10/minute", redis_max_connections=7, **settings
    )
    return build_rate_limiter(config, redis_target(config))


def closes_counted(clients: list[Any]) -> list[int]:
    """Count every `aclose` of these clients (by their index) into the returned list."""
    closed: list[int] = []
    for number, client in enumerate(clients):
        close = client.aclose

        async def aclose(*args: Any, _close: Any = close, _n: int = number, **kw: Any) -> None:
            closed.append(_n)
            await _close(*args, **kw)

        client.aclose = aclose
    return closed


async def test_the_limiters_cluster_client_has_the_apps_options_and_is_closed() -> None:
    limiter = limiter_for(redis_mode="cluster", redis_url=NOWHERE)
    assert limiter.strategy is not None
    cluster = limiter.strategy.storage.bridge.storage  # type: ignore[attr-defined]
    options = cluster.connection_kwargs
    assert options["socket_timeout"] == 5.0
    assert options["socket_connect_timeout"] == 0.75
    assert options["max_connections"] >= 1000  # raises when full: the library default, not 7
    assert options["connection_class"] is SSLConnection
    assert options["password"] == "s3cret"
    closed = closes_counted([cluster])
    await limiter.aclose()
    assert closed == [0]


async def test_the_limiters_sentinel_clients_have_the_apps_options_and_are_closed() -> None:
    limiter = limiter_for(
        redis_mode="sentinel",
        redis_sentinels="127.0.0.1:1",
        redis_sentinel_master="hera",
        redis_url="rediss://:s3cret@ignored:6379/3",
    )
    assert limiter.strategy is not None
    bridge = limiter.strategy.storage.bridge  # type: ignore[attr-defined]
    pool = bridge.storage.connection_pool
    assert pool.max_connections >= 100  # raises when full: the library default, not 7
    assert pool.connection_class is SentinelManagedSSLConnection
    assert pool.connection_kwargs["socket_timeout"] == 5.0
    assert pool.connection_kwargs["socket_connect_timeout"] == 0.75
    assert (pool.connection_kwargs["password"], pool.connection_kwargs["db"]) == ("s3cret", 3)
    [sentinel] = bridge.sentinel.sentinels
    asking = sentinel.connection_pool.connection_kwargs
    assert (asking["socket_timeout"], asking["socket_connect_timeout"]) == (0.75, 0.75)
    assert asking["password"] is None  # the master's password is not the sentinels'
    closed = closes_counted([bridge.storage, bridge.storage_replica, bridge.sentinel])
    await limiter.aclose()
    assert sorted(closed) == [0, 1, 2]
