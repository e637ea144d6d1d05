"""Rate limits per client, with the `limits` library (async strategies, shared storage).

One `RateLimiter` per process, built in the lifespan. On Redis sessions its counters live in
the same Redis (a pool built by the same factory, so the same timeouts and retries), under
`<namespace>:rl`, so every worker and container shares one budget per client; on the file
store they live in process memory (per process: several workers each grant the full budget).
The sliding-window counter costs one script call per request and two small keys per client.
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

from app.repositories._redis import TRANSIENT, RedisTarget, create_redis_client, url_options
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
    client: redis_asyncio.Redis | None = None  # owned: the Redis storage's connections

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()

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


def build_rate_limiter(settings: Settings, redis: RedisTarget | None = None) -> RateLimiter:
    """The limiter for these settings: counters in `redis` when given (the sessions' Redis),
    else in process memory. Close it at shutdown."""
    rules = {
        kind: parse_many(value) for kind in RATE_LIMIT_KINDS if (value := settings.rate_limit(kind))
    }
    if not rules:
        return RateLimiter(None, {})
    if redis is None:
        return RateLimiter(SlidingWindowCounterRateLimiter(MemoryStorage()), rules)
    prefix = f"{settings.redis_namespace}:rl"
    storage: Storage
    if redis.mode == "cluster":
        # `limits` builds its own Cluster client from any node (its keys are one per slot).
        node = redis.url.split("://", 1)[1]
        storage = RedisClusterStorage(
            f"async+redis+cluster://{node}", implementation="redispy", key_prefix=prefix
        )
        return RateLimiter(SlidingWindowCounterRateLimiter(storage), rules)
    if redis.mode == "sentinel":
        sentinels = ",".join(f"{host}:{port}" for host, port in redis.sentinels)
        storage = RedisSentinelStorage(
            f"async+redis+sentinel://{sentinels}/{redis.sentinel_master}",
            implementation="redispy",
            key_prefix=prefix,
            use_replicas=False,
            **url_options(redis.url),  # the master's password, database and TLS
        )
        return RateLimiter(SlidingWindowCounterRateLimiter(storage), rules)
    client = create_redis_client(redis, max_connections=settings.redis_max_connections)
    assert isinstance(client, redis_asyncio.Redis)
    # `limits` types its pass-through options as scalars; the redis-py bridge takes a pool.
    shared: dict[str, Any] = {"connection_pool": client.connection_pool}
    storage = RedisStorage(
        f"async+{redis.url}", implementation="redispy", key_prefix=prefix, **shared
    )
    return RateLimiter(SlidingWindowCounterRateLimiter(storage), rules, client)
