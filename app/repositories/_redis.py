"""Redis plumbing shared by the Redis adapters: the one client factory and the translation of
its failures into StoreUnavailable."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Final, ParamSpec, TypeVar

import redis.asyncio
from redis import exceptions as rx
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from .base import StoreUnavailable

P = ParamSpec("P")
R = TypeVar("R")

# BusyLoadingError (a restart) is a ConnectionError; ReadOnlyError means a failover is on.
TRANSIENT: Final = (rx.ConnectionError, rx.TimeoutError, rx.ReadOnlyError, OSError)


def create_redis_client(
    url: str, *, max_connections: int = 50, socket_timeout: float = 5.0
) -> redis.asyncio.Redis:
    # One per process. The blocking pool waits instead of raising "Too many connections"; the
    # retries survive a Redis restart (from_url alone never retries).
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=socket_timeout,
        socket_timeout=socket_timeout,
        # A healthy Redis answers a connect in milliseconds; a black-holed one must not hold
        # a request past the 2 s the API promises for a 503.
        socket_connect_timeout=min(socket_timeout, 0.75),
        retry=Retry(ExponentialWithJitterBackoff(cap=0.25, base=0.05), 1),
        retry_on_error=[rx.ConnectionError, rx.TimeoutError],
        health_check_interval=30,
        decode_responses=False,
    )
    return redis.asyncio.Redis.from_pool(pool)


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
