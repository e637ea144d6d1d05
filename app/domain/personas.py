"""Future family personas, derived once from the profile and then stored.

Deterministic: the same profile and session id always give the same family, so a retry or
another worker can never produce a different one.
"""

from __future__ import annotations

import hashlib
import random
from typing import Final

from app.domain.family import Persona
from app.domain.profile import BIG_FIVE, Partner, Profile

# Twin-study heritability estimates of the Big Five (roughly 0.4-0.6).
HERITABILITY: Final = {
    "openness": 0.57, "conscientiousness": 0.49, "extraversion": 0.54,
    "agreeableness": 0.42, "neuroticism": 0.48,
}  # fmt: skip
_TEMPERAMENT_TRAITS: Final = (
    ("優し", "agreeableness", 0.8), ("思いやり", "agreeableness", 0.85), ("穏やか", "neuroticism", 0.25),
    ("明る", "extraversion", 0.8), ("元気", "extraversion", 0.75), ("社交", "extraversion", 0.85),
    ("真面目", "conscientiousness", 0.8), ("誠実", "conscientiousness", 0.75), ("几帳面", "conscientiousness", 0.85),
    ("好奇心", "openness", 0.8), ("面白", "openness", 0.7), ("落ち着", "neuroticism", 0.3),
    ("内向", "extraversion", 0.3), ("静か", "extraversion", 0.35), ("心配性", "neuroticism", 0.75),
)  # fmt: skip


def _rng(session_id: str, salt: str) -> random.Random:
    seed = hashlib.sha256(f"{session_id}:{salt}".encode()).digest()
    return random.Random(int.from_bytes(seed[:8], "big"))


def partner_gender(profile: Profile) -> str | None:
    """The partner's gender as the profile implies it: the opposite of the user's (the
    profile has no field for the partner's own), unknown otherwise."""
    return {"男性": "女性", "女性": "男性"}.get(profile.gender or "")


def partner_role(gender: str | None) -> str:
    return {"女性": "妻", "男性": "夫"}.get(gender or "", "パートナー")


def _partner_traits(partner: Partner) -> dict[str, float]:
    traits: dict[str, float] = dict.fromkeys(BIG_FIVE, 0.5)
    given = partner.personality_traits
    if given is not None and not isinstance(given, list):
        traits.update(given.known())
    described = given if isinstance(given, list) else ""
    words = " ".join(str(v or "") for v in (partner.temperament, described, partner.speaking_style))
    for stem, trait, score in _TEMPERAMENT_TRAITS:
        if stem in words:
            traits[trait] = score
    return traits


def child_traits(
    user: dict[str, float], partner: dict[str, float], session_id: str, index: int
) -> dict[str, float]:
    """Mid-parent value weighted by heritability, regressed to the mean, plus seeded noise."""
    rng = _rng(session_id, f"child-{index}")
    traits: dict[str, float] = {}
    for name in BIG_FIVE:
        h = HERITABILITY[name]
        mid = (user.get(name, 0.5) + partner.get(name, 0.5)) / 2
        value = h * mid + (1 - h) * 0.5 + rng.gauss(0, 0.08)
        traits[name] = round(min(1.0, max(0.0, value)), 3)
    return traits


def _describe(traits: dict[str, float]) -> str:
    words = []
    if traits["extraversion"] >= 0.6:
        words.append("元気で人なつっこい")
    elif traits["extraversion"] <= 0.4:
        words.append("おっとりしていて思慮深い")
    if traits["openness"] >= 0.6:
        words.append("好奇心いっぱい")
    if traits["agreeableness"] >= 0.6:
        words.append("やさしい")
    if traits["conscientiousness"] >= 0.6:
        words.append("しっかり者")
    return "、".join(words) or "マイペース"


def build_personas(profile: Profile, session_id: str) -> list[Persona]:
    """The partner first, then one child per named `children_info` entry."""
    partner = profile.partner or Partner()
    gender = partner_gender(profile)
    p_traits = _partner_traits(partner)
    user_traits = profile.user_personality_traits
    hobbies = f"、{'・'.join(partner.hobbies)}が好きな" if partner.hobbies else ""
    personas = [
        Persona(
            id="partner",
            kind="partner",
            name=partner.name or "パートナー",
            role=partner_role(gender),
            gender=gender,
            age=profile.age or 30,
            speaking_style=partner.speaking_style or "やわらかい丁寧語",
            personality=partner.temperament or _describe(p_traits),
            traits=p_traits,
            goals="家族みんなが笑顔でいられる毎日をつくること",
            background=f"{profile.location or 'あなたの街'}で一緒に暮らす{hobbies}あなたの伴侶",
        )
    ]
    for index, child in enumerate(profile.children_info or [], start=1):
        if not child.name:
            continue
        traits = child_traits(
            user_traits.known() if user_traits else {}, p_traits, session_id, index
        )
        want = child.desired_gender or ""
        role = "息子" if "男" in want else "娘" if "女" in want else "子ども"
        age = max(3, 10 - 3 * (index - 1) + _rng(session_id, f"age-{index}").randint(-1, 1))
        personas.append(
            Persona(
                id=f"child_{index}",
                kind="child",
                name=child.name,
                role=role,
                gender="男性" if role == "息子" else "女性" if role == "娘" else None,
                age=age,
                speaking_style="元気な子どもらしい話し方" if age < 8 else "少し大人びた話し方",
                personality=_describe(traits),
                traits=traits,
                goals="家族みんなで楽しい思い出をたくさん作ること",
                background=f"{age}歳。両親のいいところを受け継いだ{role}",
            )
        )
    return personas
