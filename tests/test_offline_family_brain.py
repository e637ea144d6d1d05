"""The offline family brain: voices, trip extraction, proposal answers, story and letter."""

from __future__ import annotations

import copy
import itertools
import re
import time
from typing import Any

import pytest

from app.agents.brains import FamilyBrain, FamilyTurn
from app.brains.offline.family import OfflineFamilyBrain, classify_answer, extract_trip
from app.domain.family import Persona, TripInfo, TripPlan
from app.domain.profile import Profile

# What Kansai speech sounds like (the test's judgement, not the brain's vocabulary).
KANSAI_MARKERS = ("やん", "やな", "やで", "ほな", "しよか", "へん", "ねん", "せや", "ええ",
                         "るで", "たで", "あるん", "たいん", "もな", "ろな", "てん", "おおきに",
                         "ほんま", "わ。")  # fmt: skip

JSON = dict[str, Any]
EMPTY_TRIP = TripInfo()
OKINAWA_PLAN = TripInfo(destination="沖縄", activities=["海水浴", "水族館"])


def partner(name: str = "美咲", style: str = "", role: str = "妻") -> Persona:
    return Persona.model_validate({
        "id": "partner", "kind": "partner", "name": name, "role": role, "gender": "女性",
        "age": 33, "speaking_style": style, "personality": "明るい", "traits": {},
        "goals": "", "background": "",
    })  # fmt: skip


def child(n: int, name: str, age: int | None = 7, role: str = "娘") -> Persona:
    return Persona.model_validate({
        "id": f"child_{n}", "kind": "child", "name": name, "role": role, "gender": None,
        "age": age, "speaking_style": "", "personality": "", "traits": {}, "goals": "",
        "background": "",
    })  # fmt: skip


def family(style: str = "", kids: tuple[str, ...] = ("さくら", "蓮")) -> list[Persona]:
    return [partner(style=style), *(child(i + 1, k) for i, k in enumerate(kids))]


async def turn(
    message: str,
    *,
    personas: list[Persona] | None = None,
    profile: JSON | None = None,
    trip: JSON | TripInfo | None = None,
    pending: bool = False,
    history: list[JSON] | None = None,
) -> FamilyTurn:
    return await OfflineFamilyBrain().family_turn(
        profile=Profile.from_untrusted({"gender": "男性"} if profile is None else profile),
        personas=family() if personas is None else personas,
        history=history or [],
        trip_info=TripInfo.model_validate(copy.deepcopy(trip or EMPTY_TRIP)),
        message=message,
        proposal_pending=pending,
    )


def test_the_brain_fits_the_family_brain_port() -> None:
    brain: FamilyBrain = OfflineFamilyBrain()
    assert not hasattr(brain, "__dict__")  # no per-instance state to leak between sessions


# --- lines -------------------------------------------------------------------------------
async def test_every_persona_speaks_one_short_line_in_order_under_its_name() -> None:
    personas = family(kids=("さくら", "蓮", "ひなた"))
    result = await turn("沖縄に行きたいな", personas=personas)
    assert [line.speaker for line in result.lines] == ["美咲", "さくら", "蓮", "ひなた"]
    for line in result.lines:
        sentences = [s for s in re.split(r"(?<=[。！？!?])", line.message) if s]
        assert 1 <= len(sentences) <= 3 and len(line.message) <= 80


@pytest.mark.parametrize(
    "message",
    [
        "こんにちは",
        "沖縄に行きたい",
        "海で泳ぎたい",
        "水族館もいいね",
        "どうしようかな",
        "キャンプ！",
    ],
)
async def test_a_kansai_partner_speaks_in_kansai_forms(message: str) -> None:
    result = await turn(message, personas=family(style="関西弁"))
    assert any(marker in result.lines[0].message for marker in KANSAI_MARKERS)


async def test_a_polite_partner_speaks_politely_and_a_plain_one_does_not() -> None:
    polite = await turn("沖縄に行きたい", personas=family(style="丁寧な話し方"))
    plain = await turn("沖縄に行きたい", personas=family(style=""))
    assert re.search(r"です|ます|ましょう", polite.lines[0].message)
    assert not re.search(r"です|ます|ましょう", plain.lines[0].message)
    assert not any(m in plain.lines[0].message for m in ("やん", "やで", "ねん", "ほな"))


async def test_the_partner_calls_the_user_anata() -> None:
    # The profile has no user name (`Profile.from_untrusted` drops one), so none reaches
    # the brain: the partner, the polite one too, always says あなた.
    named = await turn("こんにちは", profile={"name": "健太", "gender": "男性"})
    nameless = await turn("こんにちは", profile={"gender": "男性"})
    polite = await turn("こんにちは", profile={"name": "健太"}, personas=family(style="敬語で丁寧"))
    for result in (named, nameless, polite):
        assert "あなた" in result.lines[0].message and "健太" not in result.lines[0].message


@pytest.mark.parametrize(
    ("gender", "word"), [("男性", "お父さん"), ("女性", "お母さん"), (None, "ねえ")]
)
async def test_children_call_the_user_by_the_parent_word_of_their_gender(
    gender: str | None, word: str
) -> None:
    for message in ("こんにちは", "沖縄に行きたい", "花火が見たい"):
        result = await turn(message, profile={"gender": gender} if gender else {})
        for line in result.lines[1:]:
            assert word in line.message
            if gender is None:
                assert "お父さん" not in line.message and "お母さん" not in line.message


async def test_children_react_to_the_destination_and_activity_just_mentioned() -> None:
    result = await turn("沖縄いいね！海で泳ぎたい！")
    for line in result.lines[1:]:
        assert "沖縄" in line.message and "泳ぎたい" in line.message


async def test_children_speak_for_their_age() -> None:
    kids = [partner(), child(1, "ひな", age=4), child(2, "蓮", age=15)]
    result = await turn("沖縄に行きたい", personas=kids)
    little, teen = result.lines[1].message, result.lines[2].message
    assert little != teen
    assert not re.search(r"じゃん|かも。", little)


async def test_the_family_asks_for_a_destination_first_then_for_activities() -> None:
    nothing = await turn("こんにちは")
    assert "どこ" in nothing.lines[0].message and "？" in nothing.lines[0].message
    place = await turn("沖縄に行きたい")
    assert "沖縄" in place.lines[0].message and re.search(r"何|ほか", place.lines[0].message)
    one = await turn("花火もしたい", trip={"destination": "沖縄", "activities": []})
    assert re.search(r"ほか|あと|もう一つ", one.lines[0].message)


async def test_phrasing_varies_with_the_message_and_the_turn() -> None:
    seen = {
        (await turn(m, history=[{}] * n)).lines[0].message
        for m, n in itertools.product(("沖縄に行きたい", "沖縄に行きたいな", "沖縄！"), range(4))
    }
    assert len(seen) >= 3


# --- trip info ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("沖縄に行きたい", {"destination": "沖縄"}),
        ("沖縄県の美ら海水族館！", {"destination": "沖縄", "activities": ["水族館"]}),
        ("ディズニーランドがいい", {"destination": "東京ディズニーリゾート"}),
        ("ディズニーシーに行こう", {"destination": "東京ディズニーリゾート"}),
        ("ＵＳＪで遊ぼう", {"destination": "USJ"}),
        ("ﾊﾜｲに行きたい", {"destination": "ハワイ"}),
        ("東京都から京都へ", {"destination": "京都"}),
        ("東京に住んでるけど、北海道に行きたい", {"destination": "北海道"}),
        ("北海道より沖縄がいい", {"destination": "沖縄"}),
        ("沖縄じゃなくて北海道", {"destination": "北海道"}),
        ("箱根で温泉", {"destination": "箱根", "activities": ["温泉"]}),
        ("湯布院の露天風呂", {"destination": "由布院", "activities": ["温泉"]}),
        ("海で泳ぎたい！泳ぎたい！", {"activities": ["海水浴"]}),
        ("ＢＢＱとバーベキューとｂｂｑ", {"activities": ["バーベキュー"]}),
        ("山登りと温泉、あと花火", {"activities": ["ハイキング", "温泉", "花火"]}),
        ("買い物とショッピング", {"activities": ["買い物"]}),
        ("お寺や神社めぐり", {"activities": ["寺社めぐり"]}),
        ("京都で食べ歩き", {"destination": "京都", "activities": ["食べ歩き"]}),
        ("キャンプは嫌だけど釣りはしたい", {"activities": ["釣り"]}),
        ("スキー以外ならいい", {}),
        ("遊園地に行かない？", {"activities": ["遊園地"]}),
        ("プールで泳ぐ", {"activities": ["プール"]}),
        ("タイムセールとお釣り", {}),
        ("日光浴と伊勢海老", {}),
        ("大分疲れたね", {}),
        ("こんにちは", {}),
    ],
)
def test_trip_info_is_read_canonically_without_duplicates(message: str, expected: JSON) -> None:
    assert extract_trip(message, known=EMPTY_TRIP) == expected


def test_trip_info_reports_only_what_the_message_adds() -> None:
    known = TripInfo(destination="沖縄", activities=["海水浴"])
    assert extract_trip("沖縄で泳いで、水族館も", known=known) == {"activities": ["水族館"]}
    assert extract_trip("やっぱり北海道", known=known) == {"destination": "北海道"}


async def test_family_member_names_are_not_read_as_places_or_activities() -> None:
    kids = [partner(), child(1, "紅葉"), child(2, "千葉")]
    result = await turn("紅葉も千葉も元気だよ", personas=kids)
    assert result.trip_info == {}


async def test_the_turn_reports_the_trip_info_of_the_message() -> None:
    result = await turn("沖縄で水族館と海水浴！", trip={"destination": None, "activities": []})
    assert result.trip_info == {"destination": "沖縄", "activities": ["水族館", "海水浴"]}


# --- proposal answers --------------------------------------------------------------------
@pytest.mark.parametrize("message", ["はい", "いいね！", "それでいこう", "いいえ", "やめよう"])
async def test_there_is_no_proposal_answer_when_nothing_is_pending(message: str) -> None:
    assert (await turn(message, pending=False)).proposal_answer is None


ANSWERS = [
    ("はい", "accept"),
    ("うん、いいよ", "accept"),
    ("いいね！", "accept"),
    ("賛成！", "accept"),
    ("それでいこう", "accept"),
    ("決まり！", "accept"),
    ("ＯＫ", "accept"),
    ("オッケー", "accept"),
    ("そうしよう", "accept"),
    ("楽しみ！", "accept"),
    ("最高じゃない？", "accept"),
    ("悪くないね", "accept"),
    ("いやいや、最高！行こう！", "accept"),
    ("迷ったけど、それでいこう", "accept"),
    ("北海道もいいけど、やっぱり沖縄で決まり！", "accept"),
    ("いいえ", "decline"),
    ("いや", "decline"),
    ("やめよう", "decline"),
    ("別の場所がいい", "decline"),
    ("違うところにしたい", "decline"),
    ("プランを変えたい", "decline"),
    ("うーん…ちょっと", "decline"),
    ("いいと思わない", "decline"),
    ("賛成できない", "decline"),
    ("行きたくない", "decline"),
    ("いや、いいよ", "decline"),
    ("いいね、でも北海道がいいな", "decline"),
    ("うん、でもやっぱりやめよう", "decline"),
    ("北海道に行こう", "decline"),
    ("ホテルはどうする？", None),
    ("本当にそれでいい？", None),
    ("ちょっと考えさせて", None),
    ("うんざりするほど暑いね", None),
]


@pytest.mark.parametrize(("message", "expected"), ANSWERS)
async def test_a_pending_proposal_is_accepted_declined_or_left_open(
    message: str, expected: str | None
) -> None:
    assert classify_answer(message, "沖縄") == expected
    result = await turn(message, trip=OKINAWA_PLAN, pending=True)
    assert result.proposal_answer == expected


async def test_an_accepted_plan_gets_happy_lines_without_questions() -> None:
    result = await turn("いいね！それでいこう", trip=OKINAWA_PLAN, pending=True)
    assert result.proposal_answer == "accept"
    for line in result.lines:
        assert "？" not in line.message and "?" not in line.message
    assert "沖縄" in result.lines[0].message


async def test_a_declined_plan_is_acknowledged_and_the_family_asks_what_instead() -> None:
    result = await turn("うーん…ちょっと", trip=OKINAWA_PLAN, pending=True)
    assert result.proposal_answer == "decline"
    assert all("？" in line.message for line in result.lines)


async def test_an_unclear_answer_gently_asks_again() -> None:
    result = await turn("ホテルはどうする？", trip=OKINAWA_PLAN, pending=True)
    assert result.proposal_answer is None
    assert "？" in result.lines[0].message


# --- story and letter --------------------------------------------------------------------
ACTIVITIES = (
    "海水浴",
    "水族館",
    "バーベキュー",
    "花火",
    "寺社めぐり",
    "シュノーケリングで熱帯魚観察",
)
SHORT = ("空", "海", "蓮", "凛")
LONG = tuple(f"ジョナサン・アレクサンダー{i}世" for i in range(4))
GRID = list(itertools.product(range(1, 5), range(2, 7), (False, True)))


def grid_case(kids: int, acts: int, long: bool) -> tuple[Profile, list[Persona], TripPlan]:
    names = LONG if long else SHORT
    profile = Profile.from_untrusted(
        {"name": "ジェームズ・ウィリアム・ハリソン", "gender": "女性", "location": "北海道札幌市",
         "interests": ["写真撮影とキャンプと読書"]}
        if long else {}
    )  # fmt: skip
    style = ("関西弁", "丁寧", "")[(kids + acts) % 3]
    personas = [
        partner(name="アレクサンドラ・ミハイロヴナ" if long else "花", style=style),
        *(child(i + 1, names[i], age=(3, 9, 15, None)[i]) for i in range(kids)),
    ]
    plan = TripPlan(
        destination="東京ディズニーリゾート" if long else "京都",
        activities=list(ACTIVITIES[:acts]),
    )
    return profile, personas, plan


@pytest.mark.parametrize(("kids", "acts", "long"), GRID)
async def test_the_story_tells_the_whole_trip_in_800_to_1200_characters(
    kids: int, acts: int, long: bool
) -> None:
    profile, personas, plan = grid_case(kids, acts, long)
    story = await OfflineFamilyBrain().write_story(profile=profile, personas=personas, plan=plan)
    assert 800 <= len(story) <= 1200
    discussion, day, bond = story.split("\n\n")
    assert plan.destination in discussion and plan.destination in bond
    for activity in plan.activities:
        assert activity in discussion and activity in day
    for persona in personas:
        assert persona.name in day
    assert story.endswith("。")


@pytest.mark.parametrize(("kids", "acts", "long"), GRID)
async def test_the_letter_is_addressed_to_the_user_and_signed_by_everyone(
    kids: int, acts: int, long: bool
) -> None:
    profile, personas, plan = grid_case(kids, acts, long)
    letter = await OfflineFamilyBrain().write_letter(profile=profile, personas=personas, plan=plan)
    assert 600 <= len(letter) <= 900
    paragraphs = letter.split("\n\n")
    assert paragraphs[0] == "大切なあなたへ"  # no user name reaches the brain
    assert plan.destination in letter
    signature = paragraphs[-1]
    assert signature.endswith("より")
    names = [p.name for p in personas]
    assert all(name in signature for name in names)
    for name in names:  # every member has a paragraph of their own
        assert any(name in p and p is not signature for p in paragraphs[1:])


async def test_a_kansai_partner_writes_their_paragraph_in_kansai() -> None:
    profile, personas, plan = grid_case(1, 2, False)
    personas[0] = personas[0].model_copy(update={"speaking_style": "関西弁"})
    letter = await OfflineFamilyBrain().write_letter(profile=profile, personas=personas, plan=plan)
    partner_part = next(p for p in letter.split("\n\n") if "花" in p and "より" not in p)
    assert re.search(r"やで|ほんま|ねん", partner_part)


async def test_children_address_their_parent_in_the_letter() -> None:
    _, personas, plan = grid_case(2, 2, False)
    letter = await OfflineFamilyBrain().write_letter(
        profile=Profile.from_untrusted({"gender": "男性"}), personas=personas, plan=plan
    )
    assert "お父さんへ" in letter


# --- determinism and statelessness -------------------------------------------------------
async def test_equal_inputs_give_equal_outputs_across_calls_and_instances() -> None:
    profile, personas, plan = grid_case(3, 4, False)
    one, two = OfflineFamilyBrain(), OfflineFamilyBrain()
    first = await turn("沖縄で泳ぎたい", personas=personas)
    await turn("北海道でスキー！", personas=family(style="関西弁"), pending=True)
    again = await turn("沖縄で泳ぎたい", personas=personas)
    assert first == again
    assert await one.write_story(profile=profile, personas=personas, plan=plan) == (
        await two.write_story(profile=profile, personas=personas, plan=plan)
    )
    assert await one.write_letter(profile=profile, personas=personas, plan=plan) == (
        await two.write_letter(profile=profile, personas=personas, plan=plan)
    )


async def test_the_brain_never_changes_its_inputs() -> None:
    profile, personas, plan = grid_case(2, 3, True)
    trip = TripInfo(destination="沖縄", activities=["海水浴"])
    before = copy.deepcopy((profile, personas, plan, trip))
    brain = OfflineFamilyBrain()
    await brain.family_turn(
        profile=profile, personas=personas, history=[], trip_info=trip,
        message="水族館も！", proposal_pending=False,
    )  # fmt: skip
    await brain.write_story(profile=profile, personas=personas, plan=plan)
    await brain.write_letter(profile=profile, personas=personas, plan=plan)
    assert (profile, personas, plan, trip) == before


async def test_a_call_takes_well_under_five_milliseconds() -> None:
    profile, personas, plan = grid_case(4, 6, True)
    brain = OfflineFamilyBrain()
    start = time.perf_counter()
    for _ in range(50):
        await turn("沖縄で海水浴と水族館とバーベキュー！いいね！", personas=personas, pending=True)
        await brain.write_story(profile=profile, personas=personas, plan=plan)
        await brain.write_letter(profile=profile, personas=personas, plan=plan)
    assert (time.perf_counter() - start) / 150 < 0.005
