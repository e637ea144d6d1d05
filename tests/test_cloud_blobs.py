"""What only the cloud adapters do, over real HTTP: moto's S3 server and the GCS emulator.

The behaviour every blob store shares lives in tests/contract/test_blob_contract.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlparse

import aiohttp
import httpx
import pytest

from app.repositories.base import (
    BlobNotFound,
    StoreUnavailable,
    new_session_id,
    read_all,
    session_blob_key,
    session_blob_prefix,
)
from app.repositories.gcs_blobs import GCSBlobRepository, open_gcs
from app.repositories.s3_blobs import S3BlobRepository, open_s3
from tests.support.servers import (
    GCSHandle,
    MotoHandle,
    create_gcs_bucket,
    create_s3_bucket,
    list_gcs_names,
    s3_client,
)
from tests.support.services import free_port, unavailable

MiB = 1024 * 1024
PREFIX = "tenant-x"


async def _stream(data: bytes, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), chunk):
        yield data[start : start + chunk]


async def _md5_and_largest_chunk(reader: Any) -> tuple[str, int]:
    digest, largest = hashlib.md5(usedforsecurity=False), 0
    async for chunk in reader.chunks():
        digest.update(chunk)
        largest = max(largest, len(chunk))
    return digest.hexdigest(), largest


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _bucket() -> str:
    return f"hera-cloud-{uuid.uuid4().hex[:12]}"


# ------------------------------------------------------------------------------ S3
@pytest.fixture
def moto(moto_server: Any) -> MotoHandle:
    if isinstance(moto_server, str):
        unavailable(moto_server)
    return cast(MotoHandle, moto_server)


@pytest.fixture
def s3_bucket(moto: MotoHandle) -> str:
    bucket = _bucket()
    create_s3_bucket(moto.url, bucket)
    return bucket


@pytest.fixture
async def s3(moto: MotoHandle, s3_bucket: str) -> AsyncIterator[S3BlobRepository]:
    repo = await open_s3(**moto.s3_params(s3_bucket), key_prefix=PREFIX)
    yield repo
    await repo.aclose()


async def test_s3_streams_20mb_through_a_multipart_upload_byte_identical(
    s3: S3BlobRepository,
) -> None:
    data = os.urandom(20 * MiB)
    key = session_blob_key(new_session_id(), "big.bin")
    info = await s3.put(key=key, data=_stream(data), content_type="application/octet-stream")
    assert info.size == len(data)
    assert info.etag.endswith("-3")  # three 8 MiB-or-less parts, not one put_object
    reader = await s3.open(key=key)
    assert reader.info.size == len(data)
    assert reader.info.content_type == "application/octet-stream"
    digest, largest = await _md5_and_largest_chunk(reader)
    assert digest == _md5(data)
    assert largest <= 1 * MiB


async def test_s3_small_stream_is_one_put_with_an_md5_etag(s3: S3BlobRepository) -> None:
    data = os.urandom(3 * MiB)
    key = session_blob_key(new_session_id(), "small.png")
    info = await s3.put(key=key, data=_stream(data), content_type="image/png")
    assert info.etag == _md5(data)
    assert (await s3.stat(key=key)).etag == info.etag  # no quotes, same as a HEAD


async def test_s3_failed_stream_aborts_its_multipart_upload(
    s3: S3BlobRepository, moto: MotoHandle, s3_bucket: str
) -> None:
    async def breaks_after_10mb() -> AsyncIterator[bytes]:
        async for chunk in _stream(os.urandom(10 * MiB)):
            yield chunk
        raise RuntimeError("client went away")

    key = session_blob_key(new_session_id(), "broken.bin")
    with pytest.raises(RuntimeError, match="client went away"):
        await s3.put(key=key, data=breaks_after_10mb(), content_type="application/octet-stream")
    assert s3_client(moto.url).list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert not await s3.exists(key=key)


async def test_s3_presigned_url_serves_the_bytes_and_carries_its_expiry(
    s3: S3BlobRepository,
) -> None:
    key = session_blob_key(new_session_id(), "partner.png")
    await s3.put(key=key, data=b"\x89PNG portrait", content_type="image/png")
    url = await s3.presigned_url(key=key, expires_in=60)
    assert url is not None
    assert parse_qs(urlparse(url).query)["X-Amz-Expires"] == ["60"]
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
    assert response.status_code == 200
    assert response.content == b"\x89PNG portrait"
    assert response.headers["content-type"] == "image/png"


async def test_s3_presigns_for_the_public_endpoint_when_one_is_given(
    moto: MotoHandle, s3_bucket: str
) -> None:
    public = "https://files.example.test:9000"
    repo = await open_s3(**moto.s3_params(s3_bucket), presign_endpoint_url=public)
    try:
        url = await repo.presigned_url(
            key=session_blob_key(new_session_id(), "a.png"), expires_in=5
        )
    finally:
        await repo.aclose()
    assert url is not None and url.startswith(f"{public}/{s3_bucket}/sessions/")


async def test_s3_keys_land_under_the_key_prefix(
    s3: S3BlobRepository, moto: MotoHandle, s3_bucket: str
) -> None:
    session = new_session_id()
    await s3.put(key=session_blob_key(session, "user.jpg"), data=b"me", content_type="image/jpeg")
    raw = s3_client(moto.url).list_objects_v2(Bucket=s3_bucket)["Contents"]
    assert [obj["Key"] for obj in raw] == [f"{PREFIX}/sessions/{session}/user.jpg"]
    listed = [info async for info in s3.list(prefix=session_blob_prefix(session))]
    assert [(i.key, i.content_type) for i in listed] == [
        (session_blob_key(session, "user.jpg"), "image/jpeg")
    ]


@pytest.mark.slow
async def test_s3_delete_prefix_crosses_listing_pages(
    s3: S3BlobRepository, moto: MotoHandle, s3_bucket: str
) -> None:
    session = new_session_id()
    await asyncio.gather(
        *(
            s3.put(key=session_blob_key(session, f"n{i:04d}"), data=b"x", content_type="x/y")
            for i in range(1005)  # one more page than a single ListObjectsV2 answer holds
        )
    )
    assert await s3.delete_prefix(prefix=session_blob_prefix(session)) == 1005
    assert s3_client(moto.url).list_objects_v2(Bucket=s3_bucket)["KeyCount"] == 0


async def test_s3_readers_closed_early_give_their_connections_back(
    moto: MotoHandle, s3_bucket: str
) -> None:
    repo = await open_s3(**moto.s3_params(s3_bucket), max_pool_connections=2)
    try:
        key = session_blob_key(new_session_id(), "big.bin")
        await repo.put(key=key, data=os.urandom(4 * MiB), content_type="x/y")
        async with asyncio.timeout(20):  # a leaked connection would block the pool forever
            for _ in range(5):  # more readers than the pool has connections
                reader = await repo.open(key=key)
                assert await anext(reader.chunks())
                await reader.aclose()
            assert (await repo.stat(key=key)).size == 4 * MiB
    finally:
        await repo.aclose()


async def test_s3_missing_bucket_is_unavailable_not_missing_blob(moto: MotoHandle) -> None:
    repo = await open_s3(**moto.s3_params("hera-no-such-bucket"))
    try:
        with pytest.raises(StoreUnavailable):
            await repo.ping()
        with pytest.raises(StoreUnavailable):
            await repo.put(key="sessions/x.png", data=b"x", content_type="image/png")
    finally:
        await repo.aclose()


async def test_unreachable_s3_endpoint_raises_store_unavailable_quickly() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    repo = await open_s3(bucket="hera", endpoint_url=url, access_key_id="k", secret_access_key="s")
    started = time.monotonic()
    try:
        outcomes = await asyncio.gather(
            repo.ping(),
            repo.stat(key="sessions/a.png"),
            repo.put(key="sessions/a.png", data=_stream(b"x" * 100), content_type="x/y"),
            return_exceptions=True,
        )
    finally:
        await repo.aclose()
    assert [type(outcome) for outcome in outcomes] == [StoreUnavailable] * 3
    # Bounded by botocore's standard retries: two jittered backoffs of at most 1 s and 2 s.
    assert time.monotonic() - started < 8


# ------------------------------------------------------------------------------ GCS
@pytest.fixture
def emulator(gcs_emulator: Any) -> GCSHandle:
    if isinstance(gcs_emulator, str):
        unavailable(gcs_emulator)
    return cast(GCSHandle, gcs_emulator)


@pytest.fixture
def gcs_bucket(emulator: GCSHandle) -> str:
    bucket = _bucket()
    create_gcs_bucket(emulator.url, bucket)
    return bucket


@pytest.fixture
async def gcs(emulator: GCSHandle, gcs_bucket: str) -> AsyncIterator[GCSBlobRepository]:
    repo = await open_gcs(bucket=gcs_bucket, api_root=emulator.url, key_prefix=PREFIX)
    yield repo
    await repo.aclose()


async def test_gcs_streams_9mb_round_trip_byte_identical(gcs: GCSBlobRepository) -> None:
    data = os.urandom(9 * MiB)  # past the spool's memory limit and the simple-upload limit
    key = session_blob_key(new_session_id(), "big.bin")
    info = await gcs.put(key=key, data=_stream(data), content_type="image/png")
    assert (info.size, info.etag, info.content_type) == (len(data), _md5(data), "image/png")
    reader = await gcs.open(key=key)
    assert reader.info.content_type == "image/png"
    digest, largest = await _md5_and_largest_chunk(reader)
    assert digest == _md5(data)
    assert largest <= 1 * MiB


async def test_gcs_presigned_url_is_none_on_the_emulator(gcs: GCSBlobRepository) -> None:
    key = session_blob_key(new_session_id(), "a.png")
    await gcs.put(key=key, data=b"x", content_type="image/png")
    assert await gcs.presigned_url(key=key, expires_in=60) is None


async def test_gcs_keys_land_under_the_key_prefix(
    gcs: GCSBlobRepository, emulator: GCSHandle, gcs_bucket: str
) -> None:
    session = new_session_id()
    await gcs.put(key=session_blob_key(session, "user.jpg"), data=b"me", content_type="image/jpeg")
    assert list_gcs_names(emulator.url, gcs_bucket) == [f"{PREFIX}/sessions/{session}/user.jpg"]
    listed = [info async for info in gcs.list(prefix=session_blob_prefix(session))]
    assert [(i.key, i.content_type, i.size) for i in listed] == [
        (session_blob_key(session, "user.jpg"), "image/jpeg", 2)
    ]
    assert await gcs.delete_prefix(prefix=session_blob_prefix(session)) == 1
    assert list_gcs_names(emulator.url, gcs_bucket) == []


async def test_gcs_signs_v4_urls_locally_with_a_service_account_key(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    account = {
        "type": "service_account",
        "project_id": "hera-test",
        "private_key_id": "k1",
        "private_key": pem.decode(),
        "client_email": "hera@hera-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    service_file = tmp_path / "sa.json"
    service_file.write_text(json.dumps(account))
    repo = await open_gcs(bucket="hera-b", service_file=str(service_file))
    try:  # signing is local: nothing here talks to Google
        url = await repo.presigned_url(key="sessions/a.png", expires_in=300)
    finally:
        await repo.aclose()
    assert url is not None
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    assert parsed.path == "/hera-b/sessions/a.png"
    assert query["X-Goog-Algorithm"] == ["GOOG4-RSA-SHA256"]
    assert query["X-Goog-Expires"] == ["300"]
    assert query["X-Goog-Credential"][0].startswith("hera@hera-test.iam.gserviceaccount.com/")
    assert len(query["X-Goog-Signature"][0]) == 512  # a 2048-bit RSA signature in hex


async def test_gcs_missing_bucket_is_unavailable_not_missing_blob(emulator: GCSHandle) -> None:
    repo = await open_gcs(bucket="hera-no-such-bucket", api_root=emulator.url)
    try:
        with pytest.raises(StoreUnavailable):
            await repo.ping()
        with pytest.raises(StoreUnavailable):
            await repo.put(key="sessions/x.png", data=b"x", content_type="image/png")
    finally:
        await repo.aclose()


async def test_unreachable_gcs_endpoint_raises_store_unavailable_quickly() -> None:
    repo = await open_gcs(bucket="hera", api_root=f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    try:
        with pytest.raises(StoreUnavailable):
            await repo.ping()
        with pytest.raises(StoreUnavailable):
            await repo.open(key="sessions/a.png")
        with pytest.raises(StoreUnavailable):
            await repo.put(key="sessions/a.png", data=_stream(b"x" * 100), content_type="x/y")
    finally:
        await repo.aclose()
    assert time.monotonic() - started < 10


def _http_error(status: int) -> aiohttp.ClientResponseError:
    return aiohttp.ClientResponseError(cast(Any, None), (), status=status, message="test")


class _FlakyStorage:
    """Answers object metadata after `failures` errors with `status`."""

    def __init__(self, failures: int, status: int) -> None:
        self.failures, self.status, self.calls = failures, status, 0

    async def download_metadata(self, bucket: str, name: str, **_: Any) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.failures:
            raise _http_error(self.status)
        return {"name": name, "size": "3", "contentType": "image/png", "etag": "e1"}

    async def close(self) -> None:
        return None


@pytest.mark.parametrize(
    ("failures", "status", "outcome", "calls"),
    [
        (2, 503, "ok", 3),  # transient: retried, then answered
        (5, 503, StoreUnavailable, 3),  # still failing after the bounded retries
        (1, 403, StoreUnavailable, 1),  # not transient: no retry
        (1, 404, BlobNotFound, 1),
    ],
)
async def test_gcs_reads_retry_only_transient_failures(
    failures: int, status: int, outcome: Any, calls: int
) -> None:
    storage = _FlakyStorage(failures, status)
    async with aiohttp.ClientSession() as session:
        repo = GCSBlobRepository(storage=storage, session=session, bucket="b")
        if outcome == "ok":
            assert (await repo.stat(key="sessions/a.png")).size == 3
        else:
            with pytest.raises(outcome):
                await repo.stat(key="sessions/a.png")
    assert storage.calls == calls


async def test_gcs_reader_reads_a_blob_written_as_bytes(gcs: GCSBlobRepository) -> None:
    key = session_blob_key(new_session_id(), "letter.txt")
    text = "未来の家族からの手紙".encode()
    await gcs.put(key=key, data=text, content_type="text/plain; charset=utf-8")
    assert await read_all(await gcs.open(key=key)) == text
    assert (await gcs.stat(key=key)).content_type == "text/plain; charset=utf-8"
