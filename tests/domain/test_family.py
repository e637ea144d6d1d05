"""The family's rules, defined once in app/domain/: trip info, when to propose, personas."""

from __future__ import annotations

from app.domain.family import MAX_ACTIVITIES, TripInfo, TripPlan
from app.domain.personas import build_personas, partner_role
from app.domain.profile import Profile
from tests.domain.test_profile import COMPLETE


def test_the_latest_destination_wins_and_activities_accumulate_without_duplicates() -> None:
    trip = TripInfo().merge({"destination": "京都", "activities": ["寺巡り", " 寺巡り "]})
    trip = trip.merge({"destination": " 沖縄 ", "activities": ["海水浴", "寺巡り", ""]})
    assert trip == TripInfo(destination="沖縄", activities=["寺巡り", "海水浴"])


def test_a_turn_without_a_destination_keeps_the_known_one() -> None:
    trip = TripInfo(destination="京都").merge({"destination": "", "activities": "not a list"})
    assert trip == TripInfo(destination="京都", activities=[])


def test_activities_are_bounded_and_cut() -> None:
    trip = TripInfo().merge({"activities": [f"{'あ' * 60}{i}" for i in range(15)]})
    assert len(trip.activities) == MAX_ACTIVITIES
    assert all(len(a) <= 50 for a in trip.activities)


def test_a_plan_is_proposed_once_a_destination_and_two_activities_are_known() -> None:
    assert TripInfo(destination="沖縄", activities=["海水浴"]).ready(None) is None
    assert TripInfo(activities=["海水浴", "水族館"]).ready(None) is None
    plan = TripInfo(destination="沖縄", activities=["海水浴", "水族館"]).ready(None)
    assert plan == TripPlan(destination="沖縄", activities=["海水浴", "水族館"])


def test_a_declined_plan_is_not_proposed_again_until_the_trip_changes() -> None:
    declined = TripPlan(destination="沖縄", activities=["海水浴", "水族館"]).key()
    same = TripInfo(destination="沖縄", activities=["水族館", "海水浴"])
    assert same.ready(declined) is None  # the order of activities does not make it new
    changed = TripInfo(destination="沖縄", activities=["水族館", "海水浴", "シュノーケル"])
    assert changed.ready(declined) is not None


def test_personas_are_the_partner_then_one_per_named_child_and_reproducible() -> None:
    profile = Profile.from_untrusted(
        {**COMPLETE, "children_info": [
            {"name": "さくら", "desired_gender": "女の子"}, {"desired_gender": "男の子"},
            {"name": "蓮", "desired_gender": "男の子"},
        ]}
    )  # fmt: skip
    first = build_personas(profile, "0b6f1c9e-4a5b-4c1d-9e2f-3a4b5c6d7e8f")
    again = build_personas(profile, "0b6f1c9e-4a5b-4c1d-9e2f-3a4b5c6d7e8f")
    other = build_personas(profile, "1b6f1c9e-4a5b-4c1d-9e2f-3a4b5c6d7e8f")
    assert [(p.kind, p.name, p.role) for p in first] == [
        ("partner", "健太", "夫"), ("child", "さくら", "娘"), ("child", "蓮", "息子"),
    ]  # fmt: skip
    assert first == again
    assert [p.traits for p in first[1:]] != [p.traits for p in other[1:]]  # seeded by the id


def test_the_partners_role_word_follows_the_profile_never_a_fixed_gender() -> None:
    assert partner_role("女性") == "妻" and partner_role("男性") == "夫"
    assert partner_role(None) == "パートナー"
    male_user = Profile.from_untrusted({**COMPLETE, "gender": "男性"})
    assert build_personas(male_user, "0b6f1c9e-4a5b-4c1d-9e2f-3a4b5c6d7e8f")[0].role == "妻"
