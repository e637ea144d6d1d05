"""What a verified bearer token adds to `GET /api/sessions/{id}/status`, in CPU per request.

One app (offline brains, file store by default) with AUTH_MODE=optional against a real JWKS
endpoint on a loopback port (tests/support/jwks.py). Two sessions with the same ~20 history
entries: a guest's, read without a token, and a person's own, read with its owner's RS256 (or
ES256) token. The keys are fetched once, then cached, as in a running service. Both variants
are called as ASGI applications in one process by N concurrent tasks, alternating for a few
rounds; the figure is the ratio of their CPU time per request.

    python bench/auth_overhead.py [--store file|redis] [--key RSA|EC] [--requests 4000]
                                  [--tasks 32] [--rounds 3]

Target: the token adds under 15% (keys cached).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.main import create_app
from app.settings import Settings
from bench.status_throughput import HISTORY_ENTRIES, MESSAGES, run_loop
from tests.support.jwks import Issuer, auth_settings, jwks_server, new_key
from tests.support.redis_support import cleanup_namespace

ASGIApp = Any


async def call(app: ASGIApp, path: str, headers: list[tuple[bytes, bytes]]) -> None:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"bench"), *headers],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    if status != 200:
        raise SystemExit(f"{path}: status {status}")


async def cpu_per_request(
    app: ASGIApp, path: str, headers: list[tuple[bytes, bytes]], requests: int, tasks: int
) -> float:
    async def worker() -> None:
        for _ in range(requests // tasks):
            await call(app, path, headers)

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return (time.process_time() - started) / (requests // tasks * tasks) * 1e6


async def fill(http: httpx.AsyncClient, headers: dict[str, str]) -> str:
    sid = str((await http.post("/api/sessions", headers=headers)).json()["session_id"])
    for turn in range(HISTORY_ENTRIES // 2):
        body = {"message": MESSAGES[turn % len(MESSAGES)]}
        response = await http.post(f"/api/sessions/{sid}/messages", json=body, headers=headers)
        response.raise_for_status()
    return sid


async def measure(
    settings: Settings, token: str, requests: int, tasks: int, rounds: int
) -> dict[str, list[float]]:
    app = create_app(settings)
    bearer = {"Authorization": f"Bearer {token}"}
    results: dict[str, list[float]] = {"guest, no token": [], "owner, verified token": []}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            guest, owned = await fill(http, {}), await fill(http, bearer)
        variants = {
            "guest, no token": (f"/api/sessions/{guest}/status", []),
            "owner, verified token": (
                f"/api/sessions/{owned}/status",
                [(b"authorization", bearer["Authorization"].encode())],
            ),
        }
        for path, headers in variants.values():  # warm-up: keys fetched, caches filled
            await cpu_per_request(app, path, headers, requests // 4, tasks)
        for _ in range(rounds):
            for name, (path, headers) in variants.items():
                results[name].append(await cpu_per_request(app, path, headers, requests, tasks))
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", choices=["file", "redis"], default="file")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--key", choices=["RSA", "EC"], default="RSA")
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--tasks", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not 1 <= args.tasks <= 256 or not args.tasks <= args.requests <= 100_000:
        raise SystemExit("keep it bounded: 1-256 tasks, at most 100000 requests")
    namespace = f"hera-bench-{os.getpid()}"
    key = new_key(args.key)
    with jwks_server(key) as jwks, tempfile.TemporaryDirectory() as data:
        options: dict[str, Any] = {
            "llm_provider": "offline", "hera_data_dir": data, "log_level": "WARNING",
            "rate_limits": "off", **auth_settings(jwks),
        }  # fmt: skip
        if args.store == "redis":
            options.update(session_type="redis", redis_url=args.redis_url,
                           redis_namespace=namespace)  # fmt: skip
        settings = Settings(_env_file=None, **options)  # type: ignore[arg-type]
        token = Issuer(key).token("bench-user")
        try:
            got = run_loop(measure(settings, token, args.requests, args.tasks, args.rounds))
        finally:
            if args.store == "redis":
                asyncio.run(cleanup_namespace(args.redis_url, namespace))
        fetches = jwks.requests
    print(f"store={args.store} key={args.key}: {args.tasks} tasks, {args.requests} requests per "
          f"variant and round, {args.rounds} rounds, in process; JWKS fetched {fetches} time(s); "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    medians = {name: statistics.median(values) for name, values in got.items()}
    for name, values in got.items():
        runs = ", ".join(f"{v:.0f}" for v in values)
        print(f"  {name:22s}: {medians[name]:6.0f} us CPU/request (rounds: {runs})")
    base, with_token = medians.values()
    print(f"  the token adds {100 * (with_token / base - 1):.1f}% (target < 15%)")


if __name__ == "__main__":
    main()
