"""The Gemini family brain, through the real google-genai SDK against a local fake server."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from google import genai

from app.agents.brains import BrainError, BrainTimeout, FamilyLine
from app.brains.gemini.family import GeminiFamilyBrain
from app.brains.slots import ModelSlots
from app.domain.family import Persona, TripInfo, TripPlan
from app.domain.profile import Profile
from tests.support.fake_gemini import (
    FakeGemini,
    RecordedRequest,
    error_body,
    json_text_body,
    safety_blocked_body,
)

MODEL = "gemini-test-model"
TIMEOUT = 0.5
PERSONAS: list[Persona] = [
    Persona.model_validate(persona)
    for persona in [
        {
            "id": "partner",
            "kind": "partner",
            "name": "美咲",
            "role": "妻",
            "gender": "女性",
            "age": 31,
            "speaking_style": "やわらかい口調で語尾に「〜ね」",
            "personality": "穏やかで聞き上手",
            "traits": {"openness": 0.7},
            "goals": "家族の時間を大切にしたい",
            "background": "保育士",
        },
        {
            "id": "child_1",
            "kind": "child",
            "name": "陽翔",
            "role": "息子",
            "gender": "男性",
            "age": 6,
            "speaking_style": "元気いっぱいの子ども言葉",
            "personality": "好奇心旺盛",
        },
        {
            "id": "child_2",
            "kind": "child",
            "name": "さくら",
            "role": "娘",
            "gender": "女性",
            "age": 4,
            "speaking_style": "甘えん坊な話し方",
            "personality": "やさしい",
        },
    ]
]
NAMES = ["美咲", "陽翔", "さくら"]
MESSAGE = "夏休みに沖縄へ行って、海で泳ぎたいな"
TURN: dict[str, Any] = {
    # A stored profile with a system field: the typed profile cannot carry it to the brain.
    "profile": Profile.from_untrusted(
        {"age": 33, "gender": "男性", "user_photo_path": "/secret/photo.png"}
    ),
    "personas": PERSONAS,
    "history": [
        {
            "speaker": "美咲",
            "role": "妻",
            "message": "今度の旅行、どこに行こうか?",
            "timestamp": "t1",
        },
        {"speaker": "user", "role": "user", "message": MESSAGE, "timestamp": "t2"},
    ],
    "trip_info": TripInfo(),
    "message": MESSAGE,
    "proposal_pending": False,
}
PLAN = TripPlan(destination="沖縄", activities=["海水浴", "水族館"])


def family_answer(
    lines: list[tuple[str, str]] | None = None,
    trip_info: Any = None,
    proposal_answer: Any = None,
) -> dict[str, Any]:
    spoken = lines if lines is not None else [(name, f"{name}のひとこと") for name in NAMES]
    return {
        "lines": [{"speaker": speaker, "message": message} for speaker, message in spoken],
        "trip_info": trip_info
        if trip_info is not None
        else {"destination": "沖縄", "activities": ["海水浴"]},
        "proposal_answer": proposal_answer,
    }


@pytest.fixture
def make_brain(gemini_client: genai.Client) -> Callable[..., GeminiFamilyBrain]:
    def build(**overrides: Any) -> GeminiFamilyBrain:
        options: dict[str, Any] = {
            "client": gemini_client,
            "model": MODEL,
            "timeout_seconds": TIMEOUT,
            "max_retries": 2,
            "slots": ModelSlots(limit=4, max_queue=100),
            "backoff_base_seconds": 0.01,
        }
        options.update(overrides)
        return GeminiFamilyBrain(**options)

    return build


BrainFactory = Callable[..., GeminiFamilyBrain]


def system_text(request: RecordedRequest) -> str:
    assert request.json is not None
    return str(request.json["systemInstruction"]["parts"][0]["text"])


def response_schema(request: RecordedRequest) -> dict[str, Any]:
    assert request.json is not None
    config = request.json["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    schema: dict[str, Any] = config["responseJsonSchema"]
    return schema


# ------------------------------------------------------------------------------ family turn
async def test_family_turn_is_one_request_with_personas_and_a_response_schema(
    fake_gemini: FakeGemini, make_brain: BrainFactory
) -> None:
    fake_gemini.enqueue(200, json_text_body(family_answer()))

    await make_brain().family_turn(**TURN)

    [request] = fake_gemini.requests
    assert re.fullmatch(rf"/v1(beta)?/models/{MODEL}:generateContent", request.path)
    schema = response_schema(request)
    assert schema["required"] == ["lines", "trip_info", "proposal_answer"]
    line = schema["properties"]["lines"]["items"]
    assert line["properties"]["speaker"]["enum"] == NAMES
    assert "$ref" not in str(schema)
    for persona in PERSONAS:
        for key in ("name", "role", "speaking_style", "personality"):
            assert getattr(persona, key) in request.prompt
    assert "家族" in system_text(request) and "proposal_answer" in system_text(request)


async def test_prompt_holds_history_trip_info_and_the_message_once_but_no_system_fields(
    fake_gemini: FakeGemini, make_brain: BrainFactory
) -> None:
    fake_gemini.enqueue(200, json_text_body(family_answer()))
    trip = TripInfo(destination="沖縄", activities=["シュノーケリング"])

    await make_brain().family_turn(**{**TURN, "trip_info": trip})

    [request] = fake_gemini.requests
    assert "今度の旅行、どこに行こうか" in request.prompt
    assert "シュノーケリング" in request.prompt
    assert request.prompt.count(MESSAGE) == 1
    assert "/secret/photo.png" not in str(request.json)


async def test_lines_come_back_in_the_order_the_model_wrote_them(
    fake_gemini: FakeGemini, make_brain: BrainFactory
) -> None:
    # The order a streamed turn showed them in: never reordered afterwards.
    spoken = [("さくら", "うみ!"), ("美咲", "いいわね。"), ("陽翔", "泳ぎたい!")]
    fake_gemini.enqueue(200, json_text_body(family_answer(spoken)))

    turn = await make_brain().family_turn(**TURN)

    assert turn.lines == [
        FamilyLine(speaker="さくら", message="うみ!"),
        FamilyLine(speaker="美咲", message="いいわね。"),
        FamilyLine(speaker="陽翔", message="泳ぎたい!"),
    ]
    assert len(fake_gemini.requests) == 1


async def test_unknown_speakers_blank_and_repeated_lines_are_dropped(
    fake_gemini: FakeGemini, make_brain: BrainFactory
) -> None:
    spoken = [
        ("ヘラ", "わたくしも行きます"),
        ("美咲", "  楽しみね。  "),
        ("user", "なりすまし"),
        ("陽翔", "   "),
        ("美咲", "二回目は捨てる"),
    ]
    fake_gemini.enqueue(200, json_text_body(family_answer(spoken)))

    turn = await make_brain().family_turn(**TURN)

    assert turn.lines == [FamilyLine(speaker="美咲", message="楽しみね。")]


async def test_a_line_signed_with_a_unique_role_goes_to_that_member(
    fake_gemini: FakeGemini, make_brain: BrainFactory
) -> None:
    fake_gemini.enqueue(200, json_text_body(family_answer([("娘", "いっしょにいく!")])))

    turn = await make_brain().family_turn(**TURN)

    assert turn.lines == [FamilyLine(speaker="さくら", message="いっしょにいく!")]


@pytest.mark.parametrize(
    "lines",
    [[], [{"speaker": "知らない人", "message": "こんにちは"}], "美咲: こんにちは", None],
    ids=["empty", "only-unknown-speakers", "not-a-list", "missing"],
)
async def test_an_answer_without_any_family_line_raises_brain_error(
    fake_gemini: FakeGemini, make_brain: BrainFactory, lines: Any
) -> None:
    body = {**family_answer(), "lines": lines}
    fake_gemini.enqueue(200, json_text_body(body))

    with pytest.raises(BrainError, match="no line from a family member"):
        await make_brain().family_turn(**TURN)


@pytest.mark.parametrize(
    ("trip_info", "expected"),
    [
        (
            {
                "destination": " 沖縄 ",
                "activities": ["海水浴", "水族館", "海水浴", "", 3, " 水族館 "],
            },
            {"destination": "沖縄", "activities": ["海水浴", "水族館"]},
        ),
        ({"destination": None, "activities": []}, {}),
        ({"destination": "null", "activities": "海水浴"}, {"activities": ["海水浴"]}),
        ({"destination": 42, "activities": {"a": 1}}, {}),
        ("沖縄", {}),
    ],
    ids=["dedup-and-strip", "nothing-said", "string-activity", "wrong-types", "not-an-object"],
)
async def test_trip_info_is_coerced_to_a_destination_string_and_unique_activities(
    fake_gemini: FakeGemini, make_brain: BrainFactory, trip_info: Any, expected: dict[str, Any]
) -> None:
    fake_gemini.enqueue(200, json_text_body(family_answer(trip_info=trip_info)))

    turn = await make_brain().family_turn(**TURN)

    assert turn.trip_info == expected


@pytest.mark.parametrize("answer", ["accept", "decline"])
async def test_proposal_answer_is_forced_to_none_when_no_proposal_is_pending(
    fake_gemini: FakeGemini, make_brain: BrainFactory, answer: str
) -> None:
    fake_gemini.enqueue(200, json_text_body(family_answer(proposal_answer=answer)))

    turn = await make_brain().family_turn(**{**TURN, "proposal_pending": False})

    assert turn.proposal_answer is None


@pytest.mark.parametrize(
    ("answer", "expected"),
    [("accept", "accept"), (" Decline ", "decline"), (None, None), ("maybe", None), (1, None)],
)
async def test_proposal_answer_counts_while_a_proposal_is_pending(
    fake_gemini: FakeGemini, make_brain: BrainFactory, answer: Any, expected: str | None
) -> None:
    fake_gemini.enqueue(200, json_text_body(family_answer(proposal_answer=answer)))

    turn = await make_brain().family_turn(**{**TURN, "proposal_pending": True})

    assert turn.proposal_answer == expected
    [request] = fake_gemini.requests
    assert "返事かどうかを判断する" in request.prompt


async def test_no_persona_with_a_name_fails_without_calling_the_model(
    fake_gemini: FakeGemini, make_brain: BrainFactory
) -> None:
    with pytest.raises(BrainError, match="no family member"):
        nameless = PERSONAS[0].model_copy(update={"name": " "})
        await make_brain().family_turn(**{**TURN, "personas": [nameless]})

    assert fake_gemini.requests == []


# ------------------------------------------------------------------------------ story, letter
@pytest.mark.parametrize(
    ("method", "key", "length_hint"),
    [("write_story", "story", "800〜1200"), ("write_letter", "letter", "600〜900")],
)
async def test_story_and_letter_are_one_request_each_with_plan_and_personas(
    fake_gemini: FakeGemini, make_brain: BrainFactory, method: str, key: str, length_hint: str
) -> None:
    fake_gemini.enqueue(200, json_text_body({key: "  沖縄の青い海で、家族は……  "}))

    text = await getattr(make_brain(), method)(
        profile=TURN["profile"], personas=PERSONAS, plan=PLAN
    )

    assert text == "沖縄の青い海で、家族は……"
    [request] = fake_gemini.requests
    schema = response_schema(request)
    assert schema["required"] == [key]
    assert schema["properties"] == {key: {"type": "string"}}
    for fragment in ("沖縄", "海水浴", "水族館", *NAMES):
        assert fragment in request.prompt
    assert length_hint in system_text(request)


@pytest.mark.parametrize("method", ["write_story", "write_letter"])
@pytest.mark.parametrize("answer", [{"story": "", "letter": "   "}, {}, {"story": 3, "letter": 3}])
async def test_an_empty_story_or_letter_raises_brain_error(
    fake_gemini: FakeGemini, make_brain: BrainFactory, method: str, answer: dict[str, Any]
) -> None:
    fake_gemini.enqueue(200, json_text_body(answer))

    with pytest.raises(BrainError, match="without a"):
        await getattr(make_brain(), method)(profile=Profile(), personas=PERSONAS, plan=PLAN)


# ------------------------------------------------------------------------------ failures
async def test_a_503_then_success_is_retried(
    fake_gemini: FakeGemini, make_brain: BrainFactory
) -> None:
    fake_gemini.enqueue(503, error_body(503, "UNAVAILABLE"))
    fake_gemini.enqueue(200, json_text_body(family_answer()))

    turn = await make_brain().family_turn(**TURN)

    assert [line.speaker for line in turn.lines] == NAMES
    assert len(fake_gemini.requests) == 2


async def test_a_blocked_prompt_raises_brain_error_without_retrying(
    fake_gemini: FakeGemini, make_brain: BrainFactory
) -> None:
    fake_gemini.enqueue(200, safety_blocked_body())

    with pytest.raises(BrainError, match="blocked"):
        await make_brain().write_letter(profile=Profile(), personas=PERSONAS, plan=PLAN)

    assert len(fake_gemini.requests) == 1


async def test_a_hanging_server_raises_brain_timeout(
    fake_gemini: FakeGemini, make_brain: BrainFactory
) -> None:
    fake_gemini.hang = True

    with pytest.raises(BrainTimeout):
        await make_brain(max_retries=0).family_turn(**TURN)

    assert len(fake_gemini.requests) == 1
