"""A person's session list and newest profile read only what they show, side by side, and
claiming a session reads it once.

The stores are the in-memory adapters with a counter on their reads (each read is one round
trip on a real store); a read yields to the loop once, as a real one does, so reads that are
side by side are seen in flight together.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from app.agents.access import Caller
from app.agents.concurrent import READS_AT_ONCE
from app.agents.lifecycle import LISTED_DOCS, SessionLifecycle
from app.agents.people import PeopleAgent
from app.repositories.base import DOC_NAMES, DocName, LogName, SessionMeta, SessionSnapshot
from app.repositories.memory_blobs import MemoryBlobRepository
from app.repositories.memory_sessions import MemorySessionRepository
from app.repositories.memory_users import MemoryUserRepository
from app.repositories.users import IndexName, Page, owner_key
from tests.support.writes import update

TTL = 3600


class CountedSessions(MemorySessionRepository):
    def __init__(self) -> None:
        super().__init__(ttl_seconds=TTL)
        self.reads: list[tuple[str, ...]] = []
        self.in_flight = 0
        self.most_at_once = 0

    async def load(
        self,
        *,
        session_id: str,
        docs: Sequence[DocName] = DOC_NAMES,
        logs: Sequence[LogName] = (),
        request_key: str | None = None,
    ) -> SessionSnapshot:
        self.reads.append(("load", *docs, *(f"log:{log}" for log in logs)))
        self.in_flight += 1
        self.most_at_once = max(self.most_at_once, self.in_flight)
        try:
            await asyncio.sleep(0)  # the round trip: other reads may start meanwhile
            return await super().load(
                session_id=session_id, docs=docs, logs=logs, request_key=request_key
            )
        finally:
            self.in_flight -= 1

    async def get_meta(self, *, session_id: str) -> SessionMeta:
        self.reads.append(("get_meta",))
        return await super().get_meta(session_id=session_id)


class CountedUsers(MemoryUserRepository):
    def __init__(self) -> None:
        super().__init__()
        self.pages = 0

    async def index_page(
        self, *, owner_key: str, index: IndexName, limit: int, cursor: str | None = None
    ) -> Page:
        self.pages += 1
        return await super().index_page(
            owner_key=owner_key, index=index, limit=limit, cursor=cursor
        )


class Space:
    def __init__(self) -> None:
        self.sessions, self.users, blobs = CountedSessions(), CountedUsers(), MemoryBlobRepository()
        self.lifecycle = SessionLifecycle(sessions=self.sessions, blobs=blobs, users=self.users)
        self.people = PeopleAgent(
            sessions=self.sessions,
            blobs=blobs,
            users=self.users,
            lifecycle=self.lifecycle,
            session_ttl=TTL,
        )

    async def own(self, subject: str, count: int) -> list[str]:
        return [
            (await self.lifecycle.create(caller=Caller(owner_id=subject))).session_id
            for _ in range(count)
        ]

    async def gone(self, subject: str, count: int) -> list[str]:
        """Index entries of sessions that are no more (newer than every live one)."""
        ids = [str(uuid.uuid4()) for _ in range(count)]
        for sid in ids:
            await self.users.index_add(
                owner_key=owner_key(subject), index="sessions", item_id=sid, at=datetime.now(UTC)
            )
        return ids

    async def indexed(self, subject: str) -> set[str]:
        page = await self.users.index_page(
            owner_key=owner_key(subject), index="sessions", limit=100
        )
        return {entry.item_id for entry in page.entries}


async def test_a_listing_reads_each_session_once_and_only_the_two_documents_it_shows() -> None:
    space, subject = Space(), "lister"
    live = await space.own(subject, 30)
    await update(
        space.sessions, session_id=live[0], doc="state", fields={"interview_status": "COMPLETED"}
    )
    await update(space.sessions, session_id=live[0], doc="family", fields={"personas": [{"n": 1}]})
    gone = await space.gone(subject, 5)
    space.sessions.reads.clear()

    found, cursor = await space.people.sessions(subject, limit=100)

    assert cursor is None
    assert [s["session_id"] for s in found] == live[::-1]  # newest first
    # One read per listed entry (the gone ones too: that is how they are found gone), each
    # of the two documents a listing shows, never the profile or the image index.
    assert space.sessions.reads == [("load", *LISTED_DOCS)] * (len(live) + len(gone))
    first = next(s for s in found if s["session_id"] == live[0])
    assert first["interview_status"] == "COMPLETED" and first["family_status"] == "active"
    assert {s["family_status"] for s in found if s is not first} == {"not_started"}
    assert all((s["expires_at"] - s["updated_at"]).total_seconds() == TTL for s in found)
    assert await space.indexed(subject) == set(live)  # the gone entries left the index


async def test_a_listing_reads_its_sessions_side_by_side_never_more_than_the_bound() -> None:
    space, subject = Space(), "many"
    await space.own(subject, 100)
    space.sessions.reads.clear()

    found, _ = await space.people.sessions(subject, limit=100)

    assert len(found) == 100 and len(space.sessions.reads) == 100
    assert space.sessions.most_at_once == READS_AT_ONCE


async def test_a_listing_a_page_at_a_time_still_fills_pages_past_the_gone_entries() -> None:
    space, subject = Space(), "pager"
    live = await space.own(subject, 3)
    await space.gone(subject, 4)

    first, cursor = await space.people.sessions(subject, limit=2)
    assert [s["session_id"] for s in first] == live[:0:-1] and cursor is not None
    rest, cursor = await space.people.sessions(subject, limit=2, cursor=cursor)
    assert [s["session_id"] for s in rest] == live[:1] and cursor is None


async def test_the_newest_profile_is_one_index_entry_and_one_read_of_two_documents() -> None:
    space, subject = Space(), "profiled"
    older, newest = await space.own(subject, 2)
    await update(space.sessions, session_id=newest, doc="profile", fields={"age": 41})
    await update(space.sessions, session_id=older, doc="profile", fields={"age": 30})
    await update(space.sessions, session_id=newest, doc="images", fields={"user": {"etag": "abc"}})
    space.sessions.reads.clear()
    space.users.pages = 0

    found = await space.people.newest_profile(subject)

    assert found is not None and found.session_id == newest and found.profile.age == 41
    assert found.photo_version is not None
    assert space.users.pages == 1
    assert space.sessions.reads == [("load", "profile", "images")]


async def test_the_newest_profile_passes_over_and_drops_sessions_that_are_gone() -> None:
    space, subject = Space(), "pruned"
    [live] = await space.own(subject, 1)
    await space.gone(subject, 2)
    space.sessions.reads.clear()

    found = await space.people.newest_profile(subject)

    assert found is not None and found.session_id == live
    assert len(space.sessions.reads) == 3  # two gone, then the live one
    assert await space.indexed(subject) == {live}
    assert await Space().people.newest_profile("nobody") is None


async def test_claiming_reads_the_session_once_before_and_its_meta_once_after() -> None:
    space, subject = Space(), "claimer"
    sid = (await space.lifecycle.create()).session_id  # a guest's
    await update(
        space.sessions, session_id=sid, doc="state", fields={"interview_status": "COMPLETED"}
    )
    space.sessions.reads.clear()

    summary = await space.lifecycle.claim(sid, Caller(owner_id=subject))

    assert space.sessions.reads == [("load", *DOC_NAMES), ("get_meta",)]
    stored = await space.sessions.get_meta(session_id=sid)
    assert stored.owner_id == subject
    # The time the commit wrote, not the one read before it.
    assert summary["updated_at"] == stored.updated_at
    assert summary == await space.lifecycle.summary(sid, Caller(owner_id=subject))
    assert await space.indexed(subject) == {sid}

    space.sessions.reads.clear()
    again: dict[str, Any] = await space.lifecycle.claim(sid, Caller(owner_id=subject))
    assert again == summary and space.sessions.reads == [("load", *DOC_NAMES)]
