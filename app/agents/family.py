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
from app.agents.personas import build_personas
from app.agents.profile import missing_fields
from app.agents.turns import Quotas, RequestKey, clean_message, history_entry, open_turn
from app.repositories.base import Changes, JSONDict, SessionRepository, utcnow

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

    def record(self) -> JSONDict:
        """What a retry needs to answer the same again (history by length: it only grows;
        personas never change once made)."""
        view = self.view
        return {
            "reply": self.reply,
            "history_length": len(view.history),
            "family": {"trip_info": view.trip_info, "plan": view.plan, "proposal": view.proposal},
        }

    @classmethod
    def from_record(
        cls, record: JSONDict, history: list[JSONDict], personas: list[JSONDict]
    ) -> FamilyTurnResult:
        family = {**record["family"], "personas": personas}
        return cls(record["reply"], _view(family, history[: record["history_length"]]))


def _entry(speaker: str, role: str, message: str) -> JSONDict:
    return history_entry(speaker, message, role=role)


def family_start_fields(profile: JSONDict, family: JSONDict, session_id: str) -> JSONDict:
    """The family document's fields that starting the family adds: the personas, made once
    from a complete profile (nothing when they exist already)."""
    if missing := missing_fields(profile):
        raise InterviewIncomplete(missing)
    if family.get("personas"):
        return {}
    fields: JSONDict = {"personas": build_personas(profile, session_id)}
    if "trip_info" not in family:  # an imported session may already have one
        fields["trip_info"] = {"destination": None, "activities": []}
    return fields


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
        self,
        *,
        sessions: SessionRepository,
        brain: FamilyBrain,
        max_message_chars: int = 2000,
        quotas: Quotas | None = None,
    ) -> None:
        self._sessions = sessions
        self._brain = brain
        self._max_chars = max_message_chars
        self._quotas = quotas or Quotas()

    async def status(self, session_id: str) -> FamilyView:
        """Read-only: never creates personas or writes anything."""
        snap = await self._sessions.load(
            session_id=session_id, docs=["family"], logs=["family_history"]
        )
        return _view(snap.doc("family"), snap.log("family_history"))

    async def handle_message(
        self, session_id: str, message: str, request: RequestKey | None = None
    ) -> FamilyTurnResult:
        text = clean_message(message, self._max_chars)
        async with open_turn(
            self._sessions,
            session_id,
            request,
            docs=["profile", "family", "state"],
            logs=["family_history"],
        ) as turn:
            snap = turn.snapshot
            profile, stored, history = (
                snap.doc("profile"),
                snap.doc("family"),
                snap.log("family_history"),
            )
            if (earlier := turn.earlier()) is not None:
                return FamilyTurnResult.from_record(earlier, history, stored.get("personas", []))
            # The family is made here when /complete was skipped, in this turn's commit.
            start = family_start_fields(profile, stored, session_id)
            family = {**stored, **start}
            personas: list[JSONDict] = family["personas"]
            changes = Changes().update("family", start) if start else Changes()
            if family.get("plan") is not None:  # the plan is agreed: nothing changes now
                partner = personas[0]
                closing = [_entry(partner["name"], partner["role"], CLOSING_REPLY)]
                result = FamilyTurnResult(closing, _view(family, history))
                await turn.commit(changes, result.record())
                return result
            changes.update("state", self._quotas.spend(snap.doc("state"), "family_messages"))
            pending: JSONDict | None = family.get("proposal")
            trip_before = family.get("trip_info") or {"destination": None, "activities": []}
            answer = await self._brain.family_turn(
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
                for line in answer.lines
                if line.speaker in by_name and line.message.strip()
            ]
            trip = merge_trip(trip_before, answer.trip_info)
            updates: JSONDict = {"trip_info": trip}
            # Only a proposal made in an earlier turn can be answered, and only by the user.
            reply_to_plan = answer.proposal_answer if pending is not None else None
            if pending is not None and reply_to_plan == "accept":
                updates.update(await self._finish(profile, personas, pending))
            elif pending is not None and reply_to_plan == "decline":
                updates.update(proposal=None, declined=_plan_key(pending))
            elif pending is None and self._ready(trip, family.get("declined")):
                proposal = {"destination": trip["destination"], "activities": trip["activities"]}
                partner = next(p for p in personas if p["kind"] == "partner")
                lines.append(_entry(partner["name"], partner["role"], proposal_text(proposal)))
                updates["proposal"] = proposal
            user = _entry("user", "user", text)
            changes.append("family_history", [user, *lines]).update("family", updates)
            result = FamilyTurnResult(lines, _view({**family, **updates}, [*history, user, *lines]))
            await turn.commit(changes, result.record())
        return result

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
