"""Outages of Redis and of the bucket: fail fast with 503 JSON, stay up, recover by itself.

Each test owns its dependency (a `redis-server` on a free port; a moto S3 server), runs the
app in-process over it, stops the dependency mid-session and restarts it on the same port:

- Redis: every request that needs the session store answers 503 `store_unavailable` (store
  `sessions`) in under 2 s, again and again (no pool left stuck); `/api/ready` is 503 naming
  the sessions store, `/api/health` stays 200. Redis runs with an append-only file (fsync on
  every write) in the test's tmp dir, so the restarted server has the data; the same app then
  serves the session again with its history and profile exactly as before, and new turns work.
- S3 (moto) and GCS (the emulator), one parametrized test: the photo download and the upload answer 503 (store `blobs`) in under 2 s,
  ready names the blob store, sessions keep working. neither keeps data across a restart
  (both are in memory), so after it comes back the bucket is recreated; the app recovers without
  a restart: ready is 200 again, the lost photo is a clean 404 (not a 500), and a new upload
  works and is served byte for byte from the bucket.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.settings import Settings
from tests.api.images import jpeg_photo
from tests.api.scripted_user import SCRIPT
from tests.support.api import running_app
from tests.support.polling import eventually, wait_until
from tests.support.servers import (
    create_gcs_bucket,
    create_s3_bucket,
    list_gcs_names,
    s3_client,
    start_gcs_emulator,
    start_moto_server,
)
from tests.support.services import free_port, unavailable

pytestmark = pytest.mark.slow

FAIL_FAST_SECONDS = 2.0  # every request during an outage is answered within this
RECOVERY_SECONDS = 15.0  # deadline for "it works again" after the dependency is back
START_SECONDS = 15.0


# ------------------------------------------------------------------------------ helpers
async def timed(call: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    # The outer bound only keeps a hang from hanging the suite; the assertion is on `elapsed`.
    response = await asyncio.wait_for(call, timeout=30)
    return response, time.monotonic() - started


SLOWEST: dict[str, float] = {}  # the slowest failing request per store (printed with -s)


def assert_unavailable(response: httpx.Response, elapsed: float, store: str, what: str) -> None:
    SLOWEST[store] = max(SLOWEST.get(store, 0.0), elapsed)
    assert response.status_code == 503, f"{what}: {response.status_code} {response.text}"
    assert response.headers["content-type"].startswith("application/json"), what
    body = response.json()
    assert body["code"] == "store_unavailable" and body["error"], what
    assert body["store"] == store, what
    assert elapsed < FAIL_FAST_SECONDS, f"{what} took {elapsed:.2f} s"


async def assert_not_ready(api: httpx.AsyncClient, *down: str) -> None:
    response, elapsed = await timed(api.get("/api/ready"))
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["code"] == "not_ready"
    assert [name for name, state in body["checks"].items() if state == "down"] == list(down)
    assert elapsed < FAIL_FAST_SECONDS, f"ready took {elapsed:.2f} s"
    health, elapsed = await timed(api.get("/api/health"))
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert elapsed < FAIL_FAST_SECONDS


async def is_ready(api: httpx.AsyncClient) -> bool:
    return (await api.get("/api/ready")).status_code == 200


# ------------------------------------------------------------------------------ Redis
class RedisServer:
    """A test-owned redis-server whose data survives a restart (AOF, fsync on every write)."""

    def __init__(self, port: int, data_dir: Path) -> None:
        self.port = port
        self.data_dir = data_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not installed")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                str(binary),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--dir", str(self.data_dir),
                "--daemonize", "no",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self._wait_for_ping()

    def _wait_for_ping(self) -> None:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=0.5)

        def answers() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited")
            try:
                return bool(client.ping())
            except (redis.ConnectionError, redis.TimeoutError):
                return False  # not up yet, or still loading the AOF (BusyLoadingError)

        try:
            wait_until(answers, within=START_SECONDS, what=f"redis-server on port {self.port}")
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None


async def test_redis_outage_fails_fast_and_recovers_with_all_data(tmp_path: Path) -> None:
    server = RedisServer(free_port(), tmp_path / "redis")
    await asyncio.to_thread(server.start)
    try:
        settings = Settings(
            _env_file=None,
            session_type="redis",
            redis_url=server.url,
            redis_namespace="hera-outage",
            hera_data_dir=tmp_path / "data",
            storage_mode="local",
            llm_provider="offline",
        )
        async with running_app(settings) as api:
            sid = (await api.post("/api/sessions")).json()["session_id"]
            for line in SCRIPT[:3]:
                response = await api.post(f"/api/sessions/{sid}/messages", json={"message": line})
                assert response.status_code == 200, response.text
            before = (await api.get(f"/api/sessions/{sid}/status")).json()
            summary = (await api.get(f"/api/sessions/{sid}")).json()
            assert len(before["conversation_history"]) == 6 and before["user_profile"]

            server.stop()
            calls: list[tuple[str, Callable[[], Awaitable[httpx.Response]]]] = [
                ("status", lambda: api.get(f"/api/sessions/{sid}/status")),
                ("summary", lambda: api.get(f"/api/sessions/{sid}")),
                ("message", lambda: api.post(
                    f"/api/sessions/{sid}/messages", json={"message": SCRIPT[3]}
                )),
                ("family", lambda: api.get(f"/api/sessions/{sid}/family/status")),
                ("complete", lambda: api.post(f"/api/sessions/{sid}/complete")),
                ("create", lambda: api.post("/api/sessions")),
            ]  # fmt: skip
            for round_ in range(3):  # again and again: no connection or lock left stuck
                for what, call in calls:
                    response, elapsed = await timed(call())
                    assert_unavailable(response, elapsed, "sessions", f"{what} #{round_}")
            await assert_not_ready(api, "sessions", "users")  # both in the one Redis

            print(f"\nslowest failing sessions request: {SLOWEST['sessions']:.3f} s")
            await asyncio.to_thread(server.start)  # the same port; the AOF brings the data back
            await eventually(
                lambda: is_ready(api), what="ready after Redis restart", within=RECOVERY_SECONDS
            )
            after = await api.get(f"/api/sessions/{sid}/status")
            assert after.status_code == 200, after.text
            assert after.json() == before
            assert (await api.get(f"/api/sessions/{sid}")).json() == summary
            turn = await api.post(f"/api/sessions/{sid}/messages", json={"message": SCRIPT[3]})
            assert turn.status_code == 200, turn.text
            history = turn.json()["conversation_history"]
            assert history[:6] == before["conversation_history"] and len(history) == 8
            assert (await api.post("/api/sessions")).status_code == 201
    finally:
        server.stop()


# ------------------------------------------------------------------------------ buckets
def _s3_objects(url: str, bucket: str) -> dict[str, bytes]:
    client = s3_client(url)
    listed = client.list_objects_v2(Bucket=bucket).get("Contents") or []
    return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def _gcs_objects(url: str, bucket: str) -> dict[str, bytes]:
    objects = {}
    for name in list_gcs_names(url, bucket):
        quoted = urllib.parse.quote(name, safe="")
        media = httpx.get(f"{url}/storage/v1/b/{bucket}/o/{quoted}?alt=media", timeout=10)
        objects[name] = media.content
    return objects


@dataclass(frozen=True)
class BucketKind:
    """How to run, stop, restart and inspect one bucket service (both keep no data across a
    restart: they are in memory)."""

    start: Callable[[int | None], Any]  # a handle: `.url`, `.hera_settings()`, `.stop()`
    create: Callable[[str, str], None]
    objects: Callable[[str, str], dict[str, bytes]]  # name -> bytes, straight from the service


BUCKETS = {
    "s3-moto": BucketKind(
        start=lambda port: start_moto_server(port=port),
        create=create_s3_bucket,
        objects=_s3_objects,
    ),
    "gcs-emulator": BucketKind(
        start=lambda port: start_gcs_emulator(port or 0),
        create=create_gcs_bucket,
        objects=_gcs_objects,
    ),
}


@pytest.mark.parametrize("kind", BUCKETS.values(), ids=BUCKETS.keys())
async def test_bucket_outage_fails_fast_and_recovers(kind: BucketKind, tmp_path: Path) -> None:
    try:
        service = await asyncio.to_thread(kind.start, None)
    except Exception as exc:
        unavailable(f"the bucket service could not start: {exc}")
        return
    bucket = "hera-outage"
    try:
        kind.create(service.url, bucket)
        settings = Settings(
            _env_file=None,
            session_type="file",
            hera_data_dir=tmp_path / "data",
            llm_provider="offline",
            **service.hera_settings(bucket),
        )
        photo = {"file": ("me.jpg", jpeg_photo(), "image/jpeg")}
        async with running_app(settings) as api:
            sid = (await api.post("/api/sessions")).json()["session_id"]
            assert (
                await api.post(f"/api/sessions/{sid}/photos/user", files=photo)
            ).status_code == 200
            assert (await api.get(f"/api/sessions/{sid}/photos/user")).status_code == 200

            service.stop()
            for round_ in range(3):
                response, elapsed = await timed(api.get(f"/api/sessions/{sid}/photos/user"))
                assert_unavailable(response, elapsed, "blobs", f"download #{round_}")
                response, elapsed = await timed(
                    api.post(f"/api/sessions/{sid}/photos/user", files=photo)
                )
                assert_unavailable(response, elapsed, "blobs", f"upload #{round_}")
            await assert_not_ready(api, "blobs")
            print(f"\nslowest failing blobs request: {SLOWEST['blobs']:.3f} s")
            # The session store is fine meanwhile.
            assert (await api.get(f"/api/sessions/{sid}/status")).status_code == 200

            # The restarted service has no bucket and no objects: recreate the bucket (what an
            # operator's infrastructure would do); the app recovers without a restart.
            service = await asyncio.to_thread(kind.start, int(service.url.rsplit(":", 1)[1]))
            kind.create(service.url, bucket)
            await eventually(
                lambda: is_ready(api), what="ready after the restart", within=RECOVERY_SECONDS
            )
            lost = await api.get(f"/api/sessions/{sid}/photos/user")
            assert lost.status_code == 404 and lost.json()["code"] == "image_not_found"

            upload = await api.post(f"/api/sessions/{sid}/photos/user", files=photo)
            assert upload.status_code == 200, upload.text
            served = await api.get(upload.json()["image_url"])
            assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
            stored = kind.objects(service.url, bucket)
            assert len(stored) == 1, sorted(stored)
            [(name, data)] = stored.items()
            assert name.startswith(f"sessions/{sid}/") and served.content == data
    finally:
        service.stop()
