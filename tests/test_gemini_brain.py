"""The Gemini interview brain, through the real google-genai SDK against a local fake server."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any

import pytest
from google import genai

from app.agents.brains import BrainError, BrainTimeout
from app.brains.gemini.interview import GeminiInterviewBrain
from app.brains.slots import ModelSlots
from app.domain.profile import BIG_FIVE, Profile
from tests.support.fake_gemini import (
    FakeGemini,
    error_body,
    json_text_body,
    max_tokens_body,
    safety_blocked_body,
    text_body,
)

API_KEY = "test-key-7f3a9c0e-never-log-me"
MODEL = "gemini-test-model"
TIMEOUT = 0.5
MAX_RETRIES = 2
TURN: dict[str, Any] = {
    "profile": Profile.from_untrusted({"age": 32, "gender": "女性"}),
    "history": [
        {"speaker": "hera", "message": "こんにちは。お住まいはどちらですか?", "timestamp": "t1"},
        {"speaker": "user", "message": "東京に住んでいます", "timestamp": "t2"},
    ],
    "message": "東京に住んでいます",
    "missing_fields": ["location", "income_range", "children_info"],
}
HERA_ANSWER = {
    "reply": "東京にお住まいなのですね。差し支えなければ、年収を教えていただけますか?",
    "extracted": {"location": "東京"},
}

BrainFactory = Callable[..., GeminiInterviewBrain]


def schema_keywords(node: Any) -> set[str]:
    """Every keyword used anywhere in a JSON schema (property names are not keywords)."""
    if isinstance(node, list):
        return set().union(*(schema_keywords(item) for item in node))
    if not isinstance(node, dict):
        return set()
    found = set(node)
    for key, value in node.items():
        if key == "properties":
            found |= set().union(*(schema_keywords(v) for v in value.values()))
        else:
            found |= schema_keywords(value)
    return found


@pytest.fixture
def make_brain(gemini_client: genai.Client) -> BrainFactory:
    def build(**overrides: Any) -> GeminiInterviewBrain:
        options: dict[str, Any] = {
            "client": gemini_client,
            "model": MODEL,
            "timeout_seconds": TIMEOUT,
            "max_retries": MAX_RETRIES,
            "slots": ModelSlots(limit=8, max_queue=100),
            "backoff_base_seconds": 0.01,  # keeps retry tests fast; the policy is the same
        }
        options.update(overrides)
        return GeminiInterviewBrain(**options)

    return build


# ------------------------------------------------------------------------------ the request
async def test_request_carries_model_path_key_json_schema_and_japanese_system_instruction(
    fake_gemini: FakeGemini, make_brain: BrainFactory
) -> None:
    fake_gemini.enqueue(200, json_text_body(HERA_ANSWER))

    await make_brain().interview_turn(**TURN)

    [request] = fake_gemini.requests
    assert request.method == "POST"
    assert re.fullmatch(rf"/v1(beta)?/models/{MODEL}:generateContent", request.path)
    assert request.headers["x-goog-api-key"] == API_KEY
    assert request.json is not None
    config = request.json["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    schema = config["responseJsonSchema"]
    # Generated from `Profile`: plain (no references, no titles), the profile's vocabularies.
    assert schema["required"] == ["reply", "extracted"]
    assert set(schema["properties"]) == {"reply", "extracted"}
    assert schema["properties"]["reply"] == {"type": "string"}
    assert not schema_keywords(schema) & {"$ref", "$defs", "title"}
    extracted = schema["properties"]["extracted"]["properties"]
    assert "required" not in schema["properties"]["extracted"]
    assert extracted["relationship_status"]["enum"] == ["married", "partnered", "single", "other"]
    traits = extracted["user_personality_traits"]["properties"]
    assert set(traits) == set(BIG_FIVE)
    for trait in BIG_FIVE:
        assert traits[trait]["type"] == "number"
        assert (traits[trait]["minimum"], traits[trait]["maximum"]) == (0, 1)
    system = request.json["systemInstruction"]["parts"][0]["text"]
    assert "ヘラ" in system and "家族" in system


async def test_prompt_holds_profile_missing_fields_history_and_message_once(
    fake_gemini: FakeGemini, make_brain: BrainFactory
) -> None:
    await make_brain().interview_turn(**TURN)

    [request] = fake_gemini.requests
    assert request.json is not None
    prompt = request.json["contents"][-1]["parts"][0]["text"]
    assert '"age": 32' in prompt
    assert prompt.index("location") < prompt.index("income_range") < prompt.index("children_info")
    assert "お住まいはどちらですか" in prompt
    # The agent had already appended the current message to the history.
    assert prompt.count("東京に住んでいます") == 1


async def test_prompt_keeps_only_the_recent_history(
    fake_gemini: FakeGemini, make_brain: BrainFactory
) -> None:
    history = [{"speaker": "user", "message": f"発言{i:03d}"} for i in range(50)]

    await make_brain().interview_turn(**{**TURN, "history": history})

    [request] = fake_gemini.requests
    assert request.json is not None
    prompt = request.json["contents"][-1]["parts"][0]["text"]
    assert "発言049" in prompt and "発言030" in prompt
    assert "発言029" not in prompt


# ------------------------------------------------------------------------------ answers
async def test_successful_turn_makes_exactly_one_request_and_parses_reply_and_extracted(
    fake_gemini: FakeGemini, make_brain: BrainFactory
) -> None:
    fake_gemini.enqueue(200, json_text_body(HERA_ANSWER))

    turn = await make_brain().interview_turn(**TURN)

    assert turn.reply == HERA_ANSWER["reply"]
    assert turn.extracted == {"location": "東京"}
    assert len(fake_gemini.requests) == 1


async def test_extra_and_invalid_extracted_fields_are_passed_through_for_the_agent(
    fake_gemini: FakeGemini, make_brain: BrainFactory
) -> None:
    extracted = {"age": "thirty", "unknown_field": 1, "user_photo_path": "/etc/passwd"}
    fake_gemini.enqueue(200, json_text_body({"reply": "はい。", "extracted": extracted, "x": 1}))

    turn = await make_brain().interview_turn(**TURN)

    assert turn.reply == "はい。"
    assert turn.extracted == extracted


@pytest.mark.parametrize("extracted", [None, "location=東京", ["東京"], 3])
async def test_extracted_that_is_not_an_object_becomes_empty(
    fake_gemini: FakeGemini, make_brain: BrainFactory, extracted: object
) -> None:
    fake_gemini.enqueue(200, json_text_body({"reply": "はい。", "extracted": extracted}))

    turn = await make_brain().interview_turn(**TURN)

    assert turn.extracted == {}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (safety_blocked_body(), "blocked"),
        (max_tokens_body(), "MAX_TOKENS"),
        (text_body("申し訳ありません", finish_reason="SAFETY"), "SAFETY"),
        ({"candidates": []}, "no candidates"),
        (text_body("   "), "empty"),
        (text_body("これはJSONではありません"), "not valid JSON"),
        (json_text_body(["reply"]), "not an object"),
        (json_text_body({"reply": "", "extracted": {}}), "without a reply"),
        (json_text_body({"extracted": {"age": 3}}), "without a reply"),
    ],
    ids=[
        "safety-block",
        "max-tokens",
        "safety-finish",
        "no-candidates",
        "blank-text",
        "invalid-json",
        "json-array",
        "empty-reply",
        "missing-reply",
    ],
)
async def test_unusable_answer_raises_brain_error_without_retrying(
    fake_gemini: FakeGemini, make_brain: BrainFactory, body: dict[str, Any], reason: str
) -> None:
    fake_gemini.enqueue(200, body)

    with pytest.raises(BrainError, match=reason) as caught:
        await make_brain().interview_turn(**TURN)

    assert not isinstance(caught.value, BrainTimeout)
    assert len(fake_gemini.requests) == 1


# ------------------------------------------------------------------------------ failures
async def test_hanging_server_raises_brain_timeout(
    fake_gemini: FakeGemini, make_brain: BrainFactory
) -> None:
    fake_gemini.hang = True

    with pytest.raises(BrainTimeout):
        await make_brain(max_retries=0).interview_turn(**TURN)

    assert len(fake_gemini.requests) == 1


async def test_timeouts_are_retried_before_giving_up(
    fake_gemini: FakeGemini, make_brain: BrainFactory
) -> None:
    fake_gemini.hang = True

    with pytest.raises(BrainTimeout):
        await make_brain(max_retries=1).interview_turn(**TURN)

    assert len(fake_gemini.requests) == 2


async def test_503_then_success_succeeds_on_the_second_request(
    fake_gemini: FakeGemini, make_brain: BrainFactory
) -> None:
    fake_gemini.enqueue(503, error_body(503, "UNAVAILABLE", "overloaded"))
    fake_gemini.enqueue(200, json_text_body(HERA_ANSWER))

    turn = await make_brain().interview_turn(**TURN)

    assert turn.reply == HERA_ANSWER["reply"]
    assert len(fake_gemini.requests) == 2


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
async def test_transient_error_forever_gives_brain_error_after_all_retries(
    fake_gemini: FakeGemini, make_brain: BrainFactory, status: int
) -> None:
    fake_gemini.responder = lambda _: (status, error_body(status, "UNAVAILABLE"))

    with pytest.raises(BrainError, match=str(status)) as caught:
        await make_brain().interview_turn(**TURN)

    assert not isinstance(caught.value, BrainTimeout)
    assert len(fake_gemini.requests) == 1 + MAX_RETRIES


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_client_error_fails_at_once_without_retry(
    fake_gemini: FakeGemini, make_brain: BrainFactory, status: int
) -> None:
    fake_gemini.responder = lambda _: (status, error_body(status, "INVALID_ARGUMENT"))

    with pytest.raises(BrainError, match=f"HTTP {status}"):
        await make_brain().interview_turn(**TURN)

    assert len(fake_gemini.requests) == 1


async def test_unreachable_server_is_retried_then_raises_brain_error(
    fake_gemini: FakeGemini, make_brain: BrainFactory
) -> None:
    # A port that just stopped listening refuses connections at once.
    fake_gemini.stop()

    with pytest.raises(BrainError, match="after 2 attempt") as caught:
        await make_brain(max_retries=1).interview_turn(**TURN)

    assert not isinstance(caught.value, BrainTimeout)


async def test_model_slots_bound_concurrent_requests(
    fake_gemini: FakeGemini, make_brain: BrainFactory
) -> None:
    fake_gemini.latency = 0.05
    brain = make_brain(slots=ModelSlots(limit=2, max_queue=100))

    turns = await asyncio.gather(*(brain.interview_turn(**TURN) for _ in range(6)))

    assert len(turns) == 6 and len(fake_gemini.requests) == 6
    assert fake_gemini.max_in_flight == 2


# ------------------------------------------------------------------------------ logs
async def test_api_key_and_message_never_reach_the_logs(
    fake_gemini: FakeGemini, make_brain: BrainFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake_gemini.enqueue(503, error_body(503, "UNAVAILABLE"))
    fake_gemini.enqueue(400, error_body(400, "INVALID_ARGUMENT", "bad"))

    with pytest.raises(BrainError):
        await make_brain().interview_turn(**TURN)

    assert caplog.records, "the retry should have been logged"
    assert API_KEY not in caplog.text
    info_and_above = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert not any(TURN["message"] in line for line in info_and_above)
