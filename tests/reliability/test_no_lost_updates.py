"""No lost updates across processes: concurrent requests on ONE session, spread over the two
server processes of the pair (Redis sessions + S3 blobs), all run one after the other.

- 30 concurrent interview messages: 30 user entries and 30 Hera replies, strictly paired
  (each reply right after its own message, and it is the reply that request received); every
  turn saw every earlier turn (the histories the requests got back have 30 different lengths)
  and the profile holds the merges of all of them, in turn order.
- 20 concurrent family messages: 20 user entries, each followed by exactly the lines that
  request received.
- 10 concurrent photo uploads: all succeed; the stored user photo is one of the uploads
  (after re-encoding) byte for byte, the same from both processes; every blob of the
  session is a whole upload.
  The session's image index describes exactly that blob (also checked by forcing the
  interleaving that used to break it, in-process), and the disk blob store keeps object and
  metadata of concurrent puts together.
- A turn whose process is killed with SIGKILL while it holds the session's lock blocks the
  session only until the lock's expiry: the next message then succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.agents.uploads import normalise_upload
from app.repositories.base import SessionBusy, SessionRepository, read_all
from app.settings import Settings
from tests.api.conftest import ApiClient, open_client, stack_settings
from tests.api.images import jpeg_photo
from tests.api.scripted_user import SCRIPT
from tests.reliability._servers import REPO
from tests.reliability._turn_holder import ORPHAN_MESSAGE
from tests.reliability.conftest import CloudPair

pytestmark = pytest.mark.slow

# Each one is read by the offline brain as one new interest (Hera asks for the basics all
# along, so nothing else is extracted); the profile keeps the first 20 interests.
HOBBIES = (
    "テニス", "サッカー", "野球", "水泳", "読書", "料理", "登山", "釣り", "写真", "映画",
    "音楽", "ギター", "ピアノ", "陶芸", "書道", "茶道", "将棋", "囲碁", "卓球", "弓道",
    "剣道", "柔道", "空手", "スキー", "ゴルフ", "ヨガ", "園芸", "手芸", "裁縫", "俳句",
)  # fmt: skip
MAX_INTERESTS = 20
MAX_PIXELS = Settings.model_fields["max_image_pixels"].default
HOLDER_LOCK_TTL = 2  # seconds
RACE_WINDOW = 3.0  # seconds the first upload waits for the second (a fixed app never lets it)
UNBLOCK_DEADLINE = 10.0  # seconds after the kill; the lock expires after at most 2


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


async def _new_session(clients: list[httpx.AsyncClient]) -> str:
    return str(_ok(await clients[0].post("/api/sessions"), 201)["session_id"])


async def _spread(
    clients: list[httpx.AsyncClient], path: str, bodies: list[dict[str, Any]]
) -> list[httpx.Response]:
    """All requests at once, request i through client i % len(clients)."""
    return await asyncio.gather(
        *(clients[i % len(clients)].post(path, json=body) for i, body in enumerate(bodies))
    )


async def test_concurrent_interview_messages_are_all_kept_in_pairs(
    pair_clients: list[httpx.AsyncClient],
) -> None:
    sid = await _new_session(pair_clients)
    messages = [f"私の趣味は{hobby}です。" for hobby in HOBBIES]
    responses = await _spread(
        pair_clients, f"/api/sessions/{sid}/messages", [{"message": m} for m in messages]
    )
    replies = {m: _ok(r)["reply"] for m, r in zip(messages, responses, strict=True)}
    # Every turn ran on the state the previous one left: 2, 4, ..., 60 entries.
    lengths = sorted(len(r.json()["conversation_history"]) for r in responses)
    assert lengths == list(range(2, 2 * len(messages) + 1, 2))

    status = _ok(await pair_clients[1].get(f"/api/sessions/{sid}/status"))
    history = status["conversation_history"]
    assert len(history) == 2 * len(messages)
    assert [e["speaker"] for e in history] == ["user", "hera"] * len(messages)
    users, heras = history[0::2], history[1::2]
    assert sorted(e["message"] for e in users) == sorted(messages)
    order = [HOBBIES[messages.index(e["message"])] for e in users]
    for user, hera, hobby in zip(users, heras, order, strict=True):
        assert hera["message"] == replies[user["message"]]  # this request's own reply
        assert f"趣味は{hobby}" in hera["message"]
    # The merges of all turns, in the order the turns ran (capped at 20 by the profile).
    assert status["user_profile"]["interests"] == order[:MAX_INTERESTS]


async def _complete_interview(clients: list[httpx.AsyncClient], sid: str) -> list[str]:
    for i, message in enumerate(SCRIPT):
        body = _ok(
            await clients[i % 2].post(f"/api/sessions/{sid}/messages", json={"message": message})
        )
        if body["profile_complete"]:
            break
    _ok(await clients[0].post(f"/api/sessions/{sid}/complete"))
    status = _ok(await clients[1].get(f"/api/sessions/{sid}/family/status"))
    return [m["name"] for m in status["members"]]


async def test_concurrent_family_messages_are_all_kept_with_their_lines(
    pair_clients: list[httpx.AsyncClient],
) -> None:
    sid = await _new_session(pair_clients)
    names = await _complete_interview(pair_clients, sid)
    # Small talk: no destination or activity, so no proposal ever ends the conversation.
    messages = [f"みんな、今日も元気？（{n}回目）" for n in range(1, 21)]
    responses = await _spread(
        pair_clients, f"/api/sessions/{sid}/family/messages", [{"message": m} for m in messages]
    )
    replies = {m: _ok(r)["reply"] for m, r in zip(messages, responses, strict=True)}
    assert all(replies.values())
    lengths = sorted(len(r.json()["conversation_history"]) for r in responses)
    assert len(set(lengths)) == len(messages)  # every turn saw all earlier ones

    status = _ok(await pair_clients[0].get(f"/api/sessions/{sid}/family/status"))
    history = status["conversation_history"]
    starts = [i for i, e in enumerate(history) if e["speaker"] == "user"]
    assert sorted(history[i]["message"] for i in starts) == sorted(messages)
    assert starts[0] == 0
    for start, end in zip(starts, [*starts[1:], len(history)], strict=True):
        lines = history[start + 1 : end]
        assert lines == replies[history[start]["message"]]
        assert all(line["speaker"] in names for line in lines)
    assert len(history) == sum(1 + len(lines) for lines in replies.values())
    assert lengths[-1] == len(history)
    assert status["conversation_complete"] is False
    assert status["family_trip_info"] == {"destination": None, "activities": []}


def _photo(index: int) -> bytes:
    return jpeg_photo(color=(40 + 20 * index, 200 - 15 * index, 100 + 10 * index))


async def test_concurrent_uploads_leave_one_whole_photo(
    cloud_pair: CloudPair, pair_clients: list[httpx.AsyncClient]
) -> None:
    from app.repositories.s3_blobs import open_s3

    sid = await _new_session(pair_clients)
    photos = [_photo(i) for i in range(10)]
    expected = {normalise_upload(p, max_pixels=MAX_PIXELS)[0] for p in photos}
    assert len(expected) == len(photos)
    responses = await asyncio.gather(
        *(
            pair_clients[i % 2].post(
                f"/api/sessions/{sid}/photos/user", files={"file": (f"p{i}.jpg", p, "image/jpeg")}
            )
            for i, p in enumerate(photos)
        )
    )
    urls = {_ok(r)["image_url"] for r in responses}
    assert len(urls) == len(photos)  # one version per upload

    served = [await c.get(f"/api/sessions/{sid}/photos/user") for c in pair_clients]
    assert all(r.status_code == 200 for r in served)
    data = served[0].content
    assert data in expected, "the stored photo is none of the uploads (torn or mixed)"
    assert served[1].content == data
    assert served[0].headers["content-length"] == str(len(data))

    blobs = await open_s3(**cloud_pair.s3)
    try:
        stored = [
            await read_all(await blobs.open(key=info.key))
            async for info in blobs.list(prefix=f"sessions/{sid}/")
        ]
    finally:
        await blobs.aclose()
    assert data in stored
    assert all(blob in expected for blob in stored), "a stored blob is none of the uploads"
    # The index describes exactly that blob, and the replaced uploads were retired.
    assert served[0].headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert stored == [data]


@pytest.fixture
async def inprocess_api(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[ApiClient]:
    async for client in open_client(stack_settings("redis-s3", tmp_path, request)):
        yield client


async def test_interleaved_uploads_leave_an_index_that_matches_the_blob(
    inprocess_api: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = inprocess_api
    services = api.app.state.services
    real_put, real_commit = services.blobs.put, services.sessions.commit
    puts = 0
    first_stored, second_indexed = asyncio.Event(), asyncio.Event()

    # Force the interleaving put A, put B, index B, index A (bounded waits: an app that
    # serialises uploads simply makes the first one wait RACE_WINDOW and go on).
    async def put(**kwargs: Any) -> Any:
        nonlocal puts
        puts += 1
        if puts == 1:
            info = await real_put(**kwargs)
            first_stored.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(second_indexed.wait(), RACE_WINDOW)
            return info
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(first_stored.wait(), RACE_WINDOW)
        return await real_put(**kwargs)

    async def commit(**kwargs: Any) -> None:
        await real_commit(**kwargs)
        if "images" in kwargs["changes"].docs and first_stored.is_set():
            second_indexed.set()

    monkeypatch.setattr(services.blobs, "put", put)
    monkeypatch.setattr(services.sessions, "commit", commit)

    sid = (await api.post("/api/sessions")).json()["session_id"]
    first, second = await asyncio.gather(
        *(
            api.post(f"/api/sessions/{sid}/photos/user", files={"file": ("p.jpg", p, "image/jpeg")})
            for p in (_photo(1), _photo(2))
        )
    )
    assert (first.status_code, second.status_code) == (200, 200)
    served = await api.get(f"/api/sessions/{sid}/photos/user")
    assert served.status_code == 200
    entry = (await services.sessions.load(session_id=sid, docs=["images"])).doc("images")["user"]
    md5 = hashlib.md5(served.content, usedforsecurity=False).hexdigest()
    assert (entry["etag"], entry["size"]) == (md5, len(served.content))
    assert served.headers["etag"] == f'"{md5}"'


def _start_holder(cloud_pair: CloudPair, sid: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "tests.reliability._turn_holder",
               cloud_pair.session_spec.to_json(), sid, str(HOLDER_LOCK_TTL)]  # fmt: skip
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30.0)  # deadline for the child's start
    line = proc.stdout.readline() if ready else ""
    if line.strip() != "locked":
        proc.kill()
        proc.wait()
        raise AssertionError(f"the turn holder did not take the lock: {line!r}")
    return proc


async def test_a_killed_lock_holder_blocks_the_session_only_until_the_lock_expires(
    cloud_pair: CloudPair,
    pair_clients: list[httpx.AsyncClient],
    pair_sessions: SessionRepository,
) -> None:
    sid = await _new_session(pair_clients)
    proc = _start_holder(cloud_pair, sid)
    try:
        with pytest.raises(SessionBusy):  # the holder really holds the turn lock
            async with pair_sessions.lock(session_id=sid, wait=0.3):
                pass
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    killed = time.monotonic()

    message = "32歳の女性です。独身です。"
    response = await pair_clients[1].post(
        f"/api/sessions/{sid}/messages",
        json={"message": message},
        timeout=UNBLOCK_DEADLINE,  # the server waits for the lock; we wait no longer than this
    )
    waited = time.monotonic() - killed
    body = _ok(response)
    assert waited < UNBLOCK_DEADLINE
    history = body["conversation_history"]
    # The dead turn's persisted words stay; the new turn ran after it, complete.
    assert [(e["speaker"], e["message"]) for e in history[:2]] == [
        ("user", ORPHAN_MESSAGE),
        ("user", message),
    ]
    assert [e["speaker"] for e in history] == ["user", "user", "hera"]
    assert body["user_profile"]["age"] == 32


DISK_PUT_ROUNDS = 50  # rounds of 8 concurrent puts; one inconsistent round is enough


async def test_concurrent_puts_to_one_disk_key_keep_content_and_metadata_together(
    tmp_path: Path,
) -> None:
    from app.repositories.disk_blobs import DiskBlobRepository

    blobs = DiskBlobRepository(root=tmp_path / "blobs")
    key = "sessions/00000000-0000-4000-8000-000000000000/user.jpg"
    for round_ in range(DISK_PUT_ROUNDS):
        versions = [bytes([i, round_]) * 5000 for i in range(8)]
        await asyncio.gather(
            *(blobs.put(key=key, data=v, content_type="image/jpeg") for v in versions)
        )
        info = await blobs.stat(key=key)
        data = await read_all(await blobs.open(key=key))
        assert data in versions
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        assert info.etag == md5, f"round {round_}: the metadata is another put's"
