"""What one history append costs Redis, at history length 10 and at 1000, and how many round
trips a whole turn costs the client.

The server's own counters (INFO commandstats: calls per command, scripts' inner commands
included; INFO stats: total_net_input_bytes) are read before and after a run of single-entry
appends; the per-append averages must be the same at both lengths (append-only, O(1)).

    python bench/redis_append_cost.py [redis://127.0.0.1:6379/9] [--appends 20]

Round trips per turn are counted at the client (every command it sends and waits for), for an
interview turn and a family turn through the real agents with the offline brains: a new turn,
and a retry of it with the same Idempotency-Key (answered from its record).

The URL may also come from HERA_BENCH_REDIS_URL. Only keys of a private namespace are written,
and they are removed at the end. The counters are server-wide, so other clients of the same
server add noise: each measurement is repeated and the quietest round is kept.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.repositories._redis import create_redis_client
from app.repositories.redis_sessions import RedisSessionRepository
from tests.support.redis_support import cleanup_namespace
from tests.support.writes import append

DEFAULT_URL = "redis://127.0.0.1:6379/9"
LENGTHS = (10, 1000)
ROUNDS = 5
ENTRY = {"role": "user", "text": "週末は家族で海に行きたいです。子どもたちも喜ぶと思います。"}


async def snapshot(client: redis.asyncio.Redis) -> tuple[Counter[str], int]:
    commands = await client.info("commandstats")
    stats = await client.info("stats")
    calls = Counter(
        {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in commands.items()}
    )
    return calls, int(stats["total_net_input_bytes"])


async def measure(
    client: redis.asyncio.Redis, work: int, step: Callable[[], Awaitable[None]]
) -> tuple[Counter[str], int]:
    """Commands and input bytes of `work` calls of `step`, INFO calls included in the bytes."""
    before_calls, before_bytes = await snapshot(client)
    for _ in range(work):
        await step()
    after_calls, after_bytes = await snapshot(client)
    calls = after_calls - before_calls
    calls.pop("info", None)
    return calls, after_bytes - before_bytes


async def nothing() -> None:
    return None


async def quietest_round(
    repo: RedisSessionRepository, client: redis.asyncio.Redis, length: int, appends: int
) -> tuple[Counter[str], int]:
    """A fresh session filled to `length` per round; the round with the least traffic wins."""
    best: tuple[Counter[str], int] | None = None
    for _ in range(ROUNDS):
        sid = (await repo.create()).session_id
        await append(repo, session_id=sid, log="history", entries=[ENTRY] * length)

        async def append_one(sid: str = sid) -> None:
            await append(repo, session_id=sid, log="history", entries=[ENTRY])

        got = await measure(client, appends, append_one)
        await repo.delete(session_id=sid)
        if best is None or (got[0].total(), got[1]) < (best[0].total(), best[1]):
            best = got
    assert best is not None
    return best


async def run(url: str, appends: int) -> bool:
    namespace = f"hera-bench-{uuid.uuid4().hex[:12]}"
    client = create_redis_client(url)
    repo = RedisSessionRepository(client=client, ttl_seconds=3600, namespace=namespace)
    rows: list[tuple[int, Counter[str], float]] = []
    try:
        # What the two INFO commands of a measurement add to total_net_input_bytes.
        info_bytes = min([(await measure(client, 0, nothing))[1] for _ in range(ROUNDS)])
        await quietest_round(repo, client, 1, 1)  # loads the script: no SCRIPT LOAD below
        for length in LENGTHS:
            calls, size = await quietest_round(repo, client, length, appends)
            rows.append((length, calls, (size - info_bytes) / appends))
    finally:
        await repo.aclose()
        await cleanup_namespace(url, namespace)

    names = sorted(set().union(*(calls for _, calls, _ in rows)))
    print(f"Redis append cost, average of {appends} single-entry appends ({url})")
    print(f"{'history length':>14} | {'commands/append':>15} | {'bytes in/append':>15}")
    for length, calls, per_append in rows:
        print(f"{length:>14} | {calls.total() / appends:>15.2f} | {per_append:>15.1f}")
    print("commands counted (per append):")
    for name in names:
        print(f"  {name:<8} " + "  ".join(f"{calls[name] / appends:5.2f}" for _, calls, _ in rows))
    (_, calls_a, bytes_a), (_, calls_b, bytes_b) = rows
    equal = calls_a == calls_b and abs(bytes_a - bytes_b) < 1.0
    print(f"equal: {'yes' if equal else 'no'}")
    trips = await round_trips(url)
    print("round trips per turn (client side):")
    for name, sent in trips.items():
        print(f"  {name:<24} {len(sent)}  ({', '.join(sent)})")
    return equal and len(trips["interview turn"]) <= 4


async def round_trips(url: str) -> dict[str, list[str]]:
    """The commands one turn sends, counted at the client: each is a round trip."""
    from app.agents.family import FamilyAgent
    from app.agents.hera import HeraAgent
    from app.agents.turns import RequestKey
    from app.brains.offline.family import OfflineFamilyBrain
    from app.brains.offline.interview import OfflineInterviewBrain
    from app.brains.offline.japanese import JapaneseAnalyser
    from tests.api.scripted_user import SCRIPT

    namespace = f"hera-bench-{uuid.uuid4().hex[:12]}"
    client = create_redis_client(url)
    repo = RedisSessionRepository(client=client, ttl_seconds=3600, namespace=namespace)
    sent: list[str] = []
    original = client.execute_command

    async def counting(*args: Any, **kwargs: Any) -> Any:
        sent.append(str(args[0]))
        return await original(*args, **kwargs)

    client.execute_command = counting  # type: ignore[method-assign]
    analyser = JapaneseAnalyser.load()
    hera = HeraAgent(sessions=repo, brain=OfflineInterviewBrain(analyser))
    family = FamilyAgent(sessions=repo, brain=OfflineFamilyBrain())
    found: dict[str, list[str]] = {}

    async def count(name: str, turn: Awaitable[Any]) -> None:
        sent.clear()
        await turn
        found[name] = list(sent)

    try:
        sid = (await repo.create()).session_id
        for line in SCRIPT[:5]:  # warm up: the scripts are in the server's cache
            await hera.handle_message(sid, line)
        key = RequestKey.of("bench-1", "interview_message", SCRIPT[5])
        await count("interview turn", hera.handle_message(sid, SCRIPT[5], key))
        await count("interview retry", hera.handle_message(sid, SCRIPT[5], key))
        await count("complete", hera.complete(sid))
        key = RequestKey.of("bench-2", "family_message", "沖縄に行きたいな！")
        await count("family turn", family.handle_message(sid, "沖縄に行きたいな！", key))
        await count("family retry", family.handle_message(sid, "沖縄に行きたいな！", key))
    finally:
        client.execute_command = original  # type: ignore[method-assign]
        await repo.aclose()
        await cleanup_namespace(url, namespace)
        analyser.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", default=os.environ.get("HERA_BENCH_REDIS_URL"))
    parser.add_argument("--appends", type=int, default=20)
    args = parser.parse_args()
    equal = asyncio.run(run(args.url or DEFAULT_URL, args.appends))
    sys.exit(0 if equal else 1)


if __name__ == "__main__":
    main()
