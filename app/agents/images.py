"""Photos and generated images: into the blob store, indexed in the session.

Blob keys use logical names only (`user`, `partner`, `child_1`, ... plus hash and nonce) —
never names from the profile. Every operation runs under the session's lock, like a turn:
the blobs are written first (under fresh keys), the index entries, quota and request record
are committed in one step, and only then are the blobs they replace retired. A failed model
call or commit leaves the index as it was and removes the blobs it wrote.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import Final

import anyio.to_thread

from app.agents.access import GUEST, Caller
from app.agents.brains import GeneratedImage, ImageBrain
from app.agents.concurrent import all_or_none
from app.agents.errors import ImageNotFound, InterviewIncomplete, PreconditionFailed, UploadTooLarge
from app.agents.turns import Quotas, RequestKey, Turn, open_turn
from app.agents.uploads import ext_for, normalise_upload
from app.domain.images import ImageEntry, image_version
from app.domain.personas import partner_gender
from app.domain.profile import Profile
from app.repositories.base import (
    BlobReader,
    BlobRepository,
    Changes,
    JSONDict,
    SessionRepository,
    read_all,
    session_blob_key,
    utcnow,
)

IMAGE_NAME: Final = re.compile(r"^(user|partner|child_[1-9][0-9]?)$")


@dataclass(frozen=True)
class StoredImage:
    name: str
    content_type: str
    etag: str
    meta: JSONDict

    @property
    def version(self) -> str:
        return image_version(self.etag)

    def record(self) -> JSONDict:
        return {
            "name": self.name,
            "content_type": self.content_type,
            "etag": self.etag,
            "meta": self.meta,
        }

    @classmethod
    def from_record(cls, record: JSONDict) -> StoredImage:
        return cls(record["name"], record["content_type"], record["etag"], record["meta"])


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
        quotas: Quotas | None = None,
    ) -> None:
        self._sessions = sessions
        self._blobs = blobs
        self._brain = brain
        self._max_bytes = max_upload_bytes
        self._max_pixels = max_pixels
        self._quotas = quotas or Quotas()

    async def _save(
        self, turn: Turn, images: dict[str, GeneratedImage], changes: Changes
    ) -> list[StoredImage]:
        """Write the blobs, commit their index entries with `changes` in one step, then
        retire the blobs they replace. A fresh key per write (content hash + nonce): writers
        never share an object, so the index only ever points at the bytes it describes."""
        written: list[str] = []
        stored: list[StoredImage] = []
        try:
            for name, image in images.items():
                digest = (await anyio.to_thread.run_sync(_sha256, image.data))[:12]
                unique = f"{name}-{digest}{uuid.uuid4().hex[:8]}.{ext_for(image.content_type)}"
                key = session_blob_key(turn.session_id, unique)
                info = await self._blobs.put(
                    key=key, data=image.data, content_type=image.content_type
                )
                written.append(key)
                entry = ImageEntry(
                    key=key,
                    content_type=image.content_type,
                    etag=info.etag,
                    size=info.size,
                    created_at=utcnow().isoformat(),
                    meta=image.meta,
                )
                changes.update("images", {name: entry.stored()})
                stored.append(StoredImage(name, image.content_type, info.etag, image.meta))
            await turn.commit(changes, {"images": [image.record() for image in stored]})
        except BaseException:
            for key in written:  # nothing points at them: the index was never changed
                await asyncio.shield(self._blobs.delete(key=key))
            raise
        index = turn.snapshot.doc("images")
        for name in images:
            previous = index.get(name, {}).get("key")
            if previous and previous not in written:
                await self._blobs.delete(key=previous)
        return stored

    @staticmethod
    def _earlier(turn: Turn) -> list[StoredImage] | None:
        earlier = turn.earlier()
        if earlier is None:
            return None
        return [StoredImage.from_record(image) for image in earlier["images"]]

    async def upload_user_photo(
        self,
        session_id: str,
        chunks: AsyncIterable[bytes],
        request_key: str | None = None,
        caller: Caller = GUEST,
    ) -> StoredImage:
        # 404 before reading the body (an unknown session, or another person's).
        caller.check(await self._sessions.get_meta(session_id=session_id))
        buffer = bytearray()
        async for chunk in chunks:
            buffer += chunk
            if len(buffer) > self._max_bytes:
                raise UploadTooLarge(self._max_bytes)
        raw = bytes(buffer)
        # A retry of an upload is the same file; the multipart framing around it is not.
        request = RequestKey.of(
            request_key,
            "upload_user_photo",
            await anyio.to_thread.run_sync(_sha256, raw),
        )
        data, content_type = await anyio.to_thread.run_sync(
            lambda: normalise_upload(raw, max_pixels=self._max_pixels)
        )
        async with open_turn(
            self._sessions, session_id, request, docs=["images"], caller=caller
        ) as turn:
            if (earlier := self._earlier(turn)) is not None:
                return earlier[0]
            upload = GeneratedImage(data, content_type, {"source": "upload"})
            return (await self._save(turn, {"user": upload}, Changes()))[0]

    async def generate_partner(
        self, session_id: str, request: RequestKey | None = None, caller: Caller = GUEST
    ) -> StoredImage:
        async with open_turn(
            self._sessions, session_id, request, docs=["profile", "images", "state"], caller=caller
        ) as turn:
            if (earlier := self._earlier(turn)) is not None:
                return earlier[0]
            profile = Profile.from_stored(turn.snapshot.doc("profile"))
            partner = profile.partner
            parts = [profile.partner_face_description, partner.appearance if partner else None]
            description = "。".join(p for p in parts if p)
            if not description:
                raise InterviewIncomplete(["partner_face_description"])
            usage = self._quotas.spend(turn.snapshot.doc("state"), "partner_images")
            image = await self._brain.partner_image(
                description=description, gender=partner_gender(profile)
            )
            _check_generated(image)
            return (await self._save(turn, {"partner": image}, Changes().update("state", usage)))[0]

    async def generate_children(
        self, session_id: str, request: RequestKey | None = None, caller: Caller = GUEST
    ) -> list[StoredImage]:
        async with open_turn(
            self._sessions, session_id, request, docs=["profile", "images", "state"], caller=caller
        ) as turn:
            if (earlier := self._earlier(turn)) is not None:
                return earlier
            profile = Profile.from_stored(turn.snapshot.doc("profile"))
            images = turn.snapshot.doc("images")
            children = [c for c in profile.children_info or [] if c.name]
            if not children:
                raise InterviewIncomplete(["children_info"])
            for needed, code in (
                ("user", "user_photo_missing"),
                ("partner", "partner_image_missing"),
            ):
                if needed not in images:
                    raise PreconditionFailed(
                        "先にあなたの写真をアップロードしてください。"
                        if needed == "user"
                        else "先にパートナーの画像を生成してください。",
                        code=code,
                    )
            usage = self._quotas.spend(turn.snapshot.doc("state"), "child_image_rounds")
            user_photo = await read_all(await self._blobs.open(key=images["user"]["key"]))
            partner_img = await read_all(await self._blobs.open(key=images["partner"]["key"]))
            # Children are drawn side by side: one model latency for the whole family.
            generated = await all_or_none(
                [
                    self._brain.child_image(
                        user_photo=user_photo, partner_image=partner_img, child=child, index=index
                    )
                    for index, child in enumerate(children, start=1)
                ]
            )
            for image in generated:
                _check_generated(image)
            named = {f"child_{i}": image for i, image in enumerate(generated, start=1)}
            return await self._save(turn, named, Changes().update("state", usage))

    async def image_entry(self, session_id: str, name: str, caller: Caller = GUEST) -> JSONDict:
        """The index entry of a session's image (its key, content type and etag); a name that
        is not an image's is ImageNotFound before the store is asked."""
        check_image_name(name)
        snap = await self._sessions.load(session_id=session_id, docs=["images"])
        caller.check(snap.meta)
        entry: JSONDict | None = snap.doc("images").get(name)
        if entry is None:
            raise ImageNotFound(name)
        return entry

    async def open_image(self, entry: JSONDict) -> BlobReader:
        """The bytes of an image `image_entry` found (a GET of the blob store: callers compare
        the entry's etag first)."""
        return await self._blobs.open(key=entry["key"])

    async def presigned(self, entry: JSONDict, expires_in: int) -> str | None:
        """A short-lived URL of an image `image_entry` found; None when the store cannot sign."""
        return await self._blobs.presigned_url(key=entry["key"], expires_in=expires_in)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_generated(image: GeneratedImage) -> None:
    if not image.data:
        raise PreconditionFailed("画像を生成できませんでした。", code="image_generation_failed")
