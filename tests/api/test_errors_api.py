"""Every non-2xx response is JSON {"error", "code"}; bad input loses nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.agents.brains import BrainError, BrainTimeout, InterviewTurn
from app.agents.errors import InterviewIncomplete, MessageTooLong, QuotaExceeded
from app.errors import AppError, NotFound, response_for
from app.logs import request_id_var
from app.repositories.base import SessionNotFound, StoreUnavailable
from app.routers.streaming import error_payload
from tests.api.conftest import ApiClient, open_client, stack_settings
from tests.support.api import assert_json_error, new_session
from tests.support.brains import TestBrains


class ExplodingBrain:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    async def interview_turn(self, **_: Any) -> InterviewTurn:
        raise self.exc


@pytest.fixture
async def switchable_api(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[ApiClient]:
    """file+disk on offline brains the test holds (and may swap)."""
    brains = TestBrains()
    settings = stack_settings("file-disk", tmp_path, request)
    async for client in open_client(settings, brains.replacements()):
        client.brains = brains
        yield client


def use_brain(api: ApiClient, brain: object) -> None:
    assert api.brains is not None
    api.brains.interview.inner = brain


@pytest.mark.parametrize(
    "bad_id",
    [
        "not-a-uuid",
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e",
        "0B6F1C9E-4A5B-4C1D-9E2F-3A4B5C6D7E8F",
        "x" * 300,
    ],
)
async def test_non_uuid_session_ids_are_404_json(local_api: ApiClient, bad_id: str) -> None:
    # Longer than any UUID: refused by the path's length rule (422); otherwise not found.
    expected = 422 if len(bad_id) > 36 else 404
    for method, path in (("GET", ""), ("GET", "/status"), ("POST", "/messages"), ("DELETE", "")):
        response = await local_api.request(
            method, f"/api/sessions/{bad_id}{path}", json={"message": "hi"}
        )
        assert_json_error(response, expected)


async def test_unknown_route_and_wrong_method_are_json(local_api: ApiClient) -> None:
    assert_json_error(await local_api.get("/api/nothing-here"), 404)
    assert_json_error(await local_api.put("/api/sessions"), 405)


async def test_malformed_json_body_is_a_json_400(local_api: ApiClient) -> None:
    sid = await new_session(local_api)
    response = await local_api.post(
        f"/api/sessions/{sid}/messages",
        content=b'{"message": "broken',
        headers={"content-type": "application/json"},
    )
    assert_json_error(response, 400, "invalid_json")


async def test_wrong_content_type_is_a_json_4xx(local_api: ApiClient) -> None:
    sid = await new_session(local_api)
    response = await local_api.post(
        f"/api/sessions/{sid}/messages",
        content=b"message=hi",
        headers={"content-type": "text/plain"},
    )
    assert 400 <= response.status_code < 500
    assert_json_error(response, response.status_code)


async def test_missing_and_blank_messages_are_422(local_api: ApiClient) -> None:
    sid = await new_session(local_api)
    assert_json_error(await local_api.post(f"/api/sessions/{sid}/messages", json={}), 422)
    body = assert_json_error(
        await local_api.post(f"/api/sessions/{sid}/messages", json={"message": " \n\t "}), 422
    )
    assert "message" in body["error"]
    history = (await local_api.get(f"/api/sessions/{sid}/status")).json()["conversation_history"]
    assert history == []


async def test_overlong_message_is_413_and_stores_nothing(local_api: ApiClient) -> None:
    sid = await new_session(local_api)
    limit = local_api.settings.max_message_chars
    response = await local_api.post(
        f"/api/sessions/{sid}/messages", json={"message": "あ" * (limit + 1)}
    )
    assert_json_error(response, 413, "message_too_long")
    ok = await local_api.post(f"/api/sessions/{sid}/messages", json={"message": "あ" * limit})
    assert ok.status_code == 200
    history = (await local_api.get(f"/api/sessions/{sid}/status")).json()["conversation_history"]
    assert len(history) == 2


async def test_oversized_request_body_is_413(local_api: ApiClient) -> None:
    sid = await new_session(local_api)
    huge = b'{"message": "' + b"a" * (local_api.settings.max_request_bytes + 10) + b'"}'
    response = await local_api.post(
        f"/api/sessions/{sid}/messages", content=huge, headers={"content-type": "application/json"}
    )
    assert_json_error(response, 413, "payload_too_large")


async def test_unknown_fields_in_the_body_are_ignored(local_api: ApiClient) -> None:
    sid = await new_session(local_api)
    response = await local_api.post(
        f"/api/sessions/{sid}/messages", json={"message": "32歳です", "admin": True}
    )
    assert response.status_code == 200


async def test_llm_timeout_is_504_and_commits_nothing_of_the_turn(
    switchable_api: ApiClient,
) -> None:
    sid = await new_session(switchable_api)
    await switchable_api.post(f"/api/sessions/{sid}/messages", json={"message": "32歳の女性です。"})
    before = (await switchable_api.get(f"/api/sessions/{sid}/status")).json()
    use_brain(switchable_api, ExplodingBrain(BrainTimeout("slow")))
    response = await switchable_api.post(
        f"/api/sessions/{sid}/messages", json={"message": "東京です"}
    )
    assert_json_error(response, 504, "llm_timeout")
    after = (await switchable_api.get(f"/api/sessions/{sid}/status")).json()
    # The client still has its text and can send it again; the store has no half turn.
    assert after == before


async def test_llm_failure_is_502_and_leaves_the_profile_untouched(
    switchable_api: ApiClient,
) -> None:
    sid = await new_session(switchable_api)
    use_brain(switchable_api, ExplodingBrain(BrainError("boom")))
    response = await switchable_api.post(
        f"/api/sessions/{sid}/messages", json={"message": "32歳です"}
    )
    assert_json_error(response, 502, "llm_error")
    after = (await switchable_api.get(f"/api/sessions/{sid}/status")).json()
    assert after["user_profile"] == {}
    assert after["conversation_history"] == []


async def test_unexpected_errors_are_json_500_without_details(switchable_api: ApiClient) -> None:
    sid = await new_session(switchable_api)
    use_brain(switchable_api, ExplodingBrain(RuntimeError("secret internals /etc/shadow")))
    response = await switchable_api.post(
        f"/api/sessions/{sid}/messages", json={"message": "こんにちは"}
    )
    body = assert_json_error(response, 500, "internal_error")
    assert "secret" not in response.text
    assert body["request_id"] == response.headers["x-request-id"]


async def test_health_touches_nothing_and_ready_pings_every_store(
    local_api: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = local_api.app.state.services
    touched: list[str] = []
    for store in (services.sessions, services.blobs, services.users):
        for method in ("ping", "load", "get_meta", "open", "stat"):
            if hasattr(store, method):
                original = getattr(store, method)

                async def spy(*a: Any, _m: str = method, _o: Any = original, **k: Any) -> Any:
                    touched.append(_m)
                    return await _o(*a, **k)

                monkeypatch.setattr(store, method, spy)
    assert (await local_api.get("/api/health")).json() == {"status": "ok"}
    assert touched == []
    ready = await local_api.get("/api/ready")
    assert touched.count("ping") == 3
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"sessions": "ok", "blobs": "ok", "users": "ok"}
    assert ready.json()["user_records"] == "disk"


async def test_ready_names_the_store_that_is_down(local_api: ApiClient) -> None:
    from app.repositories.base import StoreUnavailable

    async def down() -> None:
        raise StoreUnavailable("blobs", "test")

    local_api.app.state.services.blobs.ping = down
    response = await local_api.get("/api/ready")
    body = assert_json_error(response, 503, "not_ready")
    assert body["checks"] == {"sessions": "ok", "blobs": "down", "users": "ok"}
    assert (await local_api.get("/api/health")).status_code == 200


async def test_request_id_is_echoed_or_generated(local_api: ApiClient) -> None:
    echoed = await local_api.get("/api/health", headers={"x-request-id": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    generated = await local_api.get("/api/health", headers={"x-request-id": "bad id\n"})
    assert generated.headers["x-request-id"] != "bad id\n"
    assert len(generated.headers["x-request-id"]) == 32


async def test_unknown_sessions_leave_no_lock_files_behind(local_api: ApiClient) -> None:
    import uuid

    locks = local_api.settings.resolved_sessions_dir / ".locks"
    for _ in range(5):
        sid = str(uuid.uuid4())
        response = await local_api.post(f"/api/sessions/{sid}/messages", json={"message": "hi"})
        assert_json_error(response, 404, "session_not_found")
    sid = await new_session(local_api)
    await local_api.post(f"/api/sessions/{sid}/messages", json={"message": "32歳です"})
    assert (await local_api.delete(f"/api/sessions/{sid}")).status_code == 204
    assert list(locks.iterdir()) == []


@pytest.mark.parametrize(
    "error",
    [
        InterviewIncomplete(["age", "location"]),
        MessageTooLong(500),
        QuotaExceeded("partner_images", 2),
        StoreUnavailable("blobs", "down"),
        SessionNotFound("x"),
        NotFound("画像が見つかりません。", code="image_not_found"),
    ],
)
def test_a_streamed_error_event_carries_the_body_the_json_route_answers(error: Exception) -> None:
    response = response_for(error)
    assert response is not None
    assert error_payload(error) == json.loads(bytes(response.body))


def test_a_streamed_unexpected_error_is_the_json_500_body_with_a_request_id() -> None:
    token = request_id_var.set("req-1")
    try:
        body = error_payload(RuntimeError("secret internals"))
    finally:
        request_id_var.reset(token)
    assert body == {"error": AppError.message, "code": "internal_error", "request_id": "req-1"}
