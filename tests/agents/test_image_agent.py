"""Child images are drawn side by side, all or none."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
from PIL import Image

from app.agents.brains import BrainError, GeneratedImage
from app.agents.images import ImageAgent
from app.repositories.base import session_blob_prefix
from app.repositories.memory_blobs import MemoryBlobRepository
from app.repositories.memory_sessions import MemorySessionRepository
from tests.support.writes import update


def png(color: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(out, format="PNG")
    return out.getvalue()


class ChildBrain:
    """Partner always drawn; child 1 fails once child 2 is under way; child 2 never ends by
    itself (it records whether it was cancelled)."""

    def __init__(self, *, fail_first: bool) -> None:
        self.fail_first = fail_first
        self.second_started = asyncio.Event()
        self.second_cancelled = False

    async def partner_image(self, *, description: str, gender: str | None) -> GeneratedImage:
        return GeneratedImage(png("blue"), "image/png", {"engine": "test"})

    async def child_image(self, *, index: int, **_: Any) -> GeneratedImage:
        if index == 1:
            await self.second_started.wait()
            if self.fail_first:
                raise BrainError("model refused")
            return GeneratedImage(png("red"), "image/png", {"engine": "test"})
        self.second_started.set()
        if not self.fail_first:
            return GeneratedImage(png("green"), "image/png", {"engine": "test"})
        try:
            await asyncio.Event().wait()  # a slow model: only a cancel ends this
        except asyncio.CancelledError:
            self.second_cancelled = True
            raise
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        return None


async def agent_with(
    brain: ChildBrain,
) -> tuple[ImageAgent, MemoryBlobRepository, str, MemorySessionRepository]:
    sessions, blobs = MemorySessionRepository(), MemoryBlobRepository()
    sid = (await sessions.create()).session_id
    await update(
        sessions,
        session_id=sid,
        doc="profile",
        fields={
            "partner_face_description": "優しい目",
            "children_info": [{"name": "太郎"}, {"name": "花子"}],
        },
    )
    agent = ImageAgent(
        sessions=sessions, blobs=blobs, brain=brain, max_upload_bytes=1 << 20, max_pixels=1 << 20
    )

    async def photo() -> Any:
        yield png("white")

    await agent.upload_user_photo(sid, photo())
    await agent.generate_partner(sid)
    return agent, blobs, sid, sessions


async def blob_names(blobs: MemoryBlobRepository, sid: str) -> list[str]:
    keys = [info.key async for info in blobs.list(prefix=session_blob_prefix(sid))]
    return sorted(key.rsplit("/", 1)[-1].split("-")[0] for key in keys)


async def test_one_failing_child_cancels_the_others_and_stores_none() -> None:
    brain = ChildBrain(fail_first=True)
    agent, blobs, sid, sessions = await agent_with(brain)
    with pytest.raises(BrainError):  # the failure itself, not an exception group
        await asyncio.wait_for(agent.generate_children(sid), timeout=30)
    assert brain.second_cancelled  # no model time goes on an image nobody will store
    snap = await sessions.load(session_id=sid, docs=["images", "state"])
    assert sorted(snap.doc("images")) == ["partner", "user"]
    assert snap.doc("state")["usage"] == {"partner_images": 1}  # the failed round is not spent
    assert await blob_names(blobs, sid) == ["partner", "user"]


async def test_all_children_drawn_are_stored_in_order() -> None:
    agent, blobs, sid, _ = await agent_with(ChildBrain(fail_first=False))
    stored = await agent.generate_children(sid)
    assert [image.name for image in stored] == ["child_1", "child_2"]
    assert await blob_names(blobs, sid) == ["child_1", "child_2", "partner", "user"]
