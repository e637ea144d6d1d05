"""`GET /api/sessions/{id}/status` throughput as a fraction of a bare FastAPI JSON endpoint.

Two uvicorn servers run side by side with the same settings (one worker, the same event loop
and HTTP parser): the real app (offline brains, one session with ~20 history entries) and
`bench/_bare_app.py` (`GET /ping` returning a small dict). A load generator in this process
(aiohttp, N keep-alive connections, each sending its next request as soon as the last answer
is read) drives one server at a time for a fixed duration, alternating for a few rounds; the
ratio of the two rates is the figure (the machine's speed cancels out).

    python bench/status_throughput.py [--store file|redis] [--concurrency 32]
                                      [--duration 5] [--rounds 3] [--app-log-level INFO]

The client shares the machine with the server, so it also prints each server's CPU time per
request (from /proc/<pid>/stat, all threads): that ratio does not depend on whether the
client or the server was the bottleneck. The app logs as in production (JSON access line per
request at INFO, into a temporary file); `--app-log-level WARNING` turns the access log off.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.polling import wait_for_http
from tests.support.redis_support import cleanup_namespace
from tests.support.services import free_port

LOOP, HTTP = "uvloop", "httptools"  # what uvicorn[standard] picks by itself ("auto")
MESSAGES = (
    "32歳の女性です。独身で東京に住んでいます。",
    "仕事はエンジニアで、週末は料理をしています。",
    "子どもは二人ほしいと思っています。",
    "パートナーには穏やかで優しい人がいいです。",
    "趣味は山登りと読書です。",
)
HISTORY_ENTRIES = 20
TICK = os.sysconf("SC_CLK_TCK")
T = TypeVar("T")


@dataclass(frozen=True)
class Server:
    url: str
    pid: int


@contextmanager
def uvicorn_server(target: str, env: dict[str, str], ready_path: str) -> Iterator[Server]:
    """`target` under uvicorn on a free loopback port, one worker; the same flags for all."""
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1", "--loop", LOOP, "--http", HTTP, "--log-level", "warning",
           "--no-access-log"]  # fmt: skip
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(cmd, env={**os.environ, **env}, stderr=stderr)
        url = f"http://127.0.0.1:{port}"
        try:

            def log_tail() -> str:
                stderr.seek(0)
                return stderr.read().decode(errors="replace")[-4000:]

            wait_for_http(url + ready_path, within=30, process=proc, describe=log_tail)
            yield Server(url, proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14 and 15)


@dataclass
class Round:
    requests: int = 0
    seconds: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0

    def add(self, other: Round) -> None:
        self.requests += other.requests
        self.seconds += other.seconds
        self.server_cpu += other.server_cpu
        self.client_cpu += other.client_cpu

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def server_us(self) -> float:
        return self.server_cpu / self.requests * 1e6


async def hammer(
    http: aiohttp.ClientSession, server: Server, path: str, concurrency: int, duration: float
) -> Round:
    """`concurrency` workers, each in a request loop until `duration` seconds have passed."""
    loop = asyncio.get_running_loop()
    url = server.url + path
    deadline = loop.time() + duration
    counts = [0] * concurrency
    failures: list[int] = []

    async def worker(slot: int) -> None:
        while loop.time() < deadline:
            async with http.get(url) as response:
                await response.read()
                if response.status != 200:
                    failures.append(response.status)
            counts[slot] += 1

    server_before, client_before = cpu_seconds(server.pid), time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    seconds = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{url}: {len(failures)} failed requests, e.g. {failures[0]}")
    return Round(
        requests=sum(counts),
        seconds=seconds,
        server_cpu=cpu_seconds(server.pid) - server_before,
        client_cpu=time.process_time() - client_before,
    )


async def prepare_session(http: aiohttp.ClientSession, url: str) -> tuple[str, int]:
    """A session whose history holds ~HISTORY_ENTRIES entries; returns its id, body size."""
    async with http.post(f"{url}/api/sessions") as response:
        sid = (await response.json())["session_id"]
    for turn in range(HISTORY_ENTRIES):
        async with http.get(f"{url}/api/sessions/{sid}/status") as response:
            if len((await response.json())["conversation_history"]) >= HISTORY_ENTRIES:
                break
        body = {"message": MESSAGES[turn % len(MESSAGES)]}
        async with http.post(f"{url}/api/sessions/{sid}/messages", json=body) as response:
            if response.status != 200:
                raise SystemExit(f"could not fill the session: {response.status}")
    async with http.get(f"{url}/api/sessions/{sid}/status") as response:
        raw = await response.read()
    if len(json.loads(raw)["conversation_history"]) < HISTORY_ENTRIES:
        raise SystemExit("the session did not reach the history length")
    return sid, len(raw)


async def measure(
    hera: Server, bare: Server, args: argparse.Namespace
) -> tuple[Round, Round, int, int, int]:
    connector = aiohttp.TCPConnector(limit=args.concurrency + 4)
    async with aiohttp.ClientSession(connector=connector) as http:
        sid, hera_size = await prepare_session(http, hera.url)
        async with http.get(f"{hera.url}/api/sessions/{sid}/status") as response:
            entries = len((await response.json())["conversation_history"])
        async with http.get(f"{bare.url}/ping") as response:
            bare_size = len(await response.read())
        targets = {
            "hera": (hera, f"/api/sessions/{sid}/status"),
            "bare": (bare, "/ping"),
        }
        totals = {"hera": Round(), "bare": Round()}
        for server, path in targets.values():  # warm-up: connections, caches
            await hammer(http, server, path, args.concurrency, 1.0)
        for number in range(args.rounds):
            # Alternate which goes first, so a drift of the machine's speed cancels out.
            order = ["bare", "hera"] if number % 2 == 0 else ["hera", "bare"]
            for name in order:
                server, path = targets[name]
                got = await hammer(http, server, path, args.concurrency, args.duration)
                totals[name].add(got)
                print(
                    f"  round {number + 1} {name}: {got.rate:8.0f} req/s  "
                    f"server CPU {got.server_cpu / got.seconds:4.0%}  "
                    f"client CPU {got.client_cpu / got.seconds:4.0%}",
                    flush=True,
                )
    return totals["hera"], totals["bare"], entries, hera_size, bare_size


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """The client on uvloop too when installed (a cheaper client leaves more CPU to servers)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", choices=["file", "redis"], default="file")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--app-log-level", default="INFO")
    args = parser.parse_args()
    if not 1 <= args.concurrency <= 512 or not 0 < args.duration <= 60 or args.rounds > 20:
        raise SystemExit("keep it bounded: concurrency 1-512, duration <= 60 s, rounds <= 20")
    namespace = f"hera-bench-{os.getpid()}"
    with tempfile.TemporaryDirectory() as data:
        env = {
            "LLM_PROVIDER": "offline",
            "HERA_DATA_DIR": data,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": args.app_log_level,
        }
        if args.store == "redis":
            env.update(SESSION_TYPE="redis", REDIS_URL=args.redis_url, REDIS_NAMESPACE=namespace)
        print(
            f"store={args.store} uvicorn: 1 worker, --loop {LOOP} --http {HTTP}; "
            f"client: {args.concurrency} connections, {args.rounds} x {args.duration:g} s each; "
            f"app log level {args.app_log_level}; load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        try:
            with (
                uvicorn_server("app.main:app", env, "/api/health") as hera,
                uvicorn_server("bench._bare_app:app", {}, "/ping") as bare,
            ):
                hera_total, bare_total, entries, hera_size, bare_size = run_loop(
                    measure(hera, bare, args)
                )
        finally:
            if args.store == "redis":
                asyncio.run(cleanup_namespace(args.redis_url, namespace))
    ratio = hera_total.rate / bare_total.rate
    cpu_ratio = bare_total.server_us / hera_total.server_us
    print(f"bare GET /ping          : {bare_total.rate:8.0f} req/s  ({bare_size} B body, "
          f"{bare_total.server_us:.0f} us server CPU/request)")  # fmt: skip
    print(f"hera GET .../status     : {hera_total.rate:8.0f} req/s  ({hera_size} B body, "
          f"{entries} history entries, {hera_total.server_us:.0f} us server CPU/request)")  # fmt: skip
    print(f"ratio hera / bare       : {ratio:.2f}  (target >= 0.5)")
    print(f"server CPU/request ratio: {cpu_ratio:.2f}  (bare / hera; client-independent)")


if __name__ == "__main__":
    main()
