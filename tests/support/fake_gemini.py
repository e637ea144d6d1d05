"""A fake Gemini REST server for tests and benchmarks, driven through the real google-genai SDK.

It answers `POST /{api_version}/models/{model}:generateContent` (google-genai 3.x sends `v1` by
default, older versions `v1beta`; any version is accepted) and `:streamGenerateContent`
(server-sent events: the same answer's text cut into pieces, sent at a steady pace after a
first-piece delay, as a model writes) on a free loopback port. The aiohttp
server runs on its own event loop in a daemon thread, so sync tests, async tests (on their own
loops) and benchmarks with hundreds of concurrent requests can all use it; handlers are fully
async, with no thread per request.

    fake = start_fake_gemini()
    fake.enqueue(503, error_body(503, "UNAVAILABLE"))   # FIFO scripted answers first ...
    fake.responder = lambda body: (200, json_text_body({...}))  # ... then the default responder
    fake.enqueue(200, image_body(png_bytes, "image/png"))  # an image-model answer
    fake.latency = 0.05                                  # server-side delay per request
    fake.stream_first_delay, fake.stream_interval = 0.3, 0.025   # streaming: 300 ms, 40/s
    fake.stream_piece_chars = 8                          # characters of answer text per piece
    fake.stream_fail_after = 3                           # drop the stream after 3 pieces
    fake.pieces                                          # (monotonic time, text) sent
    fake.hang = True                                     # never answer (until stop)
    fake.requests                                        # what was received
    fake.stop()
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

JSONDict = dict[str, Any]
# A body is a JSON object, or a raw string sent as-is (to script malformed bodies).
Body = JSONDict | str
Responder = Callable[[JSONDict], tuple[int, Body]]

_GENERATE_PATH = re.compile(
    r"^/(?P<version>[^/]+)/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent)$"
)
_START_TIMEOUT_SECONDS = 10.0


# ------------------------------------------------------------------------------ bodies
def text_body(text: str, *, finish_reason: str = "STOP") -> JSONDict:
    """A normal generateContent answer with one text candidate."""
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": text}]},
                "finishReason": finish_reason,
                "index": 0,
            }
        ],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15},
        "modelVersion": "fake-gemini",
    }


def json_text_body(value: Any) -> JSONDict:
    """A structured-output answer: the JSON value serialised into the candidate's text."""
    return text_body(json.dumps(value, ensure_ascii=False))


def safety_blocked_body(reason: str = "SAFETY") -> JSONDict:
    """What a blocked prompt looks like: HTTP 200, no candidates, promptFeedback.blockReason."""
    return {
        "promptFeedback": {
            "blockReason": reason,
            "safetyRatings": [
                {"category": "HARM_CATEGORY_HARASSMENT", "probability": "HIGH", "blocked": True}
            ],
        },
        "usageMetadata": {"promptTokenCount": 10, "totalTokenCount": 10},
        "modelVersion": "fake-gemini",
    }


def max_tokens_body(partial_text: str = '{"reply": "こんにちは、わたくし') -> JSONDict:
    """An answer cut off at the output token limit (truncated JSON text)."""
    return text_body(partial_text, finish_reason="MAX_TOKENS")


def image_body(data: bytes, mime: str = "image/png", *, finish_reason: str = "STOP") -> JSONDict:
    """An image-model answer: one candidate whose only part is inline image data (base64)."""
    part = {"inlineData": {"mimeType": mime, "data": base64.b64encode(data).decode("ascii")}}
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": [part]},
                "finishReason": finish_reason,
                "index": 0,
            }
        ],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15},
        "modelVersion": "fake-gemini-image",
    }


def no_image_body(finish_reason: str = "NO_IMAGE", text: str | None = None) -> JSONDict:
    """An image-model answer without an image: a refusal finish reason, maybe a text excuse."""
    parts = [{"text": text}] if text is not None else []
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": parts},
                "finishReason": finish_reason,
                "index": 0,
            }
        ],
        "modelVersion": "fake-gemini-image",
    }


def error_body(code: int, status: str, message: str = "fake error") -> JSONDict:
    """Google's JSON error envelope."""
    return {"error": {"code": code, "message": message, "status": status}}


def default_responder(_: JSONDict) -> tuple[int, Body]:
    """A valid Hera interview answer, for tests and benchmarks that need any success."""
    return 200, json_text_body({"reply": "ありがとうございます。", "extracted": {}})


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    json: JSONDict | None  # None when the body was not a JSON object

    @property
    def model(self) -> str | None:
        match = _GENERATE_PATH.match(self.path)
        return match["model"] if match else None

    @property
    def streamed(self) -> bool:
        match = _GENERATE_PATH.match(self.path)
        return bool(match and match["method"] == "streamGenerateContent")

    @property
    def parts(self) -> list[JSONDict]:
        """Every part of every content of a generateContent request, in order."""
        contents = (self.json or {}).get("contents") or []
        return [part for content in contents for part in content.get("parts") or []]

    @property
    def prompt(self) -> str:
        """The request's text parts joined by newlines (the system instruction excluded)."""
        return "\n".join(part["text"] for part in self.parts if "text" in part)

    @property
    def inline_images(self) -> list[tuple[str, bytes]]:
        """The request's inline data parts as (mime type, decoded bytes), in order.

        google-genai 3.x sends `mime_type` and URL-safe base64; the API (and this helper) also
        accepts the camelCase key and the standard alphabet.
        """
        blobs = [
            part.get("inlineData") or part["inline_data"] for part in self.parts if _inline(part)
        ]
        return [
            (blob.get("mimeType") or blob["mime_type"], _b64decode(blob["data"])) for blob in blobs
        ]


def _inline(part: JSONDict) -> bool:
    return "inlineData" in part or "inline_data" in part


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)


# ------------------------------------------------------------------------------ server
class FakeGemini:
    """The server; configure it from any thread (attributes are read per request)."""

    def __init__(self) -> None:
        self.responder: Responder = default_responder
        self.latency: float = 0.0
        self.hang: bool = False
        self.stream_first_delay: float = 0.0
        self.stream_interval: float = 0.0
        self.stream_piece_chars: int = 8
        self.stream_fail_after: int | None = None
        self._pieces: list[tuple[float, str]] = []
        self.base_url = ""
        self._cond = threading.Condition()
        self._queue: deque[tuple[int, Body]] = deque()
        self._requests: list[RecordedRequest] = []
        self._in_flight = 0
        self._max_in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._released: asyncio.Event | None = None

    # -- configuration -------------------------------------------------------------------
    def enqueue(self, status: int, body: Body) -> None:
        """Script the next answer; scripted answers are used in order before the responder."""
        with self._cond:
            self._queue.append((status, body))

    def reset(self) -> None:
        """Forget scripted answers and received requests; restore the defaults."""
        with self._cond:
            self._queue.clear()
            self._requests.clear()
            self._pieces.clear()
            self._max_in_flight = self._in_flight
        self.responder = default_responder
        self.latency = 0.0
        self.hang = False
        self.stream_first_delay = self.stream_interval = 0.0
        self.stream_piece_chars = 8
        self.stream_fail_after = None

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._cond:
            return list(self._requests)

    @property
    def pieces(self) -> list[tuple[float, str]]:
        """Every streamed piece sent: (time.monotonic() when written, its answer text)."""
        with self._cond:
            return list(self._pieces)

    @property
    def max_in_flight(self) -> int:
        """The most requests the server was handling at once (for concurrency limits)."""
        with self._cond:
            return self._max_in_flight

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least `count` requests arrived (or raise after `timeout`)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._requests) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{len(self._requests)} of {count} requests received")
                self._cond.wait(remaining)
            return list(self._requests)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> FakeGemini:
        # Binding port 0 here (not picking a "free" number first) leaves no race to lose.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._serve, args=(sock, ready, failure), name="fake-gemini", daemon=True
        )
        self._thread.start()
        if not ready.wait(_START_TIMEOUT_SECONDS):
            raise RuntimeError("fake Gemini server did not start")
        if failure:
            raise RuntimeError("fake Gemini server failed to start") from failure[0]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        if self._released is not None:
            loop.call_soon_threadsafe(self._released.set)  # lets hanging handlers finish
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_START_TIMEOUT_SECONDS)

    def __enter__(self) -> FakeGemini:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _serve(
        self, sock: socket.socket, ready: threading.Event, failure: list[BaseException]
    ) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._start_site(sock))
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            loop.close()
            return
        self._loop = loop
        ready.set()
        try:
            loop.run_forever()
        finally:
            if self._runner is not None:
                loop.run_until_complete(self._runner.cleanup())
            loop.close()

    async def _start_site(self, sock: socket.socket) -> None:
        self._released = asyncio.Event()
        # Room for image uploads later; the default 1 MB would refuse a photo.
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        # A deep backlog so a benchmark's burst of connections is not refused.
        await web.SockSite(self._runner, sock, backlog=1024, shutdown_timeout=1.0).start()

    # -- the handler ---------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            parsed: Any = await request.json()
        except ValueError:
            parsed = None
        body = parsed if isinstance(parsed, dict) else None
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            headers={name.lower(): value for name, value in request.headers.items()},
            json=body,
        )
        with self._cond:
            self._requests.append(record)
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            self._cond.notify_all()
        try:
            return await self._answer(request, record)
        finally:
            with self._cond:
                self._in_flight -= 1

    async def _answer(self, request: web.Request, record: RecordedRequest) -> web.StreamResponse:
        if self.hang:
            assert self._released is not None
            await self._released.wait()
            return _respond(503, error_body(503, "UNAVAILABLE", "fake server stopped"))
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        if request.method != "POST" or record.model is None:
            return _respond(404, error_body(404, "NOT_FOUND", f"no route {request.path}"))
        with self._cond:
            scripted = self._queue.popleft() if self._queue else None
        status, answer = scripted if scripted is not None else self.responder(record.json or {})
        if record.streamed and status == 200 and isinstance(answer, dict):
            return await self._stream(request, answer)
        return _respond(status, answer)

    async def _stream(self, request: web.Request, answer: JSONDict) -> web.StreamResponse:
        """The answer as a model streams it: its text in pieces, one event each, the finish
        reason on the last; an answer without text (a block, an image) is one event."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        chunks = _stream_chunks(answer, max(1, self.stream_piece_chars))
        await asyncio.sleep(self.stream_first_delay)
        for index, (chunk, text) in enumerate(chunks):
            if self.stream_fail_after is not None and index >= self.stream_fail_after:
                assert request.transport is not None
                request.transport.close()  # the connection drops mid-answer
                return response
            if index:
                await asyncio.sleep(self.stream_interval)
            data = json.dumps(chunk, ensure_ascii=False)
            await response.write(f"data: {data}\r\n\r\n".encode())
            with self._cond:
                self._pieces.append((time.monotonic(), text))
        await response.write_eof()
        return response


def _stream_chunks(answer: JSONDict, size: int) -> list[tuple[JSONDict, str]]:
    candidates = answer.get("candidates") or []
    parts = (candidates[0].get("content") or {}).get("parts") or [] if candidates else []
    if len(parts) != 1 or "text" not in parts[0]:
        return [(answer, "")]
    text, finish = parts[0]["text"], candidates[0].get("finishReason")
    pieces = [text[i : i + size] for i in range(0, len(text), size)] or [""]
    chunks: list[tuple[JSONDict, str]] = []
    for index, piece in enumerate(pieces):
        candidate: JSONDict = {"content": {"role": "model", "parts": [{"text": piece}]}}
        if index == len(pieces) - 1 and finish:
            candidate["finishReason"] = finish
        chunks.append(({"candidates": [candidate], "modelVersion": "fake-gemini"}, piece))
    return chunks


def _respond(status: int, body: Body) -> web.Response:
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    return web.Response(status=status, text=text, content_type="application/json")


def start_fake_gemini() -> FakeGemini:
    """Start a fake Gemini server on a free loopback port; call `.stop()` when done."""
    return FakeGemini().start()
