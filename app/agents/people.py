"""A signed-in person's own space: their record, tags, sessions, and erasing all of it.

The record and the indexes live in the durable tier (UserRepository); a person's sessions
expire like any other, and an index entry whose session is gone is dropped when a listing
meets it (never by a scan).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from app.agents.access import Caller
from app.agents.concurrent import READS_AT_ONCE, all_or_none
from app.agents.lifecycle import SessionLifecycle
from app.domain.images import image_version
from app.domain.profile import Profile
from app.repositories.base import (
    BlobRepository,
    JSONDict,
    SessionNotFound,
    SessionRepository,
    person_blob_prefix,
)
from app.repositories.users import UserRepository, owner_key

TRAITS: Final = "personality_traits"


def _view(record: JSONDict) -> JSONDict:
    """The record as the API shows it: the `personality_traits.<name>` fields as one map."""
    view = {k: v for k, v in record.items() if not k.startswith(f"{TRAITS}.")}
    view[TRAITS] = {k.split(".", 1)[1]: v for k, v in record.items() if k.startswith(f"{TRAITS}.")}
    return view


@dataclass(frozen=True)
class NewestProfile:
    """What the newest of a person's sessions knows of them."""

    session_id: str
    profile: Profile
    photo_version: str | None  # the user photo's version, when one is uploaded


class PeopleAgent:
    def __init__(
        self,
        *,
        sessions: SessionRepository,
        blobs: BlobRepository,
        users: UserRepository,
        lifecycle: SessionLifecycle,
        session_ttl: int,
    ) -> None:
        self._sessions = sessions
        self._blobs = blobs
        self._users = users
        self._lifecycle = lifecycle
        self._ttl = timedelta(seconds=session_ttl)

    async def record(self, subject: str) -> JSONDict:
        return _view(await self._users.get(owner_key=owner_key(subject)) or {"tags": []})

    async def update(self, subject: str, fields: dict[str, Any]) -> JSONDict:
        """Change the fields given; each personality trait is a field of its own, so
        concurrent changes of different traits all land (each update is one atomic step)."""
        stored = {k: v for k, v in fields.items() if k != TRAITS}
        for trait, score in (fields.get(TRAITS) or {}).items():
            stored[f"{TRAITS}.{trait}"] = score
        return _view(await self._users.update(owner_key=owner_key(subject), fields=stored))

    async def add_tag(self, subject: str, tag: str) -> list[str]:
        return await self._users.add_tag(owner_key=owner_key(subject), tag=tag)

    async def remove_tag(self, subject: str, tag: str) -> list[str]:
        return await self._users.remove_tag(owner_key=owner_key(subject), tag=tag)

    async def _prune(self, owner: str, session_id: str) -> None:
        """An entry met whose session is gone (expired, or not the person's): its leftovers
        go with it, since the index was the way to find them."""
        await self._lifecycle.remove_leftovers(session_id)
        await self._users.index_remove(owner_key=owner, index="sessions", item_id=session_id)

    async def _listed(self, owner: str, session_id: str, caller: Caller) -> JSONDict | None:
        try:
            listed = await self._lifecycle.listed(session_id, caller)
        except SessionNotFound:
            await self._prune(owner, session_id)
            return None
        listed["expires_at"] = listed["updated_at"] + self._ttl
        return listed

    async def sessions(
        self, subject: str, limit: int, cursor: str | None = None
    ) -> tuple[list[JSONDict], str | None]:
        """The person's live sessions, newest first; expired ones leave the index as met.
        A page's sessions are read side by side, each only as far as a listing shows it."""
        owner, caller = owner_key(subject), Caller(owner_id=subject)
        found: list[JSONDict] = []
        while len(found) < limit:
            page = await self._users.index_page(
                owner_key=owner, index="sessions", limit=limit - len(found), cursor=cursor
            )
            listed = await all_or_none(
                [self._listed(owner, entry.item_id, caller) for entry in page.entries],
                at_most=READS_AT_ONCE,
            )
            found.extend(summary for summary in listed if summary is not None)
            cursor = page.next_cursor
            if cursor is None:
                break
        return found, cursor

    async def newest_profile(self, subject: str) -> NewestProfile | None:
        """The newest live session's profile and photo: one index entry and one read of two
        documents (more only while the entries met are of expired sessions)."""
        owner, caller = owner_key(subject), Caller(owner_id=subject)
        cursor: str | None = None
        while True:
            page = await self._users.index_page(
                owner_key=owner, index="sessions", limit=1, cursor=cursor
            )
            for entry in page.entries:
                try:
                    snap = await self._sessions.load(
                        session_id=entry.item_id, docs=["profile", "images"]
                    )
                    caller.check(snap.meta)
                except SessionNotFound:
                    await self._prune(owner, entry.item_id)
                    continue
                photo = snap.doc("images").get("user")
                version = image_version(str(photo.get("etag", ""))) if photo else None
                profile = Profile.from_stored(snap.doc("profile"))
                return NewestProfile(entry.item_id, profile, version)
            cursor = page.next_cursor
            if cursor is None:
                return None

    async def erase(self, subject: str) -> None:
        """Everything of the person: their sessions (data and images), keepsakes, record
        and indexes. Sessions go first: if this fails part way, a retry finds the rest."""
        owner, caller = owner_key(subject), Caller(owner_id=subject)
        cursor: str | None = None
        while True:
            page = await self._users.index_page(
                owner_key=owner, index="sessions", limit=100, cursor=cursor
            )
            for entry in page.entries:
                try:
                    await self._lifecycle.delete(entry.item_id, caller)
                except SessionNotFound:  # expired: what it left still goes (a live session
                    await self._lifecycle.remove_leftovers(entry.item_id)  # of another stays)
            cursor = page.next_cursor
            if cursor is None:
                break
        await self._blobs.delete_prefix(prefix=person_blob_prefix(owner))
        await self._users.delete(owner_key=owner)
