"""Whole journeys under load: 1 vs 2 uvicorn workers over Redis sessions and S3 blobs (moto).

N simulated people each run whole journeys back to back for a fixed time, the way the browser
frontend (`app/static/app.js`) does: create a session and read its status, six interview
messages (the profile is complete after the sixth), upload a photo, draw the partner and the
children (two), show the four images, complete the interview, read the family, then four family
messages (a greeting, a place, what to do there: the partner proposes; "yes": story and letter
are written). Every POST carries an Idempotency-Key, as the frontend's do. Each journey opens
its own connections (a new page visit), so with 2 workers its requests land on either.

The real Gemini adapters talk to a fake Gemini in its own process
(`_journey_gemini_proc.py`): 0.8 s per text call and 2 s per image call by default, answers
as long as a real model's (a 1024 px PNG of ~1.4 MB per portrait), each interview turn
extracting just what its message says. Both servers (`uvicorn app.main:app --workers 1`, and
`--workers 2`) run at once against one Redis (database 9, a namespace each, unlinked after)
and one moto server, and are driven in turn at each user count (order alternated), so a drift
of the shared machine's speed hits both alike.

For each run it reports journeys per minute (60 x users / mean journey time: the closed-loop
rate, Little's law), p50/p95 per route (route template, not ids), errors (any non-2xx,
exception or wrong answer; must be 0) and Hera's CPU seconds per journey: utime + stime from
/proc/<pid>/stat of the uvicorn master and all its descendants (the workers), over the whole
run (from before the first request to after the last journey ends) divided by the journeys.
It also reads the CPU of the other processes on the machine (Redis, moto, the fake, this
client, and whatever else from /proc/stat), so the knee -- the user count after which journeys
per minute stop rising -- can be tied to the two cores being busy.

    python bench/load_journeys.py [--users 20,40,80,160] [--duration 15] [--workers 1,2]
                                  [--text-latency 0.8] [--image-latency 2.0] [--stream]

`--stream` asks for the message routes as server-sent events, as the frontend does (the fake
then streams its answers: half the text latency to the first piece, then 48 characters every
50 ms). With the defaults the whole run (8 runs, warm-up, start-up) takes about 4-5 minutes;
`--users 40,80,120,160` looks closer at the knee.

The harness is an aiohttp client on uvloop in this process (as in the other scripts here),
not locust: locust is not installed, its users would share the same two cores under gevent
with no SSE reading of their own, and the servers, the fake, moto, the warm-up and the /proc
readings around each run would still need this script. The client's own CPU is measured and
printed: about 10 ms per journey, so it barely competes with what it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Coroutine, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import aiohttp
import redis
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._journey_gemini_proc import ACCEPT, EXTRACTED, LETTER, STORY, TRIPS
from tests.support.polling import wait_for_http, wait_until
from tests.support.redis_support import cleanup_namespace
from tests.support.servers import create_s3_bucket, start_moto_server
from tests.support.services import free_port

TICK = os.sysconf("SC_CLK_TCK")
TEXT_MODEL, IMAGE_MODEL = "bench-text-model", "bench-image-model"
BUCKET = "hera-bench-journeys"
INTERVIEW = tuple(EXTRACTED)  # the six messages, in order; the sixth completes the profile
FAMILY = ("こんにちは！みんなで旅行に行きたいね。", *TRIPS, ACCEPT)
CHILDREN = 2
REQUEST_TIMEOUT = 120.0
RUN_GRACE = 180.0  # the longest a run may take past its duration (journeys finishing)
PNG_MAGIC, JPEG_MAGIC = b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"
T = TypeVar("T")

# Route templates, in journey order (the agreeing family turn, which also writes the story
# and the letter, is reported apart from the other family turns).
ROUTES = (
    "POST /api/sessions",
    "GET  /api/sessions/{id}/status",
    "POST /api/sessions/{id}/messages",
    "POST /api/sessions/{id}/photos/user",
    "POST /api/sessions/{id}/generate-image",
    "POST /api/sessions/{id}/generate-child-image",
    "GET  /api/sessions/{id}/photos/{name}",
    "POST /api/sessions/{id}/complete",
    "GET  /api/sessions/{id}/family/status",
    "POST /api/sessions/{id}/family/messages",
    "POST /api/sessions/{id}/family/messages (agreeing: story+letter)",
)


# ------------------------------------------------------------------------------ /proc
def proc_cpu(pid: int) -> float | None:
    """utime + stime of a process (all its threads), in seconds; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def process_tree(pid: int) -> list[int]:
    """The process and all its descendants (from /proc/<pid>/task/<tid>/children)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for tid in tasks:
            with suppress(OSError):
                queue += [
                    int(c) for c in Path(f"/proc/{current}/task/{tid}/children").read_text().split()
                ]
    return found


def worker_pids(master: int) -> list[int]:
    """uvicorn's workers (its spawned children), or the master itself when it has none."""
    workers = []
    for pid in process_tree(master)[1:]:
        with suppress(OSError):
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                workers.append(pid)
    return workers or [master]


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine so far (every core; /proc/stat's first line)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return (user + nice + system + irq + softirq + steal) / TICK


def all_processes() -> dict[int, tuple[str, float]]:
    """Every process's name and CPU seconds (to name what else keeps the cores busy)."""
    found = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with suppress(OSError, IndexError, ValueError):
                text = Path(entry.path, "stat").read_text()
                name = text[text.index("(") + 1 : text.rindex(")")]
                fields = text.rsplit(")", 1)[1].split()
                found[int(entry.name)] = (name, (int(fields[11]) + int(fields[12])) / TICK)
    return found


def client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Snapshot:
    at: float
    hera: dict[int, float]  # pid -> CPU seconds
    others: dict[str, float]  # "redis", "moto", "fake gemini", "client" -> CPU seconds
    machine: float
    everyone: dict[int, tuple[str, float]]  # every process on the machine: name, CPU seconds

    @property
    def hera_total(self) -> float:
        return sum(self.hera.values())


@dataclass
class Watched:
    """The pids whose CPU is read: one Hera server's tree, and the helpers on the machine."""

    hera_master: int
    helpers: dict[str, int]

    def snapshot(self) -> Snapshot:
        tree = process_tree(self.hera_master)
        hera = {pid: cpu for pid in tree if (cpu := proc_cpu(pid)) is not None}
        others = {name: proc_cpu(pid) or 0.0 for name, pid in self.helpers.items()}
        others["client"] = client_cpu()
        return Snapshot(time.monotonic(), hera, others, machine_busy(), all_processes())


# ------------------------------------------------------------------------------ processes
@dataclass
class Server:
    workers: int
    url: str
    process: subprocess.Popen[bytes]
    namespace: str
    log: IO[bytes]

    def log_tail(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]


@contextmanager
def hera_server(workers: int, env: dict[str, str], redis_url: str) -> Iterator[Server]:
    """`uvicorn app.main:app --workers N` on a loopback port, its own Redis namespace."""
    port = free_port()
    namespace = f"hera-bench-journeys-{os.getpid()}-w{workers}"
    cmd = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
           "--port", str(port), "--workers", str(workers), "--log-level", "warning",
           "--no-access-log"]  # fmt: skip
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
    full_env = {**os.environ, **env, "REDIS_NAMESPACE": namespace}
    process = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(workers, f"http://127.0.0.1:{port}", process, namespace, log)
    try:
        wait_for_http(
            f"{server.url}/api/ready", within=60, process=process, describe=server.log_tail
        )
        expected = 1 if workers == 1 else workers + 1  # uvicorn's supervisor + N workers
        wait_until(
            lambda: len(process_tree(process.pid)) >= expected,
            within=30,
            what=f"{workers} workers started",
        )
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()
        asyncio.run(cleanup_namespace(redis_url, namespace))


@contextmanager
def fake_gemini(args: argparse.Namespace) -> Iterator[tuple[str, int, dict[str, int]]]:
    """The fake in its own process: yields its URL, its pid and (once closed) calls by kind."""
    cmd = [sys.executable, str(Path(__file__).with_name("_journey_gemini_proc.py")),
           "--text-model", TEXT_MODEL, "--image-model", IMAGE_MODEL,
           "--text-latency", str(args.text_latency), "--image-latency", str(args.image_latency),
           "--image-px", str(args.image_px), *(["--stream"] if args.stream else [])]  # fmt: skip
    process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdin is not None and process.stdout is not None
    calls: dict[str, int] = {}
    try:
        yield process.stdout.readline().strip(), process.pid, calls
    finally:
        process.stdin.close()
        calls.update(json.loads(process.stdout.readline() or "{}"))
        process.wait(timeout=10)


def redis_pid(url: str) -> int | None:
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        pid = int(client.info("server")["process_id"])
    finally:
        client.close()
    return pid if Path(f"/proc/{pid}").exists() else None  # not ours to read if elsewhere


def user_photo(width: int) -> bytes:
    """A phone-like JPEG (gradient plus noise), width x 3/4 width."""
    height = width * 3 // 4
    noise = Image.effect_noise((width, height), 16)
    grad = Image.linear_gradient("L").resize((width, height))
    channels = [Image.blend(grad.rotate(angle).resize((width, height)), noise, 0.3)
                for angle in (0, 90, 180)]  # fmt: skip
    out = io.BytesIO()
    Image.merge("RGB", channels).save(out, "JPEG", quality=90)
    return out.getvalue()


# ------------------------------------------------------------------------------ journeys
JOURNEYS: Counter[str] = Counter()  # journeys begun, warm-up included (model calls / journey)


class JourneyFailed(Exception):
    pass


@dataclass
class Record:
    """What one run's users saw."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    journeys: list[float] = field(default_factory=list)  # durations of completed journeys
    failed: int = 0

    def error(self, route: str, what: str) -> JourneyFailed:
        self.errors[route] += 1
        if len(self.examples) < 5:
            self.examples.append(f"{route}: {what}")
        return JourneyFailed(what)


async def read_events(response: aiohttp.ClientResponse) -> Any:
    """Server-sent events until `done` (its data is the JSON answer); `error` fails."""
    kind, data = "message", []
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if line.startswith(":"):
            continue
        if line:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                kind = value
            elif name == "data":
                data.append(value)
            continue
        if data and kind == "done":
            return json.loads("\n".join(data))
        if data and kind == "error":
            raise ValueError(f"error event: {data[0][:200]}")
        kind, data = "message", []
    raise ValueError("the stream ended without a done event")


@dataclass
class Journey:
    url: str
    record: Record
    photo: bytes
    stream: bool

    async def call(
        self,
        http: aiohttp.ClientSession,
        route: str,
        method: str,
        path: str,
        *,
        expect: int = 200,
        body: Any = None,
        form: aiohttp.FormData | None = None,
        sse: bool = False,
        raw: bool = False,
    ) -> Any:
        headers = {"Idempotency-Key": uuid.uuid4().hex} if method == "POST" else {}
        if sse:
            headers["Accept"] = "text/event-stream"
        started = time.perf_counter()
        try:
            async with http.request(
                method, self.url + path, json=body, data=form, headers=headers
            ) as response:
                if response.status != expect:
                    text = (await response.text())[:200]
                    raise self.record.error(route, f"HTTP {response.status}: {text}")
                if sse:
                    kind = response.headers.get("content-type", "")
                    if not kind.startswith("text/event-stream"):
                        raise self.record.error(route, f"not an event stream: {kind}")
                    answer = await read_events(response)
                elif raw:
                    answer = (response.headers.get("content-type", ""), await response.read())
                else:
                    answer = await response.json()
        except JourneyFailed:
            raise
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise self.record.error(route, repr(exc)) from exc
        self.record.latencies[route].append(time.perf_counter() - started)
        return answer

    def check(self, ok: bool, route: str, what: str) -> None:
        if not ok:
            raise self.record.error(route, f"wrong answer: {what}")

    async def image(self, http: aiohttp.ClientSession, url: str, magic: bytes) -> None:
        route = ROUTES[6]
        kind, data = await self.call(http, route, "GET", url, raw=True)
        self.check(kind.startswith("image/") and data.startswith(magic), route, f"{kind}")

    async def run(self) -> None:
        JOURNEYS["begun"] += 1
        connector = aiohttp.TCPConnector(limit=6)  # a browser's per-host limit
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            await self._run(http)

    async def _run(self, http: aiohttp.ClientSession) -> None:
        created = await self.call(http, ROUTES[0], "POST", "/api/sessions", expect=201)
        base = f"/api/sessions/{created['session_id']}"
        await self.call(http, ROUTES[1], "GET", f"{base}/status")

        answer: dict[str, Any] = {}
        for message in INTERVIEW:
            answer = await self.call(
                http, ROUTES[2], "POST", f"{base}/messages", body={"message": message},
                sse=self.stream,
            )  # fmt: skip
        self.check(answer.get("profile_complete") is True, ROUTES[2], "profile not complete")

        form = aiohttp.FormData()
        form.add_field("file", self.photo, filename="me.jpg", content_type="image/jpeg")
        upload = await self.call(http, ROUTES[3], "POST", f"{base}/photos/user", form=form)
        await self.image(http, upload["image_url"], JPEG_MAGIC)
        partner = await self.call(
            http, ROUTES[4], "POST", f"{base}/generate-image", body={"target": "partner"}
        )
        self.check(partner["meta"].get("engine") == "gemini", ROUTES[4], str(partner["meta"]))
        await self.image(http, partner["image_url"], PNG_MAGIC)
        children = await self.call(http, ROUTES[5], "POST", f"{base}/generate-child-image")
        self.check(len(children["images"]) == CHILDREN, ROUTES[5], "not one image per child")
        for child in children["images"]:
            await self.image(http, child["image_url"], PNG_MAGIC)

        await self.call(http, ROUTES[7], "POST", f"{base}/complete")
        family = await self.call(http, ROUTES[8], "GET", f"{base}/family/status")
        self.check(len(family["members"]) == 1 + CHILDREN, ROUTES[8], "wrong family")
        for message in FAMILY:
            route = ROUTES[10] if message == ACCEPT else ROUTES[9]
            answer = await self.call(
                http, route, "POST", f"{base}/family/messages", body={"message": message},
                sse=self.stream,
            )  # fmt: skip
        plan = answer.get("family_plan") or {}
        self.check(answer.get("conversation_complete") is True, ROUTES[10], "no agreed plan")
        # The fake's texts, not the fallback written when a story or letter call fails.
        self.check(plan.get("story") == STORY, ROUTES[10], "the story is not the model's")
        self.check(plan.get("letter") == LETTER, ROUTES[10], "the letter is not the model's")


async def drive(
    url: str, users: int, duration: float, photo: bytes, stream: bool, watched: Watched
) -> tuple[Record, list[Snapshot]]:
    """`users` people running journeys back to back until `duration` has passed (a journey
    under way then is finished). Starts are spread over the first seconds, so the people are
    not in step. Snapshots: start, all started, the deadline, the end."""
    record = Record()
    loop = asyncio.get_running_loop()
    ramp = min(5.0, duration / 4)
    snapshots = [watched.snapshot()]
    started = loop.time()
    deadline = started + duration

    async def person(index: int) -> None:
        await asyncio.sleep(ramp * index / users + random.uniform(0, 0.05))
        while loop.time() < deadline:
            began = loop.time()
            try:
                await Journey(url, record, photo, stream).run()
            except JourneyFailed:
                record.failed += 1
                await asyncio.sleep(0.5)  # not a tight loop against a failing server
                continue
            record.journeys.append(loop.time() - began)

    async def mark(at: float) -> None:
        await asyncio.sleep(max(0.0, at - loop.time()))
        snapshots.append(watched.snapshot())

    marks = asyncio.gather(mark(started + ramp + 0.1), mark(deadline))
    async with asyncio.timeout(duration + RUN_GRACE):
        await asyncio.gather(*(person(i) for i in range(users)))
    await marks
    snapshots.append(watched.snapshot())
    return record, snapshots


async def warm_up(servers: list[Server], journeys: int, photo: bytes, stream: bool) -> None:
    """Journeys on every server at once until every worker has done a fair part of them
    (imports, pools and caches); the kernel, not the client, picks a connection's worker."""
    baseline = {pid: proc_cpu(pid) or 0.0 for s in servers for pid in worker_pids(s.process.pid)}
    cold = list(servers)
    for _ in range(3):
        record = Record()
        runs = [Journey(s.url, record, photo, stream).run() for s in cold for _ in range(journeys)]
        results = await asyncio.gather(*runs, return_exceptions=True)
        if record.errors or any(isinstance(r, BaseException) for r in results):
            raise SystemExit(f"warm-up failed: {record.examples or results}")
        grown = {s.workers: [(proc_cpu(p) or 0.0) - baseline[p] for p in worker_pids(s.process.pid)]
                 for s in cold}  # fmt: skip
        cold = [s for s in cold if min(grown[s.workers]) < 0.3 * statistics.fmean(grown[s.workers])]
        if not cold:
            return
    print(f"  (warm-up: a worker of {[s.workers for s in cold]} stayed nearly idle)", flush=True)


def idle_cpu(servers: list[Server], seconds: float = 3.0) -> dict[int, float]:
    """CPU seconds per second of each idle server tree (supervisor pings, timers)."""
    trees = {s.workers: process_tree(s.process.pid) for s in servers}
    before = {w: sum(proc_cpu(p) or 0.0 for p in pids) for w, pids in trees.items()}
    time.sleep(seconds)
    return {w: (sum(proc_cpu(p) or 0.0 for p in pids) - before[w]) / seconds
            for w, pids in trees.items()}  # fmt: skip


# ------------------------------------------------------------------------------ results
@dataclass
class Result:
    workers: int
    users: int
    record: Record
    snapshots: list[Snapshot]
    changed_pids: bool
    workers_pids: list[int]
    helper_pids: list[int]

    @property
    def journeys(self) -> int:
        return len(self.record.journeys)

    @property
    def errors(self) -> int:
        return sum(self.record.errors.values())

    @property
    def mean_journey(self) -> float:
        return statistics.fmean(self.record.journeys) if self.record.journeys else float("nan")

    @property
    def per_minute(self) -> float:
        return 60 * self.users / self.mean_journey

    def hera_cpu(self, first: int = 0, last: int = -1) -> float:
        return self.snapshots[last].hera_total - self.snapshots[first].hera_total

    @property
    def cpu_per_journey(self) -> float:
        return self.hera_cpu() / self.journeys if self.journeys else float("nan")

    def steady(self) -> dict[str, float]:
        """Cores busy between 'all started' and the deadline: Hera, helpers, whole machine."""
        a, b = self.snapshots[1], self.snapshots[2]
        seconds = b.at - a.at
        used = {"hera": (b.hera_total - a.hera_total) / seconds}
        for name in a.others:
            used[name] = (b.others[name] - a.others[name]) / seconds
        used["machine"] = (b.machine - a.machine) / seconds
        used["other"] = used["machine"] - sum(v for k, v in used.items() if k != "machine")
        return used

    def other_processes(self, watched: set[int]) -> str:
        """The busiest processes outside this benchmark while all users ran (cores; one
        started meanwhile counts from its start, one that ended is not seen)."""
        a, b = self.snapshots[1], self.snapshots[2]
        seconds = b.at - a.at
        busy = sorted(
            ((cpu - a.everyone.get(pid, (name, 0.0))[1]) / seconds, f"{name}[{pid}]")
            for pid, (name, cpu) in b.everyone.items()
            if pid not in watched and pid != os.getpid()
        )[::-1]
        return ", ".join(f"{label} {cores:.2f}" for cores, label in busy[:3] if cores >= 0.02)

    def worker_split(self) -> str:
        """Each worker's share of the run's Hera CPU (the rest: supervisor, resource tracker)."""
        a, b = self.snapshots[0], self.snapshots[-1]
        used = {pid: b.hera[pid] - a.hera.get(pid, 0.0) for pid in b.hera}
        total = sum(used.values()) or 1.0
        shares = sorted((used.get(pid, 0.0) / total for pid in self.workers_pids), reverse=True)
        rest = 1 - sum(shares)
        return "/".join(f"{s:.0%}" for s in shares) + (f" +{rest:.0%}" if len(shares) > 1 else "")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def print_run(result: Result) -> None:
    used = result.steady()
    names = ("redis", "moto", "fake gemini", "client")
    helpers = " ".join(f"{k} {used[k]:.2f}" for k in names if k in used)
    print(
        f"  {result.workers}w {result.users:3d} users: {result.journeys:3d} journeys "
        f"({result.record.failed} failed, {result.errors} errors), journey "
        f"{result.mean_journey:5.1f} s, {result.per_minute:6.1f} journeys/min, Hera CPU "
        f"{result.cpu_per_journey:.3f} s/journey (split {result.worker_split()}); cores busy: "
        f"Hera {used['hera']:.2f}, {helpers}, other {used['other']:.2f}, machine "
        f"{used['machine']:.2f}/{os.cpu_count()}{'; WORKER PIDS CHANGED' if result.changed_pids else ''}",
        flush=True,
    )
    if used["other"] >= 0.1:
        watched = set(result.snapshots[0].hera) | set(result.helper_pids)
        named = result.other_processes(watched) or "none still running"
        print(f"      other (busiest outside the benchmark): {named}", flush=True)
    for example in result.record.examples:
        print(f"      error: {example}", flush=True)


def print_routes(users: int, results: list[Result]) -> None:
    head = "".join(f" | {r.workers}w p50 / p95 ms  (n)" for r in results)
    print(f"\nper route at {users} users{head}")
    for route in ROUTES:
        cells = []
        for r in results:
            values = r.record.latencies.get(route) or []
            if values:
                p50, p95 = percentile(values, 0.5) * 1e3, percentile(values, 0.95) * 1e3
                cells.append(f" | {p50:6.0f} / {p95:6.0f} ({len(values):4d})")
            else:
                cells.append(f" | {'-':>22}")
        print(f"  {route:<66}{''.join(cells)}")


def knee(results: list[Result]) -> str:
    """Where journeys/min stop rising with users: the first step up in users that turns less
    than 70% of its proportional rise into journeys/min (the people then mostly wait on CPU)."""
    ordered = sorted(results, key=lambda r: r.users)
    for before, after in itertools.pairwise(ordered):
        gain = (after.per_minute / before.per_minute) / (after.users / before.users)
        if gain < 0.7:
            b, a = before.steady(), after.steady()
            return (
                f"knee between {before.users} and {after.users} users: {before.per_minute:.1f} -> "
                f"{after.per_minute:.1f} journeys/min ({gain:.0%} of the proportional rise); "
                f"machine {b['machine']:.2f} -> {a['machine']:.2f} of {os.cpu_count()} cores "
                f"busy (Hera {b['hera']:.2f} -> {a['hera']:.2f})"
            )
    top = ordered[-1]
    used = top.steady()
    return (
        f"no knee up to {top.users} users ({top.per_minute:.1f} journeys/min; machine "
        f"{used['machine']:.2f} of {os.cpu_count()} cores busy, Hera {used['hera']:.2f})"
    )


def summary(
    results: list[Result], worker_counts: list[int], calls: dict[str, int], journeys_in_all: int
) -> None:
    print(
        "\nsummary: journeys/min | Hera CPU s/journey | cores busy while all users ran: Hera, "
        f"machine (of {os.cpu_count()})"
    )
    users = sorted({r.users for r in results})
    print("  users " + "".join(f"| {w}w: jpm  journey CPU/j  Hera  mach " for w in worker_counts))
    for count in users:
        cells = []
        for w in worker_counts:
            r = next(r for r in results if r.users == count and r.workers == w)
            used = r.steady()
            cells.append(
                f"| {r.per_minute:7.1f} {r.mean_journey:6.1f}s {r.cpu_per_journey:6.3f} "
                f"{used['hera']:5.2f} "
                f"{used['machine']:5.2f} "
            )
        print(f"  {count:5d} " + "".join(cells))
    by_workers = {w: [r for r in results if r.workers == w] for w in worker_counts}
    for w, runs in by_workers.items():
        journeys = sum(r.journeys for r in runs)
        cpu = sum(r.hera_cpu() for r in runs)
        errors = sum(r.errors for r in runs)
        print(
            f"  {w} worker(s): {journeys} journeys, {errors} errors, Hera CPU "
            f"{cpu / journeys:.3f} s/journey over all runs; {knee(runs)}"
        )
    if len(worker_counts) >= 2:
        one, two = worker_counts[0], worker_counts[1]
        pairs = []
        for r1 in by_workers[one]:
            r2 = next(r for r in by_workers[two] if r.users == r1.users)
            pairs.append(
                f"{r1.users} users: CPU/journey {r2.cpu_per_journey / r1.cpu_per_journey:.2f}x, "
                f"journeys/min {r2.per_minute / r1.per_minute:.2f}x"
            )
        pooled = [
            sum(r.hera_cpu() for r in by_workers[w]) / sum(r.journeys for r in by_workers[w])
            for w in (one, two)
        ]
        print(f"  {two}w vs {one}w: " + "; ".join(pairs))
        print(
            f"  CPU per journey {two}w / {one}w over all runs: {pooled[1] / pooled[0]:.2f}x "
            "(target within 10%: 0.90-1.10)"
        )
    per_journey = ", ".join(
        f"{kind} {count / max(1, journeys_in_all):.2f}" for kind, count in sorted(calls.items())
    )
    print(
        f"  model calls per journey ({journeys_in_all} in all, warm-up included; expected "
        f"family 4, image 3, interview 6, letter 1, story 1): {per_journey}"
    )
    print(f"  errors in all: {sum(r.errors for r in results)} (must be 0)")


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """The client on uvloop when installed (a cheaper client leaves more CPU to the servers)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--users", type=int_list, default=[20, 40, 80, 160],
                        help="comma-separated user counts (default 20,40,80,160)")  # fmt: skip
    parser.add_argument("--duration", type=float, default=15.0,
                        help="seconds each run starts journeys (default 15)")  # fmt: skip
    parser.add_argument("--workers", type=int_list, default=[1, 2])
    parser.add_argument("--text-latency", type=float, default=0.8)
    parser.add_argument("--image-latency", type=float, default=2.0)
    parser.add_argument("--image-px", type=int, default=1024, help="generated portraits' side")
    parser.add_argument("--photo-px", type=int, default=1280, help="uploaded photo's width")
    parser.add_argument("--stream", action="store_true", help="message routes as SSE")
    parser.add_argument("--warm-up", type=int, default=8, help="journeys per server first")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    args = parser.parse_args()
    if (
        not args.users
        or not all(1 <= u <= 200 for u in args.users)
        or not 5 <= args.duration <= 120
        or not all(1 <= w <= 4 for w in args.workers)
        or len(args.users) * len(args.workers) > 12
    ):
        raise SystemExit("keep it bounded: users 1-200, duration 5-120 s, workers 1-4, <= 12 runs")

    photo = user_photo(args.photo_px)
    print(
        f"load_journeys: workers {args.workers}, users {args.users}, {args.duration:g} s per "
        f"run; fake Gemini {args.text_latency:g} s per text call, {args.image_latency:g} s per "
        f"image call ({args.image_px} px PNG), photo {len(photo) // 1024} KB JPEG; "
        f"{'streamed' if args.stream else 'JSON'} message turns; Redis sessions + S3 (moto) "
        f"blobs; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}",
        flush=True,
    )
    results: list[Result] = []
    with ExitStack() as stack:
        moto = start_moto_server()
        stack.callback(moto.stop)
        create_s3_bucket(moto.url, BUCKET)
        base_url, fake_pid, calls = stack.enter_context(fake_gemini(args))
        env = {
            "SESSION_TYPE": "redis",
            "REDIS_URL": args.redis_url,
            **{key.upper(): value for key, value in moto.hera_settings(BUCKET).items()},
            "LLM_PROVIDER": "gemini",
            "GEMINI_API_KEY": "x",
            "GEMINI_BASE_URL": base_url,
            "GEMINI_MODEL": TEXT_MODEL,
            "GEMINI_IMAGE_MODEL": IMAGE_MODEL,
            "RATE_LIMITS": "off",
            "LOG_LEVEL": "WARNING",
        }
        servers = {
            w: stack.enter_context(hera_server(w, env, args.redis_url)) for w in args.workers
        }
        helpers = {"moto": moto.process.pid, "fake gemini": fake_pid}
        if (pid := redis_pid(args.redis_url)) is not None:
            helpers["redis"] = pid  # shared with whatever else uses this Redis
        started = time.monotonic()
        run_loop(warm_up(list(servers.values()), args.warm_up, photo, args.stream))
        idle = idle_cpu(list(servers.values()))
        print(
            f"warm-up: {time.monotonic() - started:.1f} s; idle Hera CPU: "
            + ", ".join(f"{w}w {v * 1e3:.1f} ms/s" for w, v in idle.items()),
            flush=True,
        )
        for number, users in enumerate(args.users):
            order = args.workers if number % 2 == 0 else args.workers[::-1]
            for workers in order:
                server = servers[workers]
                watched = Watched(server.process.pid, helpers)
                record, snapshots = run_loop(
                    drive(server.url, users, args.duration, photo, args.stream, watched)
                )
                changed = set(snapshots[0].hera) != set(snapshots[-1].hera)
                pids = worker_pids(server.process.pid)
                result = Result(
                    workers, users, record, snapshots, changed, pids, list(helpers.values())
                )
                results.append(result)
                print_run(result)
            print_routes(users, [r for r in results if r.users == users])
            print(flush=True)
    summary(results, args.workers, calls, sum(JOURNEYS.values()))
    print(f"load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
