"""Rate limits per client, per-session quotas and load shedding, over HTTP in-process.

Limits are given per hour, not per minute: the sliding-window counter floors its weighted
count, so a run that crosses a window boundary may get one request more; an hour makes that
crossing vanishingly rare for a test that lasts a second.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.agents.brains import BrainError, Overloaded
from app.brains.slots import ModelSlots
from app.ratelimit import RateLimited, build_rate_limiter
from app.settings import RATE_LIMIT_KINDS, Settings
from tests.api.conftest import STACKS, ApiClient, open_client, stack_settings
from tests.api.images import jpeg_photo
from tests.api.scripted_user import SCRIPT
from tests.support.api import assert_json_error, new_session
from tests.support.brains import TestBrains
from tests.support.fake_gemini import FakeGemini, default_responder
from tests.support.limits import session_ids, stored
from tests.support.polling import eventually

FAMILY_SCRIPT = ("こんにちは！みんなで旅行に行きたいね。", "沖縄に行きたいな！", "ねえ、何しよう？")
WINDOW_SECONDS = 3600

OpenApi = Callable[..., Awaitable[ApiClient]]


def model_calls(api: ApiClient) -> list[str]:
    """The model calls the app's brains make from now on (a list that grows)."""
    assert api.brains is not None, "an app on the offline brains the test holds"
    api.brains.calls.clear()
    return api.brains.calls


@pytest.fixture(params=STACKS)
async def make_api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OpenApi]:
    """Opens apps on this stack with the given settings; every one is shut down afterwards."""
    async with AsyncExitStack() as stack:

        async def open_api(**overrides: Any) -> ApiClient:
            settings = stack_settings(request.param, tmp_path, request, **overrides)
            # Offline brains the test holds (to count and switch them), unless on Gemini.
            brains = TestBrains() if settings.resolved_llm_provider == "offline" else None
            clients = open_client(settings, brains.replacements() if brains else None)
            client = await anext(clients)
            client.brains = brains
            stack.push_async_callback(_finish, clients)
            return client

        yield open_api


async def _finish(clients: AsyncIterator[ApiClient]) -> None:
    # Run the generator past its yield, so the lifespan ends and the namespace is cleaned.
    with suppress(StopAsyncIteration):
        await anext(clients)


def client_at(api: ApiClient, host: str, port: int = 40000) -> httpx.AsyncClient:
    """Another client of the same app, connecting from `host` (the peer uvicorn would see)."""
    transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False, client=(host, port))
    return httpx.AsyncClient(transport=transport, base_url="http://hera.test")


async def interview(api: httpx.AsyncClient, sid: str) -> int:
    """Complete the offline interview; returns the number of turns it took."""
    for turn, message in enumerate(SCRIPT, start=1):
        response = await api.post(f"/api/sessions/{sid}/messages", json={"message": message})
        assert response.status_code == 200, response.text
        if response.json()["profile_complete"]:
            return turn
    raise AssertionError("the scripted user did not complete the interview")


async def upload(api: httpx.AsyncClient, sid: str) -> httpx.Response:
    return await api.post(
        f"/api/sessions/{sid}/photos/user", files={"file": ("me.jpg", jpeg_photo(), "image/jpeg")}
    )


def assert_rate_limited(response: httpx.Response, limit: int) -> None:
    body = assert_json_error(response, 429, "rate_limited")
    assert body["limit"] == limit
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= WINDOW_SECONDS
    assert response.headers["RateLimit-Limit"] == str(limit)
    assert response.headers["RateLimit-Remaining"] == "0"
    assert 1 <= int(response.headers["RateLimit-Reset"]) <= WINDOW_SECONDS


def assert_quota_exceeded(response: httpx.Response, quota: str, limit: int) -> None:
    body = assert_json_error(response, 429, "session_quota_exceeded")
    assert body["quota"] == quota
    assert body["limit"] == limit


# ------------------------------------------------------------------ rate limits
async def _prepare(api: ApiClient, kind: str) -> str | None:
    """A session on which one request of `kind` can succeed again and again."""
    if kind == "sessions":
        return None
    sid = await new_session(api)
    if kind == "images":
        await interview(api, sid)
        assert (await upload(api, sid)).status_code == 200
    return sid


async def _spend(api: ApiClient, kind: str, sid: str | None, index: int) -> httpx.Response:
    """The `index`th request of `kind` (images alternate the partner and children routes)."""
    if kind == "sessions":
        return await api.post("/api/sessions")
    if kind == "turns":
        message = SCRIPT[index % len(SCRIPT)]
        return await api.post(f"/api/sessions/{sid}/messages", json={"message": message})
    if kind == "images":
        route = "generate-image" if index % 2 == 0 else "generate-child-image"
        return await api.post(f"/api/sessions/{sid}/{route}")
    return await upload(api, sid or "")


@pytest.mark.parametrize("kind", RATE_LIMIT_KINDS)
async def test_the_request_past_a_rate_limit_is_429_with_retry_after_and_stores_nothing(
    make_api: OpenApi, kind: str
) -> None:
    api = await make_api(**{f"rate_limit_{kind}": "3/hour"})
    sid = await _prepare(api, kind)
    calls = model_calls(api)
    for index in range(3):
        response = await _spend(api, kind, sid, index)
        assert response.status_code == (201 if kind == "sessions" else 200), response.text
    before_ids = await session_ids(api.app)
    before = await stored(api.app, sid) if sid else None
    calls_before = len(calls)

    refused = await _spend(api, kind, sid, 3)

    assert_rate_limited(refused, 3)
    assert len(calls) == calls_before  # no model was asked
    assert await session_ids(api.app) == before_ids
    if sid is not None:
        assert await stored(api.app, sid) == before
    if kind == "images":  # both image routes spend the one budget
        assert_rate_limited(await _spend(api, kind, sid, 4), 3)


async def test_interview_and_family_messages_spend_one_turns_budget(make_api: OpenApi) -> None:
    api = await make_api(rate_limit_turns="10/hour")
    sid = await new_session(api)
    turns = await interview(api, sid)
    passed = 0
    for message in FAMILY_SCRIPT * 4:
        response = await api.post(f"/api/sessions/{sid}/family/messages", json={"message": message})
        if response.status_code != 200:
            assert_rate_limited(response, 10)
            break
        passed += 1
    assert turns + passed == 10
    assert_rate_limited(
        await api.post(f"/api/sessions/{sid}/messages", json={"message": "こんにちは"}), 10
    )


async def test_rate_limits_count_per_client_address(make_api: OpenApi) -> None:
    api = await make_api(rate_limit_sessions="2/hour")
    async with (
        client_at(api, "10.0.0.1") as first,
        client_at(api, "10.0.0.2") as second,
        client_at(api, "10.0.0.1", port=50000) as first_again,
    ):
        for _ in range(2):
            assert (await first.post("/api/sessions")).status_code == 201
        assert_rate_limited(await first.post("/api/sessions"), 2)
        # Another address has its whole budget ...
        for _ in range(2):
            assert (await second.post("/api/sessions")).status_code == 201
        assert_rate_limited(await second.post("/api/sessions"), 2)
        # ... and a new connection from the first address does not.
        assert_rate_limited(await first_again.post("/api/sessions"), 2)


async def test_a_malformed_session_id_is_404_and_costs_no_budget(make_api: OpenApi) -> None:
    api = await make_api(rate_limit_turns="1/hour")
    sid = await new_session(api)
    for _ in range(3):
        response = await api.post("/api/sessions/not-a-uuid/messages", json={"message": "hi"})
        assert_json_error(response, 404)
    ok = await api.post(f"/api/sessions/{sid}/messages", json={"message": SCRIPT[0]})
    assert ok.status_code == 200, ok.text
    assert_rate_limited(
        await api.post(f"/api/sessions/{sid}/messages", json={"message": SCRIPT[1]}), 1
    )


async def test_rate_limits_off_switches_every_limit_and_quota_off(make_api: OpenApi) -> None:
    api = await make_api(
        rate_limits="off",
        **{f"rate_limit_{kind}": "1/hour" for kind in RATE_LIMIT_KINDS},
        session_max_interview_messages=1,
        session_max_family_messages=1,
        session_max_partner_images=1,
        session_max_child_image_rounds=1,
    )
    sids = [await new_session(api) for _ in range(3)]
    sid = sids[0]
    assert await interview(api, sid) >= 2
    for _ in range(2):
        assert (await upload(api, sid)).status_code == 200
        assert (await api.post(f"/api/sessions/{sid}/generate-image")).status_code == 200
        assert (await api.post(f"/api/sessions/{sid}/generate-child-image")).status_code == 200
    for message in FAMILY_SCRIPT[:2]:
        response = await api.post(f"/api/sessions/{sid}/family/messages", json={"message": message})
        assert response.status_code == 200, response.text


# ------------------------------------------------------------------ session quotas
async def test_the_interview_message_past_the_quota_is_429_and_the_history_keeps_two_turns(
    make_api: OpenApi,
) -> None:
    api = await make_api(session_max_interview_messages=2)
    sid = await new_session(api)
    for message in SCRIPT[:2]:
        response = await api.post(f"/api/sessions/{sid}/messages", json={"message": message})
        assert response.status_code == 200, response.text
    calls = model_calls(api)
    before = await stored(api.app, sid)

    refused = await api.post(f"/api/sessions/{sid}/messages", json={"message": SCRIPT[2]})

    assert_quota_exceeded(refused, "interview_messages", 2)
    assert calls == []
    assert await stored(api.app, sid) == before
    history = (await api.get(f"/api/sessions/{sid}/status")).json()["conversation_history"]
    assert [entry["message"] for entry in history if entry["speaker"] == "user"] == list(SCRIPT[:2])
    assert len(history) == 4
    # The quota belongs to the session: another one starts with its own.
    other = await new_session(api)
    response = await api.post(f"/api/sessions/{other}/messages", json={"message": SCRIPT[0]})
    assert response.status_code == 200, response.text


async def test_the_family_message_past_the_quota_is_429_and_stores_nothing(
    make_api: OpenApi,
) -> None:
    api = await make_api(session_max_family_messages=2)
    sid = await new_session(api)
    await interview(api, sid)
    for message in FAMILY_SCRIPT[:2]:
        response = await api.post(f"/api/sessions/{sid}/family/messages", json={"message": message})
        assert response.status_code == 200, response.text
    calls = model_calls(api)
    before = await stored(api.app, sid)

    refused = await api.post(
        f"/api/sessions/{sid}/family/messages", json={"message": FAMILY_SCRIPT[2]}
    )

    assert_quota_exceeded(refused, "family_messages", 2)
    assert calls == []
    assert await stored(api.app, sid) == before
    family = (await api.get(f"/api/sessions/{sid}/family/status")).json()
    users = [e["message"] for e in family["conversation_history"] if e["speaker"] == "user"]
    assert users == list(FAMILY_SCRIPT[:2])


async def test_the_partner_image_past_the_quota_is_429_and_stores_nothing(
    make_api: OpenApi,
) -> None:
    api = await make_api(session_max_partner_images=2)
    sid = await new_session(api)
    await interview(api, sid)
    for _ in range(2):
        response = await api.post(f"/api/sessions/{sid}/generate-image")
        assert response.status_code == 200, response.text
    calls = model_calls(api)
    before = await stored(api.app, sid)

    refused = await api.post(f"/api/sessions/{sid}/generate-image")

    assert_quota_exceeded(refused, "partner_images", 2)
    assert calls == []
    assert await stored(api.app, sid) == before
    assert (await api.get(f"/api/sessions/{sid}")).json()["images"] == ["partner"]


async def test_the_child_image_round_past_the_quota_is_429_and_stores_nothing(
    make_api: OpenApi,
) -> None:
    api = await make_api(session_max_child_image_rounds=1)
    sid = await new_session(api)
    await interview(api, sid)
    assert (await upload(api, sid)).status_code == 200
    assert (await api.post(f"/api/sessions/{sid}/generate-image")).status_code == 200
    first = await api.post(f"/api/sessions/{sid}/generate-child-image")
    assert first.status_code == 200, first.text
    calls = model_calls(api)
    before = await stored(api.app, sid)

    refused = await api.post(f"/api/sessions/{sid}/generate-child-image")

    assert_quota_exceeded(refused, "child_image_rounds", 1)
    assert calls == []
    assert await stored(api.app, sid) == before
    # The other image budgets of the session are untouched by that refusal.
    assert (await api.post(f"/api/sessions/{sid}/generate-image")).status_code == 200


class FailingInterviewBrain:
    async def interview_turn(self, **_: Any) -> Any:
        raise BrainError("the model failed")


async def test_a_failed_model_call_does_not_spend_the_quota(make_api: OpenApi) -> None:
    api = await make_api(session_max_interview_messages=1)
    sid = await new_session(api)
    assert api.brains is not None
    switch = api.brains.interview
    working, switch.inner = switch.inner, FailingInterviewBrain()
    failed = await api.post(f"/api/sessions/{sid}/messages", json={"message": SCRIPT[0]})
    assert_json_error(failed, 502, "llm_error")
    switch.inner = working
    ok = await api.post(f"/api/sessions/{sid}/messages", json={"message": SCRIPT[0]})
    assert ok.status_code == 200, ok.text
    refused = await api.post(f"/api/sessions/{sid}/messages", json={"message": SCRIPT[1]})
    assert_quota_exceeded(refused, "interview_messages", 1)


# ------------------------------------------------------------------ on the Gemini brain
def gemini_settings(fake: FakeGemini, **overrides: Any) -> dict[str, Any]:
    return {
        "llm_provider": "gemini",
        "gemini_api_key": "test-key",
        "gemini_base_url": fake.base_url,
        "llm_timeout_seconds": 10.0,
        "llm_max_retries": 0,
        **overrides,
    }


async def test_a_refused_turn_never_reaches_the_model(
    make_api: OpenApi, fake_gemini: FakeGemini
) -> None:
    api = await make_api(
        **gemini_settings(fake_gemini, rate_limit_turns="3/hour", session_max_interview_messages=1)
    )
    first, second = await new_session(api), await new_session(api)
    assert (await api.post(f"/api/sessions/{first}/messages", json={"message": "a"})).is_success
    assert len(fake_gemini.requests) == 1

    over_quota = await api.post(f"/api/sessions/{first}/messages", json={"message": "b"})
    assert_quota_exceeded(over_quota, "interview_messages", 1)
    assert len(fake_gemini.requests) == 1

    assert (await api.post(f"/api/sessions/{second}/messages", json={"message": "c"})).is_success
    assert len(fake_gemini.requests) == 2
    over_rate = await api.post(f"/api/sessions/{second}/messages", json={"message": "d"})
    assert_rate_limited(over_rate, 3)  # the refused quota request spent a turn of the budget
    assert len(fake_gemini.requests) == 2


async def test_a_turn_beyond_the_model_queue_is_503_at_once_and_stores_nothing(
    make_api: OpenApi, fake_gemini: FakeGemini
) -> None:
    api = await make_api(**gemini_settings(fake_gemini, llm_max_concurrency=1, llm_max_queue=0))
    held, shed = await new_session(api), await new_session(api)
    gate = threading.Event()

    def hold(body: dict[str, Any]) -> tuple[int, Any]:
        gate.wait(timeout=15)  # on the fake's own thread; the test opens the gate
        return default_responder(body)

    fake_gemini.responder = hold
    running = asyncio.create_task(
        api.post(f"/api/sessions/{held}/messages", json={"message": "ひとつめ"})
    )
    try:

        async def model_called() -> bool:
            return len(fake_gemini.requests) == 1

        await eventually(model_called, within=10, what="the first turn's model call")
        before = await stored(api.app, shed)
        second = api.post(f"/api/sessions/{shed}/messages", json={"message": "ふたつめ"})
        refused = await asyncio.wait_for(second, timeout=10)  # queued would wait for the gate
        # Answered while the only slot is still busy: shed, not queued.
        assert not running.done()
    finally:
        gate.set()
    body = assert_json_error(refused, 503, "overloaded")
    assert body["error"]
    assert refused.headers["Retry-After"] == "1"
    assert len(fake_gemini.requests) == 1
    assert await stored(api.app, shed) == before

    first = await asyncio.wait_for(running, timeout=30)
    assert first.status_code == 200, first.text
    # The slot is free again: the same turn now goes through.
    again = await api.post(f"/api/sessions/{shed}/messages", json={"message": "ふたつめ"})
    assert again.status_code == 200, again.text
    assert len(fake_gemini.requests) == 2


# ------------------------------------------------------------------ model slots
async def test_model_slots_run_one_queue_one_and_shed_the_next_at_once() -> None:
    slots = ModelSlots(limit=1, max_queue=1)
    release = asyncio.Event()
    ran: list[str] = []

    async def call(name: str) -> None:
        async with slots:
            ran.append(name)
            if name == "first":
                await release.wait()

    first = asyncio.create_task(call("first"))

    async def first_runs() -> bool:
        return ran == ["first"]

    await eventually(first_runs, within=5, what="the first call taking the slot")
    second = asyncio.create_task(call("second"))

    async def second_waits() -> bool:
        return slots.waiting == 1

    await eventually(second_waits, within=5, what="the second call queueing")
    async with asyncio.timeout(5):  # "at once": it must not wait for the slot
        with pytest.raises(Overloaded) as shed:
            await call("third")
    assert shed.value.retry_after == 1
    assert ran == ["first"] and not second.done()

    release.set()
    await asyncio.wait_for(asyncio.gather(first, second), timeout=5)
    assert ran == ["first", "second"]
    assert slots.waiting == 0
    await asyncio.wait_for(call("fourth"), timeout=5)  # nothing leaked: free again
    assert ran[-1] == "fourth"


async def test_a_cancelled_waiter_gives_its_queue_place_back() -> None:
    slots = ModelSlots(limit=1, max_queue=1)
    release = asyncio.Event()

    async def hold() -> None:
        async with slots:
            await release.wait()

    async def quick() -> str:
        async with slots:
            return "ran"

    holder = asyncio.create_task(hold())
    waiter = asyncio.create_task(quick())

    async def queued() -> bool:
        return slots.waiting == 1

    await eventually(queued, within=5, what="a call queueing")
    waiter.cancel()  # the client went away while it waited
    with suppress(asyncio.CancelledError):
        await waiter
    assert slots.waiting == 0
    replacement = asyncio.create_task(quick())  # takes the freed place instead of being shed
    await eventually(queued, within=5, what="the replacement queueing")
    release.set()
    assert await asyncio.wait_for(replacement, timeout=5) == "ran"
    await asyncio.wait_for(holder, timeout=5)


def test_model_slots_refuse_a_zero_limit_or_a_negative_queue() -> None:
    with pytest.raises(ValueError):
        ModelSlots(limit=0, max_queue=1)
    with pytest.raises(ValueError):
        ModelSlots(limit=1, max_queue=-1)


async def test_a_request_refused_by_one_window_spends_no_other_window() -> None:
    """`3/day;1/hour`: the second request is refused by the hour, and must not eat into
    the day's budget (three served in a day once each hour allows one)."""
    limiter = build_rate_limiter(
        Settings(_env_file=None, rate_limit_turns="3/day;1/hour", llm_provider="offline")  # type: ignore[call-arg]
    )
    await limiter.hit("turns", "10.0.0.1")
    for _ in range(3):
        with pytest.raises(RateLimited) as refused:
            await limiter.hit("turns", "10.0.0.1")
        assert refused.value.limit == 1  # the hour said no, every time
    assert limiter.strategy is not None
    day = limiter.rules["turns"][0]
    stats = await limiter.strategy.get_window_stats(day, "turns", "10.0.0.1")
    assert stats.remaining == 2
