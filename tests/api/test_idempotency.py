"""Idempotency-Key over HTTP: a retry of a POST gets the first answer and changes nothing.

On every store combination: the interview, family, /complete, image and upload routes answer a
repeat of the same key and body with the first response (status and body, timestamps included)
and write nothing (no history entry, no image, no quota, `updated_at` unchanged); the same key
with another body is 422 `idempotency_key_reused`; a malformed key is 422
`invalid_idempotency_key` before anything is stored; `POST /api/sessions` keys belong to the
client that sent them. With the Gemini brain on the fake server: a repeat makes no second model
call, a failed call records nothing (the retry runs again), a repeat that arrives while the
first is still running waits for it on the session lock, or is 409 `request_in_progress` when
that wait runs out (another request on the session: 409 `session_busy`).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from app.repositories.base import Changes, JSONDict, SessionRepository, session_blob_prefix
from tests.api.conftest import STACKS, ApiClient, open_client, stack_settings
from tests.api.images import jpeg_photo
from tests.api.scripted_user import COMPLETE_PROFILE, FAMILY_AGREEING, SCRIPT
from tests.support.api import assert_json_error, new_session
from tests.support.fake_gemini import FakeGemini, error_body, image_body, json_text_body
from tests.support.polling import eventually

INTERVIEW = SCRIPT[:6]  # these answers complete the offline profile
FAMILY = FAMILY_AGREEING
# What the Gemini interview brain extracts in one turn to complete the profile.


# ------------------------------------------------------------------------------ helpers
def keyed(key: str | bytes) -> dict[str, Any]:
    return {"Idempotency-Key": key}


def sessions_of(api: ApiClient) -> SessionRepository:
    sessions: SessionRepository = api.app.state.services.sessions
    return sessions


async def send(api: ApiClient, sid: str, message: str, key: str | None = None) -> httpx.Response:
    headers = keyed(key) if key is not None else {}
    return await api.post(
        f"/api/sessions/{sid}/messages", json={"message": message}, headers=headers
    )


async def say_family(
    api: ApiClient, sid: str, message: str, key: str | None = None
) -> httpx.Response:
    headers = keyed(key) if key is not None else {}
    return await api.post(
        f"/api/sessions/{sid}/family/messages", json={"message": message}, headers=headers
    )


async def upload(
    api: ApiClient,
    sid: str,
    data: bytes,
    *,
    key: str,
    filename: str = "me.jpg",
    boundary: str | None = None,
) -> httpx.Response:
    headers = keyed(key)
    if boundary is not None:  # httpx frames the form with the boundary of this header
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    files = {"file": (filename, data, "image/jpeg")}
    return await api.post(f"/api/sessions/{sid}/photos/user", files=files, headers=headers)


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


async def summary(api: ApiClient, sid: str) -> JSONDict:
    body: JSONDict = ok(await api.get(f"/api/sessions/{sid}"))
    return body


async def history(api: ApiClient, sid: str) -> list[JSONDict]:
    body = ok(await api.get(f"/api/sessions/{sid}/status"))
    return list(body["conversation_history"])


async def family_history(api: ApiClient, sid: str) -> list[JSONDict]:
    body = ok(await api.get(f"/api/sessions/{sid}/family/status"))
    return list(body["conversation_history"])


async def stored(api: ApiClient, sid: str) -> tuple[JSONDict, JSONDict]:
    """The session's image index and state document, as the store holds them."""
    snap = await sessions_of(api).load(session_id=sid, docs=["images", "state"])
    return snap.doc("images"), snap.doc("state")


async def blob_keys(api: ApiClient, sid: str) -> list[str]:
    listing = api.app.state.services.blobs.list(prefix=session_blob_prefix(sid))
    return [info.key async for info in listing]


async def session_ids(api: ApiClient) -> set[str]:
    return {sid async for sid in sessions_of(api).iter_ids()}


async def interviewed(api: ApiClient) -> str:
    """A session whose offline interview is complete."""
    sid = await new_session(api)
    for message in INTERVIEW:
        body = ok(await send(api, sid, message))
    assert body["profile_complete"], body["missing_fields"]
    return sid


async def with_images(api: ApiClient) -> str:
    """A complete session with the user's photo and a partner image."""
    sid = await interviewed(api)
    ok(await upload(api, sid, jpeg_photo(), key="setup-photo"))
    ok(await api.post(f"/api/sessions/{sid}/generate-image", json={"target": "partner"}))
    return sid


async def assert_replayed_without_a_write(
    api: ApiClient, sid: str, first: httpx.Response, retry: Callable[[], Awaitable[httpx.Response]]
) -> None:
    """The retry answers with the first response, and the session was not written."""
    before = await summary(api, sid)
    again = await retry()
    assert again.status_code == first.status_code, again.text
    assert again.content == first.content  # byte for byte: same fields, same order
    assert (await summary(api, sid))["updated_at"] == before["updated_at"]


# ------------------------------------------------------------------------------ interview
async def test_a_repeated_message_returns_the_first_answer_and_is_one_turn(api: ApiClient) -> None:
    sid = await new_session(api)
    first = await send(api, sid, INTERVIEW[0], key="turn-1")
    body = ok(first)
    assert [e["speaker"] for e in body["conversation_history"]] == ["user", "hera"]

    await assert_replayed_without_a_write(
        api, sid, first, lambda: send(api, sid, INTERVIEW[0], key="turn-1")
    )
    # The timestamps too: the retry shows the entries the first request wrote, not new ones.
    assert await history(api, sid) == body["conversation_history"]


async def test_a_key_still_answers_with_its_first_response_after_later_turns(
    api: ApiClient,
) -> None:
    sid = await new_session(api)
    first = await send(api, sid, INTERVIEW[0], key="turn-1")
    ok(first)
    ok(await send(api, sid, INTERVIEW[1], key="turn-2"))
    ok(await send(api, sid, INTERVIEW[2]))
    later = await history(api, sid)
    assert len(later) == 6

    again = await send(api, sid, INTERVIEW[0], key="turn-1")
    assert again.status_code == 200
    assert again.json() == first.json()  # the history and profile as they were then
    assert len(again.json()["conversation_history"]) == 2
    assert "location" not in again.json()["user_profile"]  # learnt by a later turn
    assert await history(api, sid) == later


async def test_the_same_key_with_another_message_is_422_and_stores_nothing(
    api: ApiClient,
) -> None:
    sid = await new_session(api)
    first = await send(api, sid, INTERVIEW[0], key="turn-1")
    ok(first)
    before = await summary(api, sid)

    reused = await send(api, sid, INTERVIEW[1], key="turn-1")
    assert_json_error(reused, 422, "idempotency_key_reused")
    assert len(await history(api, sid)) == 2
    assert (await summary(api, sid))["updated_at"] == before["updated_at"]
    # The key still names its first request.
    assert (await send(api, sid, INTERVIEW[0], key="turn-1")).json() == first.json()


async def test_a_key_names_one_request_across_routes(api: ApiClient) -> None:
    sid = await interviewed(api)
    ok(await send(api, sid, "よろしくお願いします。", key="shared"))
    before = await summary(api, sid)
    complete = await api.post(f"/api/sessions/{sid}/complete", headers=keyed("shared"))
    assert_json_error(complete, 422, "idempotency_key_reused")
    partner = await api.post(f"/api/sessions/{sid}/generate-image", headers=keyed("shared"))
    assert_json_error(partner, 422, "idempotency_key_reused")
    after = await summary(api, sid)
    assert after["updated_at"] == before["updated_at"]
    assert after["images"] == [] and after["family_status"] == "not_started"


async def test_the_same_key_on_another_session_is_another_request(api: ApiClient) -> None:
    first, second = await new_session(api), await new_session(api)
    one = ok(await send(api, first, INTERVIEW[0], key="turn-1"))
    two = ok(await send(api, second, INTERVIEW[0], key="turn-1"))
    assert len(await history(api, second)) == 2
    assert two["conversation_history"] != one["conversation_history"]  # its own timestamps


async def test_without_a_key_two_identical_messages_are_two_turns(api: ApiClient) -> None:
    sid = await new_session(api)
    ok(await send(api, sid, INTERVIEW[0]))
    second = ok(await send(api, sid, INTERVIEW[0]))
    assert len(second["conversation_history"]) == 4
    assert len(await history(api, sid)) == 4


# ------------------------------------------------------------------------------ /complete, family
async def test_a_repeated_complete_returns_its_first_body(api: ApiClient) -> None:
    sid = await interviewed(api)
    first = await api.post(f"/api/sessions/{sid}/complete", headers=keyed("done"))
    body = ok(first)
    assert (await summary(api, sid))["family_status"] == "active"
    ok(await send(api, sid, "よろしくお願いします。"))  # the interview history grows after it

    await assert_replayed_without_a_write(
        api, sid, first, lambda: api.post(f"/api/sessions/{sid}/complete", headers=keyed("done"))
    )
    assert len(body["conversation_history"]) == len(await history(api, sid)) - 2
    reused = await api.post(
        f"/api/sessions/{sid}/family/messages",
        json={"message": "こんにちは"},
        headers=keyed("done"),
    )
    assert_json_error(reused, 422, "idempotency_key_reused")


async def test_a_repeated_family_message_is_one_turn_and_writes_the_plan_once(
    api: ApiClient,
) -> None:
    sid = await interviewed(api)
    ok(await api.post(f"/api/sessions/{sid}/complete"))
    for message in FAMILY[:-1]:
        ok(await say_family(api, sid, message))
    accepted = await say_family(api, sid, FAMILY[-1], key="accept")
    body = ok(accepted)
    assert body["conversation_complete"] is True, body
    plan = body["family_plan"]
    assert plan["story"] and plan["confirmed_at"]
    turns = await family_history(api, sid)

    await assert_replayed_without_a_write(
        api, sid, accepted, lambda: say_family(api, sid, FAMILY[-1], key="accept")
    )
    assert await family_history(api, sid) == turns
    status = ok(await api.get(f"/api/sessions/{sid}/family/status"))
    assert status["family_plan"] == plan  # written once: same story, same confirmed_at

    reused = await say_family(api, sid, "やっぱり北海道がいいな", key="accept")
    assert_json_error(reused, 422, "idempotency_key_reused")
    assert await family_history(api, sid) == turns


# ------------------------------------------------------------------------------ images
async def test_a_repeated_partner_image_request_draws_once(api: ApiClient) -> None:
    sid = await interviewed(api)
    path = f"/api/sessions/{sid}/generate-image"
    first = await api.post(path, json={"target": "partner"}, headers=keyed("partner-1"))
    ok(first)
    index, state = await stored(api, sid)
    blobs = await blob_keys(api, sid)
    assert state["usage"]["partner_images"] == 1

    await assert_replayed_without_a_write(
        api,
        sid,
        first,
        lambda: api.post(path, json={"target": "partner"}, headers=keyed("partner-1")),
    )
    # No body is the same request (the target defaults to the partner).
    assert (await api.post(path, headers=keyed("partner-1"))).json() == first.json()
    assert await stored(api, sid) == (index, state)  # same blob key, no quota spent
    assert await blob_keys(api, sid) == blobs

    # Without the key it is a new drawing: a fresh blob replaces the first.
    ok(await api.post(path, json={"target": "partner"}))
    redrawn, state = await stored(api, sid)
    assert redrawn["partner"]["key"] != index["partner"]["key"]
    assert state["usage"]["partner_images"] == 2


async def test_a_repeated_child_images_request_draws_once(api: ApiClient) -> None:
    sid = await with_images(api)
    path = f"/api/sessions/{sid}/generate-child-image"
    first = await api.post(path, headers=keyed("children-1"))
    body = ok(first)
    assert [image["image_url"].split("?")[0] for image in body["images"]] == [
        f"/api/sessions/{sid}/photos/child_1",
        f"/api/sessions/{sid}/photos/child_2",
    ]
    index, state = await stored(api, sid)
    blobs = await blob_keys(api, sid)
    assert state["usage"]["child_image_rounds"] == 1

    await assert_replayed_without_a_write(
        api, sid, first, lambda: api.post(path, headers=keyed("children-1"))
    )
    assert await stored(api, sid) == (index, state)
    assert await blob_keys(api, sid) == blobs


async def test_an_upload_retried_with_other_framing_is_the_same_request(api: ApiClient) -> None:
    sid = await new_session(api)
    photo = jpeg_photo()
    first = await upload(api, sid, photo, key="photo-1", filename="me.jpg", boundary="first-b0und")
    ok(first)
    index, _ = await stored(api, sid)
    blobs = await blob_keys(api, sid)

    await assert_replayed_without_a_write(
        api,
        sid,
        first,
        lambda: upload(api, sid, photo, key="photo-1", filename="IMG_0001.JPG", boundary="0ther"),
    )
    assert (await stored(api, sid))[0] == index
    assert await blob_keys(api, sid) == blobs

    other = jpeg_photo(color=(30, 90, 200))
    reused = await upload(api, sid, other, key="photo-1", filename="me.jpg", boundary="first-b0und")
    assert_json_error(reused, 422, "idempotency_key_reused")
    assert (await stored(api, sid))[0] == index
    assert await blob_keys(api, sid) == blobs


# ------------------------------------------------------------------------------ sessions
async def test_creating_a_session_with_a_key_twice_gives_the_same_session(api: ApiClient) -> None:
    first = ok(await api.post("/api/sessions", headers=keyed("new-1")), 201)
    again = ok(await api.post("/api/sessions", headers=keyed("new-1")), 201)
    assert again == first  # session_id and created_at
    assert await session_ids(api) == {first["session_id"]}
    assert ok(await api.post("/api/sessions"), 201)["session_id"] != first["session_id"]


async def test_concurrent_creates_with_one_key_make_one_session(api: ApiClient) -> None:
    answers = await asyncio.gather(
        *(api.post("/api/sessions", headers=keyed("new-1")) for _ in range(4))
    )
    bodies = [ok(answer, 201) for answer in answers]
    assert all(body == bodies[0] for body in bodies)
    assert await session_ids(api) == {bodies[0]["session_id"]}


async def test_a_session_key_belongs_to_the_client_that_sent_it(api: ApiClient) -> None:
    mine = ok(await api.post("/api/sessions", headers=keyed("new-1")), 201)
    transport = httpx.ASGITransport(app=api.app, client=("10.0.0.2", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://hera.test") as other:
        theirs = ok(await other.post("/api/sessions", headers=keyed("new-1")), 201)
        assert theirs["session_id"] != mine["session_id"]
        assert ok(await other.post("/api/sessions", headers=keyed("new-1")), 201) == theirs
    assert ok(await api.post("/api/sessions", headers=keyed("new-1")), 201) == mine
    assert await session_ids(api) == {mine["session_id"], theirs["session_id"]}


async def test_a_session_key_whose_session_was_deleted_makes_a_new_session(
    api: ApiClient,
) -> None:
    first = ok(await api.post("/api/sessions", headers=keyed("new-1")), 201)
    assert (await api.delete(f"/api/sessions/{first['session_id']}")).status_code == 204
    again = ok(await api.post("/api/sessions", headers=keyed("new-1")), 201)
    assert again["session_id"] != first["session_id"]
    assert (await api.get(f"/api/sessions/{again['session_id']}")).status_code == 200


@pytest.fixture(params=STACKS)
async def short_lived_api(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[ApiClient]:
    """A client over each stack whose sessions (and request keys) live 1 s."""
    async for client in open_client(
        stack_settings(request.param, tmp_path, request, session_ttl=1)
    ):
        yield client


async def test_a_session_key_answers_retries_for_one_ttl_after_its_first_use(
    short_lived_api: ApiClient,
) -> None:
    """A key is a window for retries: within SESSION_TTL of its first use it returns the same
    session; after that (the session kept alive by writes) it is a new request."""
    api = short_lived_api
    first = ok(await api.post("/api/sessions", headers=keyed("new-1")), 201)
    sid = first["session_id"]
    assert ok(await api.post("/api/sessions", headers=keyed("new-1")), 201) == first
    created = asyncio.get_running_loop().time()
    ttl = api.settings.session_ttl

    async def kept_alive_past_the_first_ttl() -> bool:
        # Each poll writes, so the session outlives the TTL counted from its creation.
        await sessions_of(api).commit(session_id=sid, changes=Changes().update("state", {"n": 1}))
        return asyncio.get_running_loop().time() - created > ttl + 0.3

    await eventually(kept_alive_past_the_first_ttl, within=ttl + 3.0, what="a second TTL")
    assert (await api.get(f"/api/sessions/{sid}")).status_code == 200
    again = ok(await api.post("/api/sessions", headers=keyed("new-1")), 201)
    assert again["session_id"] != sid


# ------------------------------------------------------------------------------ malformed keys
MALFORMED_KEYS = {
    "empty": "",
    "65 characters": "k" * 65,
    "a space": "turn 1",
    "unicode": "キー-1".encode(),  # sent as UTF-8 bytes; never a valid key
    "a path": "../x",
}


@pytest.mark.parametrize("key", MALFORMED_KEYS.values(), ids=MALFORMED_KEYS.keys())
async def test_a_malformed_key_is_422_and_stores_nothing(
    local_api: ApiClient, key: str | bytes
) -> None:
    sid = await new_session(local_api)
    before = await summary(local_api, sid)

    turn = await local_api.post(
        f"/api/sessions/{sid}/messages", json={"message": INTERVIEW[0]}, headers=keyed(key)
    )
    assert_json_error(turn, 422, "invalid_idempotency_key")
    photo = await local_api.post(
        f"/api/sessions/{sid}/photos/user",
        files={"file": ("me.jpg", jpeg_photo(), "image/jpeg")},
        headers=keyed(key),
    )
    assert_json_error(photo, 422, "invalid_idempotency_key")
    created = await local_api.post("/api/sessions", headers=keyed(key))
    assert_json_error(created, 422, "invalid_idempotency_key")

    assert await history(local_api, sid) == []
    assert await summary(local_api, sid) == before  # no image, same updated_at
    assert await session_ids(local_api) == {sid}


async def test_a_key_of_64_allowed_characters_is_accepted(local_api: ApiClient) -> None:
    key = "Ab9_-" * 12 + "Zz0_"
    assert len(key) == 64
    sid = await new_session(local_api)
    first = ok(await send(local_api, sid, INTERVIEW[0], key=key))
    assert ok(await send(local_api, sid, INTERVIEW[0], key=key)) == first
    assert ok(await local_api.post("/api/sessions", headers=keyed(key)), 201)["session_id"]


# ------------------------------------------------------------------------------ Gemini brain
GeminiFactory = Callable[..., Awaitable[ApiClient]]


@pytest.fixture(params=STACKS)
async def gemini_stack(
    request: pytest.FixtureRequest, tmp_path: Path, fake_gemini: FakeGemini
) -> AsyncIterator[GeminiFactory]:
    """Build a client over the stack with the Gemini brain on the fake server (settings
    overridable per test); every client is closed afterwards."""
    opened: list[AsyncIterator[ApiClient]] = []

    async def make(**overrides: Any) -> ApiClient:
        settings = stack_settings(
            request.param,
            tmp_path,
            request,
            llm_provider="gemini",
            gemini_api_key="test-key",
            gemini_base_url=fake_gemini.base_url,
            llm_timeout_seconds=10.0,
            llm_max_retries=1,
            **overrides,
        )
        clients = open_client(settings)
        opened.append(clients)
        return await anext(clients)

    yield make
    for clients in opened:
        async for _ in clients:  # runs the rest of open_client: lifespan exit and cleanup
            pass


async def test_a_repeated_message_makes_no_second_model_call(
    gemini_stack: GeminiFactory, fake_gemini: FakeGemini
) -> None:
    api = await gemini_stack()
    sid = await new_session(api)
    first = ok(await send(api, sid, "こんにちは", key="turn-1"))
    assert len(fake_gemini.requests) == 1
    assert ok(await send(api, sid, "こんにちは", key="turn-1")) == first
    assert len(fake_gemini.requests) == 1
    assert len(await history(api, sid)) == 2


async def test_a_failed_model_call_records_nothing_and_the_retry_runs_again(
    gemini_stack: GeminiFactory, fake_gemini: FakeGemini
) -> None:
    api = await gemini_stack()
    sid = await new_session(api)
    for _ in range(2):  # the first attempt and its one retry
        fake_gemini.enqueue(500, error_body(500, "INTERNAL"))
    failed = await send(api, sid, "こんにちは", key="turn-1")
    assert_json_error(failed, 502, "llm_error")
    assert len(fake_gemini.requests) == 2
    assert await history(api, sid) == []

    retried = ok(await send(api, sid, "こんにちは", key="turn-1"))
    assert len(fake_gemini.requests) == 3  # the model ran again
    assert len(retried["conversation_history"]) == 2
    assert ok(await send(api, sid, "こんにちは", key="turn-1")) == retried
    assert len(fake_gemini.requests) == 3


async def test_concurrent_sends_with_one_key_make_one_model_call(
    gemini_stack: GeminiFactory, fake_gemini: FakeGemini
) -> None:
    api = await gemini_stack()
    sid = await new_session(api)
    fake_gemini.latency = 0.5
    answers = await asyncio.gather(*(send(api, sid, "こんにちは", key="turn-1") for _ in range(2)))
    first, second = (ok(answer) for answer in answers)
    assert first == second
    assert len(fake_gemini.requests) == 1
    assert len(await history(api, sid)) == 2


SLOW_MODEL = 1.5  # seconds per model call: far longer than the 0.2 s the waiters wait


async def running_turn(
    api: ApiClient, sid: str, fake_gemini: FakeGemini, key: str
) -> asyncio.Task[httpx.Response]:
    """A turn sent with `key` that holds the session's lock inside a slow model call."""
    fake_gemini.latency = SLOW_MODEL
    task = asyncio.create_task(send(api, sid, "こんにちは", key=key))

    async def reached_the_model() -> bool:
        return len(fake_gemini.requests) == 1

    await eventually(reached_the_model, within=5.0, what="the first turn reaching the model")
    return task


async def test_a_retry_that_outwaits_the_lock_is_409_request_in_progress(
    gemini_stack: GeminiFactory, fake_gemini: FakeGemini
) -> None:
    api = await gemini_stack(lock_wait_seconds=0.2)
    sid = await new_session(api)
    running = await running_turn(api, sid, fake_gemini, "turn-1")
    try:
        retry = await send(api, sid, "こんにちは", key="turn-1")
        other, keyless = await asyncio.gather(
            send(api, sid, "東京に住んでいます。", key="turn-2"),
            send(api, sid, "東京に住んでいます。"),
        )
        assert not running.done()  # every answer above came while the first turn ran
    finally:
        first = await running
    assert_json_error(retry, 409, "request_in_progress")
    assert_json_error(other, 409, "session_busy")
    assert_json_error(keyless, 409, "session_busy")

    body = ok(first)
    assert ok(await send(api, sid, "こんにちは", key="turn-1")) == body
    assert len(fake_gemini.requests) == 1
    assert len(await history(api, sid)) == 2


async def test_every_retry_of_a_running_request_is_409_request_in_progress(
    gemini_stack: GeminiFactory, fake_gemini: FakeGemini
) -> None:
    api = await gemini_stack(lock_wait_seconds=0.2)
    sid = await new_session(api)
    running = await running_turn(api, sid, fake_gemini, "turn-1")
    try:
        answers = [await send(api, sid, "こんにちは", key="turn-1") for _ in range(2)]
        answers.append(await send(api, sid, "東京に住んでいます。", key="turn-2"))
        answers.append(await send(api, sid, "こんにちは", key="turn-1"))
        assert not running.done()
    finally:
        ok(await running)
    codes = [answer.json().get("code") for answer in answers]
    assert codes == [
        "request_in_progress",
        "request_in_progress",
        "session_busy",
        "request_in_progress",
    ]
    assert len(fake_gemini.requests) == 1


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (180, 120, 90)).save(out, "PNG")
    return out.getvalue()


async def test_a_repeated_partner_image_makes_no_second_image_model_call(
    gemini_stack: GeminiFactory, fake_gemini: FakeGemini
) -> None:
    api = await gemini_stack()
    sid = await new_session(api)
    fake_gemini.enqueue(200, json_text_body({"reply": "ありがとう", "extracted": COMPLETE_PROFILE}))
    assert ok(await send(api, sid, "全部お話しします"))["profile_complete"] is True
    fake_gemini.enqueue(200, image_body(_png()))
    path = f"/api/sessions/{sid}/generate-image"
    first = ok(await api.post(path, headers=keyed("partner-1")))
    assert len(fake_gemini.requests) == 2
    assert fake_gemini.requests[1].model == api.settings.gemini_image_model

    assert ok(await api.post(path, headers=keyed("partner-1"))) == first
    assert len(fake_gemini.requests) == 2
    _, state = await stored(api, sid)
    assert state["usage"]["partner_images"] == 1
