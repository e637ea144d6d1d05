"""Fixtures shared by the whole suite: every store adapter behind one spec each.

`session_spec` / `blob_spec` are parametrised over every adapter, so a test that asks for
them runs once per store. Real services (Redis, moto's S3 server, the GCS emulator) are
used when reachable; otherwise the case skips, or fails under HERA_TEST_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.repositories.base import BlobRepository, SessionRepository
from tests.support.services import unavailable
from tests.support.stores import StoreSpec, build_blob_repo, build_session_repo

# "redis-cluster" is the Redis adapter over a real local Cluster (3 masters + 3 replicas,
# started once per run): a spec of kind "redis" whose params say `"mode": "cluster"`, the way
# the app itself is configured (SESSION_TYPE=redis, REDIS_MODE=cluster).
SESSION_KINDS = ["memory", "file", "fakeredis", "redis", "redis-cluster"]
BLOB_KINDS = ["memory", "disk", "s3", "gcs"]


# ------------------------------------------------------------------ long-lived servers
@pytest.fixture(scope="session")
def redis_url() -> str | None:
    from tests.support.redis_support import real_redis_url

    return real_redis_url()


@pytest.fixture(scope="session")
def redis_cluster_handle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One real Redis Cluster for the whole run (each test uses its own namespace). Tests
    that kill a node start their own (tests/support/redis_topologies.py)."""
    from tests.support.redis_topologies import redis_cluster

    with redis_cluster(tmp_path_factory.mktemp("redis-cluster")) as handle:
        yield handle


@pytest.fixture(scope="session")
def moto_server() -> Iterator[Any]:
    from tests.support.servers import start_moto_server

    try:
        handle = start_moto_server()
    except Exception as exc:  # the server could not start here
        handle = None
        reason = f"moto server could not start: {exc}"
    yield handle if handle is not None else reason
    if handle is not None:
        handle.stop()


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[Any]:
    from tests.support.servers import start_gcs_emulator

    try:
        handle = start_gcs_emulator()
    except Exception as exc:
        handle = None
        reason = f"gcp-storage-emulator could not start: {exc}"
    yield handle if handle is not None else reason
    if handle is not None:
        handle.stop()


# ------------------------------------------------------------------ specs
async def _session_spec(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> StoreSpec:
    if kind == "memory":
        return StoreSpec("memory", cross_process=False)
    if kind == "file":
        return StoreSpec("file", {"root": str(tmp_path / "sessions")})
    if kind == "fakeredis":
        return StoreSpec("fakeredis", {"server_id": uuid.uuid4().hex}, cross_process=False)
    if kind == "redis-cluster":
        cluster = request.getfixturevalue("redis_cluster_handle")
        namespace = f"hera-test-{uuid.uuid4().hex[:12]}"
        return StoreSpec("redis", {"url": cluster.url, "namespace": namespace, "mode": "cluster"})
    url = request.getfixturevalue("redis_url")
    if url is None:
        unavailable("no Redis server reachable at HERA_TEST_REDIS_URL / 127.0.0.1:6379")
    return StoreSpec("redis", {"url": url, "namespace": f"hera-test-{uuid.uuid4().hex[:12]}"})


@pytest.fixture(params=SESSION_KINDS)
async def session_spec(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreSpec]:
    spec = await _session_spec(request.param, tmp_path, request)
    yield spec
    if spec.kind == "redis":
        from tests.support.redis_support import cleanup_namespace

        await cleanup_namespace(
            spec.params["url"], spec.params["namespace"], mode=spec.params.get("mode", "standalone")
        )


def _blob_spec(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> StoreSpec:
    prefix = "tenant-a"
    if kind == "memory":
        return StoreSpec("memory", {"key_prefix": prefix}, cross_process=False)
    if kind == "disk":
        return StoreSpec("disk", {"root": str(tmp_path / "blobs"), "key_prefix": prefix})
    bucket = f"hera-test-{uuid.uuid4().hex[:12]}"
    if kind == "s3":
        from tests.support.servers import create_s3_bucket

        server = request.getfixturevalue("moto_server")
        if isinstance(server, str):
            unavailable(server)
        create_s3_bucket(server.url, bucket)
        return StoreSpec("s3", {**server.s3_params(bucket), "key_prefix": prefix})
    from tests.support.servers import create_gcs_bucket

    server = request.getfixturevalue("gcs_emulator")
    if isinstance(server, str):
        unavailable(server)
    create_gcs_bucket(server.url, bucket)
    return StoreSpec("gcs", {"bucket": bucket, "api_root": server.url, "key_prefix": prefix})


@pytest.fixture(params=BLOB_KINDS)
def blob_spec(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSpec:
    return _blob_spec(request.param, tmp_path, request)


# ------------------------------------------------------------------ repositories
SessionFactory = Callable[..., Awaitable[SessionRepository]]


@pytest.fixture
async def make_sessions(session_spec: StoreSpec) -> AsyncIterator[SessionFactory]:
    """Build (possibly several) repositories over the same store; all closed afterwards."""
    built: list[SessionRepository] = []

    async def make(**options: Any) -> SessionRepository:
        repo = await build_session_repo(session_spec, **options)
        built.append(repo)
        return repo

    yield make
    for repo in built:
        await repo.aclose()


@pytest.fixture
async def sessions(make_sessions: SessionFactory) -> SessionRepository:
    return await make_sessions()


@pytest.fixture
async def blobs(blob_spec: StoreSpec) -> AsyncIterator[BlobRepository]:
    repo = await build_blob_repo(blob_spec)
    yield repo
    await repo.aclose()


# ------------------------------------------------------------------ fake Gemini
@pytest.fixture
def fake_gemini() -> Iterator[Any]:
    """A local fake Gemini HTTP server (tests/support/fake_gemini.py), stopped afterwards."""
    from tests.support.fake_gemini import start_fake_gemini

    server = start_fake_gemini()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def gemini_client(fake_gemini: Any, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """The real google-genai client pointed at the fake; a test module may set API_KEY and
    TIMEOUT (seconds) to shape it."""
    from app.brains.gemini.caller import close_gemini_client, create_gemini_client

    client = create_gemini_client(
        api_key=getattr(request.module, "API_KEY", "test-key"),
        base_url=fake_gemini.base_url,
        timeout_seconds=getattr(request.module, "TIMEOUT", 5.0),
    )
    try:
        yield client
    finally:
        await close_gemini_client(client)
