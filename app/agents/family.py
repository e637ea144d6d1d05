"""The future family conversation: personas, turns, trip info, proposal, story and letter.

State lives in the session's "family" document and "family_history" log; every turn runs
under the session lock and commits once, so any worker can serve any turn and nothing is
decided twice. The values and their rules are the domain's (`app/domain/family.py`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from app.agents.access import GUEST, Caller
from app.agents.brains import BrainError, FamilyBrain
from app.agents.errors import InterviewIncomplete
from app.agents.streams import TurnStream
from app.agents.turns import (
    ChatAgent,
    Quotas,
    RequestKey,
    clean_message,
    history_entry,
    open_turn,
)
from app.domain.family import Persona, Plan, TripInfo, TripPlan
from app.domain.personas import build_personas
from app.domain.profile import Profile
from app.repositories.base import Changes, JSONDict, SessionRepository, utcnow

if TYPE_CHECKING:  # keepsakes read the family's view: imported for the annotation only
    from app.agents.keepsakes import KeepsakeAgent

log = logging.getLogger(__name__)

CLOSING_REPLY: Final = (
    "旅行の計画はもう決まったよ。物語と手紙を読んでね。また会えるのを楽しみにしているよ。"
)


def family_status(family: JSONDict) -> str:
    """Derived, never stored: no personas yet, chatting, or the plan agreed."""
    if family.get("plan") is not None:
        return "completed"
    return "active" if family.get("personas") else "not_started"


@dataclass(frozen=True)
class FamilyView:
    history: list[JSONDict]
    trip_info: TripInfo
    plan: Plan | None
    proposal: TripPlan | None
    personas: list[Persona]

    @property
    def complete(self) -> bool:
        return self.plan is not None


def family_view(family: JSONDict, history: list[JSONDict]) -> FamilyView:
    """The typed view of a stored family document."""
    plan, proposal = family.get("plan"), family.get("proposal")
    return FamilyView(
        history=history,
        trip_info=TripInfo.model_validate(family.get("trip_info") or {}),
        plan=Plan.model_validate(plan) if plan is not None else None,
        proposal=TripPlan.model_validate(proposal) if proposal is not None else None,
        personas=[Persona.model_validate(p) for p in family.get("personas") or []],
    )


@dataclass(frozen=True)
class FamilyTurnResult:
    reply: list[JSONDict]
    view: FamilyView
    agreed: bool = False  # this turn agreed the plan (a keepsake is due)

    def record(self) -> JSONDict:
        """What a retry needs to answer the same again (history by length: it only grows;
        personas never change once made)."""
        view = self.view
        return {
            "reply": self.reply,
            "agreed": self.agreed,
            "history_length": len(view.history),
            "family": {
                "trip_info": view.trip_info.stored(),
                "plan": view.plan.stored() if view.plan else None,
                "proposal": view.proposal.stored() if view.proposal else None,
            },
        }

    @classmethod
    def from_record(
        cls, record: JSONDict, history: list[JSONDict], personas: list[JSONDict]
    ) -> FamilyTurnResult:
        family = {**record["family"], "personas": personas}
        view = family_view(family, history[: record["history_length"]])
        return cls(record["reply"], view, bool(record.get("agreed")))


def _entry(persona: Persona, message: str) -> JSONDict:
    return history_entry(persona.name, message, role=persona.role)


def family_start_fields(profile: Profile, family: JSONDict, session_id: str) -> JSONDict:
    """The family document's fields that starting the family adds: the personas, made once
    from a complete profile (nothing when they exist already)."""
    if missing := profile.missing_fields():
        raise InterviewIncomplete(missing)
    if family.get("personas"):
        return {}
    fields: JSONDict = {"personas": [p.stored() for p in build_personas(profile, session_id)]}
    if "trip_info" not in family:  # an imported session may already have one
        fields["trip_info"] = TripInfo().stored()
    return fields


def proposal_text(plan: TripPlan) -> str:
    activities = "や".join(plan.activities)
    return f"じゃあ、{plan.destination}で{activities}を楽しむのはどうかな？みんなで決めよう！"


def fallback_story(personas: list[Persona], plan: TripPlan) -> str:
    names = "、".join(p.name for p in personas)
    activities = "、".join(plan.activities)
    return (
        f"ある日、{names}とあなたは家族旅行の相談をしました。行き先は{plan.destination}。"
        f"{activities}をしようと、みんなで楽しく計画を立てました。当日は朝から笑顔があふれ、"
        "ひとつひとつの思い出が家族の宝物になりました。帰り道、みんなで「また来ようね」と約束しました。"
    )


def fallback_letter(personas: list[Persona], plan: TripPlan) -> str:
    names = "、".join(p.name for p in personas)
    return (
        f"大切なあなたへ。{plan.destination}への旅行、本当に楽しみにしています。"
        "いつもありがとう。これからも家族みんなで、たくさんの思い出を作っていこうね。"
        f"\n{names}より"
    )


class FamilyAgent(ChatAgent[FamilyBrain]):
    def __init__(
        self,
        *,
        sessions: SessionRepository,
        brain: FamilyBrain,
        max_message_chars: int = 2000,
        quotas: Quotas | None = None,
        keepsakes: KeepsakeAgent | None = None,
    ) -> None:
        super().__init__(
            sessions=sessions, brain=brain, max_message_chars=max_message_chars, quotas=quotas
        )
        self._keepsakes = keepsakes  # what a signed-in person keeps once the plan is agreed

    async def status(self, session_id: str, caller: Caller = GUEST) -> FamilyView:
        """Read-only: never creates personas or writes anything."""
        snap = await self._sessions.load(
            session_id=session_id, docs=["family"], logs=["family_history"]
        )
        caller.check(snap.meta)
        return family_view(snap.doc("family"), snap.log("family_history"))

    async def handle_message(
        self,
        session_id: str,
        message: str,
        request: RequestKey | None = None,
        caller: Caller = GUEST,
        stream: TurnStream | None = None,
    ) -> FamilyTurnResult:
        """One family turn; with `stream`, each member's line (and on the agreeing turn the
        story and the letter) go there piece by piece as they are written. The turn that
        agrees the plan of an owned session also writes its keepsake (after the commit, out
        of the lock; a retry of the turn writes the same keepsake again)."""
        result = await self._turn(session_id, message, request, caller, stream)
        if result.agreed and caller.owner_id is not None and self._keepsakes is not None:
            await self._keepsakes.keep(session_id, caller.owner_id)
        return result

    async def _turn(
        self,
        session_id: str,
        message: str,
        request: RequestKey | None,
        caller: Caller,
        stream: TurnStream | None,
    ) -> FamilyTurnResult:
        text = clean_message(message, self._max_chars)
        async with open_turn(
            self._sessions,
            session_id,
            request,
            docs=["profile", "family", "state"],
            logs=["family_history"],
            caller=caller,
        ) as turn:
            snap = turn.snapshot
            stored, history = snap.doc("family"), snap.log("family_history")
            if (earlier := turn.earlier()) is not None:
                return FamilyTurnResult.from_record(earlier, history, stored.get("personas", []))
            profile = Profile.from_stored(snap.doc("profile"))
            # The family is made here when /complete was skipped, in this turn's commit.
            start = family_start_fields(profile, stored, session_id)
            family = {**stored, **start}
            view = family_view(family, history)
            partner = view.personas[0]
            changes = Changes().update("family", start) if start else Changes()
            if view.plan is not None:  # the plan is agreed: nothing changes now
                if stream is not None:
                    stream.say(partner.name, CLOSING_REPLY, role=partner.role)
                result = FamilyTurnResult([_entry(partner, CLOSING_REPLY)], view)
                await turn.commit(changes, result.record())
                return result
            changes.update("state", self._quotas.spend(snap.doc("state"), "family_messages"))
            pending = view.proposal
            if stream is not None:
                stream.begin()
            roles = {p.name: p.role for p in view.personas}
            answer = await self._brain.family_turn(
                profile=profile,
                personas=view.personas,
                history=history,
                trip_info=view.trip_info,
                message=text,
                proposal_pending=pending is not None,
                on_line=stream.line_sink(roles) if stream is not None else None,
            )
            by_name = {p.name: p for p in view.personas}
            lines = [
                _entry(by_name[line.speaker], line.message)
                for line in answer.lines
                if line.speaker in by_name and line.message.strip()
            ]
            trip = view.trip_info.merge(answer.trip_info)
            updates: JSONDict = {"trip_info": trip.stored()}
            # Only a proposal made in an earlier turn can be answered, and only by the user.
            reply_to_plan = answer.proposal_answer if pending is not None else None
            if pending is not None and reply_to_plan == "accept":
                plan = await self._finish(profile, view.personas, pending, stream)
                updates.update(plan=plan.stored(), proposal=None)
            elif pending is not None and reply_to_plan == "decline":
                updates.update(proposal=None, declined=pending.key())
            elif pending is None and (proposal := trip.ready(family.get("declined"))):
                lines.append(_entry(partner, proposal_text(proposal)))
                if stream is not None:  # the partner's proposal: a line of its own
                    stream.say(partner.name, proposal_text(proposal), role=partner.role)
                updates["proposal"] = proposal.stored()
            user = history_entry("user", text, role="user")
            changes.append("family_history", [user, *lines]).update("family", updates)
            after = family_view({**family, **updates}, [*history, user, *lines])
            result = FamilyTurnResult(lines, after, agreed="plan" in updates)
            await turn.commit(changes, result.record())
        return result

    async def _finish(
        self,
        profile: Profile,
        personas: list[Persona],
        proposal: TripPlan,
        stream: TurnStream | None,
    ) -> Plan:
        """Story and letter side by side; a failed one gets a simpler text, never nothing
        (a streamed one's pieces are then replaced by the `done` event's whole text)."""
        story, letter = await asyncio.gather(
            self._brain.write_story(
                profile=profile,
                personas=personas,
                plan=proposal,
                on_text=stream.text_sink("story") if stream is not None else None,
            ),
            self._brain.write_letter(
                profile=profile,
                personas=personas,
                plan=proposal,
                on_text=stream.text_sink("letter") if stream is not None else None,
            ),
            return_exceptions=True,
        )
        for result in (story, letter):
            if isinstance(result, BaseException) and not isinstance(result, BrainError):
                raise result  # a bug, not a model failure: do not paper over it
        if isinstance(story, BaseException) or not str(story).strip():
            log.warning("story generation failed (%s); storing the fallback", type(story).__name__)
            story = fallback_story(personas, proposal)
        if isinstance(letter, BaseException) or not str(letter).strip():
            log.warning(
                "letter generation failed (%s); storing the fallback", type(letter).__name__
            )
            letter = fallback_letter(personas, proposal)
        return Plan(
            destination=proposal.destination,
            activities=proposal.activities,
            story=str(story),
            letter=str(letter),
            confirmed_at=utcnow().isoformat(),
        )
