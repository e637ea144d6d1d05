"""Creating and deleting whole sessions (data and images together)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from app.agents.access import GUEST, Caller
from app.agents.errors import IdempotencyKeyReused
from app.agents.family import family_status
from app.agents.hera import INCOMPLETE
from app.agents.turns import RequestKey
from app.domain.images import image_version
from app.domain.profile import Profile
from app.repositories.base import (
    BlobRepository,
    Changes,
    DocName,
    JSONDict,
    SessionMeta,
    SessionRepository,
    SessionSnapshot,
    session_blob_prefix,
)
from app.repositories.users import UserRepository, owner_key

if TYPE_CHECKING:
    from app.agents.keepsakes import KeepsakeAgent


class SessionLifecycle:
    def __init__(
        self,
        *,
        sessions: SessionRepository,
        blobs: BlobRepository,
        users: UserRepository | None = None,
        keepsakes: KeepsakeAgent | None = None,
    ) -> None:
        self._sessions = sessions
        self._blobs = blobs
        self._users = users
        self._keepsakes = keepsakes  # a claimed completed session becomes a keepsake

    async def _index(self, meta: SessionMeta) -> SessionMeta:
        """List an owned session in its person's index (the durable tier: the session itself
        expires, and its entry is pruned when it is next met)."""
        if self._users is not None and meta.owner_id is not None:
            await self._users.index_add(
                owner_key=owner_key(meta.owner_id),
                index="sessions",
                item_id=meta.session_id,
                at=meta.created_at,
            )
        return meta

    async def create(
        self, request: RequestKey | None = None, caller: Caller = GUEST
    ) -> SessionMeta:
        """A new session (the caller's own when signed in); a retry with the same request key
        gets the same session back."""
        if request is None:
            return await self._index(await self._sessions.create(owner_id=caller.owner_id))
        meta, earlier = await self._sessions.create_once(
            request_key=request.key, fingerprint=request.fingerprint, owner_id=caller.owner_id
        )
        if earlier is not None and earlier != request.fingerprint:
            raise IdempotencyKeyReused
        return await self._index(meta)

    async def summary(self, session_id: str, caller: Caller = GUEST) -> JSONDict:
        """Timestamps, interview and family status, image names: one read, all documents."""
        snap = await self._sessions.load(session_id=session_id)
        caller.check(snap.meta)
        return _summary(snap)

    async def listed(self, session_id: str, caller: Caller = GUEST) -> JSONDict:
        """What a list of sessions shows of one: timestamps, interview and family status.
        One read of the two documents they come from (no profile, no image index)."""
        snap = await self._sessions.load(session_id=session_id, docs=LISTED_DOCS)
        caller.check(snap.meta)
        return _listed(snap)

    async def delete(self, session_id: str, caller: Caller = GUEST) -> None:
        """Everything of the session goes; a running turn finishes first (the lock)."""
        async with self._sessions.lock(session_id=session_id):
            # 404 for an unknown session, and for another person's.
            caller.check(await self._sessions.get_meta(session_id=session_id))
            # Blobs first: if this fails the session still exists and the delete can be retried.
            await self._blobs.delete_prefix(prefix=session_blob_prefix(session_id))
            await self._sessions.delete(session_id=session_id)

    async def remove_leftovers(self, session_id: str) -> bool:
        """What an expired session left behind (its images, and its files on the file store);
        False, touching nothing, while the session lives (whoever owns it). An expired session
        never comes back, so no lock is needed."""
        if await self._sessions.exists(session_id=session_id):
            return False
        await self._blobs.delete_prefix(prefix=session_blob_prefix(session_id))
        await self._sessions.delete(session_id=session_id)
        return True

    async def claim(self, session_id: str, caller: Caller) -> JSONDict:
        """Give a guest session to the signed-in caller (sign in at the end and keep the
        family) and return its summary; a completed one becomes a keepsake (written after
        the claim, out of the lock; it writes no part of the session). Claiming one's own
        session again changes nothing; another person's session is not found."""
        if caller.owner_id is None:
            raise ValueError("only a signed-in person can claim a session")
        summary = await self._claim(session_id, caller)
        if self._keepsakes is not None:
            await self._keepsakes.keep(session_id, caller.owner_id)
        return summary

    async def _claim(self, session_id: str, caller: Caller) -> JSONDict:
        async with self._sessions.lock(session_id=session_id) as lease:
            snap = await self._sessions.load(session_id=session_id)
            if snap.meta.owner_id == caller.owner_id:
                await self._index(snap.meta)  # again: the entry is there already
                return _summary(snap)
            caller.check(snap.meta)  # owned by someone else: not found
            await self._sessions.commit(
                session_id=session_id, changes=Changes(owner_id=caller.owner_id), lease=lease
            )
            # Read again, not derived: the commit moved `updated_at` (the store's clock).
            snap.meta = await self._index(await self._sessions.get_meta(session_id=session_id))
            return _summary(snap)


# The documents a session list reads of each session (`SessionLifecycle.listed`).
LISTED_DOCS: Final[tuple[DocName, ...]] = ("state", "family")


def _listed(snap: SessionSnapshot) -> JSONDict:
    return {
        "session_id": snap.meta.session_id,
        "created_at": snap.meta.created_at,
        "updated_at": snap.meta.updated_at,
        "interview_status": snap.doc("state").get("interview_status", INCOMPLETE),
        "family_status": family_status(snap.doc("family")),
    }


def _summary(snap: SessionSnapshot) -> JSONDict:
    images = snap.doc("images")
    return {
        **_listed(snap),
        "profile_complete": Profile.from_stored(snap.doc("profile")).complete,
        "images": sorted(images),
        "image_versions": {
            name: image_version(str(entry.get("etag", ""))) for name, entry in images.items()
        },
    }
