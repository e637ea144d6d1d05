"""Server memory while a slow client downloads a 50 MB image: one chunk, never the file.

The app runs under uvicorn (one worker, disk blob store, or S3 on a moto server with
`--store s3`). A 50 MB blob is written straight into the store through the repositories,
built from the same settings as the server's (same HERA_DATA_DIR / bucket), and indexed as the
session's `user` image; a 1 MB `partner` image serves as the warm-up download. Then a client
reads `GET /api/sessions/{id}/photos/user` in 64 KB pieces at a fixed pace (default 10 MB/s),
while the server's resident memory is watched two ways: VmHWM after resetting it (writing
"5" to /proc/<pid>/clear_refs) and VmRSS sampled every 2 ms in a thread.

    python bench/stream_memory.py [--store disk|s3] [--size-mb 50] [--rate-mb 10]

The figure is (peak - idle) / CHUNK_SIZE, the blob adapters' read size: under 2 means the
server holds about one chunk in flight, whatever the file's size.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.container import build_blob_repository, build_session_repository
from app.repositories._blobs import CHUNK_SIZE
from app.repositories.base import session_blob_key, utcnow
from app.settings import Settings
from bench.status_throughput import uvicorn_server
from tests.support.writes import update

MB = 1024 * 1024
PIECE = 64 * 1024
WARMUP_BYTES = 1 * MB


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_hwm(pid: int) -> bool:
    """Reset the peak-RSS mark (VmHWM) to the current RSS; False where not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return status_kb(pid, "VmHWM") <= status_kb(pid, "VmRSS") + 64


class RssSampler(threading.Thread):
    """VmRSS of `pid` every `interval` seconds until stopped; keeps the highest reading."""

    def __init__(self, pid: int, interval: float = 0.002) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_kb, self.samples = 0, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak_kb = max(self.peak_kb, status_kb(self.pid, "VmRSS"))
            self.samples += 1
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


async def random_chunks(size: int) -> AsyncIterator[bytes]:
    """`size` incompressible bytes, streamed (this process never holds the whole blob)."""
    for start in range(0, size, CHUNK_SIZE):
        yield os.urandom(min(CHUNK_SIZE, size - start))


async def arrange(settings: Settings, session_id: str, sizes: dict[str, int]) -> dict[str, str]:
    """Write the blobs and index them in the session, as ImageAgent._record does."""
    etags: dict[str, str] = {}
    sessions = await build_session_repository(settings)
    blobs = await build_blob_repository(settings)
    try:
        for name, size in sizes.items():
            key = session_blob_key(session_id, f"{name}.png")
            info = await blobs.put(key=key, data=random_chunks(size), content_type="image/png")
            entry = {
                "key": key,
                "content_type": "image/png",
                "etag": info.etag,
                "size": info.size,
                "created_at": utcnow().isoformat(),
                "meta": {},
            }
            await update(sessions, session_id=session_id, doc="images", fields={name: entry})
            etags[name] = info.etag
    finally:
        await blobs.aclose()
        await sessions.aclose()
    return etags


async def download(
    http: aiohttp.ClientSession, url: str, rate: float | None
) -> tuple[int, str, float]:
    """Read the body in 64 KB pieces, paced to `rate` bytes/s (None: as fast as possible)."""
    digest, received = hashlib.md5(usedforsecurity=False), 0
    started = time.perf_counter()
    async with http.get(url) as response:
        if response.status != 200:
            raise SystemExit(f"{url}: HTTP {response.status}")
        async for piece in response.content.iter_chunked(PIECE):
            digest.update(piece)
            received += len(piece)
            if rate is not None:
                ahead = received / rate - (time.perf_counter() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
    return received, digest.hexdigest(), time.perf_counter() - started


async def measure(url: str, pid: int, session_id: str, args: argparse.Namespace) -> dict[str, Any]:
    photos = f"{url}/api/sessions/{session_id}/photos"
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout, read_bufsize=PIECE) as http:
        for _ in range(3):  # warm-up: imports, thread pool, connection pools, allocator
            await download(http, f"{photos}/partner", None)
        await asyncio.sleep(0.5)
        idle_kb = max(status_kb(pid, "VmRSS") for _ in range(5))
        hwm_reset = reset_hwm(pid)
        sampler = RssSampler(pid)
        sampler.start()
        try:
            size, md5, seconds = await download(http, f"{photos}/user", args.rate_mb * MB)
        finally:
            sampler.stop()
        hwm_kb = status_kb(pid, "VmHWM") if hwm_reset else 0
        after_kb = status_kb(pid, "VmRSS")
    return {
        "idle_kb": idle_kb,
        "peak_kb": max(sampler.peak_kb, hwm_kb),
        "sampled_kb": sampler.peak_kb,
        "hwm_kb": hwm_kb,
        "hwm_reset": hwm_reset,
        "samples": sampler.samples,
        "after_kb": after_kb,
        "size": size,
        "md5": md5,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", choices=["disk", "s3"], default="disk")
    parser.add_argument("--size-mb", type=int, default=50)
    parser.add_argument("--rate-mb", type=float, default=10.0, help="client read pace, MB/s")
    args = parser.parse_args()
    if not 1 <= args.size_mb <= 500 or not 0.5 <= args.rate_mb <= 1000:
        raise SystemExit("keep it bounded: --size-mb 1-500, --rate-mb 0.5-1000")
    with ExitStack() as stack:
        data = stack.enter_context(tempfile.TemporaryDirectory())
        env = {"LLM_PROVIDER": "offline", "HERA_DATA_DIR": data, "LOG_LEVEL": "WARNING"}
        if args.store == "s3":
            from tests.support.servers import (
                create_s3_bucket,
                start_moto_server,
            )

            moto = start_moto_server()
            stack.callback(moto.stop)
            bucket = f"hera-bench-{os.getpid()}"
            create_s3_bucket(moto.url, bucket)
            env.update({k.upper(): v for k, v in moto.hera_settings(bucket).items()})
        settings = Settings(_env_file=None, **{k.lower(): v for k, v in env.items()})  # type: ignore[arg-type]
        server = stack.enter_context(uvicorn_server("app.main:app", env, "/api/health"))
        session_id = httpx.post(f"{server.url}/api/sessions").json()["session_id"]
        sizes = {"partner": WARMUP_BYTES, "user": args.size_mb * MB}
        etags = asyncio.run(arrange(settings, session_id, sizes))
        got = asyncio.run(measure(server.url, server.pid, session_id, args))
    if got["size"] != args.size_mb * MB:
        raise SystemExit(f"downloaded {got['size']} bytes, expected {args.size_mb * MB}")
    if "-" not in etags["user"] and got["md5"] != etags["user"]:  # multipart ETags are no MD5
        raise SystemExit("the downloaded bytes differ from the stored blob")
    delta = (got["peak_kb"] - got["idle_kb"]) * 1024
    how = "VmHWM after clear_refs + " if got["hwm_reset"] else ""
    print(f"store={args.store} blob={args.size_mb} MB, client reads {PIECE // 1024} KB pieces "
          f"at {args.rate_mb:g} MB/s ({got['seconds']:.1f} s, md5 {got['md5'][:12]})")  # fmt: skip
    print(f"idle RSS     : {got['idle_kb'] / 1024:8.1f} MB")
    print(f"peak RSS     : {got['peak_kb'] / 1024:8.1f} MB  ({how}{got['samples']} "
          f"VmRSS samples; sampled peak {got['sampled_kb'] / 1024:.1f} MB)")  # fmt: skip
    print(f"delta        : {delta / 1024:8.0f} KB")
    print(f"chunk size   : {CHUNK_SIZE // 1024:8d} KB  (app.repositories._blobs.CHUNK_SIZE)")
    print(f"delta/chunk  : {delta / CHUNK_SIZE:8.2f}x  (target < 2x; the file is "
          f"{args.size_mb * MB / CHUNK_SIZE:.0f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
