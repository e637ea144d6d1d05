"""Run the real app under uvicorn in a child process for benchmarks (one worker)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.settings import RATE_LIMIT_KINDS
from tests.support.polling import wait_for_http
from tests.support.services import free_port


@contextmanager
def hera_server(env: dict[str, str], *, workers: int = 1) -> Iterator[str]:
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
           "--port", str(port), "--workers", str(workers), "--log-level", "warning",
           "--no-access-log"]  # fmt: skip
    proc = subprocess.Popen(cmd, env={**os.environ, "LOG_LEVEL": "WARNING", **env})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/api/health", within=30, process=proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def fake_gemini(latency: float) -> Iterator[tuple[str, list[int]]]:
    """The fake Gemini in its own process: yields its base URL and, once closed, [requests]."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("_fake_gemini_proc.py")), str(latency)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    answered: list[int] = []
    try:
        yield proc.stdout.readline().strip(), answered
    finally:
        proc.stdin.close()
        answered.append(int(proc.stdout.readline() or 0))
        proc.wait(timeout=10)


@contextmanager
def gemini_hera(latency: float, *, store: str, redis_url: str) -> Iterator[tuple[str, list[int]]]:
    """A Hera server on the Gemini brains against a fake Gemini; file or Redis sessions."""
    namespace = f"hera-bench-{os.getpid()}"
    with fake_gemini(latency) as (base_url, answered), tempfile.TemporaryDirectory() as data:
        env = {
            "LLM_PROVIDER": "gemini",
            "GEMINI_API_KEY": "bench-key",
            "GEMINI_BASE_URL": base_url,
            "HERA_DATA_DIR": data,
            # The limiter stays on, so its own cost is in every figure; its budgets are
            # raised so one benchmark client's hundreds of requests are never refused.
            "RATE_LIMITS": "on",
            **{f"RATE_LIMIT_{kind.upper()}": "100000/minute" for kind in RATE_LIMIT_KINDS},
        }
        if store == "redis":
            env.update(REDIS_URL=redis_url, REDIS_NAMESPACE=namespace)
        try:
            with hera_server(env) as url:
                yield url, answered
        finally:
            if store == "redis":
                from tests.support.redis_support import cleanup_namespace

                asyncio.run(cleanup_namespace(redis_url, namespace))
