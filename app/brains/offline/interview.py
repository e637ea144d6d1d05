"""Offline Hera: a deterministic, rule-based Japanese interview brain (no network, no state).

A message is cut into clauses and each clause is attributed to the user, the partner or a
child (explicit markers such as 私/妻/娘 first, else the previous clause, else the topic of
Hera's last question); small pattern rules per field then read those clauses. The last
question also gives short answers ("32", "花子です") their meaning. Vocabulary and patterns
live in `interview_lexicon.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from app.agents.brains import InterviewTurn, JSONDict, TextSink
from app.brains.offline import interview_lexicon as lx
from app.brains.pieces import stream_text
from app.domain.profile import PARTNER_KEYS, Partner, Profile, partner_key, present

Subject = Literal["user", "partner", "child"]
BASICS: Final = ("age", "gender", "relationship_status")  # asked together, in one question


# --- what Hera asked last --------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Topic:
    field: str | None  # "basics", "partner", another profile field, or None when unknown
    partner_sub: str | None = None  # "name" | "temperament" | "appearance" when asked alone


def asked_topic(history: list[JSONDict], missing_fields: list[str]) -> Topic:
    """The topic of the last Hera question, else of the first missing field."""
    hera = next((e for e in reversed(history) if e.get("speaker") == "hera"), None)
    if hera is not None and (topic := topic_of_question(str(hera.get("message", "")))).field:
        return topic
    first = missing_fields[0] if missing_fields else None
    return Topic("basics" if first in BASICS else "partner" if first in PARTNER_KEYS else first)


def topic_of_question(text: str) -> Topic:
    # Acknowledgements come first and may name earlier topics: read from the question on.
    sentences = re.split(r"(?<=[。!?！？])", text)
    start = next((i for i, s in enumerate(sentences) if re.search(r"[?？]|教えて|聞かせ", s)), 0)
    question = "".join(sentences[start:])
    for field, markers in lx.TOPIC_MARKERS:
        if any(m in question for m in markers):
            subs = [s for s, ms in lx.PARTNER_SUB_MARKERS if any(m in question for m in ms)]
            return Topic(field, subs[0] if field == "partner" and len(subs) == 1 else None)
    return Topic(None)


# --- clauses ---------------------------------------------------------------------------
def _clauses(text: str, default: Subject) -> dict[Subject, list[str]]:
    out: dict[Subject, list[str]] = {"user": [], "partner": [], "child": []}
    current = default
    for clause in filter(None, (c.strip(" 、,") for c in lx.CLAUSE_BREAK.split(text))):
        current = _subject(clause) or current
        out[current].append(clause)
    return out


def _subject(clause: str) -> Subject | None:
    if lx.STRONG_PARTNER_CUE.search(clause):
        return "partner"
    hits: list[tuple[int, Subject]] = []
    for m in lx.SUBJECT_MARKERS.finditer(clause):
        subject: Subject = "user" if m["user"] else "partner" if m["partner"] else "child"
        # "私の妻" is about the wife; "彼女がいます" states the user's situation.
        skip = ("の",) if subject == "user" else ("がい", "がお", "はい", "はお")
        if subject == "child" or not clause.startswith(skip, m.end()):
            hits.append((m.start(), subject))
    if not hits:
        return "partner" if lx.WEAK_PARTNER_CUE.search(clause) else None
    first = min(hits)[1]
    wish = first == "user" and lx.CHILD_WISH.search(clause)  # 私は男の子が欲しい
    return "child" if wish and any(s == "child" for _, s in hits) else first


# --- fields ----------------------------------------------------------------------------
def parse_message(message: str, *, profile: Profile, topic: Topic) -> JSONDict:
    """The profile fields recognised in `message` (only those), given what Hera asked last."""
    text = lx.normalise(message)
    # A clause naming nobody is about whoever Hera's question was about.
    default: Subject = "child" if topic.field == "children_info" else "user"
    if topic.field in ("partner", "partner_face_description"):
        default = "partner"
    about = _clauses(text, default)
    user = "。".join(about["user"])
    out: JSONDict = {}
    _put(out, "age", _age(user, topic.field == "basics"))
    genders = [(m.start(), g) for g, p in lx.GENDER_PATTERNS if (m := p.search(user))]
    _put(out, "gender", min(genders)[1] if genders else None)
    status = next((value for value, p in lx.STATUS_PATTERNS if p.search(text)), None)
    _put(out, "relationship_status", status)
    if topic.field == "basics" and "その他" in text:  # answers whichever is still open
        gender_open = not profile.gender and "gender" not in out
        out.setdefault(*(("gender", "その他") if gender_open else ("relationship_status", "other")))
    _put(out, "location", _location(text, topic.field == "location"))
    _put(out, "income_range", _income(text, topic.field == "income_range"))
    _put(out, "user_personality_traits", _traits(user))
    _put(out, "interests", _hobbies(user))
    _put(out, "lifestyle", "、".join(_words(user, lx.LIFESTYLE)))
    key = partner_key(out.get("relationship_status", profile.relationship_status))
    partner, face = _partner(about["partner"], topic, getattr(profile, key) or Partner())
    _put(out, key, partner)
    _put(out, "partner_face_description", face)
    known = [c.model_dump(exclude_none=True) for c in profile.children_info or []]
    children = _children("。".join(about["child"]), topic, known)
    _put(out, "children_info", children)
    return out


def _put(out: JSONDict, key: str, value: object) -> None:
    if present(value):
        out[key] = value


def _age(user: str, asked: bool) -> int | None:
    if m := lx.AGE.search(user):
        age = int(m[1] or m[2])
    elif asked and (m := lx.LONE_NUMBER.search(user)):
        age = int(m[1])
    else:
        return None
    return age if 0 < age < 130 else None


def _location(text: str, asked: bool) -> str | None:
    for m in lx.RESIDENCE.finditer(text):
        raw = m["place"] or m["after"]
        if known := lx.PLACE.search(raw):
            return known["place"]
        raw = lx.RESIDENCE_NOISE.sub("", re.split(r"[はがも、 ]", raw)[-1])
        if raw and not lx.NOT_A_PLACE.search(raw):
            return dict(lx.LOCATION_ALIASES).get(raw, raw)
    if alias := next((place for word, place in lx.LOCATION_ALIASES if word in text), None):
        return alias
    if not asked:
        return None
    if known := lx.PLACE.search(text):
        return known["place"]
    bare = lx.TAIL.sub("", text)
    if lx.NOT_AN_ANSWER.search(text) or not re.fullmatch(f"{lx.NAME_CHAR}{{1,10}}", bare):
        return None
    return bare


def _income(text: str, asked: bool) -> str | None:
    if asked and lx.INCOME_PRIVATE.search(text):
        return "非公開"
    keyword = asked or lx.INCOME_WORDS.search(text) is not None
    for m in lx.MONEY.finditer(text):
        before = text[max(0, m.start() - 8) : m.start()]
        if lx.INCOME_NOT.search(before) or text.startswith("の", m.end()):
            continue  # savings, loans, prices: not an income
        if keyword or m[4]:
            amount = f"{m[1]}〜{m[2]}" if m[1] else m[2]
            return f"{'月収' if '月収' in before else ''}{amount}{m[3]}円{m[5] or ''}"
    if asked and (lone := lx.LONE_NUMBER.search(text)) and int(lone[1]) >= 100:
        return f"{lone[1]}万円"  # a bare number after the income question means 万円
    return None


def _traits(text: str) -> dict[str, float]:
    scores: dict[str, list[float]] = {}
    for word, trait, score in lx.TRAIT_KEYWORDS:
        for m in re.finditer(re.escape(word), text):
            if text.startswith(lx.LOOKS, m.end()):
                continue
            before, value = text[max(0, m.start() - 5) : m.start()], score
            if lx.INTENSIFIER.search(before):
                value = 0.5 + (score - 0.5) * 1.25
            elif lx.SOFTENER.search(before):
                value = 0.5 + (score - 0.5) * 0.6
            if lx.NEGATION.match(text, m.end()):
                value = 1 - value
            scores.setdefault(trait, []).append(min(0.95, max(0.05, value)))
    return {t: round(sum(v) / len(v), 2) for t, v in scores.items()}


def _words(text: str, table: lx.Stems) -> list[str]:
    """Canonical words whose stems occur (not negated, not "…そう"), in order of appearance."""
    found = []
    for canonical, stems in table:
        starts = [
            m.start()
            for s in stems
            for m in re.finditer(re.escape(s), text)
            if not lx.NEGATION.match(text, m.end()) and not text.startswith(lx.LOOKS, m.end())
        ]
        if starts:
            found.append((min(starts), canonical))
    return [w for _, w in sorted(found)]


def _hobbies(text: str) -> list[str]:
    if not (m := lx.HOBBY.search(text)):
        return []
    raw = re.sub(r"(?:です|とか|など|かな|だよ|だ)+$", "", m[1])
    return [p for p in (p.strip() for p in re.split(r"[、,・]|と|や", raw)) if 0 < len(p) <= 15]


# --- names, partner, children ----------------------------------------------------------
def _strip_tail(name: str) -> str:
    previous = ""
    while name != previous:
        previous, name = name, lx.NAME_TAIL.sub("", name)
        if len(name) > 2 and name[-1] in "でだ":  # 花子で、 / 花子だ (but keep ひで)
            name = name[:-1]
    return name


def clean_name(raw: str) -> str | None:
    """A plausible given name from a raw capture (honorifics, copulas removed), else None."""
    name = _strip_tail(raw.strip(" 「」『』\"'"))
    for i in range(1, len(name) - 1):
        rest = name[i + 1 :]
        # After kanji/katakana a particle ends the name; between kana it may belong to it.
        if name[i] in lx.NAME_CONNECTORS and (
            not re.fullmatch(f"[{lx.HIRAGANA}]+", name[:i])
            or not re.match(f"[{lx.HIRAGANA}]", rest)
            or rest.startswith(lx.DESCRIPTIVE)
        ):
            name = name[:i]
            break
    valid = 0 < len(name) <= 10 and re.fullmatch(f"{lx.NAME_CHAR}+", name)
    if not valid or name in lx.NAME_STOP or lx.NAME_REJECT.search(name):
        return None
    return None if any(w in name for w in lx.DESCRIPTIVE) else name


def _partner(clauses: list[str], topic: Topic, have: Partner) -> tuple[JSONDict, str]:
    text = "。".join(clauses)
    if not text:
        return {}, ""
    found = (m[1] for p in (lx.NAME_IS, lx.NAME_OF, lx.HONORIFIC) for m in p.finditer(text))
    name = next(filter(None, map(clean_name, found)), None)
    temperament, appearance = _words(text, lx.TEMPERAMENT), _words(text, lx.APPEARANCE)
    described = _describe(clauses)
    # Asked about the face, the whole answer describes it; otherwise only clauses naming 目/髪...
    asked_face = topic.field == "partner_face_description"
    face = described if asked_face else _describe([c for c in clauses if lx.FACE_WORDS.search(c)])
    out: JSONDict = {}
    if topic.field == "partner" and not (name or temperament or appearance or face):
        # A short answer to a partner question fills what was asked (or the missing name).
        wanted = topic.partner_sub or (None if present(have.name) else "name")
        if wanted == "name" and not lx.NOT_AN_ANSWER.search(text):
            name = clean_name(described)
        elif wanted:
            out[wanted] = described
    _put(out, "name", name)
    _put(out, "temperament", "、".join(temperament))
    # A face is part of the looks: it fills a still-empty appearance.
    looks = "、".join(appearance) or ("" if present(have.appearance) else face)
    _put(out, "appearance", looks)
    _put(out, "personality_traits", _traits(text))
    _put(out, "hobbies", _hobbies(text))
    _put(out, "speaking_style", "、".join(_words(text, lx.SPEAKING_STYLE)))
    return out, face


def _describe(clauses: list[str]) -> str:
    return "、".join(lx.TAIL.sub("", lx.LEAD.sub("", c)) for c in clauses).strip("、 ")


def _children(text: str, topic: Topic, existing: object) -> list[JSONDict] | None:
    if not text:
        return None
    before = (
        [dict(c) for c in existing if isinstance(c, dict)] if isinstance(existing, list) else []
    )
    genders = {t: g for g, toks in lx.CHILD_TOKENS for t in toks}
    slots: list[JSONDict] = []
    paired: set[int] = set()
    for child in before:  # "さくらは女の子" answers the gender of a child named earlier
        if name := child.get("name"):
            for m in re.finditer(re.escape(str(name)) + lx.NAMED_CHILD, text):
                slots.append({"name": name, "desired_gender": genders[m["tok"]]})
                paired.add(m.start("tok"))
    for m in lx.CHILD_TOKEN.finditer(text):
        if m.start("tok") in paired:
            continue
        name = clean_name(m["name"]) if m["name"] else None
        for i in range(min(int(m["pre"] or m["n"] or 1), 5)):
            slots.append(
                {"desired_gender": genders[m["tok"]]} | ({"name": name} if name and not i else {})
            )
    names = [n for m in lx.NAME_LIST.finditer(text) for n in _split_names(m[1])]
    names += [n for m in lx.HONORIFIC.finditer(text) if (n := clean_name(m[1]))]
    bare = not (slots or names or lx.CHILD_COUNT.search(text) or lx.NOT_AN_ANSWER.search(text))
    if topic.field == "children_info" and bare:
        names = _split_names(text)  # a bare answer to the children question: names
    for name in names:
        if any(s.get("name") == name for s in slots):
            continue
        if hole := next((s for s in slots if "name" not in s), None):
            hole["name"] = name
        else:
            slots.append({"name": name})
    return _merge_children(before, slots)


def _merge_children(before: list[JSONDict], slots: list[JSONDict]) -> list[JSONDict] | None:
    """The whole updated list (the agent replaces lists), or None when nothing changed."""
    result = [dict(c) for c in before]
    for slot in slots:
        target = next(
            (c for c in result if slot.get("name") and c.get("name") == slot["name"]), None
        )
        if target := target or next((c for c in result if _fits(c, slot)), None):
            target.update(slot)
        else:
            result.append(slot)
    return result if result and result != before else None


def _split_names(raw: str) -> list[str]:
    parts = lx.NAME_SPLIT.split(_strip_tail(raw.strip()))
    pieces = [parts[0]]
    for sep, piece in zip(parts[1::2], parts[2::2], strict=True):
        short = len(pieces[-1]) < 2 or len(piece) < 2
        # A one-kana piece means the と was inside a name (ひとみ, ことね), not between two.
        if sep == "と" and short and re.fullmatch(f"[{lx.HIRAGANA}]*", pieces[-1] + piece):
            pieces[-1] += sep + piece
        else:
            pieces.append(piece)
    return [n for n in map(clean_name, pieces) if n]


def _fits(child: JSONDict, slot: JSONDict) -> bool:
    """Whether partial news about a child completes `child` rather than adding a child."""
    gender = slot.get("desired_gender")
    if slot.get("name"):
        same = gender is None or child.get("desired_gender") in (None, gender)
        return not child.get("name") and same
    return bool(gender) and not child.get("desired_gender")


# --- Hera's reply ----------------------------------------------------------------------
def _question(field: str, profile: Profile) -> str:
    questions, pw = dict(lx.QUESTIONS), lx.partner_word(profile)
    if field in BASICS:
        labels = [label for f, label in lx.BASIC_LABELS if not present(getattr(profile, f))] or [
            label for _, label in lx.BASIC_LABELS
        ]
        return questions["basics"].format(labels="、".join(labels))
    if field in PARTNER_KEYS:
        have: Partner = getattr(profile, field) or Partner()
        labels = [label for k, label in lx.PARTNER_LABELS if not present(getattr(have, k))]
        named = field == "current_partner" or present(have.name)
        hint = "" if named else questions["ideal_name_hint"]
        return questions["partner"].format(pw=pw, labels="、".join(labels)) + hint
    if field == "children_info":
        children = [c for c in profile.children_info or [] if c.name or c.desired_gender]
        if unsure := [c.name for c in children if c.name and not c.desired_gender]:
            return questions["child_gender"].format(names="、".join(unsure))
        return questions["child_name" if children else "children_info"]
    return questions[field].format(pw=pw)


def compose_reply(extracted: JSONDict, merged: Profile, remaining: list[str]) -> str:
    """Thanks, what was understood (only values that pass the profile's validation), then
    the next question (or that all is collected)."""
    understood = Profile.from_untrusted(extracted).stored()
    ack = lx.acknowledge(understood, lx.partner_word(merged)) or "もう少しだけ詳しく伺えますか。"
    ask = _question(remaining[0], merged) if remaining else lx.ALL_DONE
    return f"ありがとうございます。{ack}{ask}"


class OfflineInterviewBrain:
    """Hera without a model. Holds no state, so one instance can serve every session at once."""

    __slots__ = ()

    async def interview_turn(
        self,
        *,
        profile: Profile,
        history: list[JSONDict],
        message: str,
        missing_fields: list[str],
        on_reply: TextSink | None = None,
    ) -> InterviewTurn:
        extracted = parse_message(
            message, profile=profile, topic=asked_topic(history, missing_fields)
        )
        # What the agent will store: the same validation and merge, so the reply asks next
        # for what will really still be missing.
        merged, _ = profile.merge(Profile.from_untrusted(extracted))
        still = merged.missing_fields()
        # The agent's list says what is missing; a new status may rename the partner key.
        key = merged.partner_key
        named = dict.fromkeys(key if f in PARTNER_KEYS else f for f in missing_fields)
        remaining = [f for f in named if f in still] or still
        reply = compose_reply(extracted, merged, remaining)
        await stream_text(reply, on_reply)
        return InterviewTurn(reply=reply, extracted=extracted)
