"""Fixtures of the hostile-input tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.api.conftest import ApiClient
from tests.security.support import hostile_client


@pytest.fixture
async def local(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[ApiClient]:
    """A client over file sessions + disk blobs (body handling does not depend on the store)."""
    async with hostile_client("file-disk", tmp_path, request) as client:
        yield client


@pytest.fixture
async def sid(local: ApiClient) -> str:
    response = await local.post("/api/sessions")
    assert response.status_code == 201
    return str(response.json()["session_id"])
