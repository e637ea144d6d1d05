"""Idempotency-Key across processes: two real `uvicorn` servers on one Redis namespace (file
blobs), the Gemini brain on a slow fake Gemini.

- The same message with the same key sent to both processes at once is one turn: one model
  request, both answers byte-identical, two history entries; sent again later to each process,
  the key still answers the same, with no further model request.
- The same `POST /api/sessions` key from one client sent to both processes at once makes one
  session, which both answer with.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.reliability._servers import hera_servers, server_env
from tests.support.fake_gemini import FakeGemini, start_fake_gemini
from tests.support.redis_support import cleanup_namespace
from tests.support.services import unavailable
from tests.support.stores import StoreSpec, build_session_repo

pytestmark = pytest.mark.slow

MODEL_LATENCY = 1.0  # seconds per model call: long enough for both requests to overlap


@dataclass
class GeminiPair:
    urls: list[str]
    fake: FakeGemini
    sessions: StoreSpec  # the pair's Redis namespace, to look at what is stored


@pytest.fixture(scope="module")
def gemini_pair(
    redis_url: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GeminiPair]:
    if redis_url is None:
        unavailable("no Redis server reachable for the two-process idempotency tests")
    assert redis_url is not None
    namespace = f"hera-idem-{uuid.uuid4().hex[:12]}"
    root: Path = tmp_path_factory.mktemp("idempotent-pair")
    with start_fake_gemini() as fake:
        env = server_env(
            LLM_PROVIDER="gemini",
            GEMINI_API_KEY="test-key",
            GEMINI_BASE_URL=fake.base_url,
            REDIS_URL=redis_url,
            REDIS_NAMESPACE=namespace,
            HERA_DATA_DIR=str(root / "data"),  # file blobs, Redis sessions
        )
        try:
            with hera_servers(root / "servers", env, count=2) as servers:
                spec = StoreSpec("redis", {"url": redis_url, "namespace": namespace})
                yield GeminiPair([server.url for server in servers], fake, spec)
        finally:
            asyncio.run(cleanup_namespace(redis_url, namespace))


@pytest.fixture
async def clients(gemini_pair: GeminiPair) -> AsyncIterator[list[httpx.AsyncClient]]:
    gemini_pair.fake.reset()
    opened = [httpx.AsyncClient(base_url=url, timeout=30.0) for url in gemini_pair.urls]
    try:
        yield opened
    finally:
        for client in opened:
            await client.aclose()


def _ok(response: httpx.Response, status: int = 200) -> httpx.Response:
    assert response.status_code == status, response.text
    return response


async def test_one_key_sent_to_two_processes_at_once_is_one_model_call(
    gemini_pair: GeminiPair, clients: list[httpx.AsyncClient]
) -> None:
    fake = gemini_pair.fake
    sid = _ok(await clients[0].post("/api/sessions"), 201).json()["session_id"]
    path = f"/api/sessions/{sid}/messages"
    body = {"message": "こんにちは！32歳の女性です。"}
    headers = {"Idempotency-Key": "turn-0001"}
    fake.latency = MODEL_LATENCY

    answers = await asyncio.gather(
        *(client.post(path, json=body, headers=headers) for client in clients)
    )
    first, second = (_ok(answer) for answer in answers)
    assert len(fake.requests) == 1
    assert second.content == first.content
    # Both waited for the one model call: the second arrived while the first was running.
    assert all(a.elapsed.total_seconds() >= 0.8 * MODEL_LATENCY for a in answers), [
        a.elapsed for a in answers
    ]

    fake.latency = 0.0
    for client in reversed(clients):  # later, from each process
        assert _ok(await client.post(path, json=body, headers=headers)).content == first.content
    assert len(fake.requests) == 1
    for client in clients:
        status = _ok(await client.get(f"/api/sessions/{sid}/status")).json()
        assert status["conversation_history"] == first.json()["conversation_history"]
        assert len(status["conversation_history"]) == 2


async def _session_ids(pair: GeminiPair) -> set[str]:
    repo = await build_session_repo(pair.sessions)
    try:
        return {sid async for sid in repo.iter_ids()}
    finally:
        await repo.aclose()


async def test_one_session_key_sent_to_two_processes_at_once_makes_one_session(
    gemini_pair: GeminiPair, clients: list[httpx.AsyncClient]
) -> None:
    before = await _session_ids(gemini_pair)
    headers = {"Idempotency-Key": "new-session-0001"}
    answers = await asyncio.gather(
        *(client.post("/api/sessions", headers=headers) for client in clients * 2)
    )
    bodies = [_ok(answer, 201).json() for answer in answers]
    assert all(body == bodies[0] for body in bodies)
    # The racing creates that lost deleted their sessions: one new session is left.
    assert await _session_ids(gemini_pair) - before == {bodies[0]["session_id"]}
