"""Blobs in S3 or any S3-compatible store (MinIO, moto, R2) through one aioboto3 client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping
from contextlib import AsyncExitStack, contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

import aiohttp

from ._blobs import ChunkReader, KeySpace, as_chunks
from .base import BlobInfo, BlobNotFound, BlobReader, StoreUnavailable

PART_SIZE = 8 * 1024 * 1024  # S3 wants >= 5 MiB for every part but the last
DELETE_BATCH = 1000  # the most keys one DeleteObjects call accepts
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4 refuses longer
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
CONNECT_TIMEOUT = 1.0  # seconds for a TCP connect
READ_TIMEOUT = 15.0  # seconds of silence on an open connection
TOTAL_ATTEMPTS = 2  # first try + one retry
# Downloads are forwarded in aiohttp's own buffer-sized pieces: asking it for more per read
# makes it join buffered pieces into fresh copies, which held 2-3x CHUNK_SIZE per download
# (bench/stream_memory.py) where this holds under one CHUNK_SIZE.
_BODY_PIECE = 64 * 1024


@contextmanager
def _errors(key: str | None = None) -> Iterator[None]:
    """The one place S3 failures become domain errors; `key=None` marks a bucket-level call."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if key is not None and code in _MISSING_CODES:
            raise BlobNotFound(key) from exc
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
        raise StoreUnavailable("blobs", f"S3 answered {status} {code}".strip()) from exc
    except (BotoCoreError, aiohttp.ClientError, TimeoutError, OSError) as exc:
        # EndpointConnectionError, Connect/ReadTimeoutError, ResponseStreamingError and the
        # raw aiohttp errors a body read can surface: the store is unreachable right now.
        raise StoreUnavailable("blobs", f"S3 {type(exc).__name__}") from exc


def _etag(value: Any) -> str:
    return str(value or "").strip('"')  # S3 quotes its ETags


def _info(key: str, head: Mapping[str, Any]) -> BlobInfo:
    return BlobInfo(
        key=key,
        size=int(head.get("ContentLength", 0)),
        content_type=head.get("ContentType") or "application/octet-stream",
        etag=_etag(head.get("ETag")),
        updated_at=head.get("LastModified"),
    )


async def _parts(buffer: bytearray, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Cut a stream into PART_SIZE parts (the last may be shorter), `buffer` first."""
    async for chunk in rest:
        buffer += chunk
        while len(buffer) >= PART_SIZE:
            yield bytes(buffer[:PART_SIZE])
            del buffer[:PART_SIZE]
    for start in range(0, len(buffer), PART_SIZE):
        yield bytes(buffer[start : start + PART_SIZE])


async def open_s3(
    *,
    bucket: str,
    region: str | None = None,
    endpoint_url: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    key_prefix: str = "",
    presign_endpoint_url: str | None = None,
    max_pool_connections: int = 50,
) -> S3BlobRepository:
    """Create the one client for the app's lifetime (creating one costs ~0.3 s)."""
    import aioboto3
    from aiobotocore.config import AioConfig

    options: dict[str, Any] = {
        "max_pool_connections": max_pool_connections,
        # Fail fast when the store is unreachable (the API promises a 503 within ~2 s): a TCP
        # connect to S3 or a same-network MinIO takes milliseconds, so 1 s only cuts off a
        # dead or black-holed endpoint. The read timeout bounds each wait for bytes (not a
        # whole transfer), so large objects still stream.
        "connect_timeout": CONNECT_TIMEOUT,
        "read_timeout": READ_TIMEOUT,
        # One retry (standard mode: throttling, 5xx, connection errors, with jittered backoff
        # of at most 1 s before it). `total_max_attempts` counts the first try; a third try
        # would add up to 2 s more backoff and break the fail-fast budget.
        "retries": {"mode": "standard", "total_max_attempts": TOTAL_ATTEMPTS},
        "signature_version": "s3v4",
    }
    if endpoint_url:
        # S3-compatible stores rarely serve virtual-host buckets on a custom host, and
        # many still reject the CRC checksums botocore >= 1.36 adds by default.
        options["s3"] = {"addressing_style": "path"}
        options["request_checksum_calculation"] = "when_required"
        options["response_checksum_validation"] = "when_required"
    session = aioboto3.Session(
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        region_name=region,
    )
    config = AioConfig(**options)
    stack = AsyncExitStack()
    try:
        client = await stack.enter_async_context(
            session.client("s3", endpoint_url=endpoint_url, config=config)
        )
        signer = client
        if presign_endpoint_url and presign_endpoint_url != endpoint_url:
            # The host is part of a SigV4 signature: sign for the host clients will use.
            signer = await stack.enter_async_context(
                session.client("s3", endpoint_url=presign_endpoint_url, config=config)
            )
    except BaseException:
        await stack.aclose()
        raise
    return S3BlobRepository(
        client=client, signer=signer, bucket=bucket, key_prefix=key_prefix, stack=stack
    )


class S3BlobRepository:
    name = "s3"

    def __init__(
        self, *, client: Any, signer: Any, bucket: str, key_prefix: str, stack: AsyncExitStack
    ) -> None:
        self._client = client
        self._signer = signer  # the client whose endpoint browsers reach (may be `client`)
        self._bucket = bucket
        self._keys = KeySpace(key_prefix)
        self._stack = stack

    async def put(
        self, *, key: str, data: bytes | AsyncIterable[bytes], content_type: str
    ) -> BlobInfo:
        full = self._keys.full(key)
        if isinstance(data, bytes | bytearray | memoryview):
            return await self._put_object(key, full, bytes(data), content_type)
        chunks = as_chunks(data)
        buffer = bytearray()
        async for chunk in chunks:
            buffer += chunk
            if len(buffer) > PART_SIZE:
                parts = _parts(buffer, chunks)
                return await self._put_multipart(key, full, parts, content_type)
        return await self._put_object(key, full, bytes(buffer), content_type)

    async def _put_object(self, key: str, full: str, body: bytes, content_type: str) -> BlobInfo:
        with _errors():
            sent = await self._client.put_object(
                Bucket=self._bucket, Key=full, Body=body, ContentType=content_type
            )
        return BlobInfo(key, len(body), content_type, _etag(sent.get("ETag")), datetime.now(UTC))

    async def _put_multipart(
        self, key: str, full: str, parts: AsyncIterator[bytes], content_type: str
    ) -> BlobInfo:
        target = {"Bucket": self._bucket, "Key": full}
        with _errors():
            created = await self._client.create_multipart_upload(**target, ContentType=content_type)
        upload_id = created["UploadId"]
        done: list[dict[str, Any]] = []
        size = 0
        try:
            with _errors():
                async for body in parts:
                    number = len(done) + 1
                    sent = await self._client.upload_part(
                        **target, UploadId=upload_id, PartNumber=number, Body=body
                    )
                    done.append({"ETag": sent["ETag"], "PartNumber": number})
                    size += len(body)
                finished = await self._client.complete_multipart_upload(
                    **target, UploadId=upload_id, MultipartUpload={"Parts": done}
                )
        except BaseException:
            # Parts of an unfinished upload are stored (and billed) until it is aborted.
            with suppress(Exception):
                await self._client.abort_multipart_upload(**target, UploadId=upload_id)
            raise
        return BlobInfo(key, size, content_type, _etag(finished.get("ETag")), datetime.now(UTC))

    async def open(self, *, key: str) -> BlobReader:
        full = self._keys.full(key)
        with _errors(key):
            got = await self._client.get_object(Bucket=self._bucket, Key=full)
        body = got["Body"]

        async def _stream() -> AsyncIterator[bytes]:
            with _errors(key):
                async for chunk in body.iter_chunks(_BODY_PIECE):
                    yield chunk

        async def _close() -> None:
            # An unread body pins its pooled connection until closed (aiobotocore #710).
            body.close()

        return ChunkReader(_info(key, got), _stream(), _close)

    async def _head(self, key: str, full: str) -> BlobInfo:
        with _errors(key):
            head = await self._client.head_object(Bucket=self._bucket, Key=full)
        return _info(key, head)

    async def stat(self, *, key: str) -> BlobInfo:
        return await self._head(key, self._keys.full(key))

    async def exists(self, *, key: str) -> bool:
        return await self._head_or_none(self._keys.full(key)) is not None

    async def delete(self, *, key: str) -> bool:
        # DeleteObject succeeds for missing keys too, so ask first.
        if not await self.exists(key=key):
            return False
        with _errors():
            await self._client.delete_object(Bucket=self._bucket, Key=self._keys.full(key))
        return True

    async def _pages(self, full_prefix: str) -> AsyncIterator[list[dict[str, Any]]]:
        paginator = self._client.get_paginator("list_objects_v2")
        with _errors():
            async for page in paginator.paginate(Bucket=self._bucket, Prefix=full_prefix):
                yield page.get("Contents", [])

    async def delete_prefix(self, *, prefix: str) -> int:
        count = 0
        # Continuation tokens point past the last listed key, so deleting as we go is safe.
        async for objects in self._pages(self._keys.full_prefix(prefix)):
            keys = [{"Key": obj["Key"]} for obj in objects]
            for batch in (keys[i : i + DELETE_BATCH] for i in range(0, len(keys), DELETE_BATCH)):
                with _errors():
                    result = await self._client.delete_objects(
                        Bucket=self._bucket, Delete={"Objects": batch, "Quiet": True}
                    )
                if failed := result.get("Errors"):
                    raise StoreUnavailable("blobs", f"S3 could not delete {len(failed)} objects")
                count += len(batch)
        return count

    async def list(self, *, prefix: str) -> AsyncIterator[BlobInfo]:
        async for objects in self._pages(self._keys.full_prefix(prefix)):
            # Listings carry no content type; one HEAD per object (in parallel) adds it.
            heads = await asyncio.gather(*(self._head_or_none(obj["Key"]) for obj in objects))
            for info in heads:
                if info is not None:
                    yield info

    async def _head_or_none(self, full: str) -> BlobInfo | None:
        try:
            return await self._head(self._keys.relative(full), full)
        except BlobNotFound:  # missing, or deleted since it was listed
            return None

    async def presigned_url(self, *, key: str, expires_in: int) -> str | None:
        full = self._keys.full(key)
        expires = max(1, min(int(expires_in), MAX_PRESIGN_SECONDS))
        with _errors(key):
            # A coroutine in aiobotocore (#868); signs locally, no request is made.
            url = await self._signer.generate_presigned_url(
                "get_object", Params={"Bucket": self._bucket, "Key": full}, ExpiresIn=expires
            )
        return str(url)

    async def ping(self) -> None:
        with _errors():
            await self._client.head_bucket(Bucket=self._bucket)

    async def aclose(self) -> None:
        await self._stack.aclose()
