"""One Redis client per process: a Redis-backed app's session store, user store and rate
limiter share one connection pool, which the app closes once at shutdown (the stores, handed
a client they do not own, leave it open); a store built with its own client still closes it.

Built through the composition root (`build_services`) on a real Redis, every client the
factory makes counted; nothing here connects but the user store's durability question.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

import app.ratelimit
import app.repositories._redis as redis_module
from app.container import build_services
from app.repositories.redis_sessions import RedisSessionRepository
from app.repositories.redis_users import RedisUserRepository
from app.settings import Settings
from tests.support import brains
from tests.support.redis_support import real_redis_url
from tests.support.services import unavailable


class Counted:
    """Every client `create_redis_client` builds, and how often each one is closed."""

    def __init__(self) -> None:
        self.clients: list[Any] = []
        self.closes: list[int] = []

    def factory(self, real: Any) -> Any:
        def create(*args: Any, **kwargs: Any) -> Any:
            client = real(*args, **kwargs)
            number = len(self.clients)
            self.clients.append(client)
            close = client.aclose

            async def aclose(*close_args: Any, **close_kwargs: Any) -> None:
                self.closes.append(number)
                await close(*close_args, **close_kwargs)

            client.aclose = aclose
            return client

        return create


@pytest.fixture
def redis_url() -> str:
    url = real_redis_url()
    if url is None:
        unavailable("no Redis server reachable")
    assert url is not None
    return url


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Counted:
    counted = Counted()
    create = counted.factory(redis_module.create_redis_client)
    # The container imports the factory when it calls it; the limiter imported it by name.
    monkeypatch.setattr(redis_module, "create_redis_client", create)
    monkeypatch.setattr(app.ratelimit, "create_redis_client", create)
    return counted


def redis_settings(url: str, tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        session_type="redis",
        redis_url=url,
        redis_namespace="hera-sharing",
        hera_data_dir=tmp_path,
        storage_mode="local",
        llm_provider="offline",
        rate_limit_turns="10/minute",
        **overrides,
    )


async def services_of(settings: Settings) -> AsyncIterator[Any]:
    async with AsyncExitStack() as stack:
        yield await build_services(settings, stack, brains.TestBrains().replacements())


@pytest.mark.parametrize("metrics_enabled", [False, True], ids=["plain", "observed"])
async def test_a_redis_backed_app_shares_one_client_between_stores_and_limiter(
    redis_url: str, tmp_path: Path, counted: Counted, metrics_enabled: bool
) -> None:
    settings = redis_settings(redis_url, tmp_path, metrics_enabled=metrics_enabled)
    async for services in services_of(settings):
        [client] = counted.clients
        assert services.limiter.strategy is not None
        limiter_client = services.limiter.strategy.storage.bridge.storage
        # The observed stores are proxies that forward private attributes to the store.
        pools = [
            services.sessions._client.connection_pool,
            services.users._client.connection_pool,
            limiter_client.connection_pool,
        ]
        assert all(pool is client.connection_pool for pool in pools)
        await services.sessions.ping()
        await services.users.ping()
        await services.limiter.hit("turns", "10.0.0.1")
        assert counted.closes == []
    assert counted.closes == [0]  # once, by the app, after the stores


@pytest.mark.parametrize("store", ["sessions", "users"])
async def test_a_redis_store_closes_its_own_client_but_not_a_shared_one(
    redis_url: str, counted: Counted, store: str
) -> None:
    def build(client: Any, **owns: bool) -> Any:
        if store == "users":
            return RedisUserRepository(client=client, **owns)
        return RedisSessionRepository(client=client, ttl_seconds=60, **owns)

    shared = redis_module.create_redis_client(redis_url)
    own = redis_module.create_redis_client(redis_url)
    await build(shared, owns_client=False).aclose()
    await build(own).aclose()
    assert counted.closes == [1]
    await shared.aclose()
