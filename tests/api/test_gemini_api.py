"""The interview over HTTP with the Gemini brain, through the real SDK and a fake Gemini."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.api.conftest import ApiClient, open_client, stack_settings
from tests.support.api import new_session
from tests.support.fake_gemini import FakeGemini, error_body, json_text_body

API_KEY = "test-secret-key-123"


@pytest.fixture
async def gemini_api(
    fake_gemini: FakeGemini, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[ApiClient]:
    settings = stack_settings(
        "file-disk",
        tmp_path,
        request,
        llm_provider="gemini",
        gemini_api_key=API_KEY,
        gemini_base_url=fake_gemini.base_url,
        gemini_model="gemini-test-flash",
        llm_timeout_seconds=1.0,
        llm_max_retries=1,
        log_level="DEBUG",
    )
    async for client in open_client(settings):
        yield client


async def test_one_turn_is_one_model_call_and_merges_safely(
    gemini_api: ApiClient, fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(
        200,
        json_text_body(
            {
                "reply": "32歳の女性で、東京にお住まいなのですね。",
                "extracted": {
                    "age": 32,
                    "gender": "女性",
                    "location": "東京",
                    "income_range": 12345,  # wrong type: coerced to text
                    "user_personality_traits": {"openness": 7.5, "extraversion": 0.8},
                    "user_photo_path": "/etc/passwd",  # a system field: ignored
                    "admin": True,
                },
            }
        ),
    )
    sid = await new_session(gemini_api)
    response = await gemini_api.post(
        f"/api/sessions/{sid}/messages", json={"message": "32歳の女性、東京です"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(fake_gemini.requests) == 1
    request = fake_gemini.requests[0]
    assert request.model == "gemini-test-flash"
    assert request.headers["x-goog-api-key"] == API_KEY
    assert body["reply"] == "32歳の女性で、東京にお住まいなのですね。"
    profile = body["user_profile"]
    assert profile["age"] == 32 and profile["location"] == "東京"
    assert profile["user_personality_traits"] == {"extraversion": 0.8}  # 7.5 is out of range
    assert "user_photo_path" not in profile and "admin" not in profile


async def test_a_hanging_model_is_504_and_commits_nothing(
    gemini_api: ApiClient, fake_gemini: FakeGemini
) -> None:
    sid = await new_session(gemini_api)
    fake_gemini.hang = True
    response = await gemini_api.post(
        f"/api/sessions/{sid}/messages", json={"message": "こんにちは"}
    )
    assert response.status_code == 504
    assert response.json()["code"] == "llm_timeout"
    fake_gemini.hang = False
    history = (await gemini_api.get(f"/api/sessions/{sid}/status")).json()["conversation_history"]
    assert history == []


async def test_a_503_is_retried_then_succeeds(
    gemini_api: ApiClient, fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(503, error_body(503, "UNAVAILABLE"))
    sid = await new_session(gemini_api)
    response = await gemini_api.post(
        f"/api/sessions/{sid}/messages", json={"message": "こんにちは"}
    )
    assert response.status_code == 200
    assert len(fake_gemini.requests) == 2


async def test_model_failure_after_retries_is_502(
    gemini_api: ApiClient, fake_gemini: FakeGemini
) -> None:
    for _ in range(2):
        fake_gemini.enqueue(500, error_body(500, "INTERNAL"))
    sid = await new_session(gemini_api)
    response = await gemini_api.post(
        f"/api/sessions/{sid}/messages", json={"message": "こんにちは"}
    )
    assert response.status_code == 502
    assert response.json()["code"] == "llm_error"
    assert "INTERNAL" not in response.text


async def test_the_api_key_and_message_never_reach_info_logs(
    gemini_api: ApiClient, fake_gemini: FakeGemini, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake_gemini.enqueue(500, error_body(500, "INTERNAL"))
    sid = await new_session(gemini_api)
    await gemini_api.post(f"/api/sessions/{sid}/messages", json={"message": "ひみつの話です"})
    assert any(r.name == "hera.access" for r in caplog.records)  # the logs were captured
    assert any("gemini" in r.getMessage() for r in caplog.records)
    assert all(API_KEY not in r.getMessage() for r in caplog.records)
    assert all(
        "ひみつの話" not in r.getMessage() for r in caplog.records if r.levelno >= logging.INFO
    )
