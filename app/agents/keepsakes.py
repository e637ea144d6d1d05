"""Keepsakes: what a person keeps of an agreed plan after its session expires.

A keepsake is a JSON document and copies of the session's images in the blob store, under
`users/<owner key>/keepsakes/<session_id>/` (the durable tier of every deployment), and an
entry in the person's keepsake index. It is written when an owned session's plan is agreed
and when a completed guest session is claimed; writing it again leaves one keepsake (the
same keys, an index entry that is already there). Deleting the session later keeps it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Final

from app.agents.concurrent import READS_AT_ONCE, all_or_none
from app.agents.family import family_view
from app.agents.images import check_image_name
from app.agents.uploads import ext_for
from app.repositories.base import (
    BlobNotFound,
    BlobReader,
    BlobRepository,
    JSONDict,
    SessionNotFound,
    SessionRepository,
    check_blob_prefix,
    check_session_id,
    person_blob_prefix,
    read_all,
)
from app.repositories.users import UserRepository, owner_key

log = logging.getLogger(__name__)
DOCUMENT: Final = "keepsake.json"
# Image copies in flight at once: each is held whole in memory while it is copied.
COPIES_AT_ONCE: Final = 4


def keepsake_prefix(owner: str, session_id: str) -> str:
    return check_blob_prefix(
        f"{person_blob_prefix(owner)}keepsakes/{check_session_id(session_id)}/"
    )


@dataclass(frozen=True)
class Keepsake:
    """A stored keepsake document and where its images are (logical name -> blob key)."""

    owner: str
    document: JSONDict

    @property
    def session_id(self) -> str:
        return str(self.document["session_id"])

    def image_key(self, name: str) -> str | None:
        key = self.document.get("image_keys", {}).get(check_image_name(name))
        return str(key) if key else None


class KeepsakeAgent:
    def __init__(
        self, *, sessions: SessionRepository, blobs: BlobRepository, users: UserRepository
    ) -> None:
        self._sessions = sessions
        self._blobs = blobs
        self._users = users

    async def keep(self, session_id: str, subject: str) -> bool:
        """Write (or write again) the keepsake of the person's session; False when the
        session is not theirs or has no agreed plan. Never raises for a store failure after
        a committed turn: it is logged, and the next attempt (a retry, a claim) repairs."""
        try:
            return await self._keep(session_id, subject)
        except SessionNotFound:
            return False
        except Exception as exc:  # the turn itself is stored; the keepsake can follow later
            log.warning("keepsake of a session not written: %s", type(exc).__name__)
            return False

    async def _keep(self, session_id: str, subject: str) -> bool:
        snap = await self._sessions.load(session_id=session_id, docs=["family", "images"])
        if snap.meta.owner_id != subject:
            return False
        view = family_view(snap.doc("family"), [])
        if view.plan is None:
            return False
        owner = owner_key(subject)
        prefix = keepsake_prefix(owner, session_id)
        images = snap.doc("images")
        copied = await all_or_none(
            [self._copy(entry, f"{prefix}{name}") for name, entry in images.items()],
            at_most=COPIES_AT_ONCE,
        )
        image_keys = {name: key for name, key in zip(images, copied, strict=True) if key}
        partner = next((p for p in view.personas if p.kind == "partner"), None)
        children = [p for p in view.personas if p.kind == "child"]
        document: JSONDict = {
            "session_id": session_id,
            "created_at": snap.meta.created_at.isoformat(),
            "trip_plan": {"destination": view.plan.destination, "activities": view.plan.activities},
            "story": view.plan.story,
            "letter": {
                "content": view.plan.letter,
                "from": "、".join(p.name for p in view.personas) or "未来の家族",
            },
            "family": [{"name": p.name, "role": p.role} for p in view.personas],
            "partner": partner.name if partner else None,
            "children": [
                {"name": child.name, "image": f"child_{index}"}
                for index, child in enumerate(children, start=1)
            ],
            "image_keys": image_keys,
        }
        await self._blobs.put(
            key=prefix + DOCUMENT,
            data=_dumps(document),
            content_type="application/json",
        )
        # Indexed last: a keepsake is listed only once all of it is stored.
        await self._users.index_add(
            owner_key=owner, index="keepsakes", item_id=session_id, at=snap.meta.created_at
        )
        return True

    async def _copy(self, entry: JSONDict, stem: str) -> str | None:
        """Copy a session's image to `stem.<ext>`; None when its blob is gone."""
        try:
            data = await read_all(await self._blobs.open(key=entry["key"]))
        except BlobNotFound:
            return None
        key = f"{stem}.{ext_for(entry['content_type'])}"
        await self._blobs.put(key=key, data=data, content_type=entry["content_type"])
        return key

    async def page(
        self, subject: str, limit: int, cursor: str | None
    ) -> tuple[list[Keepsake], str | None]:
        owner = owner_key(subject)
        page = await self._users.index_page(
            owner_key=owner, index="keepsakes", limit=limit, cursor=cursor
        )
        read = await all_or_none(
            [self.get(owner, entry.item_id) for entry in page.entries], at_most=READS_AT_ONCE
        )
        return [keepsake for keepsake in read if keepsake is not None], page.next_cursor

    async def get(self, owner: str, session_id: str) -> Keepsake | None:
        """A person's keepsake of a session, or None when there is none."""
        key = keepsake_prefix(owner, session_id) + DOCUMENT
        try:
            raw = await read_all(await self._blobs.open(key=key))
        except BlobNotFound:
            return None
        return Keepsake(owner, _loads(raw))

    async def open_image(self, owner: str, session_id: str, name: str) -> BlobReader | None:
        """A keepsake's image, or None when there is no such keepsake or image."""
        keepsake = await self.get(owner, session_id)
        key = keepsake.image_key(name) if keepsake else None
        if key is None:
            return None
        try:
            return await self._blobs.open(key=key)
        except BlobNotFound:
            return None

    async def forget(self, subject: str, session_id: str) -> bool:
        """Delete one keepsake and its images; False when the person has no such keepsake."""
        owner = owner_key(subject)
        listed = await self._users.index_remove(
            owner_key=owner, index="keepsakes", item_id=session_id
        )
        removed = await self._blobs.delete_prefix(prefix=keepsake_prefix(owner, session_id))
        return listed or removed > 0


def _dumps(document: JSONDict) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


def _loads(raw: bytes) -> Any:
    return json.loads(raw)
