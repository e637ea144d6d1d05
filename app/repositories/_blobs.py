"""Pieces every blob adapter shares: key prefixing, chunk sizes, byte-stream helpers."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable

from .base import BlobInfo, BlobNotFound, check_blob_key, check_blob_prefix

CHUNK_SIZE = 256 * 1024


class KeySpace:
    """Maps a checked relative key to the store's key under BLOB_KEY_PREFIX, and back."""

    def __init__(self, prefix: str = "") -> None:
        prefix = prefix.strip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        if self.prefix:
            check_blob_prefix(self.prefix)

    def full(self, key: str) -> str:
        return self.prefix + check_blob_key(key)

    def full_prefix(self, prefix: str) -> str:
        return self.prefix + check_blob_prefix(prefix)

    def relative(self, full_key: str) -> str:
        return full_key[len(self.prefix) :]


async def found(stat: Awaitable[BlobInfo]) -> bool:
    """`exists` for a store whose cheapest check is its `stat`: True unless it is not found."""
    try:
        await stat
    except BlobNotFound:
        return False
    return True


async def as_chunks(data: bytes | AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """Bytes or an async stream, as a stream."""
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data)
        for start in range(0, len(view), CHUNK_SIZE):
            yield bytes(view[start : start + CHUNK_SIZE])
        return
    async for chunk in data:
        if chunk:
            yield bytes(chunk)


class ChunkReader:
    """A BlobReader over an async iterator of chunks plus an optional close callback."""

    def __init__(
        self,
        info: BlobInfo,
        stream: AsyncIterator[bytes],
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.info = info
        self._stream = stream
        self._close = close
        self._closed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            aclose = getattr(self._stream, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            if self._close is not None:
                await self._close()
