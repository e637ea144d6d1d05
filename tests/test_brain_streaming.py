"""Streaming brains: the pieces a brain hands its sink, joined, are the text it returns.

The Gemini brains stream through the real google-genai SDK against the fake server's
`:streamGenerateContent` (server-sent events, the answer's JSON text cut into pieces); the
offline brains cut their whole answers into `PIECE_CHARS`-character pieces. The helpers
(`TextTail`, `field_tail`) are tested on their own at the end.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from google import genai

from app.agents.brains import BrainError, BrainTimeout, FamilyLine
from app.brains.gemini.caller import TextTail, field_tail
from app.brains.gemini.family import GeminiFamilyBrain
from app.brains.gemini.interview import GeminiInterviewBrain
from app.brains.offline.family import OfflineFamilyBrain
from app.brains.offline.interview import OfflineInterviewBrain
from app.brains.pieces import PIECE_CHARS
from app.brains.slots import ModelSlots
from app.domain.family import Persona, TripInfo, TripPlan
from app.domain.profile import Profile
from tests.support.brains import shared_analyser
from tests.support.fake_gemini import (
    FakeGemini,
    error_body,
    json_text_body,
    max_tokens_body,
    safety_blocked_body,
    text_body,
)

MODEL = "gemini-test-model"
TIMEOUT = 2.0  # the client's default; each brain's per-request timeout is set below
BRAIN_TIMEOUT = 2.0
JSONDict = dict[str, Any]

TURN: JSONDict = {
    "profile": Profile.from_untrusted({"age": 32, "gender": "女性"}),
    "history": [{"speaker": "hera", "message": "お住まいはどちらですか?", "timestamp": "t1"}],
    "message": "東京に住んでいます",
    "missing_fields": ["location", "income_range", "children_info"],
}
LONG_REPLY = (
    "東京にお住まいなのですね。教えてくださってありがとうございます。"
    "差し支えなければ、年収のおおよその範囲を教えていただけますか?"
)
HERA_ANSWER: JSONDict = {"reply": LONG_REPLY, "extracted": {"location": "東京"}}
# A newline, quotes, a backslash, kana and an emoji (a surrogate pair once \u-escaped).
TRICKY_REPLY = 'こんにちは。\n「夢」は"家族"です\\あ😀 ok'

PERSONAS: list[Persona] = [
    Persona.model_validate(persona)
    for persona in [
        {"id": "partner", "kind": "partner", "name": "美咲", "role": "妻", "age": 31},
        {"id": "child_1", "kind": "child", "name": "陽翔", "role": "息子", "age": 6},
        {"id": "child_2", "kind": "child", "name": "さくら", "role": "娘", "age": 4},
    ]
]
FAMILY_TURN: JSONDict = {
    "profile": Profile.from_untrusted({"age": 33, "gender": "男性"}),
    "personas": PERSONAS,
    "history": [],
    "trip_info": TripInfo(),
    "message": "夏休みに沖縄へ行って、海で泳ぎたいな",
    "proposal_pending": False,
}
PLAN = TripPlan(destination="沖縄", activities=["海水浴", "水族館"])

InterviewFactory = Callable[..., GeminiInterviewBrain]
FamilyFactory = Callable[..., GeminiFamilyBrain]


def family_answer(lines: list[tuple[str, str]]) -> JSONDict:
    return {
        "lines": [{"speaker": speaker, "message": message} for speaker, message in lines],
        "trip_info": {"destination": "沖縄", "activities": ["海水浴"]},
        "proposal_answer": None,
    }


def brain_options(client: genai.Client, overrides: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {
        "client": client,
        "model": MODEL,
        "timeout_seconds": BRAIN_TIMEOUT,
        "max_retries": 2,
        "slots": ModelSlots(limit=4, max_queue=100),
        "backoff_base_seconds": 0.01,
    }
    return options | overrides


@pytest.fixture
def interview_brain(gemini_client: genai.Client) -> InterviewFactory:
    return lambda **overrides: GeminiInterviewBrain(**brain_options(gemini_client, overrides))


@pytest.fixture
def family_brain(gemini_client: genai.Client) -> FamilyFactory:
    return lambda **overrides: GeminiFamilyBrain(**brain_options(gemini_client, overrides))


class Lines:
    """A `LineSink` recording (member, piece) in the order they came."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def __call__(self, name: str, piece: str) -> None:
        self.events.append((name, piece))

    def joined(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, piece in self.events:
            out[name] = out.get(name, "") + piece
        return out

    def order(self) -> list[str]:
        """The members in the order they streamed, one entry per uninterrupted run."""
        runs: list[str] = []
        for name, _ in self.events:
            if not runs or runs[-1] != name:
                runs.append(name)
        return runs


# ================================================================ Gemini interview brain
async def test_reply_pieces_join_to_the_returned_reply_and_hold_no_json(
    fake_gemini: FakeGemini, interview_brain: InterviewFactory
) -> None:
    fake_gemini.enqueue(200, json_text_body(HERA_ANSWER))
    pieces: list[str] = []

    turn = await interview_brain().interview_turn(**TURN, on_reply=pieces.append)

    assert turn.reply == LONG_REPLY
    assert "".join(pieces) == LONG_REPLY
    # The answer text came in 8-character pieces: the reply arrived over many of them.
    assert len(fake_gemini.pieces) > 10
    assert len(pieces) > 5
    for piece in pieces:
        assert piece
        assert '"reply"' not in piece and "{" not in piece and "}" not in piece
        assert "extracted" not in piece and '東京"' not in piece
    assert [r.streamed for r in fake_gemini.requests] == [True]


@pytest.mark.parametrize("ascii_escapes", [True, False], ids=["escaped", "raw-utf8"])
async def test_one_character_pieces_cutting_escapes_still_join_to_the_exact_reply(
    fake_gemini: FakeGemini, interview_brain: InterviewFactory, ascii_escapes: bool
) -> None:
    answer = {"reply": TRICKY_REPLY, "extracted": {"location": "東京"}}
    wire = json.dumps(answer, ensure_ascii=ascii_escapes)
    if ascii_escapes:  # あ is \u3042 and 😀 the pair \ud83d\ude00 on the wire
        assert "\\u3042" in wire and "\\ud83d\\ude00" in wire
    assert "\\n" in wire and '\\"' in wire and "\\\\" in wire
    fake_gemini.stream_piece_chars = 1
    fake_gemini.enqueue(200, text_body(wire))
    pieces: list[str] = []

    turn = await interview_brain().interview_turn(**TURN, on_reply=pieces.append)

    assert len(fake_gemini.pieces) == len(wire)
    assert turn.reply == TRICKY_REPLY
    assert "".join(pieces) == TRICKY_REPLY
    # Never half an escape: no piece carries a JSON backslash sequence or a lone surrogate.
    for piece in pieces:
        assert "\\u" not in piece and "\\n" not in piece and '\\"' not in piece
        assert not any("\ud800" <= char <= "\udfff" for char in piece)
    assert "😀" in pieces


async def test_leading_blanks_of_the_reply_are_not_streamed(
    fake_gemini: FakeGemini, interview_brain: InterviewFactory
) -> None:
    fake_gemini.stream_piece_chars = 3
    fake_gemini.enqueue(200, json_text_body({"reply": " \n\t  ようこそ。年齢は?", "extracted": {}}))
    pieces: list[str] = []

    turn = await interview_brain().interview_turn(**TURN, on_reply=pieces.append)

    assert turn.reply == "ようこそ。年齢は?"
    assert "".join(pieces) == "ようこそ。年齢は?"
    # Six 3-character pieces of blanks (escaped on the wire) streamed nothing; then ようこ.
    assert pieces[0] == "ようこ"


async def test_trailing_blanks_of_the_reply_are_not_streamed(
    fake_gemini: FakeGemini, interview_brain: InterviewFactory
) -> None:
    fake_gemini.enqueue(200, json_text_body({"reply": "こんにちは。\n  ", "extracted": {}}))
    pieces: list[str] = []

    turn = await interview_brain().interview_turn(**TURN, on_reply=pieces.append)

    assert turn.reply == "こんにちは。"
    assert "".join(pieces) == turn.reply


async def test_extracted_comes_only_from_the_complete_answer_after_the_streamed_reply(
    fake_gemini: FakeGemini, interview_brain: InterviewFactory
) -> None:
    extracted = {
        "age": 35,
        "location": "東京都",
        "interests": ["読書", "旅行"],
        "user_personality_traits": {"openness": 0.75},
    }
    fake_gemini.stream_piece_chars = 1  # 35 is read as 3 first, 0.75 as 0.7, 東京都 as 東
    fake_gemini.enqueue(200, json_text_body({"reply": "はい。", "extracted": extracted}))
    pieces: list[str] = []

    turn = await interview_brain().interview_turn(**TURN, on_reply=pieces.append)

    assert turn.extracted == extracted
    assert turn.reply == "はい。" == "".join(pieces)


async def test_reply_pieces_arrive_while_the_answer_is_still_streaming(
    fake_gemini: FakeGemini, interview_brain: InterviewFactory
) -> None:
    fake_gemini.stream_interval = 0.01
    fake_gemini.enqueue(200, json_text_body(HERA_ANSWER))
    arrived: list[float] = []

    await interview_brain().interview_turn(
        **TURN, on_reply=lambda _: arrived.append(time.monotonic())
    )

    last_sent = fake_gemini.pieces[-1][0]
    assert arrived and arrived[0] < last_sent
    assert len([t for t in arrived if t < last_sent]) >= 5


async def test_only_a_request_with_on_reply_uses_the_streaming_endpoint(
    fake_gemini: FakeGemini, interview_brain: InterviewFactory
) -> None:
    brain = interview_brain()
    fake_gemini.enqueue(200, json_text_body(HERA_ANSWER))
    plain = await brain.interview_turn(**TURN)
    assert fake_gemini.requests[-1].streamed is False
    assert fake_gemini.requests[-1].path.endswith(f"/models/{MODEL}:generateContent")
    assert fake_gemini.pieces == []

    fake_gemini.enqueue(200, json_text_body(HERA_ANSWER))
    streamed = await brain.interview_turn(**TURN, on_reply=lambda _: None)
    assert fake_gemini.requests[-1].streamed is True
    assert fake_gemini.requests[-1].path.endswith(f"/models/{MODEL}:streamGenerateContent")

    assert plain == streamed
    assert len(fake_gemini.requests) == 2


# ------------------------------------------------------------------------------ failures
async def test_a_stream_failing_after_pieces_were_shown_is_not_retried(
    fake_gemini: FakeGemini, interview_brain: InterviewFactory
) -> None:
    fake_gemini.stream_fail_after = 2  # every attempt would fail the same way
    fake_gemini.responder = lambda _: (200, json_text_body(HERA_ANSWER))
    pieces: list[str] = []

    with pytest.raises(BrainError) as caught:
        await interview_brain(max_retries=2).interview_turn(**TURN, on_reply=pieces.append)

    assert not isinstance(caught.value, BrainTimeout)
    assert len(fake_gemini.requests) == 1
    # Two 8-character pieces were sent: '{"reply": "' and the reply's first five characters.
    assert [text for _, text in fake_gemini.pieces] == ['{"reply"', ': "' + LONG_REPLY[:5]]
    assert "".join(pieces) == LONG_REPLY[:5]


async def test_a_503_before_any_piece_is_retried_and_streams_once(
    fake_gemini: FakeGemini, interview_brain: InterviewFactory
) -> None:
    fake_gemini.enqueue(503, error_body(503, "UNAVAILABLE", "overloaded"))
    fake_gemini.enqueue(200, json_text_body(HERA_ANSWER))
    pieces: list[str] = []

    turn = await interview_brain().interview_turn(**TURN, on_reply=pieces.append)

    assert turn.reply == LONG_REPLY
    assert "".join(pieces) == LONG_REPLY
    assert [r.streamed for r in fake_gemini.requests] == [True, True]


async def test_a_safety_blocked_stream_is_a_brain_error_without_pieces(
    fake_gemini: FakeGemini, interview_brain: InterviewFactory
) -> None:
    fake_gemini.enqueue(200, safety_blocked_body())
    pieces: list[str] = []

    with pytest.raises(BrainError, match="blocked the prompt") as caught:
        await interview_brain().interview_turn(**TURN, on_reply=pieces.append)

    assert not isinstance(caught.value, BrainTimeout)
    assert pieces == []
    assert len(fake_gemini.requests) == 1


async def test_a_safety_finish_after_pieces_is_a_brain_error_without_retry(
    fake_gemini: FakeGemini, interview_brain: InterviewFactory
) -> None:
    wire = json.dumps(HERA_ANSWER, ensure_ascii=False)
    fake_gemini.enqueue(200, text_body(wire, finish_reason="SAFETY"))
    pieces: list[str] = []

    with pytest.raises(BrainError, match="finish reason SAFETY"):
        await interview_brain().interview_turn(**TURN, on_reply=pieces.append)

    # The last piece carries the finish reason: everything before it was shown.
    assert "".join(pieces) == LONG_REPLY
    assert len(fake_gemini.requests) == 1


async def test_a_max_tokens_truncated_stream_is_a_brain_error(
    fake_gemini: FakeGemini, interview_brain: InterviewFactory
) -> None:
    fake_gemini.enqueue(200, max_tokens_body('{"reply": "こんにちは、わたくし'))
    pieces: list[str] = []

    with pytest.raises(BrainError, match="MAX_TOKENS") as caught:
        await interview_brain().interview_turn(**TURN, on_reply=pieces.append)

    assert not isinstance(caught.value, BrainTimeout)
    assert "".join(pieces) == "こんにちは"  # the first two pieces; the third ends MAX_TOKENS
    assert len(fake_gemini.requests) == 1


async def test_a_stream_that_does_not_start_in_time_times_out_after_retrying(
    fake_gemini: FakeGemini, interview_brain: InterviewFactory
) -> None:
    fake_gemini.stream_first_delay = 1.0
    fake_gemini.responder = lambda _: (200, json_text_body(HERA_ANSWER))
    pieces: list[str] = []
    started = time.monotonic()

    with pytest.raises(BrainTimeout):
        await interview_brain(timeout_seconds=0.25, max_retries=1).interview_turn(
            **TURN, on_reply=pieces.append
        )

    assert time.monotonic() - started < 0.9
    assert pieces == []
    assert len(fake_gemini.requests) == 2  # nothing was shown, so the timeout was retried


async def test_a_stream_that_stalls_after_pieces_times_out_without_retry(
    fake_gemini: FakeGemini, interview_brain: InterviewFactory
) -> None:
    fake_gemini.stream_interval = 1.0  # the first piece at once, the next a second later
    fake_gemini.stream_piece_chars = 16
    fake_gemini.responder = lambda _: (200, json_text_body(HERA_ANSWER))
    pieces: list[str] = []

    with pytest.raises(BrainTimeout):
        await interview_brain(timeout_seconds=0.3, max_retries=2).interview_turn(
            **TURN, on_reply=pieces.append
        )

    assert "".join(pieces) == LONG_REPLY[:5]
    assert len(fake_gemini.requests) == 1


# ================================================================ Gemini family brain
@pytest.mark.parametrize("piece_chars", [1, 8])
async def test_family_turn_streams_each_members_first_line_under_their_name(
    fake_gemini: FakeGemini, family_brain: FamilyFactory, piece_chars: int
) -> None:
    spoken = [
        ("さくら", "うみ!\nおよぎたい"),
        ("妻", ' いいわね、"沖縄"にしましょう。'),  # the partner's unique role
        ("ヘラ", "わたくしも行きます"),  # not a member
        ("陽翔", "シュノーケルしたい!"),
        ("美咲", "二回目のせりふ"),  # a member's second line
    ]
    fake_gemini.stream_piece_chars = piece_chars
    fake_gemini.enqueue(200, json_text_body(family_answer(spoken)))
    lines = Lines()

    turn = await family_brain().family_turn(**FAMILY_TURN, on_line=lines)

    assert turn.lines == [  # kept in the order they were written (and shown)
        FamilyLine(speaker="さくら", message="うみ!\nおよぎたい"),
        FamilyLine(speaker="美咲", message='いいわね、"沖縄"にしましょう。'),
        FamilyLine(speaker="陽翔", message="シュノーケルしたい!"),
    ]
    assert lines.joined() == {line.speaker: line.message for line in turn.lines}
    assert lines.order() == ["さくら", "美咲", "陽翔"]  # as the model wrote them
    streamed = "".join(piece for _, piece in lines.events)
    assert "わたくし" not in streamed and "二回目" not in streamed
    assert {name for name, _ in lines.events} == {"美咲", "陽翔", "さくら"}
    assert [r.streamed for r in fake_gemini.requests] == [True]


async def test_a_role_two_members_share_is_not_streamed_nor_kept(
    fake_gemini: FakeGemini, family_brain: FamilyFactory
) -> None:
    twins = [
        *PERSONAS[:2],
        Persona.model_validate({"id": "child_2", "kind": "child", "name": "さくら", "role": "娘"}),
        Persona.model_validate({"id": "child_3", "kind": "child", "name": "あおい", "role": "娘"}),
    ]
    spoken = [("娘", "どっちの娘?"), ("息子", "ぼくも!"), ("あおい", "わたしも!")]
    fake_gemini.enqueue(200, json_text_body(family_answer(spoken)))
    lines = Lines()

    turn = await family_brain().family_turn(**{**FAMILY_TURN, "personas": twins}, on_line=lines)

    assert turn.lines == [
        FamilyLine(speaker="陽翔", message="ぼくも!"),
        FamilyLine(speaker="あおい", message="わたしも!"),
    ]
    assert lines.joined() == {"陽翔": "ぼくも!", "あおい": "わたしも!"}
    assert lines.order() == ["陽翔", "あおい"]


async def test_a_members_kept_line_is_streamed_even_after_a_blank_one(
    fake_gemini: FakeGemini, family_brain: FamilyFactory
) -> None:
    spoken = [("美咲", "  "), ("陽翔", "うん!"), ("美咲", "いいわね。")]
    fake_gemini.enqueue(200, json_text_body(family_answer(spoken)))
    lines = Lines()

    turn = await family_brain().family_turn(**FAMILY_TURN, on_line=lines)

    assert turn.lines == [
        FamilyLine(speaker="陽翔", message="うん!"),
        FamilyLine(speaker="美咲", message="いいわね。"),
    ]
    assert lines.joined() == {"美咲": "いいわね。", "陽翔": "うん!"}


async def test_family_turn_without_on_line_does_not_stream(
    fake_gemini: FakeGemini, family_brain: FamilyFactory
) -> None:
    fake_gemini.enqueue(200, json_text_body(family_answer([("美咲", "いいわね。")])))

    turn = await family_brain().family_turn(**FAMILY_TURN)

    assert turn.lines == [FamilyLine(speaker="美咲", message="いいわね。")]
    assert [r.streamed for r in fake_gemini.requests] == [False]


@pytest.mark.parametrize(("method", "key"), [("write_story", "story"), ("write_letter", "letter")])
async def test_story_and_letter_pieces_join_to_the_returned_text(
    fake_gemini: FakeGemini, family_brain: FamilyFactory, method: str, key: str
) -> None:
    text = '  \n夏の朝、「沖縄に行こう」と美咲が言いました。\n\n陽翔は"海だ!"と叫び😀、' * 3
    fake_gemini.stream_piece_chars = 5
    fake_gemini.enqueue(200, text_body(json.dumps({key: text})))  # \u escapes on the wire
    pieces: list[str] = []

    written = await getattr(family_brain(), method)(
        profile=Profile(), personas=PERSONAS, plan=PLAN, on_text=pieces.append
    )

    assert written == text.strip()
    assert "".join(pieces) == written
    assert len(pieces) > 10
    assert not any(f'"{key}"' in piece or "{" in piece or "\\" in piece for piece in pieces)
    assert [r.streamed for r in fake_gemini.requests] == [True]


# ================================================================ offline brains
async def test_offline_interview_streams_its_reply_in_pieces_and_answers_the_same() -> None:
    brain = OfflineInterviewBrain(shared_analyser())
    turn: JSONDict = {
        "profile": Profile(),
        "history": [],
        "message": "32歳の女性です。独身で、東京に住んでいます。",
        "missing_fields": Profile().missing_fields(),
    }
    pieces: list[str] = []

    streamed = await brain.interview_turn(**turn, on_reply=pieces.append)
    plain = await brain.interview_turn(**turn)

    assert "".join(pieces) == streamed.reply
    assert len(pieces) > 1
    assert all(1 <= len(piece) <= PIECE_CHARS for piece in pieces)
    reply = streamed.reply
    assert pieces == [reply[i : i + PIECE_CHARS] for i in range(0, len(reply), PIECE_CHARS)]
    assert plain == streamed
    assert streamed.extracted["age"] == 32 and streamed.extracted["location"] == "東京"


async def test_offline_family_turn_streams_each_line_under_its_speaker() -> None:
    brain = OfflineFamilyBrain()
    lines = Lines()

    streamed = await brain.family_turn(**FAMILY_TURN, on_line=lines)
    plain = await brain.family_turn(**FAMILY_TURN)

    assert [line.speaker for line in streamed.lines] == ["美咲", "陽翔", "さくら"]
    assert lines.joined() == {line.speaker: line.message for line in streamed.lines}
    assert lines.order() == ["美咲", "陽翔", "さくら"]
    assert all(1 <= len(piece) <= PIECE_CHARS for _, piece in lines.events)
    assert plain == streamed


@pytest.mark.parametrize("method", ["write_story", "write_letter"])
async def test_offline_story_and_letter_pieces_join_to_the_text(method: str) -> None:
    brain = OfflineFamilyBrain()
    pieces: list[str] = []
    story: JSONDict = {"profile": Profile(), "personas": PERSONAS, "plan": PLAN}

    streamed = await getattr(brain, method)(**story, on_text=pieces.append)
    plain = await getattr(brain, method)(**story)

    assert "".join(pieces) == streamed == plain
    assert len(pieces) >= len(streamed) // PIECE_CHARS > 10
    assert all(1 <= len(piece) <= PIECE_CHARS for piece in pieces)


# ================================================================ helpers
def test_text_tail_sends_only_the_new_end() -> None:
    pieces: list[str] = []
    tail = TextTail(pieces.append)

    for text in ["", "こん", "こん", "こんにちは", "こんにちは。\n", "こんにちは。\nはい"]:
        tail.update(text)

    # A blank at the end waits until text follows it (the whole text is stripped).
    assert pieces == ["こん", "にちは", "。", "\nはい"]


def test_text_tail_drops_leading_blanks_and_holds_back_trailing_ones() -> None:
    pieces: list[str] = []
    tail = TextTail(pieces.append)

    for text in [" ", " \n", " \n\t こ", " \n\t こんにちは  ", " \n\t こんにちは  です"]:
        tail.update(text)

    assert pieces == ["こ", "んにちは", "  です"]


def test_text_tail_ignores_non_strings_and_shrinking_text() -> None:
    pieces: list[str] = []
    tail = TextTail(pieces.append)

    for value in [None, 3, ["abc"], {"reply": "abc"}, "abcdef", "abc", None, "", "abcdefg"]:
        tail.update(value)

    assert pieces == ["abcdef", "g"]


def test_field_tail_streams_one_string_field_of_dict_partials_only() -> None:
    pieces: list[str] = []
    sink = field_tail("reply", pieces.append)
    assert sink is not None

    for partial in [
        None,
        "reply",
        ["reply", "abc"],
        42,
        {},
        {"extracted": {"reply": "no"}},
        {"reply": None},
        {"reply": 7},
        {"reply": "ab"},
        [{"reply": "abcd"}],
        {"reply": "abc", "extracted": {}},
    ]:
        sink(partial)

    assert pieces == ["ab", "c"]


def test_field_tail_without_a_sink_is_none() -> None:
    assert field_tail("reply", None) is None
