"""Offline Hera: a deterministic, rule-based Japanese interview brain (no network, no state).

A message is analysed into morphemes (`japanese.py`, SudachiPy), cut into clauses, and each
clause is attributed to the user, the partner or a child (explicit markers such as 私/妻/娘
first, else the previous clause, else the topic of Hera's last question). Numbers, places
and child counts are read from the morphemes (`readings.py`); words and names by the patterns
of `interview_lexicon.py`. The last question also gives short answers ("32", "花子です")
their meaning, and a place Hera is unsure of is asked back before it is stored.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

import anyio

from app.agents.brains import InterviewTurn, JSONDict, TextSink
from app.brains.offline import interview_lexicon as lx
from app.brains.offline import readings as rd
from app.brains.offline._lexicon import nfkc
from app.brains.offline.japanese import JapaneseAnalyser, Morpheme
from app.brains.pieces import stream_text
from app.domain.profile import PARTNER_KEYS, Partner, Profile, partner_key, present

Subject = Literal["user", "partner", "child"]
BASICS: Final = ("age", "gender", "relationship_status")  # asked together, in one question
# Longer messages are parsed on a worker thread: past this length a turn costs over ~1 ms
# of CPU (bench/offline_analyser_cost.py).
THREAD_FROM_CHARS: Final = 150
# Each turn also counts how often Hera asked her next question before: past ~500 history
# entries that count alone may cost ~1 ms (same bench), so such turns move too.
THREAD_FROM_ENTRIES: Final = 500
BREAK: Final = Morpheme("。", ("補助記号", "句点", "*", "*", "*", "*"), "。", "。")
ASKING: Final = re.compile(r"[?？]|教えて|聞かせ")  # the sentence where a question starts
TOPIC_PATTERN_OF: Final = MappingProxyType(dict(lx.TOPIC_PATTERNS))


# --- what Hera asked last --------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Topic:
    field: str | None  # "basics", "partner", another profile field, or None when unknown
    partner_sub: str | None = None  # "name" | "temperament" | "appearance" when asked alone
    pending: str | None = None  # a value Hera asked the person to confirm (「天神」でよろしい?)


def last_question(history: list[JSONDict]) -> Topic:
    """The topic of the last Hera message (Topic(None) when there is none, or unknown)."""
    hera = next((e for e in reversed(history) if e.get("speaker") == "hera"), None)
    return Topic(None) if hera is None else topic_of_question(str(hera.get("message", "")))


def asked_topic(last: Topic, missing_fields: list[str]) -> Topic:
    """The topic of the last Hera question, else of the first missing field."""
    if last.field:
        return last
    return Topic(topic_key(missing_fields[0]) if missing_fields else None)


def times_asked(history: list[JSONDict], topic: str) -> int:
    """How many Hera messages asked `topic`. Only a message naming one of its markers can
    have asked it, so the others are skipped unread (a long history stays cheap)."""
    if (markers := TOPIC_PATTERN_OF.get(topic)) is None:
        return 0
    return sum(
        1
        for e in history
        if e.get("speaker") == "hera"
        and markers.search(text := str(e.get("message", "")))
        and topic_of_question(text).field == topic
    )


def topic_of_question(text: str) -> Topic:
    # Acknowledgements come first and may name earlier topics: read from the sentence where
    # the question starts on.
    asking = ASKING.search(text)
    start = max(text.rfind(end, 0, asking.start()) for end in "。!?！？") + 1 if asking else 0
    question = text[start:]
    pending = m[1] if (m := lx.CONFIRM.search(question)) else None
    for name, markers in lx.TOPIC_PATTERNS:
        if markers.search(question):
            subs = [s for s, ms in lx.PARTNER_SUB_MARKERS if any(m in question for m in ms)]
            return Topic(name, subs[0] if name == "partner" and len(subs) == 1 else None, pending)
    return Topic(None)


def topic_key(name: str) -> str:
    """The question a missing field is asked in: basics and the partners share one."""
    return "basics" if name in BASICS else "partner" if name in PARTNER_KEYS else name


# --- clauses ---------------------------------------------------------------------------
@dataclass(slots=True)
class Part:
    """The clauses about one person: their text (joined by 。) and their morphemes."""

    clauses: list[str] = field(default_factory=list)
    tokens: list[Morpheme] = field(default_factory=list)
    by_clause: list[list[Morpheme]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "。".join(self.clauses)


def _clauses(text: str, tokens: Sequence[Morpheme], default: Subject) -> dict[Subject, Part]:
    out: dict[Subject, Part] = {"user": Part(), "partner": Part(), "child": Part()}
    current, start, first = default, 0, 0
    for cut in [*lx.CLAUSE_BREAK.finditer(text), None]:
        end = cut.start() if cut else len(text)
        raw = text[start:end]
        clause = raw.strip(" 、,")
        if clause:
            offset = start + raw.index(clause)
            current = _subject(clause) or current
            part = out[current]
            while first < len(tokens) and tokens[first].begin < offset:
                first += 1
            last = first
            while last < len(tokens) and tokens[last].begin < offset + len(clause):
                last += 1
            mine = list(tokens[first:last])
            part.clauses.append(clause)
            part.tokens += [*mine, BREAK]
            part.by_clause.append(mine)
        start = cut.end() if cut else len(text)
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
@dataclass(frozen=True, slots=True)
class Parsed:
    fields: JSONDict  # what the message says, each value as the profile would store it
    unsure: dict[str, str]  # readings to confirm before storing them (field -> value)


def parse_message(
    message: str, *, profile: Profile, topic: Topic, analyser: JapaneseAnalyser
) -> JSONDict:
    """The profile fields recognised in `message` (only those), given what Hera asked last."""
    return read_message(message, profile=profile, topic=topic, analyser=analyser).fields


def read_message(
    message: str, *, profile: Profile, topic: Topic, analyser: JapaneseAnalyser
) -> Parsed:
    text = nfkc(message)
    tokens = analyser.analyse(text)
    # A clause naming nobody is about whoever Hera's question was about.
    default: Subject = "child" if topic.field == "children_info" else "user"
    if topic.field in ("partner", "partner_face_description"):
        default = "partner"
    about = _clauses(text, tokens, default)
    user = about["user"]
    # Where the person lives and earns: every clause except those about the partner alone.
    own = [m for c, ms in _all_clauses(about) if not lx.PARTNER_TOPIC.match(c) for m in ms]
    out: JSONDict = {}
    unsure: dict[str, str] = {}
    _put(out, "age", rd.age(user.tokens, asked=topic.field == "basics"))
    # Gender and status words may be spelt in kana (おんな, どくしん): read the normal spelling.
    said = rd.variant_text(user.tokens)
    genders = [(m.start(), g) for g, p in lx.GENDER_PATTERNS if (m := p.search(said))]
    _put(out, "gender", min(genders)[1] if genders else None)
    spelt = rd.variant_text(tokens)
    status = next((value for value, p in lx.STATUS_PATTERNS if p.search(spelt)), None)
    _put(out, "relationship_status", status)
    if topic.field == "basics" and "その他" in text:  # answers whichever is still open
        gender_open = not profile.gender and "gender" not in out
        out.setdefault(*(("gender", "その他") if gender_open else ("relationship_status", "other")))
    asked_place = topic.field == "location"
    if asked_place and topic.pending and lx.YES.search(text) and not lx.NO.search(text):
        out["location"] = topic.pending  # "はい" to 「天神」でよろしいですか
    elif place := rd.location(own, asked=asked_place, text=text):
        (out if place.sure else unsure)["location"] = place.value
    _put(out, "income_range", rd.income(own, asked=topic.field == "income_range", text=text))
    _put(out, "user_personality_traits", _traits(user.text, said))
    _put(out, "interests", _hobbies(user.text))
    _put(out, "lifestyle", "、".join(_words(user.text, lx.LIFESTYLE)))
    key = partner_key(out.get("relationship_status", profile.relationship_status))
    partner, face = _partner(about["partner"], topic, getattr(profile, key) or Partner(), profile)
    _put(out, key, partner)
    _put(out, "partner_face_description", face)
    known = [c.model_dump(exclude_none=True) for c in profile.children_info or []]
    _put(out, "children_info", _children(about["child"], topic, known))
    return Parsed(out, unsure)


def _all_clauses(about: dict[Subject, Part]) -> list[tuple[str, list[Morpheme]]]:
    pairs = [
        (c.begin, clause, ms)
        for part in about.values()
        for clause, ms in zip(part.clauses, part.by_clause, strict=True)
        for c in ms[:1]
    ]
    return [(clause, [*ms, BREAK]) for _, clause, ms in sorted(pairs, key=lambda p: p[0])]


def _put(out: JSONDict, key: str, value: object) -> None:
    if present(value):
        out[key] = value


def _traits(text: str, variant: str = "") -> dict[str, float]:
    """Big Five scores from self-descriptions; `variant` is the text with kana-spelled words
    in their normal spelling (きちょうめん), read for the words the text itself lacks."""
    scores: dict[str, list[float]] = {}
    for word, trait, score in lx.TRAIT_KEYWORDS:
        source = text if word in text else variant if word in variant else ""
        if not source:
            continue
        for start in _finds(word, source):
            end = start + len(word)
            if source.startswith(lx.LOOKS, end) or lx.TRAIT_NOT_AFTER.match(source, end):
                continue
            before, value = source[max(0, start - 5) : start], score
            if lx.INTENSIFIER.search(before):
                value = 0.5 + (score - 0.5) * 1.25
            elif lx.SOFTENER.search(before):
                value = 0.5 + (score - 0.5) * 0.6
            if lx.NEGATION.match(source, end):
                value = 1 - value
            scores.setdefault(trait, []).append(min(0.95, max(0.05, value)))
    return {t: round(sum(v) / len(v), 2) for t, v in scores.items()}


def _words(text: str, table: lx.Stems, *, looks: bool = False) -> list[str]:
    """Canonical words whose stems occur (not negated, not "…そう"), in order of appearance;
    with `looks`, not those describing a face either (優しい顔)."""
    found = []
    for canonical, stems in table:
        starts = [
            start
            for s in stems
            for start in _finds(s, text)
            if not lx.NEGATION.match(text, start + len(s))
            and not text.startswith(lx.LOOKS, start + len(s))
            and not (looks and lx.LOOK_NOUN.match(text, start + len(s)))
        ]
        if starts:
            found.append((min(starts), canonical))
    return [w for _, w in sorted(found)]


def _finds(word: str, text: str) -> Iterator[int]:
    """Where `word` starts in `text`, left to right, occurrences not overlapping."""
    start = text.find(word)
    while start >= 0:
        yield start
        start = text.find(word, start + len(word))


def _hobbies(text: str) -> list[str]:
    if not (m := lx.HOBBY.search(text)):
        return []
    raw = lx.HOBBY_TAIL.sub("", m[1])
    return [p for p in (p.strip() for p in lx.HOBBY_SPLIT.split(raw)) if 0 < len(p) <= 15]


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
            not lx.HIRAGANA_WORD.fullmatch(name[:i])
            or not lx.HIRAGANA_WORD.match(rest)
            or rest.startswith(lx.DESCRIPTIVE)
        ):
            name = name[:i]
            break
    valid = len(name) <= 10 and lx.NAME_WORD.fullmatch(name)
    if not valid or name in lx.NAME_STOP or lx.NAME_REJECT.search(name):
        return None
    return None if any(w in name for w in lx.DESCRIPTIVE) else name


def _partner(part: Part, topic: Topic, have: Partner, profile: Profile) -> tuple[JSONDict, str]:
    text = part.text
    if not text:
        return {}, ""
    patterns = (lx.NAME_IS, lx.NAME_OF, lx.NAME_SAID, lx.HONORIFIC)
    found = (m[1] for p in patterns for m in p.finditer(text))
    name = next(filter(None, map(clean_name, found)), None)
    name = name or next(filter(None, map(clean_name, _given_names(part.tokens))), None)
    temperament = _words(text, lx.TEMPERAMENT, looks=True)
    appearance = _words(text, lx.APPEARANCE)
    described = _describe(part.by_clause)
    # Asked about the face, the whole answer describes it; otherwise only clauses naming 目/髪...
    # (once a face is known, only a clause naming the face itself changes it).
    asked_face = topic.field == "partner_face_description"
    words = lx.FACE_WORDS if not present(profile.partner_face_description) else lx.FACE_ITSELF
    if asked_face:  # unless it says nothing of looks, or speaks of a character instead
        character = "性格" in text and not lx.FACE_WORDS.search(text) and not appearance
        face = "" if lx.NO_PREFERENCE.search(text) or character else described
    else:
        pairs = zip(part.clauses, part.by_clause, strict=True)
        face = _describe([ms for c, ms in pairs if words.search(c)])
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


def _given_names(tokens: Sequence[Morpheme]) -> list[str]:
    """Given names the dictionary knows, said as a name is said (健太って, タカシです)."""
    names = []
    for i, m in enumerate(tokens):
        nxt = tokens[i + 1].surface if i + 1 < len(tokens) else "。"
        if m.is_person and m.pos[3] == "名" and nxt in lx.AFTER_A_NAME:
            names.append(m.surface)
    return names


def _describe(clauses: Sequence[Sequence[Morpheme]]) -> str:
    return "、".join(filter(None, map(rd.description, clauses))).strip("、 ")


def _children(part: Part, topic: Topic, existing: object) -> list[JSONDict] | None:
    text = part.text
    if not text:
        return None
    before = (
        [dict(c) for c in existing if isinstance(c, dict)] if isinstance(existing, list) else []
    )
    slots: list[JSONDict] = []
    paired: set[int] = set()
    for child in before:  # "さくらは女の子" answers the gender of a child named earlier
        if name := child.get("name"):
            for m in re.finditer(re.escape(str(name)) + lx.NAMED_CHILD, text):
                slots.append({"name": name, "desired_gender": lx.CHILD_GENDER_OF[m["tok"]]})
                paired.add(m.start("tok"))
    for m in lx.CHILD_TOKEN.finditer(text):
        if m.start("tok") in paired:
            continue
        name = clean_name(m["name"]) if m["name"] else None
        for i in range(min(int(m["pre"] or m["n"] or 1), 5)):
            slots.append(
                {"desired_gender": lx.CHILD_GENDER_OF[m["tok"]]}
                | ({"name": name} if name and not i else {})
            )
    counted = rd.child_genders(part.tokens)
    if len(counted) > len(slots):  # 子ども3人（男2女1）: the counts give the children
        named = {g: [s for s in slots if s.get("desired_gender") == g] for g in set(counted)}
        slots = [
            {"desired_gender": g} | ({"name": n} if (n := _take_name(named[g])) else {})
            for g in counted
        ]
    names = [n for m in lx.NAME_LIST.finditer(text) for n in _split_names(m[1])]
    names += [n for m in lx.HONORIFIC.finditer(text) if (n := clean_name(m[1]))]
    said = slots or names or lx.CHILD_COUNT.search(text)
    bare = not (said or lx.NOT_AN_ANSWER.search(text) or lx.NAME_REJECT.search(text))
    if topic.field == "children_info" and bare:
        names = _split_names(text)  # a bare answer to the children question: names
    for name in names:
        if any(s.get("name") == name for s in slots):
            continue
        if hole := next((s for s in slots if "name" not in s), None):
            hole["name"] = name
        else:
            slots.append({"name": name})
    # Only what this message says: the profile's merge matches it to the children known.
    return slots or None


def _take_name(slots: list[JSONDict]) -> str | None:
    while slots:
        if name := slots.pop(0).get("name"):
            return str(name)
    return None


def _split_names(raw: str) -> list[str]:
    parts = lx.NAME_SPLIT.split(_strip_tail(raw.strip()))
    pieces = [parts[0]]
    for sep, piece in zip(parts[1::2], parts[2::2], strict=True):
        short = len(pieces[-1]) < 2 or len(piece) < 2
        # A one-kana piece means the と was inside a name (ひとみ, ことね), not between two.
        kana = not (pieces[-1] + piece) or lx.HIRAGANA_WORD.fullmatch(pieces[-1] + piece)
        if sep == "と" and short and kana:
            pieces[-1] += sep + piece
        else:
            pieces.append(piece)
    return [n for n in map(clean_name, pieces) if n]


# --- Hera's reply ----------------------------------------------------------------------
def _question(name: str, profile: Profile, variant: int = 0) -> str:
    """The question for a missing field; `variant` picks another wording when Hera comes back
    to a question she has asked before."""
    pw = lx.partner_word(profile)
    if name in BASICS:
        labels = [label for f, label in lx.BASIC_LABELS if not present(getattr(profile, f))] or [
            label for _, label in lx.BASIC_LABELS
        ]
        return _phrase("basics", variant).format(labels="、".join(labels))
    if name in PARTNER_KEYS:
        have: Partner = getattr(profile, name) or Partner()
        labels = [label for k, label in lx.PARTNER_LABELS if not present(getattr(have, k))]
        named = name == "current_partner" or present(have.name)
        hint = "" if named else _phrase("ideal_name_hint", 0)
        return _phrase("partner", variant).format(pw=pw, labels="、".join(labels)) + hint
    if name == "children_info":
        children = [c for c in profile.children_info or [] if c.name or c.desired_gender]
        if unsure := [c.name for c in children if c.name and not c.desired_gender]:
            return _phrase("child_gender", variant).format(names="、".join(unsure))
        return _phrase("child_name" if children else "children_info", variant)
    return _phrase(name, variant).format(pw=pw)


def _phrase(name: str, variant: int) -> str:
    wordings = lx.QUESTIONS[name]
    return wordings[variant % len(wordings)]


@dataclass(frozen=True, slots=True)
class Plan:
    """What Hera asks next: the field, how often she asked it before, and a field she set
    aside because the person talked about something else."""

    field: str | None
    asked_before: int = 0
    set_aside: str | None = None


def plan_question(
    history: list[JSONDict], remaining: list[str], changed: list[str], *, last: str | None
) -> Plan:
    """Never the same question twice in a row: an unanswered question is asked again in other
    words when the person told something else new, and set aside (another missing item is
    asked; this one comes back later, in other words) when the message changed nothing.
    `last` is the topic of Hera's last message (see `last_question`)."""
    if not remaining:
        return Plan(None)
    first = topic_key(remaining[0])
    stuck = last == first and not any(topic_key(f) == first for f in changed)
    choice = remaining[0]
    if stuck and not changed:
        choice = next((f for f in remaining if topic_key(f) != first), remaining[0])
    key = topic_key(choice)
    return Plan(choice, times_asked(history, key), first if key != first else None)


def compose_reply(
    understood: Profile,
    merged: Profile,
    remaining: list[str],
    *,
    unsure: dict[str, str] | None = None,
    plan: Plan | None = None,
) -> str:
    """Thanks, what was understood (the message's fields as the profile validated them), then
    a question: a reading to confirm, else the planned missing field (or that all is
    collected)."""
    ack = lx.acknowledge(understood.stored(), lx.partner_word(merged))
    plan = plan or Plan(remaining[0] if remaining else None)
    if plan.set_aside:
        ack += lx.SET_ASIDE.get(plan.set_aside, "")
    ack = ack or "もう少しだけ詳しく伺えますか。"
    if unsure and (place := unsure.get("location")):
        ask = lx.CONFIRM_PLACE.format(place=place)
    elif plan.field:
        ask = _question(plan.field, merged, plan.asked_before)
    else:
        ask = lx.ALL_DONE
    return f"ありがとうございます。{ack}{ask}"


class OfflineInterviewBrain:
    """Hera without a model. Holds only the shared analyser, so one instance can serve every
    session at once."""

    __slots__ = ("_analyser",)

    def __init__(self, analyser: JapaneseAnalyser) -> None:
        # The process's one analyser, loaded and closed by the composition root.
        self._analyser = analyser

    async def interview_turn(
        self,
        *,
        profile: Profile,
        history: list[JSONDict],
        message: str,
        missing_fields: list[str],
        on_reply: TextSink | None = None,
    ) -> InterviewTurn:
        args = (message, profile, history, missing_fields)
        if len(message) >= THREAD_FROM_CHARS or len(history) >= THREAD_FROM_ENTRIES:
            extracted, reply = await anyio.to_thread.run_sync(self.turn, *args)
        else:
            extracted, reply = self.turn(*args)
        await stream_text(reply, on_reply)
        return InterviewTurn(reply=reply, extracted=extracted)

    def turn(
        self, message: str, profile: Profile, history: list[JSONDict], missing_fields: list[str]
    ) -> tuple[JSONDict, str]:
        """The extracted fields and the reply (pure CPU work, safe on any thread)."""
        last = last_question(history)
        topic = asked_topic(last, missing_fields)
        parsed = read_message(message, profile=profile, topic=topic, analyser=self._analyser)
        # What the agent will store: the same validation and merge, so the reply asks next
        # for what will really still be missing.
        understood = Profile.from_untrusted(parsed.fields)
        merged, changed = profile.merge(understood)
        remaining = merged.missing_fields()
        plan = plan_question(history, remaining, changed, last=last.field)
        reply = compose_reply(understood, merged, remaining, unsure=parsed.unsure, plan=plan)
        return parsed.fields, reply
