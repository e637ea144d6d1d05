"""The interview profile: validated merge, completeness and progress.

Pure functions over plain dicts (the stored form), so every worker computes the same thing.
"""

from __future__ import annotations

from typing import Any, Final

JSONDict = dict[str, Any]

BIG_FIVE: Final = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")
STATUSES: Final = ("married", "partnered", "single", "other")
_STATUS_WORDS: Final = {
    "既婚": "married", "結婚": "married", "married": "married",
    "交際中": "partnered", "交際": "partnered", "恋人": "partnered", "partnered": "partnered",
    "パートナー": "partnered", "婚約": "partnered",
    "独身": "single", "未婚": "single", "シングル": "single", "single": "single",
    "離婚": "other", "その他": "other", "other": "other",
}  # fmt: skip
_TEXT_FIELDS: Final = {
    "gender": 20, "location": 100, "income_range": 50,
    "partner_face_description": 500, "lifestyle": 500,
}  # fmt: skip
_PARTNER_TEXT: Final = {"name": 50, "temperament": 200, "appearance": 300, "speaking_style": 100}
_MAX_CHILDREN: Final = 10
_MAX_LIST: Final = 20


def partner_key(profile: JSONDict) -> str:
    """Which partner dict the status asks for: the real one, or the ideal one."""
    return (
        "current_partner"
        if profile.get("relationship_status") in ("married", "partnered")
        else "ideal_partner"
    )


# ------------------------------------------------------------------ validation
def _text(value: Any, limit: int) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value[:limit] if value else None


def _age(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip().rstrip("歳才").strip()
        if not value.isdigit():
            return None
    try:
        age = int(value)
    except (TypeError, ValueError):
        return None
    return age if 0 < age < 130 else None


def _status(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    if text in STATUSES:
        return text
    return next((status for word, status in _STATUS_WORDS.items() if word in text), None)


def _traits(value: Any) -> JSONDict:
    if not isinstance(value, dict):
        return {}
    clean: JSONDict = {}
    for name in BIG_FIVE:
        score = value.get(name)
        if isinstance(score, int | float) and not isinstance(score, bool) and 0 <= score <= 1:
            clean[name] = round(float(score), 3)
    return clean


def _str_list(value: Any, limit: int = 50) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [t for t in (_text(v, limit) for v in items[:_MAX_LIST]) if t]


def _partner(value: Any) -> JSONDict:
    if not isinstance(value, dict):
        return {}
    clean: JSONDict = {}
    for name, limit in _PARTNER_TEXT.items():
        text = _text(value.get(name), limit)
        if text:
            clean[name] = text
    hobbies = _str_list(value.get("hobbies")) if value.get("hobbies") else []
    if hobbies:
        clean["hobbies"] = hobbies
    traits = value.get("personality_traits")
    if isinstance(traits, dict) and _traits(traits):
        clean["personality_traits"] = _traits(traits)
    elif traits and _str_list(traits):
        clean["personality_traits"] = _str_list(traits)
    return clean


def _children(value: Any) -> list[JSONDict]:
    if not isinstance(value, list):
        return []
    clean: list[JSONDict] = []
    for child in value[:_MAX_CHILDREN]:
        if not isinstance(child, dict):
            continue
        item = {k: t for k in ("name", "desired_gender") if (t := _text(child.get(k), 30))}
        clean.append(item)
    return clean


def sanitize(extracted: Any) -> JSONDict:
    """Keep only known fields with valid types and ranges; drop everything else."""
    if not isinstance(extracted, dict):
        return {}
    clean: JSONDict = {}
    if (age := _age(extracted.get("age"))) is not None:
        clean["age"] = age
    if status := _status(extracted.get("relationship_status")):
        clean["relationship_status"] = status
    for name, limit in _TEXT_FIELDS.items():
        if text := _text(extracted.get(name), limit):
            clean[name] = text
    if traits := _traits(extracted.get("user_personality_traits")):
        clean["user_personality_traits"] = traits
    for key in ("current_partner", "ideal_partner"):
        if partner := _partner(extracted.get(key)):
            clean[key] = partner
    if (children := _children(extracted.get("children_info"))) and any(children):
        clean["children_info"] = children
    if interests := _str_list(extracted.get("interests") or []):
        clean["interests"] = interests
    return clean


# ------------------------------------------------------------------ merge
def _merge_children(old: list[JSONDict], new: list[JSONDict]) -> list[JSONDict]:
    """Match each mentioned child by name, never by position: a model that reports only the
    child of this message ("二人目は息子のたろう") must not overwrite the first one."""
    merged = [dict(c) for c in old]
    for child in new:
        name = child.get("name")
        match = next((c for c in merged if name and c.get("name") == name), None)
        if match is None and name:
            # A name for a child known so far only by the wished-for gender.
            match = next((c for c in merged if not c.get("name")), None)
        if match is None and not name:
            # A detail without a name completes the first child that lacks it.
            match = next((c for c in merged if any(k not in c for k in child)), None)
        if match is None:
            merged.append(dict(child))
        else:
            match.update(child)
    return merged[:_MAX_CHILDREN]


def merge_profile(profile: JSONDict, extracted: Any) -> tuple[JSONDict, list[str]]:
    """Validated deep merge. Returns the new profile and the names of fields that changed."""
    merged = dict(profile)
    changed: list[str] = []
    for key, value in sanitize(extracted).items():
        old = merged.get(key)
        if key in ("current_partner", "ideal_partner", "user_personality_traits"):
            new: Any = {**(old if isinstance(old, dict) else {}), **value}
        elif key == "children_info":
            new = _merge_children(old if isinstance(old, list) else [], value)
        elif key == "interests":
            new = list(dict.fromkeys([*(old or []), *value]))[:_MAX_LIST]
        else:
            new = value
        if new != old:
            merged[key] = new
            changed.append(key)
    return merged, changed


# ------------------------------------------------------------------ completeness
def _present(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != {}


def _partner_complete(profile: JSONDict) -> bool:
    partner = profile.get(partner_key(profile))
    return isinstance(partner, dict) and all(
        _present(partner.get(k)) for k in ("name", "temperament", "appearance")
    )


def _has_child(profile: JSONDict) -> bool:
    children = profile.get("children_info")
    return isinstance(children, list) and any(
        isinstance(c, dict) and _present(c.get("name")) and _present(c.get("desired_gender"))
        for c in children
    )


def _trait_count(profile: JSONDict) -> int:
    traits = profile.get("user_personality_traits")
    return sum(1 for t in BIG_FIVE if isinstance(traits, dict) and _present(traits.get(t)))


def missing_fields(profile: JSONDict) -> list[str]:
    missing = [
        f
        for f in ("age", "gender", "relationship_status", "location", "income_range")
        if not _present(profile.get(f))
    ]
    if _trait_count(profile) < 2:
        missing.append("user_personality_traits")
    if not _present(profile.get("partner_face_description")):
        missing.append("partner_face_description")
    if not _partner_complete(profile):
        missing.append(partner_key(profile))
    if not _has_child(profile):
        missing.append("children_info")
    return missing


def is_complete(profile: JSONDict) -> bool:
    return not missing_fields(profile)


def information_progress(profile: JSONDict) -> dict[str, dict[str, int]]:
    """Grouped counts for the frontend's progress bar."""
    basic = ("age", "gender", "relationship_status", "location", "income_range")
    partner = profile.get(partner_key(profile))
    partner = partner if isinstance(partner, dict) else {}
    relationship = [
        _present(profile.get("partner_face_description")),
        *(_present(partner.get(k)) for k in ("name", "temperament", "appearance")),
    ]
    return {
        "basic_info": {"collected": sum(_present(profile.get(f)) for f in basic), "total": 5},
        "relationship": {"collected": sum(relationship), "total": 4},
        "personality": {"collected": min(_trait_count(profile), 2), "total": 2},
        "children_info": {"collected": int(_has_child(profile)), "total": 1},
    }
