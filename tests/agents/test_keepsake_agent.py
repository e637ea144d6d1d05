"""Keepsakes are read, and their images copied, side by side within a bound.

The blob store is the in-memory adapter with a counter on `open`; an open yields to the loop
once, as a real GET does, so opens that are side by side are seen in flight together.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

from app.agents.concurrent import READS_AT_ONCE
from app.agents.keepsakes import COPIES_AT_ONCE, DOCUMENT, KeepsakeAgent, keepsake_prefix
from app.repositories.base import BlobReader, read_all, session_blob_key
from app.repositories.memory_blobs import MemoryBlobRepository
from app.repositories.memory_sessions import MemorySessionRepository
from app.repositories.memory_users import MemoryUserRepository
from app.repositories.users import owner_key
from tests.support.writes import update

SUBJECT = "keeper"
PLAN = {
    "destination": "沖縄",
    "activities": ["海"],
    "story": "物語",
    "letter": "手紙",
    "confirmed_at": "2024-01-01T00:00:00+00:00",
}


class CountedBlobs(MemoryBlobRepository):
    def __init__(self) -> None:
        super().__init__()
        self.opened: list[str] = []
        self.in_flight = 0
        self.most_at_once = 0

    async def open(self, *, key: str) -> BlobReader:
        self.opened.append(key)
        self.in_flight += 1
        self.most_at_once = max(self.most_at_once, self.in_flight)
        try:
            await asyncio.sleep(0)  # the round trip: other opens may start meanwhile
            return await super().open(key=key)
        finally:
            self.in_flight -= 1


def agent() -> tuple[KeepsakeAgent, MemorySessionRepository, CountedBlobs, MemoryUserRepository]:
    sessions, blobs, users = MemorySessionRepository(), CountedBlobs(), MemoryUserRepository()
    return KeepsakeAgent(sessions=sessions, blobs=blobs, users=users), sessions, blobs, users


async def test_a_page_reads_its_keepsakes_side_by_side_in_index_order_within_the_bound() -> None:
    keepsakes, _, blobs, users = agent()
    owner, start = owner_key(SUBJECT), datetime.now(UTC)
    ids = [str(uuid.uuid4()) for _ in range(40)]
    for n, sid in enumerate(ids):
        if n % 10 != 3:  # every tenth one is listed but its document is gone
            document = json.dumps({"session_id": sid, "n": n}).encode()
            await blobs.put(
                key=keepsake_prefix(owner, sid) + DOCUMENT,
                data=document,
                content_type="application/json",
            )
        await users.index_add(
            owner_key=owner, index="keepsakes", item_id=sid, at=start + timedelta(seconds=n)
        )

    found, cursor = await keepsakes.page(SUBJECT, 100, None)

    assert cursor is None
    assert [k.session_id for k in found] == [sid for n, sid in enumerate(ids) if n % 10 != 3][::-1]
    assert len(blobs.opened) == 40  # one GET per listed keepsake
    assert blobs.most_at_once == READS_AT_ONCE
    assert await keepsakes.get(owner, ids[0]) == found[-1]
    assert await keepsakes.get(owner, ids[3]) is None


async def test_keeping_copies_the_sessions_images_side_by_side_within_the_bound() -> None:
    keepsakes, sessions, blobs, users = agent()
    sid = (await sessions.create(owner_id=SUBJECT)).session_id
    names = ["user", "partner", *(f"child_{i}" for i in range(1, 7))]
    index = {}
    for name in names:
        key = session_blob_key(sid, f"{name}-abc.png")
        if name != "child_6":  # its blob is gone: the keepsake goes without it
            await blobs.put(key=key, data=name.encode(), content_type="image/png")
        index[name] = {"key": key, "content_type": "image/png", "etag": name}
    await update(sessions, session_id=sid, doc="images", fields=index)
    await update(sessions, session_id=sid, doc="family", fields={"plan": PLAN})

    assert await keepsakes.keep(sid, SUBJECT)

    keepsake = await keepsakes.get(owner_key(SUBJECT), sid)
    assert keepsake is not None
    for name in names[:-1]:
        kept = keepsake.image_key(name)
        assert kept is not None
        assert await read_all(await MemoryBlobRepository.open(blobs, key=kept)) == name.encode()
    assert keepsake.image_key("child_6") is None
    assert blobs.most_at_once == COPIES_AT_ONCE
    page = await users.index_page(owner_key=owner_key(SUBJECT), index="keepsakes", limit=10)
    assert [e.item_id for e in page.entries] == [sid]
