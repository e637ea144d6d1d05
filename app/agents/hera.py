"""The Hera interview: one turn = load under the session lock → brain → merge → append.

Nothing is kept in process memory between requests; any worker can serve any turn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Final

from app.agents.brains.base import InterviewBrain
from app.agents.errors import EmptyMessage, InterviewIncomplete, MessageTooLong
from app.agents.profile import information_progress, merge_profile, missing_fields
from app.repositories.base import JSONDict, SessionRepository, utcnow

INCOMPLETE: Final = "INCOMPLETE"
COMPLETED: Final = "COMPLETED"
COMPLETION_MESSAGE: Final = (
    "ありがとうございます。これであなたのことがよく分かりました。"
    "プロフィールが完成しました。未来のご家族に会いに行きましょう。"
)


def history_entry(speaker: str, message: str) -> JSONDict:
    return {"speaker": speaker, "message": message, "timestamp": utcnow().isoformat()}


@dataclass(frozen=True)
class InterviewView:
    """What the interview routes show: profile, history and derived progress."""

    profile: JSONDict
    history: list[JSONDict]
    status: str

    @cached_property  # read by `complete` too: computed once per view
    def missing(self) -> list[str]:
        return missing_fields(self.profile)

    @property
    def progress(self) -> dict[str, dict[str, int]]:
        return information_progress(self.profile)

    @property
    def complete(self) -> bool:
        return not self.missing


@dataclass(frozen=True)
class TurnResult:
    view: InterviewView
    reply: str
    completion_message: str | None = None
    extracted_fields: list[str] = field(default_factory=list)


def clean_message(message: str, limit: int) -> str:
    text = message.strip()
    if not text:
        raise EmptyMessage
    if len(text) > limit:
        raise MessageTooLong(limit)
    return text


class HeraAgent:
    def __init__(
        self, *, sessions: SessionRepository, brain: InterviewBrain, max_message_chars: int = 2000
    ) -> None:
        self._sessions = sessions
        self._brain = brain
        self._max_chars = max_message_chars

    async def view(self, session_id: str) -> InterviewView:
        snap = await self._sessions.load(
            session_id=session_id, docs=["profile", "state"], logs=["history"]
        )
        status = snap.doc("state").get("interview_status", INCOMPLETE)
        return InterviewView(snap.doc("profile"), snap.log("history"), status)

    async def handle_message(self, session_id: str, message: str) -> TurnResult:
        text = clean_message(message, self._max_chars)
        async with self._sessions.lock(session_id=session_id):
            before = await self.view(session_id)
            user = history_entry("user", text)
            # Persist the user's words first: if the brain fails they are still there.
            await self._sessions.append(session_id=session_id, log="history", entries=[user])
            turn = await self._brain.interview_turn(
                profile=before.profile,
                history=before.history,
                message=text,
                missing_fields=before.missing,
            )
            profile, changed = merge_profile(before.profile, turn.extracted)
            if changed:
                await self._sessions.update(
                    session_id=session_id,
                    doc="profile",
                    fields={k: profile[k] for k in changed},
                )
            added = [history_entry("hera", turn.reply)]
            status, closing = before.status, None
            if status != COMPLETED and not missing_fields(profile):
                status, closing = COMPLETED, COMPLETION_MESSAGE
                added.append(history_entry("hera", closing))
                await self._sessions.update(
                    session_id=session_id, doc="state", fields={"interview_status": COMPLETED}
                )
            await self._sessions.append(session_id=session_id, log="history", entries=added)
        view = InterviewView(profile, [*before.history, user, *added], status)
        return TurnResult(view, turn.reply, closing, changed)

    async def complete(self, session_id: str) -> InterviewView:
        """Finish the interview; refuses while required fields are missing."""
        async with self._sessions.lock(session_id=session_id):
            view = await self.view(session_id)
            if view.missing:
                raise InterviewIncomplete(view.missing)
            if view.status != COMPLETED:
                await self._sessions.update(
                    session_id=session_id, doc="state", fields={"interview_status": COMPLETED}
                )
        return InterviewView(view.profile, view.history, COMPLETED)
