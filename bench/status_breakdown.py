"""Where a `GET /api/sessions/{id}/status` spends its CPU, layer by layer, in one process.

`status_throughput.py` gives the end-to-end ratio through uvicorn; this script explains it. The
apps are called as ASGI applications directly (no sockets, no uvicorn), by N concurrent tasks
on one uvloop loop, and the process's CPU time per request is taken for each variant:

    bare      the yardstick app of `_bare_app.py` (`GET /ping`)
    health    the real app's `GET /api/health`: FastAPI, our middlewares and access log, no
              dependency, no store
    shaped    the status route with the session load answered from memory (the store's
              snapshot taken once beforehand): routing, dependencies, profile progress and the
              JSON body, but no store
    status    the status route in full, loading from the store (file or Redis)

    python bench/status_breakdown.py [--store file|redis] [--requests 6000] [--tasks 32]

Each difference is what a layer costs: health - bare is our middleware stack and the access
line, shaped - health the route's own work, status - shaped the store's read.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.main import create_app
from app.repositories.base import SessionSnapshot
from app.settings import Settings
from bench._bare_app import app as bare_app
from bench.status_throughput import HISTORY_ENTRIES, MESSAGES, run_loop
from tests.support.redis_support import cleanup_namespace

ASGIApp = Any


async def call(app: ASGIApp, path: str) -> None:
    """One GET through the ASGI interface, as uvicorn would make it (no network)."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"bench")], "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
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


async def cpu_per_request(app: ASGIApp, path: str, requests: int, tasks: int) -> float:
    async def worker() -> None:
        for _ in range(requests // tasks):
            await call(app, path)

    await asyncio.gather(*(worker() for _ in range(tasks)))  # warm-up
    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return (time.process_time() - started) / (requests // tasks * tasks) * 1e6


async def measure(
    settings: Settings, access_log: IO[str], requests: int, tasks: int
) -> dict[str, float]:
    app = create_app(settings)  # installs the JSON access log; its lines go to a file, as in prod
    for handler in logging.getLogger().handlers:
        if handler.get_name() == "hera" and isinstance(handler, logging.StreamHandler):
            handler.setStream(access_log)
    results: dict[str, float] = {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            sid = (await http.post("/api/sessions")).json()["session_id"]
            for turn in range(HISTORY_ENTRIES // 2):
                body = {"message": MESSAGES[turn % len(MESSAGES)]}
                (await http.post(f"/api/sessions/{sid}/messages", json=body)).raise_for_status()
        status = f"/api/sessions/{sid}/status"
        results["bare"] = await cpu_per_request(bare_app, "/ping", requests, tasks)
        results["health"] = await cpu_per_request(app, "/api/health", requests, tasks)
        sessions = app.state.services.sessions
        snapshot: SessionSnapshot = await sessions.load(
            session_id=sid, docs=["profile", "state"], logs=["history"]
        )

        async def from_memory(**_: Any) -> SessionSnapshot:
            return snapshot

        real_load = sessions.load
        sessions.load = from_memory  # this variant only: the store is not asked
        try:
            results["shaped"] = await cpu_per_request(app, status, requests, tasks)
        finally:
            sessions.load = real_load
        results["status"] = await cpu_per_request(app, status, requests, tasks)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", choices=["file", "redis"], default="file")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--tasks", type=int, default=32)
    args = parser.parse_args()
    if not 1 <= args.tasks <= 256 or not args.tasks <= args.requests <= 100_000:
        raise SystemExit("keep it bounded: 1-256 tasks, at most 100000 requests")
    namespace = f"hera-bench-{os.getpid()}"
    with tempfile.TemporaryDirectory() as data, tempfile.TemporaryFile("w") as access_log:
        options: dict[str, Any] = {
            "llm_provider": "offline", "hera_data_dir": data, "log_format": "json",
            "log_level": "INFO",
        }  # fmt: skip
        if args.store == "redis":
            options.update(session_type="redis", redis_url=args.redis_url,
                           redis_namespace=namespace)  # fmt: skip
        settings = Settings(_env_file=None, **options)  # type: ignore[arg-type]
        try:
            got = run_loop(measure(settings, access_log, args.requests, args.tasks))
        finally:
            if args.store == "redis":
                asyncio.run(cleanup_namespace(args.redis_url, namespace))
    print(f"store={args.store}: {args.tasks} concurrent tasks, {args.requests} requests per variant, "
          f"in process (no uvicorn); CPU time per request; load average "
          f"{os.getloadavg()[0]:.2f}")  # fmt: skip
    previous = None
    for name, micros in got.items():
        step = f"  (+{micros - got[previous]:4.0f} us over {previous})" if previous else ""
        print(f"  {name:7s}: {micros:6.0f} us{step}")
        previous = name
    print(f"  status / bare: {got['status'] / got['bare']:.1f}x the CPU of the bare endpoint")


if __name__ == "__main__":
    main()
