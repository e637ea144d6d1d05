"""Rate limits across real uvicorn processes on one Redis: one budget per client address, as
uvicorn resolved it. X-Forwarded-For names the client only when a trusted proxy sends it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.reliability._servers import HeraServer, hera_servers, server_env
from tests.support.services import unavailable

pytestmark = pytest.mark.slow

BUDGET = 4  # session creations per client address and hour (an hour: no window boundary)
UNTRUSTED_PROXY_ARGS = ["--proxy-headers", "--forwarded-allow-ips", "10.9.9.9"]
TRUSTED_PROXY_ARGS = ["--proxy-headers", "--forwarded-allow-ips", "127.0.0.1"]


@dataclass
class Pair:
    servers: list[HeraServer]
    redis_url: str
    namespace: str

    def logs(self) -> str:
        return "\n".join(f"--- {s.url}\n{s.log()}" for s in self.servers)

    def limiter_keys(self) -> list[bytes]:
        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=2, socket_timeout=5)
        try:
            return list(client.scan_iter(match=f"{self.namespace}:rl*", count=500))
        finally:
            client.close()

    def reset_budgets(self) -> None:
        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=2, socket_timeout=5)
        try:
            if keys := self.limiter_keys():
                client.unlink(*keys)
        finally:
            client.close()

    def _unlink_namespace(self) -> None:
        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=2, socket_timeout=5)
        try:
            if keys := list(client.scan_iter(match=f"{self.namespace}:*", count=500)):
                client.unlink(*keys)
        finally:
            client.close()


def _pair(
    redis_url: str | None, tmp_path_factory: pytest.TempPathFactory, extra_args: list[str]
) -> Iterator[Pair]:
    if redis_url is None:
        unavailable("no Redis server reachable for the two-process limit tests")
    assert redis_url is not None
    namespace = f"hera-rl-{uuid.uuid4().hex[:12]}"
    env = server_env(
        REDIS_URL=redis_url,
        REDIS_NAMESPACE=namespace,
        STORAGE_MODE="local",
        HERA_DATA_DIR=str(tmp_path_factory.mktemp("limits-data")),
        RATE_LIMITS="on",
        RATE_LIMIT_SESSIONS=f"{BUDGET}/hour",
    )
    workdir: Path = tmp_path_factory.mktemp("limits")
    pair: Pair | None = None
    try:
        with hera_servers(workdir, env, count=2, extra_args=extra_args) as servers:
            pair = Pair(servers, redis_url, namespace)
            yield pair
    finally:
        if pair is not None:
            pair._unlink_namespace()


@pytest.fixture(scope="module")
def untrusting_pair(
    redis_url: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    """Two processes that trust X-Forwarded-For only from 10.9.9.9 (not from us)."""
    yield from _pair(redis_url, tmp_path_factory, UNTRUSTED_PROXY_ARGS)


@pytest.fixture(scope="module")
def trusting_pair(
    redis_url: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    """Two processes that trust X-Forwarded-For from 127.0.0.1: we act as the proxy."""
    yield from _pair(redis_url, tmp_path_factory, TRUSTED_PROXY_ARGS)


@pytest.fixture
def pair(untrusting_pair: Pair) -> Pair:
    untrusting_pair.reset_budgets()  # every case starts with a full budget for 127.0.0.1
    return untrusting_pair


def create(server: HeraServer, forwarded_for: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return httpx.post(f"{server.url}/api/sessions", headers=headers, timeout=10.0)


def assert_refused(response: httpx.Response, logs: str) -> None:
    assert response.status_code == 429, f"{response.status_code} {response.text}\n{logs}"
    assert response.json()["code"] == "rate_limited"
    assert response.headers["RateLimit-Limit"] == str(BUDGET)
    assert response.headers["RateLimit-Remaining"] == "0"
    assert int(response.headers["Retry-After"]) >= 1


def test_the_fifth_session_across_two_processes_is_429(pair: Pair) -> None:
    first, second = pair.servers
    for index in range(BUDGET):  # alternating: 2 on each process, 4 in all
        response = create((first, second)[index % 2])
        assert response.status_code == 201, f"{response.text}\n{pair.logs()}"

    assert_refused(create(first), pair.logs())
    assert_refused(create(second), pair.logs())
    # The counters live in the shared Redis, under the namespace's `rl` prefix.
    assert pair.limiter_keys()


def test_a_spoofed_x_forwarded_for_from_an_untrusted_peer_gets_no_fresh_budget(
    pair: Pair,
) -> None:
    for index in range(BUDGET):
        response = create(pair.servers[index % 2], forwarded_for=f"203.0.113.{index + 1}")
        assert response.status_code == 201, f"{response.text}\n{pair.logs()}"

    for index, server in enumerate(pair.servers):
        assert_refused(create(server, forwarded_for=f"198.51.100.{index + 1}"), pair.logs())


def test_a_trusted_proxy_s_x_forwarded_for_gives_each_client_its_own_budget(
    trusting_pair: Pair,
) -> None:
    servers = trusting_pair.servers
    for client in ("203.0.113.10", "203.0.113.11"):
        for index in range(BUDGET):
            response = create(servers[index % 2], forwarded_for=client)
            assert response.status_code == 201, f"{client}: {response.text}\n{trusting_pair.logs()}"
        assert_refused(create(servers[0], forwarded_for=client), trusting_pair.logs())
        assert_refused(create(servers[1], forwarded_for=client), trusting_pair.logs())
    # The proxy's own address spent none of it.
    assert create(servers[0]).status_code == 201
