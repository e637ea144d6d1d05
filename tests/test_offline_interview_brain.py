"""The offline Hera brain: Japanese parsing rules, short answers in context, replies, no state."""

from __future__ import annotations

import copy
import itertools
import re
import threading
from typing import Any

import pytest

from app.agents.brains import InterviewBrain, InterviewTurn
from app.brains.offline import interview_lexicon as lx
from app.brains.offline.interview import (
    THREAD_FROM_ENTRIES,
    OfflineInterviewBrain,
    Topic,
    compose_reply,
    parse_message,
    topic_of_question,
)
from app.brains.offline.japanese import JapaneseAnalyser
from app.domain.profile import Profile
from tests.support.brains import shared_analyser

JSON = dict[str, Any]
BIG_FIVE = {"openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism"}
JAPANESE = re.compile(r"[\u3041-\u3096\u30a1-\u30fa\u4e00-\u9fff]")

SINGLE_BASICS: JSON = {"age": 30, "gender": "女性", "relationship_status": "single"}
MARRIED_BASICS: JSON = {"age": 40, "gender": "男性", "relationship_status": "married"}


def brain() -> OfflineInterviewBrain:
    return OfflineInterviewBrain(shared_analyser())


def parse(message: str, topic: str | None = None, sub: str | None = None, **profile: Any) -> JSON:
    return parse_message(
        message,
        profile=Profile.from_untrusted(profile),
        topic=Topic(topic, sub),
        analyser=shared_analyser(),
    )


def missing(profile: JSON) -> list[str]:
    """The production completeness rule (the domain's, the one the agent runs)."""
    return Profile.from_untrusted(profile).missing_fields()


def assert_well_typed(extracted: JSON) -> None:
    if "age" in extracted:
        assert type(extracted["age"]) is int
    assert extracted.get("gender", "男性") in ("男性", "女性", "その他")
    assert extracted.get("relationship_status", "other") in (
        "married",
        "partnered",
        "single",
        "other",
    )
    for key in ("location", "income_range", "partner_face_description", "lifestyle"):
        assert isinstance(extracted.get(key, ""), str)
    traits = extracted.get("user_personality_traits", {})
    assert set(traits) <= BIG_FIVE
    assert all(isinstance(v, float) and 0 <= v <= 1 for v in traits.values())
    for key in ("current_partner", "ideal_partner"):
        partner = extracted.get(key, {})
        assert set(partner) <= {
            "name",
            "temperament",
            "appearance",
            "personality_traits",
            "hobbies",
            "speaking_style",
        }
        assert all(isinstance(partner[k], str) for k in partner.keys() & {"name", "temperament"})
    for child in extracted.get("children_info", []):
        assert set(child) <= {"name", "desired_gender"}
        assert child.get("desired_gender", "どちらでも") in ("男の子", "女の子", "どちらでも")


class Session:
    """One interview as the agent runs it: profile, history, the domain's merge and
    completeness rules (the agent's own, not a copy)."""

    def __init__(self) -> None:
        self.typed = Profile()
        self.history: list[JSON] = []
        self.turns: list[InterviewTurn] = []

    @property
    def profile(self) -> JSON:
        return self.typed.stored()

    async def say(self, brain: InterviewBrain, message: str) -> None:
        turn = await brain.interview_turn(
            profile=self.typed,
            history=copy.deepcopy(self.history),
            message=message,
            missing_fields=self.typed.missing_fields(),
        )
        assert_well_typed(turn.extracted)
        self.typed, _ = self.typed.merge(Profile.from_untrusted(turn.extracted))
        self.history += [
            {"speaker": "user", "message": message, "timestamp": "2025-01-01T00:00:00Z"},
            {"speaker": "hera", "message": turn.reply, "timestamp": "2025-01-01T00:00:01Z"},
        ]
        self.turns.append(turn)


async def run_interview(brain: InterviewBrain, script: list[str]) -> Session:
    session = Session()
    for message in script:
        if session.typed.complete:
            break
        await session.say(brain, message)
    return session


SCRIPTS = {
    "single woman, one topic per answer": [
        "３２歳の女性です。独身です。",
        "東京に住んでいます。",
        "年収は５００万円くらいです。",
        "社交的で好奇心旺盛ですが、少し心配性です。",
        "目が大きくて、黒髪の短髪で、笑顔が素敵な人がいいです。",
        "名前はゆうとで、優しくて明るい人が理想です。",
        "男の子と女の子が欲しいです。名前はたろうとはなこ。",
    ],
    "partnered woman giving short answers": [
        "女です。28才。彼氏がいます",
        "横浜に住んでます",
        "400万くらい",
        "人見知りだけど、まじめで計画的です",
        "彼は目が細くて、短髪で、眼鏡をかけています",
        "健太です",
        "穏やかで面白い人です",
        "女の子がいいな。名前はさくら",
    ],
    "married man answering several things at once": [
        "40歳の男性です。結婚しています。大阪在住で年収は800万円です。",
        "内向的で几帳面、穏やかな性格です。",
        "妻の名前は美咲で、優しくて家庭的です。丸顔で色白、髪はボブです。",
        "子どもは2人、長男 太郎、長女 花子",
    ],
    "everything in one message": [
        "32歳の男性で、妻がいます。東京在住、年収600万円。性格は社交的で几帳面です。"
        "妻の名前はさくらで、明るくて優しい性格です。見た目は小柄で黒髪のロング、目が大きいです。"
        "子どもは女の子が1人欲しくて、名前はひなたです。",
    ],
}


# --- the scripted interview -----------------------------------------------------------
@pytest.mark.parametrize("script", SCRIPTS.values(), ids=SCRIPTS.keys())
async def test_a_scripted_japanese_user_completes_the_profile_with_their_last_message(
    script: list[str],
) -> None:
    session = await run_interview(brain(), script)
    profile, turns = session.profile, session.turns

    assert missing(profile) == []
    assert len(script) <= 8 and len(turns) == len(script)  # every message read, none wasted
    assert all(turn.reply.strip() and JAPANESE.search(turn.reply) for turn in turns)
    assert lx.ALL_DONE in turns[-1].reply
    assert all(lx.ALL_DONE not in turn.reply for turn in turns[:-1])


async def test_the_scripted_single_user_ends_with_the_profile_she_described() -> None:
    session = await run_interview(brain(), SCRIPTS["single woman, one topic per answer"])
    profile = session.profile

    assert profile["age"] == 32
    assert profile["location"] == "東京"
    assert profile["income_range"] == "500万円"
    assert profile["ideal_partner"]["name"] == "ゆうと"
    assert profile["children_info"] == [
        {"desired_gender": "男の子", "name": "たろう"},
        {"desired_gender": "女の子", "name": "はなこ"},
    ]


# --- parser rules ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "message", ["32歳です", "32才です", "３２歳です", "年齢は32", "三十二歳です"]
)
def test_age_is_read_from_sai_sai_full_width_and_kanji_numbers(message: str) -> None:
    assert parse(message)["age"] == 32


def test_a_bare_number_is_an_age_only_after_the_age_question() -> None:
    assert parse("32", "basics") == {"age": 32}
    assert parse("３２です", "basics") == {"age": 32}
    assert "age" not in parse("32", "location")


def test_a_childs_or_partners_age_is_not_taken_for_the_users() -> None:
    assert "age" not in parse("5歳の娘がいます")
    assert parse("妻は30歳、私は32歳です")["age"] == 32


@pytest.mark.parametrize(
    "message", ["父は60歳です", "母が55歳で、まだ元気です", "友達の年齢は30歳"]
)
def test_a_relatives_or_friends_age_is_not_taken_for_the_users(message: str) -> None:
    assert "age" not in parse(message)
    assert parse(f"私は32歳です。{message}")["age"] == 32


def test_an_age_bracket_is_not_an_age() -> None:
    assert "age" not in parse("30代です", "basics")
    assert "age" not in parse("30代の男性です")
    assert parse("30です", "basics") == {"age": 30}


@pytest.mark.parametrize(
    ("message", "status"),
    [("先月結婚したばかりです", "married"), ("早く結婚したいです", None), ("結婚したら…", None)],
)
def test_a_wedding_told_in_the_past_means_married(message: str, status: str | None) -> None:
    assert parse(message).get("relationship_status") == status


@pytest.mark.parametrize(
    ("message", "gender"),
    [
        ("男です", "男性"),
        ("男性です", "男性"),
        ("女です", "女性"),
        ("28才の女性", "女性"),
        ("ノンバイナリーです", "その他"),
    ],
)
def test_gender_words_are_normalised(message: str, gender: str) -> None:
    assert parse(message)["gender"] == gender


@pytest.mark.parametrize(
    "message", ["彼女がいます", "長女です", "男の子が欲しい", "優しい女性が好き"]
)
def test_gender_is_not_read_from_words_about_other_people(message: str) -> None:
    assert "gender" not in parse(message)


@pytest.mark.parametrize(
    ("message", "status"),
    [
        ("既婚です", "married"),
        ("結婚しています", "married"),
        ("妻と二人暮らしです", "married"),
        ("交際中です", "partnered"),
        ("彼女がいます", "partnered"),
        ("彼氏がいます", "partnered"),
        ("パートナーがいます", "partnered"),
        ("付き合っている人がいます", "partnered"),
        ("独身です", "single"),
        ("未婚です", "single"),
        ("シングルです", "single"),
        ("結婚していません", "single"),
        ("彼女はいません", "single"),
        ("離婚して今は独身です", "single"),
        ("離婚しました", "other"),
    ],
)
def test_relationship_status_is_normalised(message: str, status: str) -> None:
    assert parse(message)["relationship_status"] == status


@pytest.mark.parametrize(
    ("message", "topic", "location"),
    [
        ("東京に住んでいます", None, "東京"),
        ("大阪在住です", None, "大阪"),
        ("神奈川県に住んでいます", None, "神奈川"),
        ("大阪府出身で、今は福岡に住んでいます", None, "福岡"),
        ("世田谷区に住んでいます", None, "世田谷区"),
        ("都内在住", None, "東京"),
        ("札幌です", "location", "札幌"),
        ("横浜市", "location", "横浜"),
        ("つくば", "location", "つくば"),
    ],
)
def test_location_is_read_from_residence_phrases_and_place_names(
    message: str, topic: str | None, location: str
) -> None:
    assert parse(message, topic)["location"] == location


def test_a_place_mentioned_in_passing_is_not_a_residence() -> None:
    assert "location" not in parse("大阪出身です")
    assert "location" not in parse("京都に旅行したいです")


@pytest.mark.parametrize(
    ("message", "topic", "income"),
    [
        ("年収500万です", None, "500万円"),
        ("500万円です", None, "500万円"),
        ("５００万円です", None, "500万円"),
        ("年収は五百万円くらい", None, "500万円"),
        ("年収は600万円から700万円くらい", None, "600〜700万円"),
        ("年収は1000万円以上", None, "1000万円以上"),
        ("500", "income_range", "500万円"),
        ("450万くらい", "income_range", "450万円"),
        ("秘密です", "income_range", "非公開"),
    ],
)
def test_income_is_read_in_man_yen(message: str, topic: str | None, income: str) -> None:
    assert parse(message, topic)["income_range"] == income


def test_money_that_is_not_an_income_is_ignored() -> None:
    assert "income_range" not in parse("貯金は300万円です")
    assert "income_range" not in parse("300万円の車が欲しい")


@pytest.mark.parametrize(
    ("message", "trait", "high"),
    [
        ("社交的です", "extraversion", True),
        ("外向的です", "extraversion", True),
        ("内向的です", "extraversion", False),
        ("人見知りです", "extraversion", False),
        ("好奇心が強いです", "openness", True),
        ("新しいことが好きです", "openness", True),
        ("几帳面です", "conscientiousness", True),
        ("真面目で計画的です", "conscientiousness", True),
        ("優しいとよく言われます", "agreeableness", True),
        ("思いやりがあって協調性があります", "agreeableness", True),
        ("心配性です", "neuroticism", True),
        ("緊張しやすいです", "neuroticism", True),
        ("落ち着いています", "neuroticism", False),
        ("穏やかです", "neuroticism", False),
    ],
)
def test_personality_keywords_become_big_five_scores(message: str, trait: str, high: bool) -> None:
    traits = parse(message, "user_personality_traits")["user_personality_traits"]

    assert (traits[trait] > 0.5) is high
    assert all(0 <= v <= 1 for v in traits.values())


def test_only_the_traits_mentioned_are_extracted() -> None:
    traits = parse("社交的で几帳面です")["user_personality_traits"]

    assert set(traits) == {"extraversion", "conscientiousness"}


def test_negation_and_intensity_shift_a_trait_score() -> None:
    def score(message: str) -> float:
        value: float = parse(message)["user_personality_traits"]["extraversion"]
        return value

    assert parse("心配性ではないです")["user_personality_traits"]["neuroticism"] < 0.5
    assert score("人見知りしない") > 0.5
    assert score("とても社交的") > score("社交的") > score("少し社交的") > 0.5


def test_partner_details_go_to_current_partner_when_married() -> None:
    extracted = parse(
        "妻の花子はとても穏やかで、関西弁を話します。趣味は料理と映画鑑賞です", **MARRIED_BASICS
    )

    partner = extracted["current_partner"]
    assert partner["name"] == "花子"
    assert partner["temperament"] == "穏やか"
    assert partner["speaking_style"] == "関西弁"
    assert partner["hobbies"] == ["料理", "映画鑑賞"]
    assert "ideal_partner" not in extracted


def test_partner_details_go_to_ideal_partner_when_single_or_unknown() -> None:
    assert parse("理想は優しくて明るい人です", **SINGLE_BASICS)["ideal_partner"]["temperament"] == (
        "優しい、明るい"
    )
    assert (
        parse("背が高くて眼鏡をかけた人がいい")["ideal_partner"]["appearance"] == "背が高い、眼鏡"
    )


@pytest.mark.parametrize(
    ("message", "name"),
    [
        ("名前は花子です", "花子"),
        ("花子さんです", "花子"),
        ("名前ははなこ", "はなこ"),
        ("名前は健太で、明るい", "健太"),
    ],
)
def test_partner_names_are_read_without_honorifics_or_copulas(message: str, name: str) -> None:
    assert parse(message, "partner")["ideal_partner"]["name"] == name


def test_a_face_answer_becomes_the_face_description_and_fills_the_looks() -> None:
    extracted = parse("丸顔で二重、優しそうな目をしています", "partner_face_description")

    assert extracted["partner_face_description"] == "丸顔で二重、優しそうな目をしています"
    assert extracted["ideal_partner"] == {"appearance": "丸顔、二重"}


def test_a_face_mentioned_unasked_is_described_from_its_own_clause() -> None:
    extracted = parse(
        "妻の名前はさくらで、明るい性格です。見た目は小柄で黒髪のロング", **MARRIED_BASICS
    )

    assert extracted["partner_face_description"] == "小柄で黒髪のロング"
    assert extracted["current_partner"]["name"] == "さくら"


@pytest.mark.parametrize(
    ("message", "children"),
    [
        (
            "男の子と女の子が欲しい。名前はたろうとはなこ",
            [
                {"desired_gender": "男の子", "name": "たろう"},
                {"desired_gender": "女の子", "name": "はなこ"},
            ],
        ),
        (
            "子どもは2人、長男 太郎、長女 花子",
            [
                {"desired_gender": "男の子", "name": "太郎"},
                {"desired_gender": "女の子", "name": "花子"},
            ],
        ),
        ("娘のさくら", [{"desired_gender": "女の子", "name": "さくら"}]),
        ("息子の名前はゆうとにしたいです", [{"desired_gender": "男の子", "name": "ゆうと"}]),
        ("どちらでもいいです。名前はひかり", [{"desired_gender": "どちらでも", "name": "ひかり"}]),
        (
            "男の子が２人欲しい。名前は太郎と次郎",
            [
                {"desired_gender": "男の子", "name": "太郎"},
                {"desired_gender": "男の子", "name": "次郎"},
            ],
        ),
        ("ひとみとまこと", [{"name": "ひとみ"}, {"name": "まこと"}]),
    ],
)
def test_children_are_read_with_desired_gender_and_name(message: str, children: list[JSON]) -> None:
    assert parse(message, "children_info")["children_info"] == children


def test_a_child_wish_is_read_even_in_a_sentence_about_the_user() -> None:
    assert parse("私は女の子が欲しいです")["children_info"] == [{"desired_gender": "女の子"}]


def stored_children(message: str, known: list[JSON]) -> list[JSON]:
    """The children as the agent stores them: the brain's news merged by the profile's rule."""
    profile = Profile.from_untrusted({"children_info": known})
    news = parse(message, "children_info", children_info=known)
    merged, _ = profile.merge(Profile.from_untrusted(news))
    return list(merged.stored()["children_info"])


def test_child_follow_ups_complete_the_children_named_before() -> None:
    named = [{"name": "ひとみ"}, {"name": "まこと"}]
    gendered = [{"desired_gender": "男の子"}, {"desired_gender": "女の子"}]

    assert stored_children("まことは男の子、ひとみは女の子", named) == [
        {"name": "ひとみ", "desired_gender": "女の子"},
        {"name": "まこと", "desired_gender": "男の子"},
    ]
    assert stored_children("たろうとはなこです", gendered) == [
        {"desired_gender": "男の子", "name": "たろう"},
        {"desired_gender": "女の子", "name": "はなこ"},
    ]


def test_another_child_is_added_once_and_a_name_finds_its_gender() -> None:
    boy = [{"desired_gender": "男の子"}]
    assert stored_children("女の子も欲しいです", boy) == [
        {"desired_gender": "男の子"},
        {"desired_gender": "女の子"},
    ]
    assert stored_children("女の子も欲しいです。名前はさくら", boy) == [
        {"desired_gender": "男の子"},
        {"desired_gender": "女の子", "name": "さくら"},
    ]


def test_a_message_with_nothing_recognisable_extracts_nothing() -> None:
    assert parse("こんにちは、よろしくお願いします") == {}


# --- short answers in context -----------------------------------------------------------
async def test_short_answers_are_read_in_the_light_of_the_last_hera_question() -> None:
    shared_brain = brain()

    async def answer(question_field: str, message: str, profile: JSON) -> JSON:
        known = Profile.from_untrusted(profile)
        question = compose_reply(Profile(), known, [question_field])
        history = [{"speaker": "hera", "message": question, "timestamp": "t"}]
        turn = await shared_brain.interview_turn(
            profile=known, history=history, message=message, missing_fields=missing(profile)
        )
        return turn.extracted

    traits_asked = {**SINGLE_BASICS, "location": "東京", "income_range": "500万円"}
    partner_asked = {
        **traits_asked,
        "user_personality_traits": {"openness": 0.8, "extraversion": 0.7},
        "partner_face_description": "丸顔",
    }

    assert await answer("age", "32", {}) == {"age": 32}
    assert await answer("location", "福岡です", SINGLE_BASICS) == {"location": "福岡"}
    assert await answer("ideal_partner", "花子です", partner_asked) == {
        "ideal_partner": {"name": "花子"}
    }
    as_partner = await answer("ideal_partner", "優しくて明るい", partner_asked)
    as_user = await answer("user_personality_traits", "優しくて明るい", traits_asked)
    assert as_partner["ideal_partner"]["temperament"] == "優しい、明るい"
    assert "user_personality_traits" not in as_partner
    assert set(as_user) == {"user_personality_traits"}


async def test_the_last_hera_question_wins_over_the_first_missing_field() -> None:
    history = [{"speaker": "hera", "message": "どちらにお住まいですか？", "timestamp": "t"}]

    turn = await brain().interview_turn(
        profile=Profile(), history=history, message="つくば", missing_fields=missing({})
    )

    assert turn.extracted == {"location": "つくば"}


async def test_the_first_missing_field_gives_the_context_before_hera_has_asked() -> None:
    turn = await brain().interview_turn(
        profile=Profile.from_untrusted(SINGLE_BASICS),
        history=[],
        message="福岡",
        missing_fields=missing(SINGLE_BASICS),
    )

    assert turn.extracted == {"location": "福岡"}


@pytest.mark.parametrize(
    "field",
    [
        "age",
        "location",
        "income_range",
        "user_personality_traits",
        "partner_face_description",
        "ideal_partner",
        "current_partner",
        "children_info",
    ],
)
def test_hera_recognises_each_of_her_own_questions(field: str) -> None:
    expected = {"age": "basics", "ideal_partner": "partner", "current_partner": "partner"}
    profile = Profile.from_untrusted({} if field == "age" else MARRIED_BASICS)
    reply = compose_reply(Profile(location="東京"), profile, [field])

    assert topic_of_question(reply).field == expected.get(field, field)


def test_a_question_about_one_partner_detail_is_recognised_as_that_detail() -> None:
    profile = {**SINGLE_BASICS, "ideal_partner": {"name": "花子", "appearance": "黒髪"}}

    topic = topic_of_question(
        compose_reply(Profile(), Profile.from_untrusted(profile), ["ideal_partner"])
    )

    assert topic == Topic("partner", "temperament")


# --- replies ----------------------------------------------------------------------------
async def test_the_reply_asks_about_the_first_missing_field() -> None:
    shared_brain = brain()
    profile = dict(SINGLE_BASICS)

    turn = await shared_brain.interview_turn(
        profile=Profile.from_untrusted(profile),
        history=[],
        message="よろしくお願いします",
        missing_fields=missing(profile),
    )

    assert turn.extracted == {}
    assert "お住まい" in turn.reply
    assert "年収" not in turn.reply


async def test_age_gender_and_status_are_asked_in_one_question() -> None:
    first = await brain().interview_turn(
        profile=Profile(), history=[], message="こんにちは", missing_fields=missing({})
    )
    after_age = await brain().interview_turn(
        profile=Profile(), history=[], message="32歳の女性です", missing_fields=missing({})
    )

    assert all(word in first.reply for word in ("年齢", "性別", "ご結婚"))
    assert first.reply.count("？") == 1
    assert "32歳の女性" in after_age.reply
    assert "ご結婚" in after_age.reply
    assert "年齢" not in after_age.reply


async def test_the_reply_says_all_is_collected_and_asks_nothing_when_complete() -> None:
    profile = {
        **SINGLE_BASICS,
        "location": "東京",
        "income_range": "500万円",
        "user_personality_traits": {"openness": 0.8, "neuroticism": 0.2},
        "partner_face_description": "丸顔",
        "ideal_partner": {"name": "花子", "temperament": "優しい", "appearance": "黒髪"},
    }

    turn = await brain().interview_turn(
        profile=Profile.from_untrusted(profile),
        history=[],
        message="娘のさくら",
        missing_fields=missing(profile),
    )

    assert lx.ALL_DONE in turn.reply
    assert "？" not in turn.reply
    assert "さくらちゃん" in turn.reply


# --- no state, no mutation, fast ----------------------------------------------------------
async def test_one_brain_shared_by_interleaved_sessions_answers_like_separate_brains() -> None:
    scripts = list(SCRIPTS.values())[:3]
    separate = [await run_interview(brain(), script) for script in scripts]

    shared = brain()
    sessions = [Session() for _ in scripts]
    for step in range(max(map(len, scripts))):  # turn 1 of each session, then turn 2 ...
        for session, script in zip(sessions, scripts, strict=True):
            if step < len(script) and missing(session.profile):
                await session.say(shared, script[step])

    assert [s.profile for s in sessions] == [s.profile for s in separate]
    assert [s.history for s in sessions] == [s.history for s in separate]
    assert not hasattr(shared, "__dict__")


async def test_the_brain_leaves_its_inputs_untouched() -> None:
    profile = Profile.from_untrusted({**SINGLE_BASICS, "children_info": [{"name": "ひとみ"}]})
    history = [{"speaker": "hera", "message": "お子さまについて教えてください。", "timestamp": "t"}]
    before = copy.deepcopy((profile.stored(), history))

    await brain().interview_turn(
        profile=profile, history=history, message="ひとみは女の子", missing_fields=["children_info"]
    )

    assert (profile.stored(), history) == before


# --- reading real Japanese (issue 17) ---------------------------------------------------------
def test_a_place_after_a_number_is_read_without_the_numbers_tail() -> None:
    extracted = parse("貯金は200万で品川区に住んでる")

    assert extracted == {"location": "品川区"}


async def test_the_reply_repeats_only_the_place_that_was_stored() -> None:
    turn = await brain().interview_turn(
        profile=Profile.from_untrusted(SINGLE_BASICS),
        history=[],
        message="貯金は200万で品川区に住んでる",
        missing_fields=missing(SINGLE_BASICS),
    )

    assert "品川区にお住まい" in turn.reply
    assert "万で" not in turn.reply


async def test_an_uncertain_place_is_asked_back_and_stored_only_once_confirmed() -> None:
    session = Session()
    session.typed = Profile.from_untrusted(SINGLE_BASICS)
    shared = brain()

    await session.say(shared, "梅田に住んでる")
    await session.say(shared, "はい、そうです")

    first, second = session.turns
    assert "location" not in first.extracted
    assert "「梅田」でよろしいですか" in first.reply
    assert second.extracted.get("location") == "梅田"


@pytest.mark.parametrize(
    ("message", "face"),
    [
        ("相手の顔の特徴は、切れ長の目です", "切れ長の目"),
        ("見た目は、黒髪のショートで目がぱっちりしてる人", "黒髪のショートで目がぱっちりしてる人"),
    ],
)
def test_a_face_description_keeps_no_grammar_around_it(message: str, face: str) -> None:
    assert parse(message, "partner_face_description")["partner_face_description"] == face


@pytest.mark.parametrize(
    ("message", "genders"),
    [
        ("子ども3人（男2女1）", ["男の子", "男の子", "女の子"]),
        ("子供は二人、男女一人ずつ", ["男の子", "女の子"]),
        ("息子が二人と娘が一人いたら楽しそう", ["男の子", "男の子", "女の子"]),
        ("3人の娘がいたらにぎやか", ["女の子", "女の子", "女の子"]),
        ("双子の女の子が夢です", ["女の子", "女の子"]),
    ],
)
def test_children_given_as_a_count_with_genders_become_one_child_each(
    message: str, genders: list[str]
) -> None:
    children = parse(message, "children_info")["children_info"]

    assert [c["desired_gender"] for c in children] == genders


@pytest.mark.parametrize(
    ("message", "trait", "high"),
    [
        ("頑張り屋です", "conscientiousness", True),
        ("マイペースです", "agreeableness", False),
        ("人見知りです", "extraversion", False),
        ("ポジティブです", "neuroticism", False),
        ("きちょうめんってよく言われる", "conscientiousness", True),
        ("寂しがり屋です", "neuroticism", True),
    ],
)
def test_everyday_self_descriptions_give_big_five_scores(
    message: str, trait: str, high: bool
) -> None:
    traits = parse(message, "user_personality_traits")["user_personality_traits"]

    assert (traits[trait] > 0.5) is high


@pytest.mark.parametrize(
    ("message", "age"),
    [("三十二歳です", 32), ("３２歳です", 32), ("四十五歳の男性", 45), ("33さいです", 33)],
)
def test_kanji_and_full_width_ages_are_read(message: str, age: int) -> None:
    assert parse(message)["age"] == age


def test_a_kanji_number_inside_a_word_is_not_a_number() -> None:
    assert parse("一人暮らしです") == {"lifestyle": "一人暮らし"}


@pytest.mark.parametrize(
    ("known", "message", "field", "value"),
    [
        ({"location": "東京"}, "やっぱり大阪に引っ越しました", "location", "大阪"),
        ({"income_range": "500万円"}, "年収は600万に上がりました", "income_range", "600万円"),
        ({"age": 32}, "ごめんなさい、32歳じゃなくて33歳でした", "age", 33),
        (
            {"income_range": "400万円"},
            "年収は去年までは400万でしたが、今は520万です",
            "income_range",
            "520万円",
        ),
        (
            {"location": "東京"},
            "以前は東京に住んでいましたが、今は福岡に住んでいます",
            "location",
            "福岡",
        ),
    ],
)
async def test_a_correction_replaces_the_stored_value(
    known: JSON, message: str, field: str, value: object
) -> None:
    profile = {**SINGLE_BASICS, **known}
    session = Session()
    session.typed = Profile.from_untrusted(profile)

    await session.say(brain(), message)

    assert session.profile[field] == value


@pytest.mark.parametrize(
    "message",
    ["東京には住んでいません", "東京に住んでないです", "昔、仙台に住んでいたことがあります"],
)
def test_a_denied_or_past_residence_is_never_stored(message: str) -> None:
    assert "location" not in parse(message, "location")


def test_a_denied_place_gives_way_to_the_place_that_is_meant() -> None:
    assert parse("東京じゃなくて、横浜に住んでます")["location"] == "横浜"


@pytest.mark.parametrize(
    "message", ["大阪には住んでないです、奈良です", "昔は札幌に住んでいました。今は奈良です"]
)
def test_an_answer_after_a_denied_or_past_residence_is_the_place(message: str) -> None:
    assert parse(message, "location")["location"] == "奈良"
    assert "location" not in parse(message)  # not asked: no residence verb names 奈良


async def test_an_unanswered_question_is_not_repeated_word_for_word() -> None:
    session = Session()
    shared = brain()
    chatter = [
        "こんにちは",
        "今日は雨ですね",
        "趣味はカメラです",
        "よろしくね",
        "うーん",
        "そうですね",
    ]

    for message in chatter:
        await session.say(shared, message)

    questions = [_question_of(t.reply) for t in session.turns]
    topics = [topic_of_question(t.reply).field for t in session.turns]
    assert all(a != b for a, b in itertools.pairwise(questions)), questions
    assert len(set(topics)) > 1  # it moved on to another missing item
    assert topics.count("basics") >= 2  # and came back to the first


async def test_after_setting_a_question_aside_hera_comes_back_in_other_words() -> None:
    session = Session()
    shared = brain()

    for message in ["こんにちは", "うーん、どうしようかな", "東京に住んでいます"]:
        await session.say(shared, message)

    first, aside, back = (t.reply for t in session.turns)
    assert topic_of_question(first).field == "basics"
    assert topic_of_question(aside).field == "location"
    assert "また後で" in aside
    assert topic_of_question(back).field == "basics"
    assert _question_of(first) != _question_of(back)


async def test_news_about_something_else_gets_the_same_question_in_other_words() -> None:
    session = Session()
    shared = brain()

    for message in ["こんにちは", "趣味は映画です"]:
        await session.say(shared, message)

    first, again = (t.reply for t in session.turns)
    assert topic_of_question(again).field == topic_of_question(first).field == "basics"
    assert "趣味は映画" in again
    assert _question_of(first) != _question_of(again)


def _question_of(reply: str) -> str:
    """The question sentence of a reply (after the thanks and acknowledgements)."""
    sentences = [s for s in re.split(r"(?<=[。？])", reply) if s]
    return next(s for s in sentences if "？" in s or "教えて" in s or "聞かせ" in s)


class ThreadRecording(JapaneseAnalyser):
    """The shared dictionary, observed: records the thread of every analysis."""

    __slots__ = ("threads",)

    def __init__(self) -> None:
        super().__init__(shared_analyser()._dictionary)
        self.threads: list[int] = []

    def analyse(self, text: str) -> Any:
        self.threads.append(threading.get_ident())
        return super().analyse(text)


async def test_long_messages_are_analysed_off_the_event_loop() -> None:
    recording = ThreadRecording()
    long = "私は東京に住んでいる会社員で、休日は写真を撮りに出かけるのが好きです。" * 6

    await OfflineInterviewBrain(recording).interview_turn(
        profile=Profile(), history=[], message=long, missing_fields=missing({})
    )
    await OfflineInterviewBrain(recording).interview_turn(
        profile=Profile(), history=[], message="32歳です", missing_fields=missing({})
    )

    assert recording.threads[0] != threading.get_ident()
    assert recording.threads[1] == threading.get_ident()


async def test_a_turn_over_a_long_history_runs_off_the_event_loop() -> None:
    recording = ThreadRecording()
    question = compose_reply(Profile(), Profile(), missing({}))
    exchange = [{"speaker": "user", "message": "うーん"}, {"speaker": "hera", "message": question}]

    await OfflineInterviewBrain(recording).interview_turn(
        profile=Profile(),
        history=exchange * (THREAD_FROM_ENTRIES // 2),
        message="32歳です",
        missing_fields=missing({}),
    )
    await OfflineInterviewBrain(recording).interview_turn(
        profile=Profile(), history=exchange * 10, message="32歳です", missing_fields=missing({})
    )

    assert recording.threads[0] != threading.get_ident()
    assert recording.threads[1] == threading.get_ident()


def test_importing_the_app_loads_no_dictionary() -> None:
    import subprocess
    import sys

    probe = "import sys, app.main; print('sudachipy' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )

    assert result.stdout.strip() == "False"
