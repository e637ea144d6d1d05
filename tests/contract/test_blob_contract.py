"""The BlobRepository contract, run unchanged against every adapter."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest

from app.repositories.base import (
    BlobNotFound,
    BlobRepository,
    InvalidId,
    new_session_id,
    read_all,
    session_blob_key,
    session_blob_prefix,
)

PNG_BYTES = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40


async def _stream(total: int, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        size = min(chunk, total - sent)
        yield bytes((sent + i) % 251 for i in range(size))
        sent += size


async def test_put_bytes_then_open_round_trips(blobs: BlobRepository) -> None:
    key = session_blob_key(new_session_id(), "partner.png")
    info = await blobs.put(key=key, data=PNG_BYTES, content_type="image/png")
    assert info.size == len(PNG_BYTES)
    reader = await blobs.open(key=key)
    assert reader.info.content_type == "image/png"
    assert reader.info.size == len(PNG_BYTES)
    assert reader.info.etag
    assert await read_all(reader) == PNG_BYTES


async def test_put_overwrites_and_changes_etag(blobs: BlobRepository) -> None:
    key = session_blob_key(new_session_id(), "user.jpg")
    first = await blobs.put(key=key, data=b"one", content_type="image/jpeg")
    second = await blobs.put(key=key, data=b"two-two", content_type="image/jpeg")
    assert first.etag != second.etag
    assert await read_all(await blobs.open(key=key)) == b"two-two"
    assert (await blobs.stat(key=key)).size == 7


async def test_large_stream_round_trips_in_bounded_chunks(blobs: BlobRepository) -> None:
    total = 9 * 1024 * 1024 + 123  # over 8 MB
    expected = hashlib.sha256()
    async for piece in _stream(total):
        expected.update(piece)
    key = session_blob_key(new_session_id(), "big.bin")
    info = await blobs.put(key=key, data=_stream(total), content_type="application/octet-stream")
    assert info.size == total
    reader = await blobs.open(key=key)
    got, size, largest = hashlib.sha256(), 0, 0
    async for chunk in reader.chunks():
        got.update(chunk)
        size += len(chunk)
        largest = max(largest, len(chunk))
    assert size == total
    assert got.hexdigest() == expected.hexdigest()
    assert largest <= 1024 * 1024  # streamed, never handed over whole


async def test_missing_blob_raises_not_found(blobs: BlobRepository) -> None:
    key = session_blob_key(new_session_id(), "nothing.png")
    assert not await blobs.exists(key=key)
    with pytest.raises(BlobNotFound):
        await blobs.open(key=key)
    with pytest.raises(BlobNotFound):
        await blobs.stat(key=key)
    assert await blobs.delete(key=key) is False


async def test_delete_removes_one_blob(blobs: BlobRepository) -> None:
    key = session_blob_key(new_session_id(), "a.png")
    await blobs.put(key=key, data=b"x", content_type="image/png")
    assert await blobs.exists(key=key)
    assert await blobs.delete(key=key) is True
    assert not await blobs.exists(key=key)


async def test_list_and_delete_prefix_touch_only_that_session(blobs: BlobRepository) -> None:
    mine, other = new_session_id(), new_session_id()
    for name in ("user.jpg", "partner.png", "child_1.png"):
        await blobs.put(key=session_blob_key(mine, name), data=name.encode(), content_type="x/y")
    await blobs.put(key=session_blob_key(other, "user.jpg"), data=b"keep", content_type="x/y")
    listed = [i.key async for i in blobs.list(prefix=session_blob_prefix(mine))]
    assert listed == sorted(
        session_blob_key(mine, n) for n in ("user.jpg", "partner.png", "child_1.png")
    )
    assert await blobs.delete_prefix(prefix=session_blob_prefix(mine)) == 3
    assert [i async for i in blobs.list(prefix=session_blob_prefix(mine))] == []
    assert await read_all(await blobs.open(key=session_blob_key(other, "user.jpg"))) == b"keep"


async def test_japanese_and_binary_content_survive(blobs: BlobRepository) -> None:
    key = session_blob_key(new_session_id(), "story.txt")
    text = "家族の物語 👨‍👩‍👧\x00\xff".encode()
    await blobs.put(key=key, data=text, content_type="text/plain; charset=utf-8")
    assert await read_all(await blobs.open(key=key)) == text


@pytest.mark.parametrize(
    "bad_key",
    [
        "../escape.png",
        "sessions/../../etc/passwd",
        "/absolute.png",
        "sessions//double.png",
        "sessions/..\\..\\win.png",
        "sessions/%2e%2e/x.png",
        "sessions/nul\x00.png",
        "sessions/./x.png",
        ".hidden",
        "",
    ],
)
async def test_hostile_keys_are_rejected(blobs: BlobRepository, bad_key: str) -> None:
    with pytest.raises(InvalidId):
        await blobs.put(key=bad_key, data=b"x", content_type="image/png")
    with pytest.raises(InvalidId):
        await blobs.open(key=bad_key)
    with pytest.raises(InvalidId):
        await blobs.delete(key=bad_key)


async def test_prefixes_must_be_whole_folders(blobs: BlobRepository) -> None:
    with pytest.raises(InvalidId):
        await blobs.delete_prefix(prefix="sessions")
    with pytest.raises(InvalidId):
        await blobs.delete_prefix(prefix="../")


async def test_ping_succeeds_on_a_healthy_store(blobs: BlobRepository) -> None:
    assert await blobs.ping() is None  # answers, and raises nothing
