"""The interview profile: vocabularies, validation, the merge rule, completeness, progress.

`Profile.from_untrusted` is the one validation: anything (a model's answer, a legacy file,
stored JSON) becomes a profile whose fields each hold a valid value or nothing; an invalid
field is dropped alone, never the whole answer. `merge` is the one deep-merge rule and
`missing_fields` the one completeness rule, in the order the interview asks.
"""

from __future__ import annotations

from typing import Any, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

JSONDict = dict[str, Any]

BigFiveName = Literal[
    "openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism"
]
BIG_FIVE: Final[tuple[BigFiveName, ...]] = get_args(BigFiveName)
RelationshipStatus = Literal["married", "partnered", "single", "other"]
STATUSES: Final[tuple[RelationshipStatus, ...]] = get_args(RelationshipStatus)
PartnerKey = Literal["current_partner", "ideal_partner"]
PARTNER_KEYS: Final[tuple[PartnerKey, ...]] = get_args(PartnerKey)
BASIC_FIELDS: Final = ("age", "gender", "relationship_status", "location", "income_range")
PARTNER_REQUIRED: Final = ("name", "temperament", "appearance")

STATUS_WORDS: Final[dict[str, RelationshipStatus]] = {
    "既婚": "married", "結婚": "married", "married": "married",
    "交際中": "partnered", "交際": "partnered", "恋人": "partnered", "partnered": "partnered",
    "パートナー": "partnered", "婚約": "partnered",
    "独身": "single", "未婚": "single", "シングル": "single", "single": "single",
    "離婚": "other", "その他": "other", "other": "other",
}  # fmt: skip
TEXT_LIMITS: Final = {
    "gender": 20, "location": 100, "income_range": 50,
    "partner_face_description": 500, "lifestyle": 500,
}  # fmt: skip
PARTNER_TEXT_LIMITS: Final = {
    "name": 50,
    "temperament": 200,
    "appearance": 300,
    "speaking_style": 100,
}
MAX_CHILDREN: Final = 10
MAX_LIST: Final = 20

_STORED: Final = ConfigDict(extra="ignore", frozen=True)


def partner_key(status: str | None) -> PartnerKey:
    """Which partner the status asks about: the real one (married, partnered), or the ideal."""
    return "current_partner" if status in ("married", "partnered") else "ideal_partner"


def present(value: Any) -> bool:
    """Empty strings and containers count as missing."""
    return value is not None and value != "" and value != [] and value != {}


# ------------------------------------------------------------------ lenient field readers
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
    except (TypeError, ValueError, OverflowError):
        return None
    return age if 0 < age < 130 else None


def _status(value: Any) -> RelationshipStatus | None:
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    for status in STATUSES:
        if text == status:
            return status
    return next((status for word, status in STATUS_WORDS.items() if word in text), None)


def _traits(value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        return {}
    clean: dict[str, float] = {}
    for name in BIG_FIVE:
        score = value.get(name)
        if isinstance(score, int | float) and not isinstance(score, bool) and 0 <= score <= 1:
            clean[name] = round(float(score), 3)
    return clean


def _str_list(value: Any, limit: int = 50) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [t for t in (_text(v, limit) for v in items[:MAX_LIST]) if t]


# ------------------------------------------------------------------ the typed values
class BigFive(BaseModel):
    """Big Five scores, 0..1; only the traits that are known."""

    model_config = _STORED
    openness: float | None = Field(None, ge=0, le=1)
    conscientiousness: float | None = Field(None, ge=0, le=1)
    extraversion: float | None = Field(None, ge=0, le=1)
    agreeableness: float | None = Field(None, ge=0, le=1)
    neuroticism: float | None = Field(None, ge=0, le=1)

    def known(self) -> dict[str, float]:
        return {name: score for name in BIG_FIVE if (score := getattr(self, name)) is not None}


class Partner(BaseModel):
    model_config = _STORED
    name: str | None = Field(None, max_length=PARTNER_TEXT_LIMITS["name"])
    temperament: str | None = Field(None, max_length=PARTNER_TEXT_LIMITS["temperament"])
    appearance: str | None = Field(None, max_length=PARTNER_TEXT_LIMITS["appearance"])
    # Scores when a model estimated them, or words ("優しい") when the person said them.
    personality_traits: BigFive | list[str] | None = None
    hobbies: list[str] | None = Field(None, max_length=MAX_LIST)
    speaking_style: str | None = Field(None, max_length=PARTNER_TEXT_LIMITS["speaking_style"])

    @property
    def complete(self) -> bool:
        return all(present(getattr(self, k)) for k in PARTNER_REQUIRED)


class Child(BaseModel):
    model_config = _STORED
    name: str | None = Field(None, max_length=30)
    desired_gender: str | None = Field(None, max_length=30)


class Profile(BaseModel):
    """What the interview collects. Every field is optional until the profile is complete."""

    model_config = _STORED
    age: int | None = Field(None, gt=0, lt=130)
    gender: str | None = Field(None, max_length=TEXT_LIMITS["gender"])
    relationship_status: RelationshipStatus | None = None
    location: str | None = Field(None, max_length=TEXT_LIMITS["location"])
    income_range: str | None = Field(None, max_length=TEXT_LIMITS["income_range"])
    user_personality_traits: BigFive | None = None
    partner_face_description: str | None = Field(
        None, max_length=TEXT_LIMITS["partner_face_description"]
    )
    current_partner: Partner | None = None
    ideal_partner: Partner | None = None
    children_info: list[Child] | None = Field(None, max_length=MAX_CHILDREN)
    interests: list[str] | None = Field(None, max_length=MAX_LIST)
    lifestyle: str | None = Field(None, max_length=TEXT_LIMITS["lifestyle"])

    # -------------------------------------------------------------- reading
    @classmethod
    def from_untrusted(cls, raw: Any) -> Profile:
        """Keep only known fields with valid types and ranges; drop everything else."""
        return cls.model_validate(sanitize(raw))

    @classmethod
    def from_stored(cls, stored: JSONDict) -> Profile:
        return cls.from_untrusted(stored)

    def stored(self) -> JSONDict:
        """The JSON the stores keep (and the API shows): set fields only."""
        return self.model_dump(mode="json", exclude_none=True)

    # -------------------------------------------------------------- rules
    @property
    def partner_key(self) -> PartnerKey:
        return partner_key(self.relationship_status)

    @property
    def partner(self) -> Partner | None:
        """The partner the status asks about."""
        return self.current_partner if self.partner_key == "current_partner" else self.ideal_partner

    def missing_fields(self) -> list[str]:
        """What is still required, in asking order (the partner under the key its status asks
        for); empty when the profile is complete."""
        missing = [f for f in BASIC_FIELDS if not present(getattr(self, f))]
        if len(self.user_personality_traits.known() if self.user_personality_traits else {}) < 2:
            missing.append("user_personality_traits")
        if not present(self.partner_face_description):
            missing.append("partner_face_description")
        if not (self.partner is not None and self.partner.complete):
            missing.append(self.partner_key)
        if not any(present(c.name) and present(c.desired_gender) for c in self.children_info or []):
            missing.append("children_info")
        return missing

    @property
    def complete(self) -> bool:
        return not self.missing_fields()

    def merge(self, news: Profile) -> tuple[Profile, list[str]]:
        """The deep merge: partners and traits field by field (a later partial partner never
        erases an earlier name), children by name, interests without duplicates; any other
        field replaced. Returns the merged profile and the names of the fields that changed."""
        merged = self.stored()
        changed: list[str] = []
        for key, value in news.stored().items():
            old = merged.get(key)
            if key in (*PARTNER_KEYS, "user_personality_traits"):
                new: Any = {**(old or {}), **value}
            elif key == "children_info":
                new = merge_children(old or [], value)
            elif key == "interests":
                new = list(dict.fromkeys([*(old or []), *value]))[:MAX_LIST]
            else:
                new = value
            if new != old:
                merged[key] = new
                changed.append(key)
        return Profile.model_validate(merged), changed

    def progress(self) -> dict[str, dict[str, int]]:
        """Grouped counts for the frontend's progress bar."""
        partner = self.partner or Partner()
        relationship = [
            present(self.partner_face_description),
            *(present(getattr(partner, k)) for k in PARTNER_REQUIRED),
        ]
        traits = len(self.user_personality_traits.known()) if self.user_personality_traits else 0
        has_child = any(
            present(c.name) and present(c.desired_gender) for c in self.children_info or []
        )
        return {
            "basic_info": {
                "collected": sum(present(getattr(self, f)) for f in BASIC_FIELDS),
                "total": 5,
            },
            "relationship": {"collected": sum(relationship), "total": 4},
            "personality": {"collected": min(traits, 2), "total": 2},
            "children_info": {"collected": int(has_child), "total": 1},
        }


# ------------------------------------------------------------------ validation and merge
def _partner(value: Any) -> JSONDict:
    if not isinstance(value, dict):
        return {}
    clean: JSONDict = {}
    for name, limit in PARTNER_TEXT_LIMITS.items():
        if text := _text(value.get(name), limit):
            clean[name] = text
    if value.get("hobbies") and (hobbies := _str_list(value.get("hobbies"))):
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
    for child in value[:MAX_CHILDREN]:
        if isinstance(child, dict):
            clean.append(
                {k: t for k in ("name", "desired_gender") if (t := _text(child.get(k), 30))}
            )
    return clean


def sanitize(raw: Any) -> JSONDict:
    """The fields of `raw` that hold valid values, cleaned (stripped, cut to their limits)."""
    if not isinstance(raw, dict):
        return {}
    clean: JSONDict = {}
    if (age := _age(raw.get("age"))) is not None:
        clean["age"] = age
    if status := _status(raw.get("relationship_status")):
        clean["relationship_status"] = status
    for name, limit in TEXT_LIMITS.items():
        if text := _text(raw.get(name), limit):
            clean[name] = text
    if traits := _traits(raw.get("user_personality_traits")):
        clean["user_personality_traits"] = traits
    for key in PARTNER_KEYS:
        if partner := _partner(raw.get(key)):
            clean[key] = partner
    if (children := _children(raw.get("children_info"))) and any(children):
        clean["children_info"] = children
    if interests := _str_list(raw.get("interests") or []):
        clean["interests"] = interests
    return clean


def merge_children(old: list[JSONDict], new: list[JSONDict]) -> list[JSONDict]:
    """Match each mentioned child by name, never by position: a model that reports only the
    child of this message ("二人目は息子のたろう") must not overwrite the first one."""
    merged = [dict(c) for c in old]
    for child in new:
        name = child.get("name")
        match = next((c for c in merged if name and c.get("name") == name), None)
        if match is None and name:
            # A name for a child known so far only by the wished-for gender (a boy's name
            # never lands on the girl).
            gender = child.get("desired_gender")
            match = next(
                (
                    c
                    for c in merged
                    if not c.get("name")
                    and (gender is None or c.get("desired_gender") in (None, gender))
                ),
                None,
            )
        if match is None and not name:
            # A detail without a name completes the first child that lacks it.
            match = next((c for c in merged if any(k not in c for k in child)), None)
        if match is None:
            merged.append(dict(child))
        else:
            match.update(child)
    return merged[:MAX_CHILDREN]
