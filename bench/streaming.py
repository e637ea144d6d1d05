"""Streamed interview turns (server-sent events): first delta, 100 at once, memory per stream.

The app runs under uvicorn in a child process (one worker, real Gemini adapter, rate limits
off, file sessions in a temporary directory or Redis database 9 in a namespace of its own).
The fake Gemini runs in THIS process, on its own event loop in a thread, so the times at which
it sent its pieces (`FakeGemini.pieces`, time.monotonic) share the client's clock. It streams
a realistic interview answer, `{"reply": <~200 Japanese characters>, "extracted": {...}}`, as
a model writes: 300 ms to the first piece, then 8-character pieces at 40 per second.

1. Time to first delta: for a single streaming turn, (a) when the fake sent the first piece
   after which the answer's reply is not empty, (b) when the client read the first `delta`
   event, (c) when it read `done`. Printed: (b)-(a) in ms (target <= 150 ms) and (b)/(c),
   both counted from the request's start (target <= 0.4x).
2. 100 concurrent streaming turns (100 sessions created first, each sends one message at
   once and reads its stream to `done`) vs one: wall-time ratio (target <= 1.5x); every
   stream must answer 200, end with `done`, and its deltas must add up to the reply. Also
   printed: the server's CPU time in the burst, and when the last turn's model request
   reached the fake (the server work each turn does before its model call, done 100 times
   over before the last stream can start).
3. Server memory per open stream: N turns (default 50) are held open by the fake, first
   before its first piece ("waiting"), then before its last piece, when the whole reply has
   been sent and read ("reply sent"). (VmRSS of the uvicorn child - idle) / N, for a short
   (100 characters) and a long (5000 characters) streamed reply, and for reference a JSON
   turn (no `Accept: text/event-stream`) waiting for its model; each on a fresh server so
   that none reuses memory another freed. The long/short ratio should stay near 1.

The machine is shared and noisy: everything is repeated for `--rounds` rounds and printed as
ratios, with best and median.

    python bench/streaming.py [--store file|redis] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jiter
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.status_throughput import Server, cpu_seconds, uvicorn_server
from bench.stream_memory import status_kb
from tests.support.fake_gemini import (
    FakeGemini,
    RecordedRequest,
    _stream_chunks,
    json_text_body,
)
from tests.support.redis_support import cleanup_namespace

MESSAGE = "32歳の女性です。独身で東京に住んでいます。仕事はエンジニアで、週末は料理をしています。"
REPLY = (
    "ありがとうございます。東京で独身、32歳の女性でいらっしゃるのですね。エンジニアとして"
    "お仕事をされながら、週末にはお料理を楽しまれているとのこと、とても素敵な毎日だと感じます。"
    "では次に、ご自身の性格について教えてください。新しいことに挑戦するのはお好きですか、"
    "それとも慣れ親しんだことを大切にされる方でしょうか。ご友人と過ごす時間と一人の時間では、"
    "どちらが心地よいと感じますか。思いつくままで構いません。"
)
EXTRACTED = {"age": 32, "gender": "女性", "relationship_status": "single", "location": "東京"}
FIRST_DELAY, INTERVAL, PIECE_CHARS = 0.3, 0.025, 8  # 300 ms, then 40 pieces/s
SESSIONS = 100
SHORT_CHARS, LONG_CHARS = 100, 5000
HOLD_INTERVAL, HOLD_PIECE_CHARS = 0.005, 32  # memory test: fast pace, bigger pieces
WAIT_SECONDS = 60.0


def reply_of(chars: int) -> str:
    return (REPLY * (chars // len(REPLY) + 1))[:chars]


def answer(reply: str) -> Callable[[dict[str, Any]], tuple[int, Any]]:
    body = json_text_body({"reply": reply, "extracted": EXTRACTED})
    return lambda _request: (200, body)


# ------------------------------------------------------------------------------ fake
class GatedFake(FakeGemini):
    """The fake Gemini, able to hold every stream before its first piece and before its last
    (the whole reply sent), so that N streams stay open at a known point. Unarmed, it streams
    exactly as `FakeGemini` does."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.first_gate = asyncio.Event()
        self.last_gate = asyncio.Event()
        self.at_first = self.at_last = 0  # streams waiting at each gate (fake's loop writes)
        self.arrivals: list[float] = []  # time.monotonic() of every model request received

    def _on_loop(self, action: Callable[[], object]) -> None:
        async def run() -> None:
            action()

        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(run(), self._loop).result(5)

    def arm(self) -> None:
        self._on_loop(lambda: (self.first_gate.clear(), self.last_gate.clear()))
        self.at_first = self.at_last = 0
        self.armed = True

    def open(self, gate: asyncio.Event) -> None:
        self._on_loop(gate.set)

    def disarm(self) -> None:
        self.armed = False
        self.open(self.first_gate)
        self.open(self.last_gate)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.arrivals.append(time.monotonic())
        return await super()._handle(request)

    async def _answer(self, request: web.Request, record: RecordedRequest) -> web.StreamResponse:
        if self.armed and not record.streamed:  # a JSON call is held until the first gate
            self.at_first += 1
            await self.first_gate.wait()
        return await super()._answer(request, record)

    async def _stream(self, request: web.Request, answer: dict[str, Any]) -> web.StreamResponse:
        if not self.armed:
            return await super()._stream(request, answer)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        chunks = _stream_chunks(answer, max(1, self.stream_piece_chars))
        self.at_first += 1
        await self.first_gate.wait()
        for index, (chunk, text) in enumerate(chunks):
            if index:
                await asyncio.sleep(self.stream_interval)
            if index and index == len(chunks) - 1:
                self.at_last += 1
                await self.last_gate.wait()
            data = json.dumps(chunk, ensure_ascii=False)
            await response.write(f"data: {data}\r\n\r\n".encode())
            with self._cond:
                self._pieces.append((time.monotonic(), text))
        await response.write_eof()
        return response


def pace(fake: FakeGemini, first_delay: float, interval: float, piece_chars: int) -> None:
    fake.stream_first_delay, fake.stream_interval = first_delay, interval
    fake.stream_piece_chars = piece_chars


def first_reply_piece(pieces: list[tuple[float, str]]) -> float:
    """When the first piece was sent after which the answer's reply holds text."""
    written = ""
    for sent, text in pieces:
        written += text
        try:
            partial = jiter.from_json(written.encode(), partial_mode="trailing-strings")
        except ValueError:
            continue
        if isinstance(partial, dict) and str(partial.get("reply") or "").strip():
            return sent
    raise SystemExit("no piece of the fake's answer held reply text")


# ------------------------------------------------------------------------------ server
@contextmanager
def hera(fake_url: str, store: str, redis_url: str, tag: str) -> Iterator[Server]:
    """A Hera server (uvicorn child, one worker) on the Gemini brains against the fake."""
    namespace = f"hera-bench-streaming-{os.getpid()}-{tag}"
    with tempfile.TemporaryDirectory() as data:
        env = {
            "LLM_PROVIDER": "gemini",
            "GEMINI_API_KEY": "bench-key",
            "GEMINI_BASE_URL": fake_url,
            "HERA_DATA_DIR": data,
            "RATE_LIMITS": "off",
            "LOG_LEVEL": "WARNING",
        }
        if store == "redis":
            env.update(REDIS_URL=redis_url, REDIS_NAMESPACE=namespace)
        try:
            with uvicorn_server("app.main:app", env, "/api/health") as server:
                yield server
        finally:
            if store == "redis":
                asyncio.run(cleanup_namespace(redis_url, namespace))


# ------------------------------------------------------------------------------ client
@dataclass
class Streamed:
    """One streamed turn as the client saw it (time.monotonic throughout)."""

    started: float = 0.0
    status: int = 0
    first_delta: float | None = None
    done: float | None = None
    text: str = ""  # the deltas' text, joined
    body: dict[str, Any] | None = None
    events: dict[str, int] = field(default_factory=dict)
    last_event: str = ""


async def new_sessions(http: aiohttp.ClientSession, url: str, count: int) -> list[str]:
    async def one() -> str:
        async with http.post(f"{url}/api/sessions") as response:
            if response.status != 201 and response.status != 200:
                raise SystemExit(f"POST /api/sessions: HTTP {response.status}")
            return str((await response.json())["session_id"])

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def stream_turn(
    http: aiohttp.ClientSession, url: str, sid: str, seen: Streamed | None = None
) -> Streamed:
    """Send one message with `Accept: text/event-stream`; read the events to the end."""
    seen = seen or Streamed()
    seen.started = time.monotonic()
    async with http.post(
        f"{url}/api/sessions/{sid}/messages",
        json={"message": MESSAGE},
        headers={"Accept": "text/event-stream"},
    ) as response:
        seen.status = response.status
        if response.status != 200:
            await response.read()
            return seen
        kind = ""
        async for raw in response.content:
            line = raw.rstrip(b"\r\n")
            if line.startswith(b"event:"):
                kind = line[6:].strip().decode()
                now = time.monotonic()
                if kind == "delta" and seen.first_delta is None:
                    seen.first_delta = now
                elif kind == "done":
                    seen.done = now
                seen.events[kind] = seen.events.get(kind, 0) + 1
                seen.last_event = kind
            elif line.startswith(b"data:"):
                data = json.loads(line[5:].strip())
                if kind == "delta":
                    seen.text += data["text"]
                elif kind in ("done", "error"):
                    seen.body = data
            elif not line:
                kind = ""
    return seen


def check(turns: list[Streamed], reply: str) -> tuple[int, int, int]:
    """How many answered 200, ended with `done`, and streamed exactly the reply."""
    ok = sum(t.status == 200 for t in turns)
    done = sum(t.last_event == "done" and t.done is not None for t in turns)
    exact = sum(t.text == reply and (t.body or {}).get("reply") == reply for t in turns)
    return ok, done, exact


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def client(limit: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit),
        timeout=aiohttp.ClientTimeout(total=WAIT_SECONDS),
    )


# ------------------------------------------------------------------------------ 1 and 2
@dataclass
class FirstDelta:
    lag_ms: float  # (b) - (a)
    first_ms: float  # (b) - request start
    done_ms: float  # (c) - request start
    arrival_ms: float  # when the fake received the model request - request start

    @property
    def fraction(self) -> float:
        return self.first_ms / self.done_ms


@dataclass
class Burst:
    single: float
    wall: float
    server_cpu: float
    client_cpu: float
    first_delta_ms: float  # median over the burst's streams, from the burst's start
    last_arrival_ms: float  # when the fake received the burst's last model request

    @property
    def ratio(self) -> float:
        return self.wall / self.single


async def single_turn(http: aiohttp.ClientSession, url: str, fake: GatedFake) -> FirstDelta:
    (sid,) = await new_sessions(http, url, 1)
    before, arrived = len(fake.pieces), len(fake.arrivals)
    seen = await stream_turn(http, url, sid)
    if check([seen], REPLY) != (1, 1, 1) or seen.first_delta is None or seen.done is None:
        raise SystemExit(f"the single streamed turn failed: {seen}")
    sent = first_reply_piece(fake.pieces[before:])
    return FirstDelta(
        lag_ms=(seen.first_delta - sent) * 1000,
        first_ms=(seen.first_delta - seen.started) * 1000,
        done_ms=(seen.done - seen.started) * 1000,
        arrival_ms=(fake.arrivals[arrived] - seen.started) * 1000,
    )


async def burst(
    http: aiohttp.ClientSession, url: str, count: int
) -> tuple[float, float, list[Streamed]]:
    ids = await new_sessions(http, url, count)
    started = time.monotonic()
    turns = await asyncio.gather(*(stream_turn(http, url, sid) for sid in ids))
    return started, time.monotonic() - started, list(turns)


async def latency_and_concurrency(
    server: Server, fake: GatedFake, rounds: int
) -> tuple[list[FirstDelta], list[Burst], tuple[int, int, int], float]:
    firsts: list[FirstDelta] = []
    bursts: list[Burst] = []
    totals = [0, 0, 0]
    async with client(SESSIONS + 10) as http:
        # Warm-up: grows every pool (client, model connections) to the burst's size.
        await burst(http, server.url, SESSIONS)
        await single_turn(http, server.url, fake)
        calls_before, turns_measured = len(fake.requests), 0
        for _ in range(rounds):
            singles = [await single_turn(http, server.url, fake) for _ in range(2)]
            firsts += singles
            arrived = len(fake.arrivals)
            cpu_server, cpu_client = cpu_seconds(server.pid), time.process_time()
            started, wall, turns = await burst(http, server.url, SESSIONS)
            cpu_server = cpu_seconds(server.pid) - cpu_server
            cpu_client = time.process_time() - cpu_client
            for i, n in enumerate(check(turns, REPLY)):
                totals[i] += n
            turns_measured += len(singles) + len(turns)
            first_deltas = [t.first_delta - started for t in turns if t.first_delta is not None]
            bursts.append(
                Burst(
                    single=min(s.done_ms for s in singles) / 1000,
                    wall=wall,
                    server_cpu=cpu_server,
                    client_cpu=cpu_client,
                    first_delta_ms=statistics.median(first_deltas or [0.0]) * 1000,
                    last_arrival_ms=(max(fake.arrivals[arrived:]) - started) * 1000,
                )
            )
    calls_per_turn = (len(fake.requests) - calls_before) / turns_measured
    return firsts, bursts, (totals[0], totals[1], totals[2]), calls_per_turn


# ------------------------------------------------------------------------------ 3
@dataclass
class Held:
    kind: str  # "short" / "long" (streamed replies) or "json" (reference)
    idle_kb: float
    waiting_kb: float  # per stream
    sent_kb: float | None  # per stream
    exact: int


def rss_kb(pid: int, samples: int = 5) -> float:
    readings = []
    for _ in range(samples):
        readings.append(status_kb(pid, "VmRSS"))
        time.sleep(0.02)
    return statistics.median(readings)


async def json_turn(http: aiohttp.ClientSession, url: str, sid: str) -> Streamed:
    seen = Streamed(started=time.monotonic())
    async with http.post(f"{url}/api/sessions/{sid}/messages", json={"message": MESSAGE}) as r:
        seen.body = await r.json()
        seen.status, seen.done, seen.last_event = r.status, time.monotonic(), "done"
    seen.text = str((seen.body or {}).get("reply"))
    return seen


async def hold(server: Server, fake: GatedFake, kind: str, reply: str, n: int) -> Held:
    """Idle RSS, then N turns held open by the fake: before its first piece, and (streams
    only) before its last piece, once every reply has been sent and read."""
    streamed = kind != "json"
    turn = stream_turn if streamed else json_turn
    fake.responder = answer(reply)
    pace(fake, 0.0, HOLD_INTERVAL, HOLD_PIECE_CHARS)
    async with client(n + 10) as http:
        for _ in range(2):  # warm-up: imports, the first model connection, the allocator
            (sid,) = await new_sessions(http, server.url, 1)
            if check([await turn(http, server.url, sid)], reply) != (1, 1, 1):
                raise SystemExit("a warm-up turn failed")
        ids = await new_sessions(http, server.url, n)
        await asyncio.sleep(0.3)
        idle = rss_kb(server.pid)
        fake.arm()
        seen = [Streamed() for _ in ids]
        tasks = [
            asyncio.create_task(
                stream_turn(http, server.url, sid, s)
                if streamed
                else json_turn(http, server.url, sid)
            )
            for sid, s in zip(ids, seen, strict=True)
        ]
        try:
            await until(
                lambda: fake.at_first == n and (not streamed or all(s.status for s in seen)),
                "the turns to reach the model",
            )
            await asyncio.sleep(0.2)
            waiting, sent = rss_kb(server.pid), None
            fake.open(fake.first_gate)
            if streamed:
                await until(
                    lambda: fake.at_last == n and all(s.text == reply for s in seen),
                    "every reply to be sent and read",
                )
                await asyncio.sleep(0.2)
                sent = rss_kb(server.pid)
                fake.open(fake.last_gate)
            turns = await asyncio.gather(*tasks)
        finally:
            fake.disarm()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    ok, done, exact = check(list(turns), reply)
    if ok != n or done != n:
        raise SystemExit(f"held turns: {ok}/{n} HTTP 200, {done}/{n} ended with done")
    per = None if sent is None else (sent - idle) / n
    return Held(kind, idle, (waiting - idle) / n, per, exact)


# ------------------------------------------------------------------------------ report
def summary(values: list[float], fmt: str) -> str:
    """Best (lowest) and median."""
    return f"best {format(min(values), fmt)}, median {format(statistics.median(values), fmt)}"


def verdict(value: float, target: float) -> str:
    return "ok" if value <= target else "MISSES the target"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def report_latency(firsts: list[FirstDelta]) -> None:
    print("\n1. time to first delta (single streaming turn; times from the request's start)")
    print("   turn  reply piece sent -> first delta   first delta      done   first/done")
    for i, f in enumerate(firsts, 1):
        print(f"   {i:4d}  {f.lag_ms:10.1f} ms                {f.first_ms:7.0f} ms  "
              f"{f.done_ms:6.0f} ms  {f.fraction:5.2f}x")  # fmt: skip
    lag = statistics.median(f.lag_ms for f in firsts)
    fraction = statistics.median(f.fraction for f in firsts)
    print(f"   sent -> first delta: {summary([f.lag_ms for f in firsts], '.1f')} ms "
          f"(target <= 150 ms: {verdict(lag, 150)})")  # fmt: skip
    print(f"   first delta / done : {summary([f.fraction for f in firsts], '.2f')}x "
          f"(target <= 0.4x: {verdict(fraction, 0.4)})")  # fmt: skip


def report_concurrency(
    bursts: list[Burst], checks: tuple[int, int, int], calls: float, firsts: list[FirstDelta]
) -> None:
    print(f"\n2. {SESSIONS} concurrent streaming turns vs one")
    print(f"   round  single  {SESSIONS} streams  ratio  server CPU  client+fake CPU  "
          "first delta (median)  last model request")  # fmt: skip
    for i, b in enumerate(bursts, 1):
        print(f"   {i:5d}  {b.single:4.2f} s  {b.wall:7.2f} s  {b.wall / b.single:4.2f}x  "
              f"{b.server_cpu:7.2f} s  {b.client_cpu:12.2f} s  {b.first_delta_ms:13.0f} ms  "
              f"{b.last_arrival_ms:12.0f} ms")  # fmt: skip
    ratio = statistics.median(b.ratio for b in bursts)
    print(f"   ratio: {summary([b.ratio for b in bursts], '.2f')}x "
          f"(target <= 1.5x, limit 1.0x: {verdict(ratio, 1.5)})")  # fmt: skip
    single_arrival = statistics.median(f.arrival_ms for f in firsts)
    single_first = statistics.median(f.first_ms for f in firsts)
    last_arrival = statistics.median(b.last_arrival_ms for b in bursts)
    print(f"   a single turn reaches the model at {single_arrival:.0f} ms, its first delta at "
          f"{single_first:.0f} ms; in the burst the last turn reaches it at {last_arrival:.0f} ms "
          f"(~{(last_arrival - single_arrival) / SESSIONS:.1f} ms of server work per turn "
          "before its model call)")  # fmt: skip
    streams = SESSIONS * len(bursts)
    ok, done, exact = checks
    print(f"   {ok}/{streams} HTTP 200, {done}/{streams} ended with done, {exact}/{streams} "
          f"deltas == reply; LLM calls per turn {calls:.2f}")  # fmt: skip


def report_memory(held: list[Held], n: int) -> None:
    print(f"\n3. server memory per open turn ({n} held by the fake at once; replies streamed "
          f"in {HOLD_PIECE_CHARS}-character pieces; a fresh server each)")  # fmt: skip
    print("   round  turn                idle RSS   waiting (no text yet)   reply sent and read")
    labels = {"short": f"stream, {SHORT_CHARS} chars", "long": f"stream, {LONG_CHARS} chars",
              "json": "JSON (reference)"}  # fmt: skip
    per_round = 3
    for i, h in enumerate(held):
        sent = "" if h.sent_kb is None else f"{h.sent_kb:8.1f} KB/turn"
        print(f"   {i // per_round + 1:5d}  {labels[h.kind]:18s}  {h.idle_kb / 1024:5.1f} MB  "
              f"{h.waiting_kb:8.1f} KB/turn         {sent}")  # fmt: skip
    short = statistics.median(h.sent_kb or 0.0 for h in held if h.kind == "short")
    long_ = statistics.median(h.sent_kb or 0.0 for h in held if h.kind == "long")
    wait_stream = statistics.median(h.waiting_kb for h in held if h.kind != "json")
    wait_json = statistics.median(h.waiting_kb for h in held if h.kind == "json")
    print(f"   waiting, median: {wait_stream:.1f} KB per open stream vs {wait_json:.1f} KB per "
          "JSON turn in flight")  # fmt: skip
    per_k = (long_ - short) / ((LONG_CHARS - SHORT_CHARS) / 1000)
    print(f"   reply sent, median: {short:.1f} KB/stream ({SHORT_CHARS} chars) vs {long_:.1f} "
          f"KB/stream ({LONG_CHARS} chars): long/short {long_ / short:.2f}x, +{per_k:.1f} KB per "
          "1000 reply characters (target: no growth with the reply)")  # fmt: skip
    if any(h.exact != n for h in held):
        print("   WARNING: some held turns' text did not add up to the reply")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", choices=["file", "redis"], default="file")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--held", type=int, default=50, help="turns held open (memory)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 5 or not 1 <= args.held <= 200:
        raise SystemExit("keep it bounded: --rounds 1-5, --held 1-200")
    began = time.monotonic()
    print(f"store={args.store} rounds={args.rounds} load average {loadavg()} (start)")
    text = json.dumps({"reply": REPLY, "extracted": EXTRACTED}, ensure_ascii=False)
    print(f"fake Gemini (in this process): {FIRST_DELAY * 1000:.0f} ms to the first piece, then "
          f"{PIECE_CHARS}-character pieces at {1 / INTERVAL:.0f}/s; reply {len(REPLY)} characters "
          f"(answer {len(text)} characters, {-(-len(text) // PIECE_CHARS)} pieces)")  # fmt: skip

    fake = GatedFake().start()
    try:
        fake.responder = answer(REPLY)
        pace(fake, FIRST_DELAY, INTERVAL, PIECE_CHARS)
        with hera(fake.base_url, args.store, args.redis_url, "main") as server:
            firsts, bursts, checks, calls = asyncio.run(
                latency_and_concurrency(server, fake, args.rounds)
            )
        held: list[Held] = []
        kinds = [("short", SHORT_CHARS), ("long", LONG_CHARS), ("json", len(REPLY))]
        for round_ in range(args.rounds):
            # Alternated, although each has a fresh server (none reuses what another freed).
            for kind, chars in kinds if round_ % 2 == 0 else kinds[::-1]:
                with hera(fake.base_url, args.store, args.redis_url, f"{kind}{round_}") as server:
                    held.append(asyncio.run(hold(server, fake, kind, reply_of(chars), args.held)))
    finally:
        fake.stop()

    report_latency(firsts)
    report_concurrency(bursts, checks, calls, firsts)
    report_memory(held, args.held)
    print(f"\nwhole run {time.monotonic() - began:.0f} s; load average {loadavg()} (end)")


if __name__ == "__main__":
    main()
