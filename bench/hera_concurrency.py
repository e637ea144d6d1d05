"""Concurrent Hera turns vs one turn, through the real Gemini adapter and a fake Gemini.

The fake (its own process) answers every call after a fixed latency (default 1 s). One
uvicorn worker serves N sessions that each send one message at the same moment; the ratio of
that wall time to a single turn's shows whether turns overlap (1.0x is the physical limit).

    python bench/hera_concurrency.py [--sessions 100] [--latency 1.0] [--store file|redis]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._server import gemini_hera

MESSAGE = "32歳の女性です。独身で東京に住んでいます。"


async def new_sessions(http: aiohttp.ClientSession, url: str, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        async with http.post(f"{url}/api/sessions") as response:
            ids.append((await response.json())["session_id"])
    return ids


async def burst(http: aiohttp.ClientSession, url: str, count: int) -> float:
    """Wall time for `count` sessions each sending one message at the same moment."""
    ids = await new_sessions(http, url, count)

    async def turn(sid: str) -> int:
        async with http.post(
            f"{url}/api/sessions/{sid}/messages", json={"message": MESSAGE}
        ) as response:
            await response.read()
            return response.status

    started = time.perf_counter()
    statuses = await asyncio.gather(*(turn(s) for s in ids))
    wall = time.perf_counter() - started
    if set(statuses) != {200}:
        raise SystemExit(f"some turns failed: {sorted(set(statuses))}")
    return wall


async def measure(url: str, sessions: int) -> tuple[float, float]:
    connector = aiohttp.TCPConnector(limit=sessions + 10)
    async with aiohttp.ClientSession(connector=connector) as http:
        # Warm-up burst: grows every pool (client, Redis, model connections) to the burst
        # size, as they are on a server that has been running for a while.
        await burst(http, url, sessions)
        single = min([await burst(http, url, 1) for _ in range(3)])
        wall = await burst(http, url, sessions)
    return single, wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--store", choices=["file", "redis"], default="file")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    args = parser.parse_args()
    with gemini_hera(args.latency, store=args.store, redis_url=args.redis_url) as (url, answered):
        single, wall = asyncio.run(measure(url, args.sessions))
    calls = answered[0]
    turns = 2 * args.sessions + 3
    print(f"store={args.store} fake latency={args.latency:.2f}s sessions={args.sessions}")
    print(f"single turn          : {single:.3f} s")
    print(f"{args.sessions} concurrent turns : {wall:.3f} s")
    print(f"ratio                : {wall / single:.2f}x  (target <= 1.5x, limit 1.0x)")
    print(f"LLM calls per turn   : {calls / turns:.2f}")


if __name__ == "__main__":
    main()
