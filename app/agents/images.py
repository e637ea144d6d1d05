"""Photos and generated images: into the blob store, indexed in the session.

Blob keys use logical names only (`user`, `partner`, `child_1`, ... plus hash and nonce) —
never names from the profile. Generation runs outside the session's turn lock (it is slow);
recording the result takes the lock briefly to swap the index entry and retire the old blob.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import AsyncIterable, Awaitable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

import anyio.to_thread

from app.agents.brains.base import GeneratedImage, ImageBrain
from app.agents.errors import ImageNotFound, InterviewIncomplete, PreconditionFailed, UploadTooLarge
from app.agents.personas import partner_gender
from app.agents.profile import partner_key
from app.agents.uploads import ext_for, normalise_upload
from app.repositories.base import (
    BlobReader,
    BlobRepository,
    JSONDict,
    SessionNotFound,
    SessionRepository,
    read_all,
    session_blob_key,
    utcnow,
)

T = TypeVar("T")
IMAGE_NAME: Final = re.compile(r"^(user|partner|child_[1-9][0-9]?)$")


@dataclass(frozen=True)
class StoredImage:
    name: str
    content_type: str
    etag: str
    meta: JSONDict

    @property
    def version(self) -> str:
        return self.etag[:12]


async def _all_or_none(calls: Sequence[Awaitable[T]]) -> list[T]:
    """Run side by side; on the first failure cancel the rest (no model time is spent on
    images nobody will store) and raise that failure itself, not a group."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # wait until they have stopped
        raise


def check_image_name(name: str) -> str:
    if not IMAGE_NAME.match(name):
        raise ImageNotFound(name)
    return name


class ImageAgent:
    def __init__(
        self,
        *,
        sessions: SessionRepository,
        blobs: BlobRepository,
        brain: ImageBrain,
        max_upload_bytes: int,
        max_pixels: int,
    ) -> None:
        self._sessions = sessions
        self._blobs = blobs
        self._brain = brain
        self._max_bytes = max_upload_bytes
        self._max_pixels = max_pixels

    async def _record(
        self, session_id: str, name: str, data: bytes, content_type: str, meta: JSONDict
    ) -> StoredImage:
        # A fresh key per write (content hash + nonce): concurrent writers never share an
        # object, so the index can only point at the bytes it describes, and retiring an old
        # blob can never remove one that a later write still uses.
        digest = await anyio.to_thread.run_sync(lambda: hashlib.sha256(data).hexdigest()[:12])
        unique = f"{name}-{digest}{uuid.uuid4().hex[:8]}.{ext_for(content_type)}"
        key = session_blob_key(session_id, unique)
        info = await self._blobs.put(key=key, data=data, content_type=content_type)
        entry = {
            "key": key,
            "content_type": content_type,
            "etag": info.etag,
            "size": info.size,
            "created_at": utcnow().isoformat(),
            "meta": meta,
        }
        try:
            # The swap is short and under the session lock, so the blob it replaces is known.
            async with self._sessions.lock(session_id=session_id):
                _, images = await self._index(session_id)
                await self._sessions.update(
                    session_id=session_id, doc="images", fields={name: entry}
                )
        except SessionNotFound:
            await self._blobs.delete(key=key)  # the session was deleted meanwhile
            raise
        previous = images.get(name, {}).get("key")
        if previous and previous != key:
            await self._blobs.delete(key=previous)
        return StoredImage(name, content_type, info.etag, meta)

    async def upload_user_photo(self, session_id: str, chunks: AsyncIterable[bytes]) -> StoredImage:
        await self._sessions.get_meta(session_id=session_id)  # 404 before reading the body
        buffer = bytearray()
        async for chunk in chunks:
            buffer += chunk
            if len(buffer) > self._max_bytes:
                raise UploadTooLarge(self._max_bytes)
        data, content_type = await anyio.to_thread.run_sync(
            lambda: normalise_upload(bytes(buffer), max_pixels=self._max_pixels)
        )
        return await self._record(session_id, "user", data, content_type, {"source": "upload"})

    async def _index(self, session_id: str) -> tuple[JSONDict, JSONDict]:
        snap = await self._sessions.load(session_id=session_id, docs=["profile", "images"])
        return snap.doc("profile"), snap.doc("images")

    async def generate_partner(self, session_id: str) -> StoredImage:
        profile, _ = await self._index(session_id)
        partner = profile.get(partner_key(profile))
        partner = partner if isinstance(partner, dict) else {}
        parts = [profile.get("partner_face_description"), partner.get("appearance")]
        description = "。".join(str(p) for p in parts if p)
        if not description:
            raise InterviewIncomplete(["partner_face_description"])
        image = await self._brain.partner_image(
            description=description, gender=partner_gender(profile)
        )
        return await self._store_generated(session_id, "partner", image)

    async def generate_children(self, session_id: str) -> list[StoredImage]:
        profile, images = await self._index(session_id)
        children = [
            c for c in profile.get("children_info") or [] if isinstance(c, dict) and c.get("name")
        ]
        if not children:
            raise InterviewIncomplete(["children_info"])
        for needed, code in (("user", "user_photo_missing"), ("partner", "partner_image_missing")):
            if needed not in images:
                raise PreconditionFailed(
                    "先にあなたの写真をアップロードしてください。"
                    if needed == "user"
                    else "先にパートナーの画像を生成してください。",
                    code=code,
                )
        user_photo = await read_all(await self._blobs.open(key=images["user"]["key"]))
        partner_img = await read_all(await self._blobs.open(key=images["partner"]["key"]))
        # Children are drawn side by side: one model latency for the whole family.
        generated = await _all_or_none(
            [
                self._brain.child_image(
                    user_photo=user_photo, partner_image=partner_img, child=child, index=index
                )
                for index, child in enumerate(children, start=1)
            ]
        )
        return [
            await self._store_generated(session_id, f"child_{index}", image)
            for index, image in enumerate(generated, start=1)
        ]

    async def _store_generated(
        self, session_id: str, name: str, image: GeneratedImage
    ) -> StoredImage:
        if not image.data:
            raise PreconditionFailed("画像を生成できませんでした。", code="image_generation_failed")
        return await self._record(session_id, name, image.data, image.content_type, image.meta)

    async def open_image(self, session_id: str, name: str) -> tuple[JSONDict, BlobReader]:
        _, images = await self._index(session_id)
        entry = images.get(check_image_name(name))
        if entry is None:
            raise ImageNotFound(name)
        return entry, await self._blobs.open(key=entry["key"])

    async def presigned(self, session_id: str, name: str, expires_in: int) -> str | None:
        _, images = await self._index(session_id)
        entry = images.get(check_image_name(name))
        if entry is None:
            raise ImageNotFound(name)
        return await self._blobs.presigned_url(key=entry["key"], expires_in=expires_in)
