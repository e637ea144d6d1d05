"""REDIS_MODE=cluster against a real local Redis Cluster (three masters, three replicas, on
free ports; tests/support/redis_topologies.py).

- The session and user contracts run over the Cluster through the `redis-cluster` kind of
  `session_spec` (tests/conftest.py); here, the contract cases that are parametrised to
  named kinds (expiry by the server's clock, locks held by another process) run over it too.
- The two-process journey: two `uvicorn` processes on one Cluster namespace (and one data
  directory for the images), every request going to the other process than the one before;
  all keys of one session share one slot, and the rate limit is one budget for both.
- A master failover mid-run (its own Cluster: a master is SIGKILLed): while the replica is
  promoted every request answers 200 or 503 `store_unavailable` (JSON) and nothing else;
  the same app answers 200 again without a restart, with the data written (and replicated)
  before the kill, and a new turn works.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.cluster import RedisCluster

from app.repositories.base import SessionRepository
from app.settings import Settings, SettingsError
from tests.api.scripted_user import SCRIPT
from tests.conftest import SessionFactory
from tests.contract import test_session_contract as session_contract
from tests.contract import test_user_contract as user_contract
from tests.reliability._journey import Spread, delete_everywhere, run_journey
from tests.reliability._servers import HeraServer, hera_servers, server_env
from tests.support.api import assert_200_or_store_unavailable, json_of, running_app
from tests.support.polling import entered_in_thread, eventually
from tests.support.redis_topologies import ClusterHandle, redis_cluster
from tests.support.stores import StoreSpec, build_session_repo

CLUSTER = pytest.mark.parametrize("session_spec", ["redis-cluster"], indirect=True)
BUDGET = 4  # session creations per client address and hour for the pair (no window edge)
FAILOVER_SECONDS = 30.0  # kill -> the session answers 200 again
REQUEST_SECONDS = 10.0  # no single request may hang longer than this during the failover


# ------------------------------------------------------------------ settings
def test_cluster_mode_needs_a_network_node_in_redis_url() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings(_env_file=None, redis_mode="cluster", redis_url="unix:///tmp/redis.sock")
    assert caught.value.problems == [
        "REDIS_MODE=cluster needs a redis:// or rediss:// node in REDIS_URL"
    ]
    ok = Settings(_env_file=None, redis_mode="cluster", redis_url="redis://10.0.0.1:7000/0")
    assert ok.redis_mode == "cluster" and ok.resolved_session_type == "redis"


# ------------------------------------------------------------------ contract cases
# The contract cases parametrised to named kinds (which the run-wide `redis-cluster` kind of
# SESSION_KINDS does not reach), run unchanged over the Cluster.
@CLUSTER
async def test_session_expires_by_the_servers_clock_on_cluster(
    session_spec: StoreSpec, make_sessions: SessionFactory
) -> None:
    await session_contract.test_session_expires_ttl_after_last_write_by_the_servers_clock(
        session_spec, make_sessions
    )


@CLUSTER
async def test_lock_excludes_a_holder_in_another_process_on_cluster(
    session_spec: StoreSpec, make_sessions: SessionFactory
) -> None:
    assert session_spec.cross_process  # the child builds its own Cluster client from the url
    await session_contract.test_lock_excludes_a_holder_in_another_process(
        session_spec, make_sessions
    )


@CLUSTER
async def test_lock_of_a_killed_holder_frees_after_expiry_on_cluster(
    session_spec: StoreSpec, make_sessions: SessionFactory
) -> None:
    await session_contract.test_lock_of_a_killed_holder_frees_after_expiry(
        session_spec, make_sessions
    )


@CLUSTER
async def test_live_holder_keeps_the_lock_past_its_expiry_on_cluster(
    session_spec: StoreSpec, make_sessions: SessionFactory
) -> None:
    await session_contract.test_live_holder_keeps_the_lock_past_its_expiry(
        session_spec, make_sessions
    )


@CLUSTER
async def test_user_keys_of_one_person_share_one_slot_on_cluster(session_spec: StoreSpec) -> None:
    from tests.support.stores import build_user_repo

    users = await build_user_repo(session_spec)
    try:
        key = user_contract.person("slot")
        await users.update(owner_key=key, fields={"a": 1})
        await users.add_tag(owner_key=key, tag="旅行")
        await users.index_add(owner_key=key, index="sessions", item_id="s1", at=user_contract.T0)
        keys = [k for k in await asyncio.to_thread(_cluster_keys, session_spec) if key in k]
        assert len(keys) == 3, keys  # record, tags, one index
        url = session_spec.params["url"]
        slots = {await asyncio.to_thread(_keyslot, url, k) for k in keys}
        assert len(slots) == 1, keys
    finally:
        await users.aclose()


# ------------------------------------------------------------------ helpers
def _cluster_client(url: str) -> RedisCluster:
    return RedisCluster.from_url(url, socket_connect_timeout=2, socket_timeout=5)


def _cluster_keys(spec: StoreSpec, pattern: str = "*") -> list[str]:
    """Every key of the spec's namespace on every primary."""
    with _cluster_client(spec.params["url"]) as client:
        match = f"{spec.params['namespace']}:{pattern}"
        return sorted({k.decode() for k in client.scan_iter(match=match, count=500)})


def _keyslot(url: str, key: str) -> int:
    with _cluster_client(url) as client:
        return int(client.execute_command("CLUSTER KEYSLOT", key))


def _unlink(url: str, keys: list[str]) -> None:
    if keys:
        with _cluster_client(url) as client:
            client.unlink(*keys)  # split per slot by redis-py


@dataclass
class ClusterPair:
    """Two `uvicorn app.main:app` processes on one Cluster namespace and one data directory."""

    servers: list[HeraServer]
    cluster: ClusterHandle
    namespace: str

    @property
    def spec(self) -> StoreSpec:
        params = {"url": self.cluster.url, "namespace": self.namespace, "mode": "cluster"}
        return StoreSpec("redis", params)

    def logs(self) -> str:
        return "\n".join(f"--- {s.url}\n{s.log()}" for s in self.servers)


@pytest.fixture(scope="module")
def cluster_pair(
    redis_cluster_handle: ClusterHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClusterPair]:
    namespace = f"hera-cl-{uuid.uuid4().hex[:12]}"
    env = server_env(
        REDIS_MODE="cluster",
        REDIS_URL=redis_cluster_handle.url,
        REDIS_NAMESPACE=namespace,
        STORAGE_MODE="local",
        HERA_DATA_DIR=str(tmp_path_factory.mktemp("cluster-pair-data")),
        LOCK_WAIT_SECONDS="60",
        RATE_LIMITS="on",
        RATE_LIMIT_SESSIONS=f"{BUDGET}/hour",
        RATE_LIMIT_TURNS="1000/minute",
        RATE_LIMIT_IMAGES="1000/minute",
        RATE_LIMIT_UPLOADS="1000/minute",
    )
    pair = None
    try:
        with hera_servers(tmp_path_factory.mktemp("cluster-pair"), env, count=2) as servers:
            pair = ClusterPair(servers, redis_cluster_handle, namespace)
            yield pair
    finally:
        if pair is not None:
            _unlink(pair.cluster.url, _cluster_keys(pair.spec))


@pytest.fixture
async def pair_clients(cluster_pair: ClusterPair) -> AsyncIterator[list[httpx.AsyncClient]]:
    clients = [httpx.AsyncClient(base_url=s.url, timeout=60.0) for s in cluster_pair.servers]
    try:
        yield clients
    finally:
        for client in clients:
            await client.aclose()


@pytest.fixture
async def pair_sessions(cluster_pair: ClusterPair) -> AsyncIterator[SessionRepository]:
    repo = await build_session_repo(cluster_pair.spec)
    try:
        yield repo
    finally:
        await repo.aclose()


def _reset_budgets(pair: ClusterPair) -> None:
    _unlink(pair.cluster.url, _cluster_keys(pair.spec, "rl*"))


# ------------------------------------------------------------------ two processes
@pytest.mark.slow
async def test_journey_alternating_between_two_processes_on_a_cluster(
    cluster_pair: ClusterPair,
    pair_clients: list[httpx.AsyncClient],
    pair_sessions: SessionRepository,
) -> None:
    await asyncio.to_thread(_reset_budgets, cluster_pair)
    spread = Spread(pair_clients)
    result = await run_journey(spread, pair_sessions)
    assert set(spread.served_by) == {s.url for s in cluster_pair.servers}
    sid = result["session_id"]

    # Every key of the session carries its `{id}` tag, so all of them live in one slot
    # (each of its scripts then runs on one node: no CROSSSLOT).
    keys = await asyncio.to_thread(_cluster_keys, cluster_pair.spec, f"*{sid}*")
    tagged = f"{cluster_pair.namespace}:{{{sid}}}:"
    parts = {key.removeprefix(tagged) for key in keys if key.startswith(tagged)}
    assert {"meta", "doc:profile", "doc:family", "log:history"} <= parts, keys
    assert all(key.startswith(tagged) for key in keys), keys
    slots = {await asyncio.to_thread(_keyslot, cluster_pair.cluster.url, k) for k in keys}
    assert len(slots) == 1, dict(zip(keys, slots, strict=False))
    # ... and every key the app wrote carries a hash tag (the limiter's own keys included).
    everything = await asyncio.to_thread(_cluster_keys, cluster_pair.spec)
    assert all("{" in key and "}" in key for key in everything), everything

    await delete_everywhere(spread, sid)
    assert not await asyncio.to_thread(_cluster_keys, cluster_pair.spec, f"{{{sid}}}*")


@pytest.mark.slow
def test_the_rate_limit_is_one_budget_for_both_processes_on_a_cluster(
    cluster_pair: ClusterPair,
) -> None:
    _reset_budgets(cluster_pair)
    first, second = cluster_pair.servers
    for index in range(BUDGET):  # alternating: two on each process
        server = (first, second)[index % 2]
        response = httpx.post(f"{server.url}/api/sessions", timeout=10.0)
        assert response.status_code == 201, f"{response.text}\n{cluster_pair.logs()}"
    for server in (first, second):
        response = httpx.post(f"{server.url}/api/sessions", timeout=10.0)
        assert response.status_code == 429, f"{response.text}\n{cluster_pair.logs()}"
        assert response.json()["code"] == "rate_limited"
        assert response.headers["RateLimit-Limit"] == str(BUDGET)
        assert int(response.headers["Retry-After"]) >= 1
    # The counters live in the Cluster, under the namespace's `rl` prefix.
    assert _cluster_keys(cluster_pair.spec, "rl*")


# ------------------------------------------------------------------ failover
def _replicated(node: Any) -> int:
    """WAIT on the master: how many replicas acknowledged every write so far."""
    with node.client() as client:
        return int(client.execute_command("WAIT", 1, 2000))


async def _sessions_on_the_other_masters(
    api: httpx.AsyncClient, cluster: ClusterHandle, namespace: str, avoid: int
) -> list[str]:
    """One new session on each master but the one on port `avoid`."""
    found: dict[int, str] = {}
    others = {node.port for node in await asyncio.to_thread(cluster.masters)} - {avoid}
    for _ in range(60):
        sid = _json_of_created(await api.post("/api/sessions"))
        node = await asyncio.to_thread(cluster.master_of, f"{namespace}:{{{sid}}}:meta")
        if node.port in others:
            found.setdefault(node.port, sid)
        if set(found) == others:
            return list(found.values())
    raise AssertionError(f"sixty new sessions did not reach every master: {found}")


@pytest.mark.slow
async def test_a_master_failover_answers_503_at_worst_and_recovers_without_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    namespace = "hera-failover"
    async with entered_in_thread(redis_cluster(tmp_path / "cluster")) as cluster:
        settings = Settings(
            _env_file=None,
            session_type="redis",
            redis_mode="cluster",
            redis_url=cluster.url,
            redis_namespace=namespace,
            hera_data_dir=tmp_path / "data",
            storage_mode="local",
            llm_provider="offline",
            rate_limit_turns="1000/minute",  # limits on: the limiter's Cluster client too
            rate_limit_sessions="1000/minute",
        )
        async with running_app(settings) as api:
            sid = _json_of_created(await api.post("/api/sessions"))
            for line in SCRIPT[:3]:
                json_of(await api.post(f"/api/sessions/{sid}/messages", json={"message": line}))
            before = json_of(await api.get(f"/api/sessions/{sid}/status"))
            summary = json_of(await api.get(f"/api/sessions/{sid}"))
            assert len(before["conversation_history"]) == 6 and before["user_profile"]

            meta_key = f"{namespace}:{{{sid}}}:meta"
            victim = await asyncio.to_thread(cluster.master_of, meta_key)
            # Sessions on the surviving masters: they see the cluster state go to `fail`
            # (CLUSTERDOWN) until the replica is promoted.
            others = await _sessions_on_the_other_masters(api, cluster, namespace, victim.port)
            other = others[0]
            json_of(await api.post(f"/api/sessions/{other}/messages", json={"message": "はい"}))
            other_before = json_of(await api.get(f"/api/sessions/{other}/status"))
            assert await asyncio.to_thread(_replicated, victim) >= 1  # the replica has it all
            caplog.clear()
            victim.kill()

            calls: list[tuple[str, Callable[[], Awaitable[httpx.Response]]]] = [
                ("status", lambda: api.get(f"/api/sessions/{sid}/status")),
                ("summary", lambda: api.get(f"/api/sessions/{sid}")),
                ("family", lambda: api.get(f"/api/sessions/{sid}/family/status")),
                ("other", lambda: api.get(f"/api/sessions/{other}/status")),
            ]
            seen: dict[str, int] = {}
            created: list[str] = []
            killed = time.monotonic()
            recovered_event = asyncio.Event()

            async def hammer(session_id: str) -> None:
                """Reads without pause while the failover runs: some land in the short
                window in which the surviving masters answer CLUSTERDOWN."""
                while not recovered_event.is_set():
                    url = f"/api/sessions/{session_id}/status"
                    response = await asyncio.wait_for(api.get(url), REQUEST_SECONDS)
                    assert_200_or_store_unavailable(response, f"hammer {session_id}")
                    seen[str(response.status_code)] = seen.get(str(response.status_code), 0) + 1

            hammers = [
                asyncio.create_task(hammer(target)) for target in (sid, *others) for _ in range(2)
            ]

            async def answers_again() -> bool:
                statuses = []
                for what, call in calls:
                    response = await asyncio.wait_for(call(), REQUEST_SECONDS)
                    assert_200_or_store_unavailable(response, what)
                    statuses.append(response.status_code)
                # A new session: the limiter's counters and the new keys, on any master.
                response = await asyncio.wait_for(api.post("/api/sessions"), REQUEST_SECONDS)
                if response.status_code == 201:
                    created.append(response.json()["session_id"])
                else:
                    assert_200_or_store_unavailable(response, "create")
                for code in (*statuses, response.status_code):
                    seen[str(code)] = seen.get(str(code), 0) + 1
                return statuses == [200] * len(calls)

            try:
                await eventually(
                    answers_again, within=FAILOVER_SECONDS, what="the session answering again"
                )
            finally:
                recovered_event.set()
                await asyncio.gather(*hammers)  # raises what a hammer found
            recovered = time.monotonic() - killed
            causes = [r.getMessage().rsplit(": ", 1)[-1] for r in caplog.records
                      if r.getMessage().startswith("store unavailable")]  # fmt: skip
            kinds = {cause: causes.count(cause) for cause in set(causes)}
            print(f"\nfailover: 200 again after {recovered:.1f} s; answers {seen}; 503s {kinds}")

            promoted = await asyncio.to_thread(cluster.master_of, meta_key)
            assert promoted.port != victim.port
            after = await api.get(f"/api/sessions/{sid}/status")
            assert json_of(after) == before  # what was replicated before the kill is there
            assert json_of(await api.get(f"/api/sessions/{sid}")) == summary
            assert json_of(await api.get(f"/api/sessions/{other}/status")) == other_before
            turn = await api.post(f"/api/sessions/{sid}/messages", json={"message": SCRIPT[3]})
            history = json_of(turn)["conversation_history"]
            assert history[:6] == before["conversation_history"] and len(history) == 8
            for new in created:  # a session made during the failover is whole
                json_of(await api.get(f"/api/sessions/{new}/status"))
            assert (await api.post("/api/sessions")).status_code == 201

            async def ready() -> bool:
                response = await api.get("/api/ready")
                assert response.status_code in (200, 503), response.text
                return response.status_code == 200

            await eventually(ready, within=FAILOVER_SECONDS, what="/api/ready answering 200")


def _json_of_created(response: httpx.Response) -> str:
    assert response.status_code == 201, response.text
    return str(response.json()["session_id"])
