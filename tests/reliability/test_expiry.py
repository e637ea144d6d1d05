"""Sessions expire SESSION_TTL after their last write, every part together.

Redis (SESSION_TTL=2, through the API): right after any write every key of the session has
the full TTL (to within a few ms of each other, keys the write did not touch included);
reads do not extend it; a later write re-arms all of them; then all keys vanish, none is
left in the namespace (SCAN), the API answers 404 and a write does not resurrect anything.

Files (SESSION_TTL=1, through the API): a session past its TTL is reported missing (404) by
every route, reads and writes alike. `hera prune` then removes an expired session's folder
and blobs, and nothing of a live one (`--dry-run` removes nothing).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio

from app.container import Replacements
from tests.api.conftest import ApiClient, open_client, stack_settings
from tests.api.images import jpeg_photo
from tests.reliability._servers import server_env
from tests.support.polling import eventually

pytestmark = pytest.mark.slow

POLL = 0.05  # seconds between polls; every poll loop is bounded by a deadline
GRACE = 5.0  # seconds past the TTL before "it never expired" is declared


async def _session_keys(client: redis.asyncio.Redis, namespace: str, sid: str) -> list[bytes]:
    keys = [key async for key in client.scan_iter(match=f"{namespace}:*", count=500)]
    return sorted(key for key in keys if sid.encode() in key)


async def _pttls(client: redis.asyncio.Redis, keys: list[bytes]) -> list[int]:
    async with client.pipeline(transaction=True) as pipe:
        for key in keys:
            pipe.pttl(key)
        return [int(value) for value in await pipe.execute()]


async def _poll(what: str, deadline: float, check: Callable[[], Awaitable[bool]]) -> None:
    await eventually(check, within=max(0.0, deadline - time.monotonic()), what=what)


# ------------------------------------------------------------------------------ Redis
@pytest.fixture
async def redis_api(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[ApiClient]:
    settings = stack_settings("redis-disk", tmp_path, request, session_ttl=2)
    async for client in open_client(settings):
        yield client


async def test_redis_session_keys_expire_together_after_the_last_write(
    redis_api: ApiClient,
) -> None:
    api, settings = redis_api, redis_api.settings
    ttl_ms = settings.session_ttl * 1000
    assert settings.redis_url is not None
    client = redis.asyncio.Redis.from_url(settings.redis_url)
    try:
        sid = (await api.post("/api/sessions")).json()["session_id"]
        base = f"/api/sessions/{sid}"
        message = {"message": "32歳の女性です。独身です。"}
        assert (await api.post(f"{base}/messages", json=message)).status_code == 200
        upload = await api.post(
            f"{base}/photos/user", files={"file": ("me.jpg", jpeg_photo(), "image/jpeg")}
        )
        assert upload.status_code == 200, upload.text
        keys = await _session_keys(client, settings.redis_namespace, sid)
        parts = {key.decode().rsplit("}:", 1)[1] for key in keys}
        assert {"meta", "doc:profile", "doc:images", "log:history"} <= parts, parts

        # Right after a write: every key carries the full TTL, all set by that one write.
        first = await _pttls(client, keys)
        assert all(ttl_ms - 500 < t <= ttl_ms for t in first), dict(zip(keys, first, strict=True))
        assert max(first) - min(first) < 50

        # Reads do not extend the life of a session.
        async def half_gone() -> bool:
            return max(await _pttls(client, keys)) <= ttl_ms // 2

        await _poll("half the TTL to pass", time.monotonic() + ttl_ms / 1000 + GRACE, half_gone)
        for path in (base, f"{base}/status", f"{base}/family/status"):
            assert (await api.get(path)).status_code == 200
        read = await _pttls(client, keys)
        assert all(0 < t <= ttl_ms // 2 for t in read), read

        # A write re-arms every key, the ones it did not touch included.
        message = {"message": "東京に住んでいます。"}
        assert (await api.post(f"{base}/messages", json=message)).status_code == 200
        again = await _pttls(client, keys)
        assert all(ttl_ms - 500 < t <= ttl_ms for t in again), dict(zip(keys, again, strict=True))
        assert max(again) - min(again) < 50
        assert await _session_keys(client, settings.redis_namespace, sid) == keys

        # Then everything goes, together, and nothing comes back.
        async def all_gone() -> bool:
            return not await client.exists(*keys)

        await _poll("the session's keys to expire", time.monotonic() + 2 + GRACE, all_gone)
        assert await _session_keys(client, settings.redis_namespace, sid) == []
        assert (await api.get(base)).status_code == 404
        assert (await api.get(f"{base}/status")).status_code == 404
        assert (await api.post(f"{base}/messages", json=message)).status_code == 404
        assert await _session_keys(client, settings.redis_namespace, sid) == []
    finally:
        await client.aclose()


# ------------------------------------------------------------------------------ files
class ShiftedClock:
    """Now, moved on by the test: the file store's expiry without waiting for it."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


FILE_TTL = 600


async def test_file_session_past_its_ttl_is_reported_missing(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    clock = ShiftedClock()
    settings = stack_settings("file-disk", tmp_path, request, session_ttl=FILE_TTL)
    async for api in open_client(settings, Replacements(clock=clock)):
        sid = (await api.post("/api/sessions")).json()["session_id"]
        base = f"/api/sessions/{sid}"
        message = {"message": "32歳の女性です。独身です。"}
        clock.offset = FILE_TTL - 1
        assert (await api.post(f"{base}/messages", json=message)).status_code == 200
        clock.offset = 2 * FILE_TTL - 2  # one TTL after the message, less a second: alive
        assert (await api.get(base)).status_code == 200
        clock.offset = 2 * FILE_TTL  # one TTL after the last write: gone
        assert (await api.get(base)).status_code == 404
        assert (api.settings.resolved_sessions_dir / sid).is_dir()  # expired, not yet pruned
        for path in (f"{base}/status", f"{base}/family/status", f"{base}/photos/user"):
            response = await api.get(path)
            assert response.status_code == 404, (path, response.text)
            assert response.json()["code"] == "session_not_found"
        assert (await api.post(f"{base}/messages", json=message)).status_code == 404
        assert (await api.post(f"{base}/family/messages", json=message)).status_code == 404
        assert (await api.delete(base)).status_code == 404


# ------------------------------------------------------------------------------ hera prune
PRUNE_TTL = 60  # seconds: long enough that the live session cannot expire during the test


@pytest.fixture
async def prune_api(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[ApiClient]:
    settings = stack_settings("file-disk", tmp_path, request, session_ttl=PRUNE_TTL)
    async for client in open_client(settings):
        yield client


def _run_prune(tmp_path: Path, data_dir: Path, *options: str) -> subprocess.CompletedProcess[str]:
    workdir = tmp_path / "cwd"  # empty: no .env of the checkout leaks in
    workdir.mkdir(exist_ok=True)
    env = server_env(HERA_DATA_DIR=str(data_dir), SESSION_TTL=str(PRUNE_TTL))
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "prune", *options],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_hera_prune_removes_the_expired_session_folder_and_its_blobs(
    prune_api: ApiClient, tmp_path: Path
) -> None:
    api, settings = prune_api, prune_api.settings
    photo = {"file": ("me.jpg", jpeg_photo(), "image/jpeg")}
    sids = []
    for _ in range(2):
        sid = (await api.post("/api/sessions")).json()["session_id"]
        assert (await api.post(f"/api/sessions/{sid}/photos/user", files=photo)).status_code == 200
        sids.append(sid)
    expired, alive = sids
    sessions_dir, blobs = settings.resolved_sessions_dir, api.app.state.services.blobs
    # Age the expired one: its last write (the mtime of `.write`) twice the TTL ago.
    long_ago = time.time() - 2 * PRUNE_TTL
    os.utime(sessions_dir / expired / ".write", (long_ago, long_ago))
    assert (await api.get(f"/api/sessions/{expired}")).status_code == 404
    assert (await api.get(f"/api/sessions/{alive}")).status_code == 200

    dry = await asyncio.to_thread(_run_prune, tmp_path, settings.hera_data_dir, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert (sessions_dir / expired).is_dir()

    done = await asyncio.to_thread(_run_prune, tmp_path, settings.hera_data_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (sessions_dir / expired).exists()
    assert [b async for b in blobs.list(prefix=f"sessions/{expired}/")] == []
    assert (sessions_dir / alive).is_dir()
    assert len([b async for b in blobs.list(prefix=f"sessions/{alive}/")]) == 1
    assert (await api.get(f"/api/sessions/{alive}/photos/user")).status_code == 200
    assert [sid async for sid in api.app.state.services.sessions.iter_ids()] == [alive]
