"""The Hera interview: one turn = lock → load → brain → merge → one commit.

Nothing is kept in process memory between requests; any worker can serve any turn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Final

from app.agents.access import GUEST, Caller
from app.agents.brains import InterviewBrain
from app.agents.family import family_start_fields
from app.agents.streams import TurnStream
from app.agents.turns import (
    ChatAgent,
    RequestKey,
    clean_message,
    history_entry,
    open_turn,
)
from app.domain.profile import Profile
from app.repositories.base import Changes, JSONDict, SessionSnapshot

INCOMPLETE: Final = "INCOMPLETE"
COMPLETED: Final = "COMPLETED"
COMPLETION_MESSAGE: Final = (
    "ありがとうございます。これであなたのことがよく分かりました。"
    "プロフィールが完成しました。未来のご家族に会いに行きましょう。"
)


@dataclass(frozen=True)
class InterviewView:
    """What the interview routes show: profile, history and derived progress."""

    profile: Profile
    history: list[JSONDict]
    status: str

    @cached_property  # read by `complete` too: computed once per view
    def missing(self) -> list[str]:
        return self.profile.missing_fields()

    @property
    def progress(self) -> dict[str, dict[str, int]]:
        return self.profile.progress()

    @property
    def complete(self) -> bool:
        return not self.missing

    def record(self) -> JSONDict:
        """What a retry needs to show this view again (history by length: it only grows)."""
        return {
            "profile": self.profile.stored(),
            "history_length": len(self.history),
            "status": self.status,
        }

    @classmethod
    def from_record(cls, record: JSONDict, history: list[JSONDict]) -> InterviewView:
        profile = Profile.from_stored(record["profile"])
        return cls(profile, history[: record["history_length"]], record["status"])


@dataclass(frozen=True)
class TurnResult:
    view: InterviewView
    reply: str
    completion_message: str | None = None
    extracted_fields: list[str] = field(default_factory=list)

    def record(self) -> JSONDict:
        return {
            **self.view.record(),
            "reply": self.reply,
            "completion_message": self.completion_message,
            "extracted_fields": self.extracted_fields,
        }

    @classmethod
    def from_record(cls, record: JSONDict, history: list[JSONDict]) -> TurnResult:
        view = InterviewView.from_record(record, history)
        return cls(view, record["reply"], record["completion_message"], record["extracted_fields"])


def _view(snap: SessionSnapshot) -> InterviewView:
    status = snap.doc("state").get("interview_status", INCOMPLETE)
    return InterviewView(Profile.from_stored(snap.doc("profile")), snap.log("history"), status)


class HeraAgent(ChatAgent[InterviewBrain]):
    async def view(self, session_id: str, caller: Caller = GUEST) -> InterviewView:
        snap = await self._sessions.load(
            session_id=session_id, docs=["profile", "state"], logs=["history"]
        )
        caller.check(snap.meta)
        return _view(snap)

    async def handle_message(
        self,
        session_id: str,
        message: str,
        request: RequestKey | None = None,
        caller: Caller = GUEST,
        stream: TurnStream | None = None,
    ) -> TurnResult:
        """One interview turn; with `stream`, the reply's pieces go there as Hera writes."""
        text = clean_message(message, self._max_chars)
        async with open_turn(
            self._sessions,
            session_id,
            request,
            docs=["profile", "state"],
            logs=["history"],
            caller=caller,
        ) as turn:
            before = _view(turn.snapshot)
            if (earlier := turn.earlier()) is not None:
                return TurnResult.from_record(earlier, before.history)
            usage = self._quotas.spend(turn.snapshot.doc("state"), "interview_messages")
            if stream is not None:
                stream.begin()
            reply = await self._brain.interview_turn(
                profile=before.profile,
                history=before.history,
                message=text,
                missing_fields=before.missing,
                on_reply=stream.reply_sink("hera") if stream is not None else None,
            )
            profile, changed = before.profile.merge(Profile.from_untrusted(reply.extracted))
            added = [history_entry("user", text), history_entry("hera", reply.reply)]
            changes = Changes().update("state", usage)
            if changed:
                stored = profile.stored()
                changes.update("profile", {k: stored[k] for k in changed})
            status, closing = before.status, None
            if status != COMPLETED and profile.complete:
                status, closing = COMPLETED, COMPLETION_MESSAGE
                added.append(history_entry("hera", closing))
                changes.update("state", {"interview_status": COMPLETED})
            changes.append("history", added)
            view = InterviewView(profile, [*before.history, *added], status)
            result = TurnResult(view, reply.reply, closing, changed)
            await turn.commit(changes, result.record())
        return result

    async def complete(
        self, session_id: str, request: RequestKey | None = None, caller: Caller = GUEST
    ) -> InterviewView:
        """Finish the interview and create the family, in one commit under one lock;
        refuses while required fields are missing. Repeating it changes nothing."""
        async with open_turn(
            self._sessions,
            session_id,
            request,
            docs=["profile", "state", "family"],
            logs=["history"],
            caller=caller,
        ) as turn:
            view = _view(turn.snapshot)
            if (earlier := turn.earlier()) is not None:
                return InterviewView.from_record(earlier, view.history)
            # Refuses (InterviewIncomplete) while required fields are missing: the family's
            # rule, the same one a family turn meets.
            family = family_start_fields(view.profile, turn.snapshot.doc("family"), session_id)
            changes = Changes()
            if view.status != COMPLETED:
                changes.update("state", {"interview_status": COMPLETED})
            if family:
                changes.update("family", family)
            done = InterviewView(view.profile, view.history, COMPLETED)
            await turn.commit(changes, done.record())
        return done
