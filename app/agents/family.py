"""The future family conversation: personas, turns, trip info, proposal, story and letter.

State lives in the session's "family" document and "family_history" log; every turn runs
under the session lock, so any worker can serve any turn and nothing is decided twice.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Final

from app.agents.brains.base import BrainError, FamilyBrain
from app.agents.errors import InterviewIncomplete
from app.agents.hera import clean_message
from app.agents.personas import build_personas
from app.agents.profile import missing_fields
from app.repositories.base import JSONDict, SessionRepository, utcnow

log = logging.getLogger(__name__)

CLOSING_REPLY: Final = (
    "旅行の計画はもう決まったよ。物語と手紙を読んでね。また会えるのを楽しみにしているよ。"
)
MIN_ACTIVITIES: Final = 2
MAX_ACTIVITIES: Final = 10


def family_status(family: JSONDict) -> str:
    """Derived, never stored: no personas yet, chatting, or the plan agreed."""
    if family.get("plan") is not None:
        return "completed"
    return "active" if family.get("personas") else "not_started"


@dataclass(frozen=True)
class FamilyView:
    history: list[JSONDict]
    trip_info: JSONDict
    complete: bool
    plan: JSONDict | None
    proposal: JSONDict | None
    personas: list[JSONDict]


@dataclass(frozen=True)
class FamilyTurnResult:
    reply: list[JSONDict]
    view: FamilyView


def _entry(speaker: str, role: str, message: str) -> JSONDict:
    return {"speaker": speaker, "role": role, "message": message, "timestamp": utcnow().isoformat()}


def merge_trip(current: JSONDict, found: JSONDict) -> JSONDict:
    """Destination: the latest mentioned wins. Activities: accumulate, no duplicates."""
    destination = found.get("destination")
    activities = [str(a) for a in current.get("activities", [])]
    for item in found.get("activities") or []:
        if isinstance(item, str) and item.strip() and item.strip() not in activities:
            activities.append(item.strip()[:50])
    merged = {"destination": current.get("destination"), "activities": activities[:MAX_ACTIVITIES]}
    if isinstance(destination, str) and destination.strip():
        merged["destination"] = destination.strip()[:50]
    return merged


def _plan_key(trip: JSONDict) -> list[Any]:
    return [trip.get("destination"), sorted(trip.get("activities", []))]


def proposal_text(plan: JSONDict) -> str:
    activities = "や".join(plan["activities"])
    return f"じゃあ、{plan['destination']}で{activities}を楽しむのはどうかな？みんなで決めよう！"


def fallback_story(profile: JSONDict, personas: list[JSONDict], plan: JSONDict) -> str:
    names = "、".join(p["name"] for p in personas)
    activities = "、".join(plan["activities"])
    return (
        f"ある日、{names}とあなたは家族旅行の相談をしました。行き先は{plan['destination']}。"
        f"{activities}をしようと、みんなで楽しく計画を立てました。当日は朝から笑顔があふれ、"
        "ひとつひとつの思い出が家族の宝物になりました。帰り道、みんなで「また来ようね」と約束しました。"
    )


def fallback_letter(profile: JSONDict, personas: list[JSONDict], plan: JSONDict) -> str:
    names = "、".join(p["name"] for p in personas)
    return (
        f"大切なあなたへ。{plan['destination']}への旅行、本当に楽しみにしています。"
        "いつもありがとう。これからも家族みんなで、たくさんの思い出を作っていこうね。"
        f"\n{names}より"
    )


class FamilyAgent:
    def __init__(
        self, *, sessions: SessionRepository, brain: FamilyBrain, max_message_chars: int = 2000
    ) -> None:
        self._sessions = sessions
        self._brain = brain
        self._max_chars = max_message_chars

    async def status(self, session_id: str) -> FamilyView:
        """Read-only: never creates personas or writes anything."""
        snap = await self._sessions.load(
            session_id=session_id, docs=["family"], logs=["family_history"]
        )
        return self._view(snap.doc("family"), snap.log("family_history"))

    @staticmethod
    def _view(family: JSONDict, history: list[JSONDict]) -> FamilyView:
        trip = family.get("trip_info") or {"destination": None, "activities": []}
        return FamilyView(
            history=history,
            trip_info=trip,
            complete=family.get("plan") is not None,
            plan=family.get("plan"),
            proposal=family.get("proposal"),
            personas=family.get("personas", []),
        )

    async def start(self, session_id: str) -> list[JSONDict]:
        """Create and store the personas once (idempotent); needs a complete profile."""
        async with self._sessions.lock(session_id=session_id):
            snap = await self._sessions.load(session_id=session_id, docs=["profile", "family"])
            return await self._ensure_personas(session_id, snap.doc("profile"), snap.doc("family"))

    async def _ensure_personas(
        self, session_id: str, profile: JSONDict, family: JSONDict
    ) -> list[JSONDict]:
        if missing := missing_fields(profile):
            raise InterviewIncomplete(missing)
        personas: list[JSONDict] = family.get("personas") or []
        if not personas:
            personas = build_personas(profile, session_id)
            fields: JSONDict = {"personas": personas}
            if "trip_info" not in family:  # an imported session may already have one
                fields["trip_info"] = {"destination": None, "activities": []}
            await self._sessions.update(session_id=session_id, doc="family", fields=fields)
        return personas

    async def handle_message(self, session_id: str, message: str) -> FamilyTurnResult:
        text = clean_message(message, self._max_chars)
        async with self._sessions.lock(session_id=session_id):
            snap = await self._sessions.load(
                session_id=session_id, docs=["profile", "family"], logs=["family_history"]
            )
            profile, family = snap.doc("profile"), snap.doc("family")
            history = snap.log("family_history")
            personas = await self._ensure_personas(session_id, profile, family)
            if family.get("plan") is not None:  # the plan is agreed: nothing changes now
                partner = personas[0]
                closing = _entry(partner["name"], partner["role"], CLOSING_REPLY)
                return FamilyTurnResult([closing], self._view(family, history))
            user = _entry("user", "user", text)
            await self._sessions.append(session_id=session_id, log="family_history", entries=[user])
            pending: JSONDict | None = family.get("proposal")
            trip_before = family.get("trip_info") or {"destination": None, "activities": []}
            turn = await self._brain.family_turn(
                profile=profile,
                personas=personas,
                history=history,
                trip_info=trip_before,
                message=text,
                proposal_pending=pending is not None,
            )
            by_name = {p["name"]: p for p in personas}
            lines = [
                _entry(line.speaker, by_name[line.speaker]["role"], line.message)
                for line in turn.lines
                if line.speaker in by_name and line.message.strip()
            ]
            trip = merge_trip(trip_before, turn.trip_info)
            changes: JSONDict = {"trip_info": trip}
            # Only a proposal made in an earlier turn can be answered, and only by the user.
            answer = turn.proposal_answer if pending is not None else None
            if pending is not None and answer == "accept":
                changes.update(await self._finish(profile, personas, pending))
            elif pending is not None and answer == "decline":
                changes.update(proposal=None, declined=_plan_key(pending))
            elif pending is None and self._ready(trip, family.get("declined")):
                proposal = {"destination": trip["destination"], "activities": trip["activities"]}
                partner = next(p for p in personas if p["kind"] == "partner")
                lines.append(_entry(partner["name"], partner["role"], proposal_text(proposal)))
                changes["proposal"] = proposal
            await self._sessions.append(session_id=session_id, log="family_history", entries=lines)
            await self._sessions.update(session_id=session_id, doc="family", fields=changes)
        view = self._view({**family, **changes}, [*history, user, *lines])
        return FamilyTurnResult(lines, view)

    @staticmethod
    def _ready(trip: JSONDict, declined: Any) -> bool:
        enough = bool(trip.get("destination")) and len(trip["activities"]) >= MIN_ACTIVITIES
        # After a "no", propose again only once the trip has changed.
        return enough and _plan_key(trip) != declined

    async def _finish(
        self, profile: JSONDict, personas: list[JSONDict], proposal: JSONDict
    ) -> JSONDict:
        """Story and letter side by side; a failed one gets a simpler text, never nothing."""
        story, letter = await asyncio.gather(
            self._brain.write_story(profile=profile, personas=personas, plan=proposal),
            self._brain.write_letter(profile=profile, personas=personas, plan=proposal),
            return_exceptions=True,
        )
        for result in (story, letter):
            if isinstance(result, BaseException) and not isinstance(result, BrainError):
                raise result  # a bug, not a model failure: do not paper over it
        if isinstance(story, BaseException) or not str(story).strip():
            log.warning("story generation failed (%s); storing the fallback", type(story).__name__)
            story = fallback_story(profile, personas, proposal)
        if isinstance(letter, BaseException) or not str(letter).strip():
            log.warning(
                "letter generation failed (%s); storing the fallback", type(letter).__name__
            )
            letter = fallback_letter(profile, personas, proposal)
        plan = {
            **proposal,
            "story": str(story),
            "letter": str(letter),
            "confirmed_at": utcnow().isoformat(),
        }
        return {
            "plan": plan,
            "proposal": None,
        }
