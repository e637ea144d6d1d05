"""An app per test over a chosen store combination, driven in-process over ASGI."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.container import Replacements
from app.main import create_app
from app.settings import Settings
from tests.support.brains import TestBrains
from tests.support.jwks import Issuer, JwksServer, jwks_server
from tests.support.services import unavailable

STACKS = ["file-disk", "redis-s3"]


def stack_settings(
    stack: str, tmp_path: Path, request: pytest.FixtureRequest, **overrides: Any
) -> Settings:
    base: dict[str, Any] = {"hera_data_dir": tmp_path / "data", "llm_provider": "offline"}
    if stack.startswith("redis"):
        url = request.getfixturevalue("redis_url")
        if url is None:
            unavailable("no Redis server reachable for the redis stack")
        base.update(redis_url=url, redis_namespace=f"hera-test-{uuid.uuid4().hex[:12]}")
    if stack.endswith("-s3"):
        from tests.support.servers import create_s3_bucket

        server = request.getfixturevalue("moto_server")
        if isinstance(server, str):
            unavailable(server)
        bucket = f"hera-api-{uuid.uuid4().hex[:12]}"
        create_s3_bucket(server.url, bucket)
        base.update(server.hera_settings(bucket))
    if stack.endswith("-gcs"):
        from tests.support.servers import create_gcs_bucket

        server = request.getfixturevalue("gcs_emulator")
        if isinstance(server, str):
            unavailable(server)
        bucket = f"hera-api-{uuid.uuid4().hex[:12]}"
        create_gcs_bucket(server.url, bucket)
        base.update(server.hera_settings(bucket))
    base.update(overrides)
    return Settings(_env_file=None, **base)  # type: ignore[call-arg]


async def _cleanup(settings: Settings) -> None:
    if settings.resolved_session_type == "redis":
        from tests.support.redis_support import cleanup_namespace

        assert settings.redis_url is not None
        await cleanup_namespace(settings.redis_url, settings.redis_namespace)


class ApiClient(httpx.AsyncClient):
    app: FastAPI
    settings: Settings
    brains: TestBrains | None = None  # the brains the test handed in, if it did


async def open_client(
    settings: Settings, replacements: Replacements | None = None
) -> AsyncIterator[ApiClient]:
    """An app over `settings` (with `replacements`: its own stores, brains or clock)."""
    app = create_app(settings, replacements)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with ApiClient(transport=transport, base_url="http://hera.test") as client:
            client.app = app
            client.settings = settings
            yield client
    await _cleanup(settings)


@pytest.fixture(params=STACKS)
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ApiClient]:
    """A client over each store combination (file+disk, Redis+S3 on moto)."""
    async for client in open_client(stack_settings(request.param, tmp_path, request)):
        yield client


@pytest.fixture
async def local_api(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[ApiClient]:
    """A client over file+disk only (for behaviour that does not depend on the stores)."""
    async for client in open_client(stack_settings("file-disk", tmp_path, request)):
        yield client


@pytest.fixture(scope="module")
def jwks() -> Iterator[JwksServer]:
    """A real JWKS endpoint on a loopback port for the module's sign-in tests."""
    with jwks_server() as server:
        yield server


@pytest.fixture(scope="module")
def issuer(jwks: JwksServer) -> Issuer:
    return Issuer(jwks.keys[0])
