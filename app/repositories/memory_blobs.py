"""In-process blob store: the fast fake for agent tests."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, datetime

from ._blobs import ChunkReader, KeySpace, as_chunks
from .base import BlobInfo, BlobNotFound, BlobReader


class MemoryBlobRepository:
    name = "memory"

    def __init__(self, *, key_prefix: str = "") -> None:
        self._keys = KeySpace(key_prefix)
        self._data: dict[str, tuple[bytes, BlobInfo]] = {}

    async def put(
        self, *, key: str, data: bytes | AsyncIterable[bytes], content_type: str
    ) -> BlobInfo:
        full = self._keys.full(key)
        body = b"".join([chunk async for chunk in as_chunks(data)])
        etag = hashlib.md5(body, usedforsecurity=False).hexdigest()
        info = BlobInfo(key, len(body), content_type, etag, datetime.now(UTC))
        self._data[full] = (body, info)
        return info

    def _get(self, key: str) -> tuple[bytes, BlobInfo]:
        try:
            return self._data[self._keys.full(key)]
        except KeyError:
            raise BlobNotFound(key) from None

    async def stat(self, *, key: str) -> BlobInfo:
        return self._get(key)[1]

    async def exists(self, *, key: str) -> bool:
        return self._keys.full(key) in self._data

    async def open(self, *, key: str) -> BlobReader:
        body, info = self._get(key)
        return ChunkReader(info, as_chunks(body))

    async def delete(self, *, key: str) -> bool:
        return self._data.pop(self._keys.full(key), None) is not None

    async def delete_prefix(self, *, prefix: str) -> int:
        full = self._keys.full_prefix(prefix)
        doomed = [k for k in self._data if k.startswith(full)]
        for k in doomed:
            del self._data[k]
        return len(doomed)

    async def list(self, *, prefix: str) -> AsyncIterator[BlobInfo]:
        full = self._keys.full_prefix(prefix)
        for k in sorted(self._data):
            if k.startswith(full):
                yield self._data[k][1]

    async def presigned_url(self, *, key: str, expires_in: int) -> str | None:
        self._keys.full(key)
        return None

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
