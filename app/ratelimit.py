"""Rate limits per client, with the `limits` library (async strategies, shared storage).

One `RateLimiter` per process, built in the lifespan. On Redis sessions its counters live in
the same Redis, under `<namespace>:rl`, so every worker and container shares one budget per
client; on the file store they live in process memory (per process: several workers each
grant the full budget). On a standalone Redis the limiter uses the app's own client (its
pool: the same timeouts, retries and size). On Cluster and Sentinel `limits` builds clients
of its own: they get the factory's socket timeouts, TLS and pool size (not its retries), and
`aclose` closes them. The sliding-window counter costs one script call per request and two
small keys per client.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis_asyncio
from limits import RateLimitItem, parse_many
from limits.aio.storage import (
    MemoryStorage,
    RedisClusterStorage,
    RedisSentinelStorage,
    RedisStorage,
    Storage,
)
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel

from app.repositories._redis import (
    TRANSIENT,
    RedisClient,
    RedisTarget,
    create_redis_client,
    socket_options,
    url_options,
)
from app.repositories.base import StoreUnavailable
from app.settings import RATE_LIMIT_KINDS, Settings


class RateLimited(Exception):
    """The client spent its budget for this kind of request; answer 429."""

    def __init__(self, kind: str, item: RateLimitItem, reset_at: float) -> None:
        super().__init__(f"rate limit {item} for {kind} reached")
        self.kind = kind
        self.limit = item.amount
        self.reset_in = max(1, math.ceil(reset_at - time.time()))

    def headers(self) -> dict[str, str]:
        return {
            "Retry-After": str(self.reset_in),
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": str(self.reset_in),
        }


@dataclass(frozen=True)
class RateLimiter:
    strategy: SlidingWindowCounterRateLimiter | None
    rules: dict[str, list[RateLimitItem]]
    client: RedisClient | None = None  # owned: built for this limiter alone

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()
        if self.strategy is not None:
            await _close_clients_of(self.strategy.storage)

    async def hit(self, kind: str, client: str) -> None:
        """Spend one request of `kind` for `client`, or raise RateLimited (spending nothing).

        With several windows (`10/second;500/hour`) every window is tested before any is
        spent, so a request refused by one window costs no other window's budget."""
        if self.strategy is None:
            return
        items = self.rules.get(kind, [])
        try:
            if len(items) > 1:
                for item in items:
                    if not await self.strategy.test(item, kind, client):
                        await self._refuse(kind, client, item)
            for item in items:
                if not await self.strategy.hit(item, kind, client):
                    await self._refuse(kind, client, item)
        except TRANSIENT as exc:
            # The counters live in the session store's Redis: that store is down.
            raise StoreUnavailable("sessions", type(exc).__name__) from exc

    async def _refuse(self, kind: str, client: str, item: RateLimitItem) -> None:
        assert self.strategy is not None
        stats = await self.strategy.get_window_stats(item, kind, client)
        raise RateLimited(kind, item, stats.reset_time)


def build_rate_limiter(
    settings: Settings, redis: RedisTarget | None = None, *, client: RedisClient | None = None
) -> RateLimiter:
    """The limiter for these settings: counters in `redis` when given (the sessions' Redis),
    else in process memory. On a standalone Redis it uses `client` when given (shared: its
    owner closes it), else a client of its own. Close it at shutdown."""
    rules = {
        kind: parse_many(value) for kind in RATE_LIMIT_KINDS if (value := settings.rate_limit(kind))
    }
    if not rules:
        return RateLimiter(None, {})
    if redis is None:
        return RateLimiter(SlidingWindowCounterRateLimiter(MemoryStorage()), rules)
    prefix = f"{settings.redis_namespace}:rl"
    # What the app's own clients are built with (`limits` types its options as scalars).
    # Not their pool size: the Cluster and Sentinel pools `limits` builds raise when full
    # instead of waiting, so they keep the library's (large) default.
    options: dict[str, Any] = socket_options()
    storage: Storage
    if redis.mode == "cluster":
        # `limits` builds its own Cluster client from any node (its keys are one per slot);
        # the node's address keeps its credentials, the scheme says whether TLS is on.
        node = redis.url.split("://", 1)[1]
        tls = {k: v for k, v in url_options(redis.url).items() if k == "ssl"}
        storage = RedisClusterStorage(
            f"async+redis+cluster://{node}",
            implementation="redispy",
            key_prefix=prefix,
            **options,
            **tls,
        )
        return RateLimiter(SlidingWindowCounterRateLimiter(storage), rules)
    if redis.mode == "sentinel":
        sentinels = ",".join(f"{host}:{port}" for host, port in redis.sentinels)
        # As the factory's: the sentinels get short timeouts and never the master's password
        # (`limits` would hand them the credentials it finds in its options).
        asking: dict[str, Any] = {**socket_options(0.75), "username": None, "password": None}
        sentinel_options: dict[str, Any] = {"sentinel_kwargs": asking}
        storage = RedisSentinelStorage(
            f"async+redis+sentinel://{sentinels}/{redis.sentinel_master}",
            implementation="redispy",
            key_prefix=prefix,
            use_replicas=False,
            **sentinel_options,
            **options,
            **url_options(redis.url),  # the master's password, database and TLS
        )
        return RateLimiter(SlidingWindowCounterRateLimiter(storage), rules)
    owned = None
    if client is None:
        owned = create_redis_client(redis, max_connections=settings.redis_max_connections)
        client = owned
    assert isinstance(client, redis_asyncio.Redis)  # standalone
    # The redis-py bridge wraps the pool in a client of its own that closes nothing.
    shared: dict[str, Any] = {"connection_pool": client.connection_pool}
    storage = RedisStorage(
        f"async+{redis.url}", implementation="redispy", key_prefix=prefix, **shared
    )
    return RateLimiter(SlidingWindowCounterRateLimiter(storage), rules, owned)


async def _close_clients_of(storage: Storage) -> None:
    """Close the redis-py clients `limits` built for a Cluster or Sentinel storage (it never
    closes them itself): the master's (or the Cluster's), the replica's, the sentinels'."""
    if not isinstance(storage, RedisClusterStorage | RedisSentinelStorage):
        return
    # The redis-py bridge keeps them as attributes it does not declare.
    for name in ("storage", "storage_replica", "sentinel"):
        built = getattr(storage.bridge, name, None)
        if isinstance(built, redis_asyncio.Redis | RedisCluster | Sentinel):
            await built.aclose()
