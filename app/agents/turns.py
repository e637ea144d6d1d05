"""The shape every state-changing operation shares: lock, load, decide, commit once.

`open_turn` takes the session's lock and loads the snapshot a turn needs (with the record of
its request key, if it has one); the agent decides, stages everything in one `Changes`, and
`Turn.commit` hands it to the store in one atomic, lock-fenced step together with the record
that answers a retry of the same request. A turn that fails before the commit writes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final, Generic, Literal, TypeVar, get_args

from app.agents.access import GUEST, Caller
from app.agents.errors import EmptyMessage, IdempotencyKeyReused, MessageTooLong, QuotaExceeded
from app.domain.history import HistoryEntry
from app.repositories.base import (
    Changes,
    DocName,
    JSONDict,
    Lease,
    LogName,
    SessionRepository,
    SessionSnapshot,
)

BrainT = TypeVar("BrainT")

QuotaName = Literal["interview_messages", "family_messages", "partner_images", "child_image_rounds"]
QUOTA_NAMES: Final[tuple[QuotaName, ...]] = get_args(QuotaName)


@dataclass(frozen=True)
class RequestKey:
    """A client's Idempotency-Key and what it asked for with it (operation + body digest)."""

    key: str
    fingerprint: str

    @classmethod
    def of(cls, key: str | None, operation: str, *body: str | bytes) -> RequestKey | None:
        if key is None:
            return None
        digest = hashlib.sha256(operation.encode())
        for part in body:
            digest.update(b"\0" + (part.encode() if isinstance(part, str) else part))
        return cls(key, digest.hexdigest())


@dataclass(frozen=True)
class Quotas:
    """Per-session limits (None: unlimited). Usage is counted in the state document and
    spent in the same commit as the turn it counts."""

    interview_messages: int | None = None
    family_messages: int | None = None
    partner_images: int | None = None
    child_image_rounds: int | None = None

    def spend(self, state: JSONDict, name: QuotaName) -> JSONDict:
        """The state fields that record one more use; QuotaExceeded when none is left."""
        usage = dict(state.get("usage") or {})
        used = int(usage.get(name, 0))
        limit = getattr(self, name)
        if limit is not None and used >= limit:
            raise QuotaExceeded(name, limit)
        usage[name] = used + 1
        return {"usage": usage}


def history_entry(speaker: str, message: str, *, role: str | None = None) -> JSONDict:
    """A new chat history entry, stamped now, as the logs store it."""
    return HistoryEntry(speaker=speaker, role=role, message=message).stored()


def clean_message(message: str, limit: int) -> str:
    text = message.strip()
    if not text:
        raise EmptyMessage
    if len(text) > limit:
        raise MessageTooLong(limit)
    return text


class Turn:
    """One locked operation on one session: its snapshot, and the one commit it may make."""

    def __init__(
        self,
        sessions: SessionRepository,
        snapshot: SessionSnapshot,
        lease: Lease,
        request: RequestKey | None,
    ) -> None:
        self._sessions = sessions
        self.snapshot = snapshot
        self._lease = lease
        self._request = request
        self._committed = False

    @property
    def session_id(self) -> str:
        return self.snapshot.meta.session_id

    def earlier(self) -> JSONDict | None:
        """The result this request key already produced (a retry), or None.

        The same key with a different request is refused: a key names one request."""
        record = self.snapshot.request
        if self._request is None or record is None:
            return None
        if record.get("fp") != self._request.fingerprint:
            raise IdempotencyKeyReused
        result: JSONDict = record["result"]
        return result

    async def commit(self, changes: Changes, result: JSONDict | None = None) -> None:
        """Write everything of this turn at once, with `result` as the answer to a retry."""
        if self._committed:
            raise RuntimeError("a turn commits once")
        self._committed = True
        if self._request is not None and result is not None:
            changes.remember(self._request.key, {"fp": self._request.fingerprint, "result": result})
        if changes:
            await self._sessions.commit(
                session_id=self.session_id, changes=changes, lease=self._lease
            )


@asynccontextmanager
async def open_turn(
    sessions: SessionRepository,
    session_id: str,
    request: RequestKey | None,
    *,
    docs: Sequence[DocName],
    logs: Sequence[LogName] = (),
    caller: Caller = GUEST,
) -> AsyncIterator[Turn]:
    """The turn's lock and snapshot; a session the caller may not use is not found (nothing
    of it goes back, nothing is written)."""
    key = request.key if request is not None else None
    async with sessions.lock(session_id=session_id, tag=key) as lease:
        snapshot = await sessions.load(session_id=session_id, docs=docs, logs=logs, request_key=key)
        caller.check(snapshot.meta)
        yield Turn(sessions, snapshot, lease, request)


class ChatAgent(Generic[BrainT]):
    """An agent whose turns answer a person's message through a brain (interview, family)."""

    def __init__(
        self,
        *,
        sessions: SessionRepository,
        brain: BrainT,
        max_message_chars: int = 2000,
        quotas: Quotas | None = None,
    ) -> None:
        self._sessions = sessions
        self._brain = brain
        self._max_chars = max_message_chars
        self._quotas = quotas or Quotas()
