"""Fixtures of the reliability suite: two real server processes over one Redis and one bucket."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis

from app.repositories.base import SessionRepository
from tests.reliability._servers import HeraServer, hera_servers, server_env
from tests.support.services import unavailable
from tests.support.stores import StoreSpec, build_session_repo

# The journey helper's asserts get pytest's detailed failure messages too.
pytest.register_assert_rewrite("tests.reliability._journey")

# High enough that 30 turns queued on one session all get their turn instead of a 409.
PAIR_LOCK_WAIT_SECONDS = 60


@dataclass
class CloudPair:
    """Two `uvicorn app.main:app` processes sharing a Redis namespace and an S3 bucket."""

    servers: list[HeraServer]
    redis_url: str
    namespace: str
    s3: dict[str, Any]  # keyword arguments of `open_s3`

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    @property
    def session_spec(self) -> StoreSpec:
        return StoreSpec("redis", {"url": self.redis_url, "namespace": self.namespace})

    def logs(self) -> str:
        return "\n".join(f"--- {s.url}\n{s.log()}" for s in self.servers)


def _unlink_namespace(url: str, namespace: str) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        batch = list(client.scan_iter(match=f"{namespace}:*", count=500))
        for start in range(0, len(batch), 500):
            client.unlink(*batch[start : start + 500])
    finally:
        client.close()


@pytest.fixture(scope="session")
def cloud_pair(
    redis_url: str | None, moto_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CloudPair]:
    if redis_url is None:
        unavailable("no Redis server reachable for the two-process tests")
    assert redis_url is not None
    if isinstance(moto_server, str):
        unavailable(moto_server)
    from tests.support.servers import create_s3_bucket

    bucket = f"hera-rel-{uuid.uuid4().hex[:12]}"
    create_s3_bucket(moto_server.url, bucket)
    params = moto_server.s3_params(bucket)
    namespace = f"hera-rel-{uuid.uuid4().hex[:12]}"
    env = server_env(
        REDIS_URL=redis_url,
        REDIS_NAMESPACE=namespace,
        **{k.upper(): v for k, v in moto_server.hera_settings(bucket).items()},
        HERA_DATA_DIR=str(tmp_path_factory.mktemp("pair-data")),
        LOCK_WAIT_SECONDS=str(PAIR_LOCK_WAIT_SECONDS),
    )
    workdir = tmp_path_factory.mktemp("pair")
    try:
        with hera_servers(workdir, env, count=2) as servers:
            yield CloudPair(servers, redis_url, namespace, params)
    finally:
        _unlink_namespace(redis_url, namespace)


@pytest.fixture
async def pair_clients(cloud_pair: CloudPair) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One HTTP client per server process."""
    clients = [httpx.AsyncClient(base_url=url, timeout=60.0) for url in cloud_pair.urls]
    try:
        yield clients
    finally:
        for client in clients:
            await client.aclose()


@pytest.fixture
async def pair_sessions(cloud_pair: CloudPair) -> AsyncIterator[SessionRepository]:
    """The real Redis repository on the pair's namespace, to look at what is stored."""
    repo = await build_session_repo(cloud_pair.session_spec)
    try:
        yield repo
    finally:
        await repo.aclose()
