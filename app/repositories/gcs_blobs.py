"""Blobs in Google Cloud Storage (or its emulator) through one gcloud-aio-storage client."""

from __future__ import annotations

import asyncio
import base64
import binascii
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from typing import IO, Any, TypeVar, cast

import aiohttp
import anyio.to_thread

from ._blobs import CHUNK_SIZE, ChunkReader, KeySpace, as_chunks, found
from .base import BlobInfo, BlobNotFound, BlobReader, StoreUnavailable

T = TypeVar("T")

SPOOL_MAX = 8 * 1024 * 1024  # streamed uploads stay in memory up to this size, then on disk
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # V4 signatures refuse longer
# Tries of an idempotent read (backoff 0.2 s, 0.4 s): a refused connection fails in ~0.6 s.
READ_ATTEMPTS = 3
# Fail fast when GCS is unreachable (the API promises a 503 within ~2 s): a TCP connect takes
# milliseconds, so 1 s only cuts off a dead or black-holed endpoint. gcloud-aio annotates
# timeouts as int seconds but hands them to aiohttp, which takes a ClientTimeout too (an int
# would be a total limit only, with the connect bounded by nothing shorter).
CONNECT_TIMEOUT = 1.0
CALL_TIMEOUT: Any = aiohttp.ClientTimeout(total=10, sock_connect=CONNECT_TIMEOUT)
# A total limit would cut long transfers, so bound the connect and each wait for bytes.
TRANSFER_TIMEOUT: Any = aiohttp.ClientTimeout(
    total=None, sock_connect=CONNECT_TIMEOUT, sock_read=30
)
_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@contextmanager
def _errors(key: str | None = None) -> Iterator[None]:
    """The one place GCS failures become domain errors; `key=None` marks a bucket-level call."""
    try:
        yield
    except aiohttp.ClientResponseError as exc:
        if exc.status == 404 and key is not None:
            raise BlobNotFound(key) from exc
        raise StoreUnavailable("blobs", f"GCS answered {exc.status}") from exc
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise StoreUnavailable("blobs", f"GCS {type(exc).__name__}") from exc


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, aiohttp.ClientResponseError):
        return exc.status in _TRANSIENT_STATUS
    return isinstance(
        exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | TimeoutError
    )


def _info(key: str, meta: Mapping[str, Any]) -> BlobInfo:
    """BlobInfo from an object resource; the ETag is the hex MD5 like the other stores'."""
    md5 = meta.get("md5Hash")  # absent on composite objects
    try:
        etag = base64.b64decode(md5).hex() if md5 else str(meta.get("etag", ""))
    except (binascii.Error, ValueError):
        etag = str(meta.get("etag", ""))
    updated = meta.get("updated")
    return BlobInfo(
        key=key,
        size=int(meta.get("size", 0)),
        content_type=meta.get("contentType") or "application/octet-stream",
        etag=etag,
        updated_at=datetime.fromisoformat(updated) if updated else None,
    )


async def open_gcs(
    *,
    bucket: str,
    api_root: str | None = None,
    service_file: str | None = None,
    key_prefix: str = "",
) -> GCSBlobRepository:
    """One aiohttp session and one Storage for the app's lifetime.

    `api_root` (e.g. the emulator's `http://127.0.0.1:9023`) switches off auth and signing.
    """
    from gcloud.aio.storage import Storage

    session = aiohttp.ClientSession(
        timeout=TRANSFER_TIMEOUT, connector=aiohttp.TCPConnector(limit=50)
    )
    try:
        # Building the token reads the credentials file: keep that off the loop.
        # (mypy sees the library's requests-flavoured `Session` annotation, hence the cast.)
        storage = await anyio.to_thread.run_sync(
            partial(
                Storage, session=cast(Any, session), api_root=api_root, service_file=service_file
            )
        )
    except BaseException:
        await session.close()
        raise
    service = storage.token.service_data  # a service-account key signs URLs locally
    can_sign = api_root is None and bool(service.get("private_key") and service.get("client_email"))
    return GCSBlobRepository(
        storage=storage,
        session=session,
        bucket=bucket,
        key_prefix=key_prefix,
        can_sign=can_sign,
    )


class GCSBlobRepository:
    name = "gcs"

    def __init__(
        self,
        *,
        storage: Any,
        session: aiohttp.ClientSession,
        bucket: str,
        key_prefix: str = "",
        can_sign: bool = False,
    ) -> None:
        self._storage = storage
        self._session = session
        self._bucket = bucket
        self._keys = KeySpace(key_prefix)
        self._can_sign = can_sign

    async def _read(self, call: Callable[[], Awaitable[T]], key: str | None = None) -> T:
        """An idempotent read, retried briefly on transient failures (the library never does)."""
        for attempt in range(READ_ATTEMPTS):
            with _errors(key):
                try:
                    return await call()
                except Exception as exc:
                    if attempt + 1 == READ_ATTEMPTS or not _transient(exc):
                        raise
            await asyncio.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")

    async def put(
        self, *, key: str, data: bytes | AsyncIterable[bytes], content_type: str
    ) -> BlobInfo:
        full = self._keys.full(key)
        if isinstance(data, bytes | bytearray | memoryview):
            return await self._upload(key, full, bytes(data), content_type)
        # An upload needs its length up front: spool the stream (to disk past SPOOL_MAX).
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX) as spool:
            size = 0
            async for chunk in as_chunks(data):
                size += len(chunk)
                await anyio.to_thread.run_sync(spool.write, chunk)
            await anyio.to_thread.run_sync(spool.seek, 0)
            # Still in memory up to SPOOL_MAX; past it aiohttp reads the file in a thread.
            body: bytes | IO[bytes] = spool.read() if size <= SPOOL_MAX else spool
            return await self._upload(key, full, body, content_type)

    async def _upload(
        self, key: str, full: str, body: bytes | IO[bytes], content_type: str
    ) -> BlobInfo:
        with _errors():
            meta = await self._storage.upload(
                self._bucket, full, body, content_type=content_type, timeout=TRANSFER_TIMEOUT
            )
        return _info(key, meta)

    async def stat(self, *, key: str) -> BlobInfo:
        full = self._keys.full(key)
        call = partial(self._storage.download_metadata, self._bucket, full, timeout=CALL_TIMEOUT)
        return _info(key, await self._read(call, key))

    async def exists(self, *, key: str) -> bool:
        return await found(self.stat(key=key))

    async def open(self, *, key: str) -> BlobReader:
        info = await self.stat(key=key)
        full = self._keys.full(key)
        call = partial(self._storage.download_stream, self._bucket, full, timeout=TRANSFER_TIMEOUT)
        stream = await self._read(call, key)

        async def _chunks() -> AsyncIterator[bytes]:
            with _errors(key):
                while chunk := await stream.read(CHUNK_SIZE):
                    yield chunk

        async def _close() -> None:
            # Releases the response; an unfinished one closes its connection.
            await stream.__aexit__(None, None, None)

        return ChunkReader(info, _chunks(), _close)

    async def _delete_full(self, key: str, full: str) -> bool:
        try:
            with _errors(key):
                await self._storage.delete(self._bucket, full, timeout=CALL_TIMEOUT)
        except BlobNotFound:
            return False
        return True

    async def delete(self, *, key: str) -> bool:
        return await self._delete_full(key, self._keys.full(key))

    async def _pages(self, full_prefix: str) -> AsyncIterator[list[dict[str, Any]]]:
        token = ""
        while True:
            params = {"prefix": full_prefix}
            if token:
                params["pageToken"] = token
            call = partial(
                self._storage.list_objects, self._bucket, params=params, timeout=CALL_TIMEOUT
            )
            page: dict[str, Any] = await self._read(call)
            yield page.get("items", [])
            token = page.get("nextPageToken", "")
            if not token:
                return

    async def delete_prefix(self, *, prefix: str) -> int:
        count = 0
        # Page tokens point past the last listed name, so deleting as we go is safe.
        async for items in self._pages(self._keys.full_prefix(prefix)):
            names = [item["name"] for item in items]
            deleted = await asyncio.gather(
                *(self._delete_full(self._keys.relative(name), name) for name in names)
            )
            count += sum(deleted)
        return count

    async def list(self, *, prefix: str) -> AsyncIterator[BlobInfo]:
        async for items in self._pages(self._keys.full_prefix(prefix)):
            for item in items:  # GCS lists in lexicographic name order
                yield _info(self._keys.relative(item["name"]), item)

    async def presigned_url(self, *, key: str, expires_in: int) -> str | None:
        full = self._keys.full(key)
        if not self._can_sign:
            # No service-account key (emulator, user or metadata-server credentials).
            return None
        from gcloud.aio.storage import Blob

        blob = Blob(self._storage.get_bucket(self._bucket), full, {"size": 0})
        expires = max(1, min(int(expires_in), MAX_PRESIGN_SECONDS))
        url: str = await blob.get_signed_url(expires)  # signed locally with the PEM key
        return url

    async def ping(self) -> None:
        call = partial(self._storage.get_bucket_metadata, self._bucket, timeout=CALL_TIMEOUT)
        await self._read(call)

    async def aclose(self) -> None:
        try:
            await self._storage.close()  # leaves a passed-in session open
        finally:
            await self._session.close()
