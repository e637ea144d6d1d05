"""Redis for tests: find a real server, build repositories on it or on fakeredis, clean up."""

from __future__ import annotations

import os
from typing import Any

import fakeredis
import redis
import redis.asyncio
from redis.asyncio.cluster import RedisCluster

from app.repositories._redis import RedisClient, RedisTarget, create_redis_client
from app.repositories.redis_sessions import RedisSessionRepository
from app.repositories.redis_users import RedisUserRepository
from tests.support.stores import StoreSpec

DEFAULT_URL = "redis://127.0.0.1:6379/9"

# One FakeServer per spec, so several repositories built from one spec share data the way
# several workers share one Redis. Test support only: the app itself keeps no such state.
_FAKE_SERVERS: dict[str, fakeredis.FakeServer] = {}


def real_redis_url() -> str | None:
    """The test Redis URL when a quick PING answers, else None (the caller skips or fails)."""
    url = os.environ.get("HERA_TEST_REDIS_URL") or DEFAULT_URL
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return None
    finally:
        client.close()
    return url


def fake_server(server_id: str) -> fakeredis.FakeServer:
    return _FAKE_SERVERS.setdefault(server_id, fakeredis.FakeServer())


def real_client(spec: StoreSpec, *, max_connections: int = 20) -> RedisClient:
    """The app's own client for a "redis" spec: standalone, or a Cluster when the spec says
    `"mode": "cluster"` (its url is then any node of the cluster)."""
    target = RedisTarget(spec.params["url"], mode=spec.params.get("mode", "standalone"))
    return create_redis_client(target, max_connections=max_connections)


async def build_redis_session_repo(spec: StoreSpec, **options: Any) -> RedisSessionRepository:
    client: RedisClient
    if spec.kind == "redis":
        client = real_client(spec)
        namespace = spec.params["namespace"]
    elif spec.kind == "fakeredis":
        server = fake_server(spec.params["server_id"])
        client = fakeredis.FakeAsyncRedis(server=server, decode_responses=False)
        namespace = spec.params.get("namespace", "hera-test")
    else:
        raise ValueError(f"not a Redis store kind: {spec.kind}")
    return RedisSessionRepository(
        client=client,
        ttl_seconds=options.get("ttl_seconds", 86400),
        lock_ttl_seconds=options.get("lock_ttl_seconds", 30.0),
        lock_wait_seconds=options.get("lock_wait_seconds", 5.0),
        namespace=namespace,
    )


async def namespace_keys(client: Any, namespace: str) -> list[bytes]:
    """Every key of one namespace, found with SCAN (never KEYS). A RedisCluster client scans
    every primary; a standalone client connected to a node of a Cluster is widened to the
    whole Cluster (one node alone holds only its own slots' keys)."""
    real = isinstance(client, redis.asyncio.Redis) and not isinstance(
        client, fakeredis.FakeAsyncRedis
    )
    if real and await _is_cluster_node(client):
        kwargs = client.connection_pool.connection_kwargs
        url = f"redis://{kwargs.get('host', '127.0.0.1')}:{kwargs.get('port', 6379)}/0"
        cluster = RedisCluster.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        try:
            return await namespace_keys(cluster, namespace)
        finally:
            await cluster.aclose()
    return [key async for key in client.scan_iter(match=f"{namespace}:*", count=500)]


async def _is_cluster_node(client: redis.asyncio.Redis) -> bool:
    try:
        info = await client.info("cluster")
    except redis.ResponseError:
        return False
    return str(info.get("cluster_enabled", 0)) == "1"


async def cleanup_namespace(url: str, namespace: str, *, mode: str = "standalone") -> None:
    """UNLINK only this namespace's keys: the test database is shared with other runs. On a
    Cluster (`mode="cluster"`) every primary is scanned, and redis-py splits the UNLINK of
    keys of several slots into one command per slot."""
    client: Any
    if mode == "cluster":
        client = RedisCluster.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    else:
        client = redis.asyncio.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"{namespace}:*", count=500):
            batch.append(key)
            if len(batch) >= 500:
                await client.unlink(*batch)
                batch.clear()
        if batch:
            await client.unlink(*batch)
    finally:
        await client.aclose()


def build_redis_user_repo(spec: StoreSpec) -> RedisUserRepository:
    client: RedisClient
    if spec.kind == "redis":
        client = real_client(spec)
        namespace = spec.params["namespace"]
    else:
        server = fake_server(spec.params["server_id"])
        client = fakeredis.FakeAsyncRedis(server=server, decode_responses=False)
        namespace = spec.params.get("namespace", "hera-test")
    return RedisUserRepository(client=client, namespace=namespace)
