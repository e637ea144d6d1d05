"""Offline family: a deterministic, rule-based Japanese future family (no network, no state).

One turn reads the user's message for a destination and activities (keyword tables in
`family_lexicon.py`, NFKC-normalised, synonyms folded to one canonical word), judges an
answer to a pending plan proposal, and lets every member react in their own voice. Phrasing
varies with a hash of (message, member, turn number), so equal inputs give equal outputs.

Answer to a proposal (only when one is pending; judged from the message alone, with the
pending destination used to recognise "somewhere else"):
1. A negated agreement anywhere (いいと思わない, 賛成できない, 行きたくない) is a decline.
2. The message is cut at contrast words (でも, けど, ...); the last part that says anything
   decides, so 「いいね、でも北海道がいい」 declines and 「迷ったけど、それでいこう」 accepts.
3. In that part, a strong agreement (最高, 行こう, 決まり, 賛成, いいね ...) after the last
   refusal word wins (「いやいや、最高！行こう！」 accepts); otherwise any refusal word, or a
   destination other than the proposed one, declines (「いや、いいよ」 declines); a weak yes
   (はい, うん, いいよ) accepts unless the part is a question. Nothing recognised: None.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from app.agents.brains import FamilyLine, FamilyTurn, JSONDict, LineSink, TextSink
from app.brains.offline import family_lexicon as fx
from app.brains.offline._lexicon import nfkc
from app.brains.pieces import stream_line, stream_text
from app.domain.family import Persona, TripInfo, TripPlan
from app.domain.profile import Profile

Answer = Literal["accept", "decline"]
Piece = tuple[int, int, str]  # (paragraph, priority (0 = always), text)

STORY_RANGE = (800, 1200)
LETTER_RANGE = (600, 900)


# --- reading the message ------------------------------------------------------------------
def _text(message: str, names: Iterable[str] = ()) -> str:
    text = nfkc(message).lower()
    for name in names:  # a child called 海斗 or 京子 is not a trip
        if len(name) >= 2:
            text = text.replace(nfkc(name).lower(), "〇")
    return text


def _clause_rest(text: str, end: int) -> str:
    stop = fx.CLAUSE_END.search(text, end)  # the clause's end, with its mark (行かない? invites)
    return text[end : stop.start() + 1] if stop else text[end:]


def _glued(neighbour: str, edge: str) -> bool:
    """Whether a name's edge character runs on into a neighbour of the same script."""
    if fx.KATAKANA_CHAR.match(edge):
        return bool(fx.KATAKANA_CHAR.match(neighbour))
    return edge.isascii() and neighbour.isascii() and neighbour.isalnum()


def find_destination(text: str) -> str | None:
    """The place the message wants to go to (normalised text), or None."""
    best: tuple[int, int, str] | None = None  # (-score, position, canonical)
    for m in fx.PLACE.finditer(text):
        stem, after = m["stem"], text[m.end() : m.end() + 16]
        if _glued(text[m.start() - 1 : m.start()], stem[0]) or _glued(after[:1], stem[-1]):
            continue  # タイ is not in タイム, セブ not in セブン, usj not in a longer word
        if fx.PLACE_NOT_AFTER.match(after) or (
            (cue := fx.PLACE_NEEDS_CUE.get(stem)) and not cue.match(m["suffix"] or after)
        ):
            continue
        if fx.PLACE_NOT_TRIP.match(after) or fx.TURNED_DOWN.search(_clause_rest(text, m.end())):
            continue
        score = 1 if fx.PLACE_WANTED.match(after) else 0
        candidate = (-score, m.start(), fx.PLACE_OF[stem])
        best = min(best, candidate) if best else candidate
        if score:
            break  # a later mention can only tie, and the first one wins ties
    return best[2] if best else None


def find_activities(text: str) -> list[str]:
    """Canonical activities the message asks for, in order of mention, without duplicates."""
    found: dict[str, None] = {}
    for m in fx.ACTIVITY.finditer(text):
        if fx.TURNED_DOWN.search(_clause_rest(text, m.end())):
            continue
        found.setdefault(next(w for w, rx in fx.ACTIVITY_OF if rx.fullmatch(m[0])))
    return list(found)


def extract_trip(message: str, *, known: TripInfo, names: Iterable[str] = ()) -> JSONDict:
    """What this message adds to the trip info `known` (only new things)."""
    text = _text(message, names)
    out: JSONDict = {}
    destination = find_destination(text)
    if destination and destination != known.destination:
        out["destination"] = destination
    have = set(known.activities)
    if activities := [a for a in find_activities(text) if a not in have]:
        out["activities"] = activities
    return out


def classify_answer(message: str, destination: str | None = None) -> Answer | None:
    """The user's answer to a proposed plan (see the module docstring for the rule)."""
    text = fx.DOUBLE_NEGATIVE.sub("いいよ", _text(message))
    if fx.NEGATED_ACCEPT.search(text):
        return "decline"
    for part in reversed([p for p in fx.CONTRAST.split(text) if p.strip(" 、,.!?")]):
        refusals = [m.end() for m in fx.DECLINE.finditer(part)]
        elsewhere = find_destination(part)
        if elsewhere and elsewhere != destination:
            refusals.append(len(part) + 1)  # another destination beats any agreement
        strong = [m.start() for m in fx.STRONG_ACCEPT.finditer(part)]
        if strong and (not refusals or max(strong) >= max(refusals)):
            return "accept"
        if refusals:
            return "decline"
        if fx.WEAK_ACCEPT.search(part):
            return None if part.rstrip(" .!").endswith("?") else "accept"
    return None


# --- voices -------------------------------------------------------------------------------
def _pick(options: tuple[str, ...], *seed: object) -> str:
    digest = hashlib.blake2b("\x1f".join(map(str, seed)).encode(), digest_size=8).digest()
    return options[int.from_bytes(digest, "big") % len(options)]


def partner_voice(persona: Persona) -> fx.Voice:
    style = persona.speaking_style
    if fx.KANSAI_STYLE.search(style):
        return "kansai"
    return "polite" if fx.POLITE_STYLE.search(style) else "plain"


def child_band(persona: Persona) -> fx.Band:
    age = persona.age
    if age is None:
        return "kid"
    return "little" if age <= 6 else "teen" if age >= 13 else "kid"


def child_calls_user(profile: Profile) -> str | None:
    """お父さん / お母さん from the user's gender; None when unknown."""
    gender = profile.gender or ""
    return next((word for head, word in fx.CHILD_CALL.items() if gender.startswith(head)), None)


def _name(persona: Persona, fallback: str) -> str:
    return persona.name or persona.role or fallback


def _join(words: list[str], last: str = "と") -> str:
    return words[0] if len(words) == 1 else "、".join(words[:-1]) + last + words[-1]


def _wish(activity: str) -> str:
    return fx.WISH.get(activity) or fx.WISH_DEFAULT.format(act=activity)


# --- one turn -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Moment:
    """Where the talk stands after the user's message."""

    state: str  # open | pending (no answer yet) | accept | decline
    new_dest: str
    new_acts: list[str]
    dest: str  # known destination, this message included
    acts: list[str]

    def reaction(self, to_acts: str) -> str | None:
        if self.new_dest:
            return "react_both" if self.new_acts else "react_dest"
        return to_acts if self.new_acts else None

    def next_step(self) -> str:
        if not self.dest:
            return "ask_dest"
        if len(self.acts) < 2:
            return "ask_more" if self.acts else "ask_acts"
        return "unclear" if self.state == "pending" else "ready"


def partner_line(persona: Persona, at: Moment, seed: str) -> str:
    voice = partner_voice(persona)
    you = "あなた"
    react = at.reaction("react_acts")
    if at.state == "open" or (at.state != "accept" and react):
        keys = [react or "ack", at.next_step()]
    else:  # no questions once accepted; a decline asks what instead
        keys = [*([react] if react else []), {"pending": "unclear"}.get(at.state, at.state)]
    line = ""
    for key in keys:
        shown = at.new_acts if key.startswith("react") else at.acts
        values = {"you": you, "dest": at.dest, "acts": _join(shown) if shown else ""}
        line += _pick(fx.PARTNER_LINES[voice][key], seed, key).format(**values)
    return line if you in line else f"{you}、{line}"


def child_line(persona: Persona, profile: Profile, at: Moment, nth: int, seed: str) -> str:
    call = child_calls_user(profile)
    key = "accept" if at.state == "accept" else at.reaction("react_act")
    if key is None:
        step = {"ask_more": "ask_acts", "unclear": "ready"}.get(at.next_step(), at.next_step())
        key = {"pending": "unclear", "decline": "decline"}.get(at.state, step)
    pool = at.new_acts or at.acts or [""]
    act = pool[nth % len(pool)]
    values = {"call": f"{call}、" if call else "ねえ、", "dest": at.dest, "act": act}
    values["wish"] = _wish(act) if act else "楽しみ"
    return _pick(fx.CHILD_LINES[child_band(persona)][key], seed).format(**values)


def family_lines(
    profile: Profile, personas: list[Persona], turn: int, message: str, at: Moment
) -> list[FamilyLine]:
    """One line per persona, in persona order; phrasing seeded by (message, member, turn)."""
    lines, nth = [], 0
    for persona in personas:
        seed = "\x1f".join((message, persona.id, str(turn)))
        if persona.kind == "partner":
            text = partner_line(persona, at, seed)
        else:
            text, nth = child_line(persona, profile, at, nth, seed), nth + 1
        lines.append(FamilyLine(speaker=_name(persona, "家族"), message=text))
    return lines


# --- story and letter ---------------------------------------------------------------------
def _render(pieces: list[Piece], chosen: set[int]) -> str:
    paragraphs: dict[int, str] = {}
    for i, (para, _, text) in enumerate(pieces):
        if i in chosen and text:
            paragraphs[para] = paragraphs.get(para, "") + text
    return "\n\n".join(paragraphs[p] for p in sorted(paragraphs))


def fit(pieces: list[Piece], low: int, high: int) -> str:
    """Every required piece plus optional ones, in priority order, while the text is short.

    Optional sentences are added until the text reaches the middle of [low, high] and never
    past `high`; nothing is ever cut mid-sentence.
    """
    chosen = {i for i, (_, prio, _) in enumerate(pieces) if prio == 0}
    optional = sorted((prio, i) for i, (_, prio, _) in enumerate(pieces) if prio)
    for goal in ((low + high) // 2, high):
        for _, i in optional:
            if len(_render(pieces, chosen)) >= goal:
                break
            if i not in chosen and len(_render(pieces, chosen | {i})) <= high:
                chosen.add(i)
        if len(_render(pieces, chosen)) >= low:
            break
    return _render(pieces, chosen)


def _plan(plan: TripPlan) -> tuple[str, list[str]]:
    dest = plan.destination or "旅先"
    acts = [a for a in dict.fromkeys(plan.activities) if a]
    return dest, acts or ["散策"]


def _members(personas: list[Persona]) -> tuple[Persona | None, list[Persona]]:
    partner = next((p for p in personas if p.kind == "partner"), None)
    return partner, [p for p in personas if p is not partner]


def _interest(profile: Profile) -> str:
    return next((v for v in profile.interests or [] if v), "")


def story_pieces(
    profile: Profile, personas: list[Persona], plan: TripPlan, level: int
) -> list[Piece]:
    """`level` 0 tells each activity in full, 1 briefly, 2 in one sentence."""
    dest, acts = _plan(plan)
    partner, children = _members(personas)
    pname = _name(partner, "パートナー") if partner else "パートナー"
    kids = [_name(c, "子ども") for c in children] or ["子どもたち"]
    user = "あなた"
    values = {
        "user": user, "partner": pname, "dest": dest, "acts": "、".join(acts),
        "family": f"{user}と{pname}、そして{_join(kids)}", "kids": _join(kids), "kid0": kids[0],
        "location": profile.location or "", "interest": _interest(profile),
    }  # fmt: skip
    if level < 2:
        scenes = [
            (fx.SCENE.get(a, fx.SCENE_DEFAULT) if level == 0 else fx.SCENE_SHORT).format(
                act=a, kid=kids[i % len(kids)]
            )
            for i, a in enumerate(acts)
        ]
        unseen = kids[len(acts) :]
    else:
        scenes, unseen = [fx.SCENES_GROUPED.format(acts=_join(acts), kids=_join(kids))], []
    if unseen:
        scenes.append(fx.STORY_UNSEEN_KIDS.format(kids=_join(unseen)))
    cheers = fx.STORY_OTHER_CHILD
    others = [  # the other children join the planning, each wishing for the next activity
        cheers[i % len(cheers)].format(kid=kid, wish=_wish(acts[(i + 1) % len(acts)]))
        for i, kid in enumerate(kids[1:])
    ]
    pieces: list[Piece] = []
    for para, prio, template in fx.STORY:
        if template == "{scenes}":
            pieces += [(para, 0, text) for text in scenes]
        elif template == "{others}":
            pieces += [(para, 3, text) for text in others]
        elif all(values[key] for key in ("location", "interest") if f"{{{key}}}" in template):
            pieces.append((para, prio, template.format(**values)))
    return pieces


def letter_pieces(
    profile: Profile, personas: list[Persona], plan: TripPlan, level: int
) -> list[Piece]:
    """`level` > 0 keeps only each member's first sentences (for very large families)."""
    dest, acts = _plan(plan)
    partner, children = _members(personas)
    call = child_calls_user(profile)
    location = profile.location or ""
    pieces: list[Piece] = [(0, 0, f"{fx.LETTER_TO_NAMELESS}へ")]
    for prio, text in fx.LETTER_OPENING:
        if location or "{location}" not in text:
            pieces.append((1, prio, text.format(dest=dest, you="あなた", location=location)))
    para, signers = 2, []
    if partner:
        voice = partner_voice(partner)
        values = {"you": "あなた", "partner": _name(partner, "パートナー"),
                  "dest": dest, "act": acts[0]}  # fmt: skip
        pieces += [(para, p, t.format(**values)) for p, t in fx.LETTER_PARTNER[voice]]
        signers.append(values["partner"])
        para += 1
    for i, child in enumerate(children):
        kid = _name(child, "子ども")
        values = {"to": f"{call}へ。" if call else "", "call": call or "みんな", "kid": kid,
                  "dest": dest, "act": acts[i % len(acts)]}  # fmt: skip
        pieces += [(para, p, t.format(**values)) for p, t in fx.LETTER_CHILD[child_band(child)]]
        signers.append(kid)
        para += 1
    members = range(2, para)
    pieces += [(para, p, t.format(you="あなた")) for p, t in fx.LETTER_CLOSING]
    pieces.append((para + 1, 15, fx.LETTER_POSTSCRIPT))
    pieces.append((para + 2, 0, fx.LETTER_SIGN.format(names="、".join(signers) or "未来の家族")))
    return [p for p in pieces if level == 0 or p[1] == 0 or p[0] not in members]


Builder = Callable[[Profile, list[Persona], TripPlan, int], list[Piece]]


def _write(
    build: Builder,
    span: tuple[int, int],
    profile: Profile,
    personas: list[Persona],
    plan: TripPlan,
) -> str:
    """The fullest telling that fits; shorter tellings only when a huge plan needs them."""
    text = ""
    for level in (0, 1, 2):
        text = fit(build(profile, personas, plan, level), *span)
        if len(text) <= span[1]:
            break
    return text


class OfflineFamilyBrain:
    """The family without a model. Holds no state, so one instance serves every session."""

    __slots__ = ()

    async def family_turn(
        self,
        *,
        profile: Profile,
        personas: list[Persona],
        history: list[JSONDict],
        trip_info: TripInfo,
        message: str,
        proposal_pending: bool,
        on_line: LineSink | None = None,
    ) -> FamilyTurn:
        added = extract_trip(message, known=trip_info, names=[p.name for p in personas])
        answer = classify_answer(message, trip_info.destination) if proposal_pending else None
        known = list(trip_info.activities)
        at = Moment(
            state=answer or ("pending" if proposal_pending else "open"),
            new_dest=str(added.get("destination") or ""),
            new_acts=list(added.get("activities") or []),
            dest=str(added.get("destination") or trip_info.destination or ""),
            acts=list(dict.fromkeys([*known, *added.get("activities", [])])),
        )
        lines = family_lines(profile, personas, len(history), message, at)
        for line in lines:
            await stream_line(line.speaker, line.message, on_line)
        return FamilyTurn(lines=lines, trip_info=added, proposal_answer=answer)

    async def write_story(
        self,
        *,
        profile: Profile,
        personas: list[Persona],
        plan: TripPlan,
        on_text: TextSink | None = None,
    ) -> str:
        story = _write(story_pieces, STORY_RANGE, profile, personas, plan)
        await stream_text(story, on_text)
        return story

    async def write_letter(
        self,
        *,
        profile: Profile,
        personas: list[Persona],
        plan: TripPlan,
        on_text: TextSink | None = None,
    ) -> str:
        letter = _write(letter_pieces, LETTER_RANGE, profile, personas, plan)
        await stream_text(letter, on_text)
        return letter
