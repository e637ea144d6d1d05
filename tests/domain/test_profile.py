"""The profile's rules, defined once in app/domain/profile.py: validation, the deep merge,
completeness and its order, progress. Each test names one rule."""

from __future__ import annotations

from typing import Any

import pytest

from app.domain.profile import BIG_FIVE, STATUSES, Profile

JSON = dict[str, Any]

COMPLETE: JSON = {
    "age": 32,
    "gender": "女性",
    "relationship_status": "single",
    "location": "東京",
    "income_range": "500万円",
    "user_personality_traits": {"openness": 0.8, "neuroticism": 0.2},
    "partner_face_description": "丸顔",
    "ideal_partner": {"name": "健太", "temperament": "穏やか", "appearance": "黒髪"},
    "children_info": [{"name": "さくら", "desired_gender": "女の子"}],
}


def merged(*steps: JSON) -> tuple[Profile, list[list[str]]]:
    profile, changes = Profile(), []
    for step in steps:
        profile, changed = profile.merge(Profile.from_untrusted(step))
        changes.append(changed)
    return profile, changes


# ------------------------------------------------------------------ vocabularies
def test_the_vocabularies_are_the_specs() -> None:
    assert BIG_FIVE == (
        "openness",
        "conscientiousness",
        "extraversion",
        "agreeableness",
        "neuroticism",
    )
    assert STATUSES == ("married", "partnered", "single", "other")


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ("word", "status"),
    [("既婚です", "married"), ("独身", "single"), ("交際中", "partnered"), ("離婚しました", "other"),
     ("MARRIED", "married")],
)  # fmt: skip
def test_relationship_words_are_normalised(word: str, status: str) -> None:
    assert Profile.from_untrusted({"relationship_status": word}).relationship_status == status


@pytest.mark.parametrize(
    ("raw", "age"),
    [(32, 32), ("32歳", 32), ("32才", 32), (" 40 ", 40), (0, None), (130, None), (True, None),
     ("三十", None), (2**70, None), (None, None)],
)  # fmt: skip
def test_an_age_is_an_integer_between_1_and_129(raw: Any, age: int | None) -> None:
    assert Profile.from_untrusted({"age": raw}).age == age


def test_an_invalid_field_is_dropped_alone_and_unknown_fields_never_land() -> None:
    profile = Profile.from_untrusted(
        {
            "age": "abc",
            "location": "  大阪  ",
            "user_personality_traits": {"openness": 1.5, "extraversion": 0.7, "charm": 1},
            "photo_path": "/etc/passwd",
            "session_status": "COMPLETED",
        }
    )
    assert profile.stored() == {
        "location": "大阪",
        "user_personality_traits": {"extraversion": 0.7},
    }


def test_texts_are_cut_to_their_limits() -> None:
    profile = Profile.from_untrusted({"location": "東" * 300, "ideal_partner": {"name": "名" * 80}})
    assert profile.location == "東" * 100
    assert profile.ideal_partner is not None and profile.ideal_partner.name == "名" * 50


def test_a_list_of_empty_children_is_no_children() -> None:
    assert Profile.from_untrusted({"children_info": [{}, {"name": ""}, "x"]}).children_info is None


# ------------------------------------------------------------------ the deep merge
def test_a_later_partial_partner_never_erases_an_earlier_name() -> None:
    profile, _ = merged(
        {"ideal_partner": {"name": "健太", "temperament": "穏やか"}},
        {"ideal_partner": {"appearance": "背が高い"}},
    )
    assert profile.stored()["ideal_partner"] == {
        "name": "健太", "temperament": "穏やか", "appearance": "背が高い",
    }  # fmt: skip


def test_traits_merge_trait_by_trait() -> None:
    profile, _ = merged(
        {"user_personality_traits": {"openness": 0.8}},
        {"user_personality_traits": {"neuroticism": 0.2, "openness": 0.6}},
    )
    assert profile.stored()["user_personality_traits"] == {"openness": 0.6, "neuroticism": 0.2}


def test_a_second_child_named_alone_does_not_replace_the_first() -> None:
    profile, _ = merged(
        {"children_info": [{"name": "太郎", "desired_gender": "男の子"}]},
        {"children_info": [{"name": "花子", "desired_gender": "女の子"}]},
    )
    assert [c.name for c in profile.children_info or []] == ["太郎", "花子"]


def test_children_are_matched_by_name_not_by_position() -> None:
    profile, _ = merged(
        {"children_info": [{"name": "太郎"}, {"name": "花子"}]},
        {"children_info": [{"name": "花子", "desired_gender": "女の子"}]},
    )
    assert profile.stored()["children_info"] == [
        {"name": "太郎"}, {"name": "花子", "desired_gender": "女の子"},
    ]  # fmt: skip


def test_a_name_completes_a_child_known_only_by_gender() -> None:
    profile, _ = merged(
        {"children_info": [{"desired_gender": "男の子"}]},
        {"children_info": [{"name": "太郎"}]},
    )
    assert profile.stored()["children_info"] == [{"desired_gender": "男の子", "name": "太郎"}]


def test_a_named_child_of_one_gender_completes_the_unnamed_child_of_that_gender() -> None:
    profile, _ = merged(
        {"children_info": [{"desired_gender": "女の子"}, {"desired_gender": "男の子"}]},
        {"children_info": [{"name": "たろう", "desired_gender": "男の子"}]},
    )
    assert profile.stored()["children_info"] == [
        {"desired_gender": "女の子"}, {"desired_gender": "男の子", "name": "たろう"},
    ]  # fmt: skip


def test_interests_accumulate_without_duplicates_in_order() -> None:
    profile, _ = merged({"interests": ["旅行", "料理"]}, {"interests": ["料理", "映画"]})
    assert profile.interests == ["旅行", "料理", "映画"]


def test_other_fields_are_replaced_and_only_real_changes_are_reported() -> None:
    profile, changes = merged(
        {"location": "東京", "age": 30}, {"location": "大阪", "age": 30}, {"location": "大阪"}
    )
    assert profile.location == "大阪"
    assert changes == [["age", "location"], ["location"], []]


def test_merge_leaves_both_profiles_as_they_were() -> None:
    base = Profile.from_untrusted({"ideal_partner": {"name": "健太"}})
    news = Profile.from_untrusted({"ideal_partner": {"temperament": "穏やか"}})
    base.merge(news)
    assert base.stored() == {"ideal_partner": {"name": "健太"}}
    assert news.stored() == {"ideal_partner": {"temperament": "穏やか"}}


# ------------------------------------------------------------------ completeness
def test_missing_fields_are_named_in_the_asking_order() -> None:
    assert Profile().missing_fields() == [
        "age", "gender", "relationship_status", "location", "income_range",
        "user_personality_traits", "partner_face_description", "ideal_partner", "children_info",
    ]  # fmt: skip


def test_the_complete_profile_misses_nothing() -> None:
    profile = Profile.from_untrusted(COMPLETE)
    assert profile.missing_fields() == [] and profile.complete


@pytest.mark.parametrize(
    ("change", "missing"),
    [
        ({"location": ""}, ["location"]),
        ({"user_personality_traits": {"openness": 0.8}}, ["user_personality_traits"]),
        ({"partner_face_description": " "}, ["partner_face_description"]),
        ({"ideal_partner": {"name": "健太", "temperament": "穏やか"}}, ["ideal_partner"]),
        ({"relationship_status": "married"}, ["current_partner"]),
        ({"children_info": [{"name": "さくら"}]}, ["children_info"]),
        ({"children_info": [{"desired_gender": "女の子"}]}, ["children_info"]),
    ],
    ids=["empty-location", "one-trait", "blank-face", "partner-without-looks",
         "married-asks-current-partner", "child-without-gender", "child-without-name"],
)  # fmt: skip
def test_each_requirement_of_completeness(change: JSON, missing: list[str]) -> None:
    assert Profile.from_untrusted({**COMPLETE, **change}).missing_fields() == missing


def test_the_partner_key_follows_the_status() -> None:
    assert Profile(relationship_status="partnered").partner_key == "current_partner"
    assert Profile(relationship_status="other").partner_key == "ideal_partner"
    assert Profile().partner_key == "ideal_partner"


def test_progress_counts_each_group() -> None:
    assert Profile().progress() == {
        "basic_info": {"collected": 0, "total": 5}, "relationship": {"collected": 0, "total": 4},
        "personality": {"collected": 0, "total": 2}, "children_info": {"collected": 0, "total": 1},
    }  # fmt: skip
    full = Profile.from_untrusted(
        {**COMPLETE, "user_personality_traits": dict.fromkeys(BIG_FIVE, 0.5)}
    ).progress()
    assert {g: c["collected"] == c["total"] for g, c in full.items()} == dict.fromkeys(full, True)


def test_stored_json_reads_back_as_the_same_profile() -> None:
    profile = Profile.from_untrusted(COMPLETE)
    assert Profile.from_stored(profile.stored()) == profile
    assert profile.stored() == COMPLETE


@pytest.mark.parametrize(
    ("field", "empty"),
    [("location", ""), ("partner_face_description", ""), ("children_info", [])],
)
def test_empty_strings_and_containers_count_as_missing_even_when_built_directly(
    field: str, empty: Any
) -> None:
    # Validation strips them from untrusted input; the rule holds for any profile all the same.
    profile = Profile.model_validate({**COMPLETE, field: empty})
    assert profile.missing_fields() == [field]
