"""The chat routes as server-sent events (`Accept: text/event-stream`).

What is proved, with the offline brains in-process (httpx's ASGI transport: whole bodies) and
with real uvicorn servers on loopback where timing matters (first piece, keep-alive, a client
that goes away), the Gemini brain on the fake Gemini server where the model must stream:

- the format: `delta` events (Hera's line 0; each family member's line with its role; the
  partner's proposal a line of its own), `story` and `letter` side by side on the agreeing
  turn, one `done` last; the pieces joined are the texts `done` holds; the SSE headers;
- `done` is the JSON route's body for the same turn (two sessions with one id driven the
  same way, one per format; a streamed retry of a JSON request, byte for byte), sent only
  after the commit;
- without the header the routes answer JSON as before; every refusal before the turn begins
  (404, 401, 409, 413, 422, 429) is the route's JSON error, not a stream, and reaches no model;
- a model failure after the first piece is an `error` event with the JSON route's 502 body,
  one model request, nothing stored, no quota spent; a failure before any piece is retried;
- a client that disconnects mid-stream does not cancel the turn: it is committed whole;
- keep-alive comments while the model is silent; the first piece reaches the client while
  the model still writes;
- Idempotency-Key and rate limits as for JSON requests.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from app.main import create_app
from app.settings import Settings
from tests.api.conftest import STACKS, ApiClient, open_client, stack_settings
from tests.api.scripted_user import COMPLETE_PROFILE, FAMILY_AGREEING, SCRIPT
from tests.support import brains as test_brains
from tests.support.api import assert_json_error, new_session
from tests.support.fake_gemini import FakeGemini, error_body, json_text_body
from tests.support.jwks import Issuer, JwksServer, auth_settings
from tests.support.polling import eventually

SSE = {"Accept": "text/event-stream"}
INTERVIEW = SCRIPT[:6]  # these answers complete the offline profile
FAMILY = FAMILY_AGREEING  # a place, what to do there (the partner proposes), yes
TIME_KEYS = frozenset({"timestamp", "confirmed_at"})
# The profile fields the Gemini answers below extract.
EXTRACTED = {"age": 32, "gender": "女性", "location": "東京"}
FILLER = "お話を聞かせてくださってありがとうございます。東京での毎日はいかがですか？"
PIECE_CHARS = 8  # the fake's characters of answer text per streamed piece


# ------------------------------------------------------------------------------ SSE parsing
@dataclass(frozen=True)
class Event:
    kind: str  # the `event:` name
    data: dict[str, Any]  # the one `data:` line, parsed
    text: str  # that line as sent
    at: float  # time.monotonic() when the client had it


class SseParser:
    """Lines in, events out: a blank line ends an event; `:` lines are comments. Strict:
    every event has exactly one `event:` and one `data:` field (one JSON object), no other."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.comments: list[tuple[float, str]] = []
        self._fields: list[tuple[str, str]] = []

    def feed(self, line: str, at: float = 0.0) -> Event | None:
        if line.startswith(":"):
            self.comments.append((at, line))
            return None
        if line:
            name, colon, value = line.partition(":")
            assert colon, f"an SSE line without a field name: {line!r}"
            self._fields.append((name, value.removeprefix(" ")))
            return None
        if not self._fields:
            return None
        fields, self._fields = self._fields, []
        names = sorted(name for name, _ in fields)
        assert names == ["data", "event"], f"an event's fields must be event + data: {fields}"
        values = dict(fields)
        data = json.loads(values["data"])
        assert isinstance(data, dict), values["data"]
        event = Event(values["event"], data, values["data"], at)
        self.events.append(event)
        return event

    def end(self) -> None:
        assert not self._fields, f"the stream ended inside an event: {self._fields}"


def parse_sse(body: str) -> SseParser:
    parser = SseParser()
    for line in re.split(r"\r\n|\r|\n", body):
        parser.feed(line)
    parser.end()
    return parser


@dataclass
class Streamed:
    """One streamed answer: its response (headers), events and comments."""

    response: httpx.Response
    events: list[Event]
    comments: list[tuple[float, str]] = field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        return [event.kind for event in self.events]

    def of(self, kind: str) -> list[Event]:
        return [event for event in self.events if event.kind == kind]

    @property
    def done(self) -> dict[str, Any]:
        """The `done` body: exactly one, the last event, no `error`."""
        assert self.kinds.count("done") == 1, self.kinds
        assert self.kinds[-1] == "done", self.kinds  # nothing after it
        assert "error" not in self.kinds, self.events
        return self.events[-1].data


def assert_event_stream(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0].strip() == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"


def joined(events: Sequence[Event]) -> str:
    return "".join(event.data["text"] for event in events)


def by_line(deltas: Sequence[Event]) -> dict[int, list[Event]]:
    lines: dict[int, list[Event]] = {}
    for event in deltas:
        lines.setdefault(event.data["line"], []).append(event)
    return lines


def normalised(value: Any) -> Any:
    """`value` with its timestamps (history entries, the plan's confirmation) blanked."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in TIME_KEYS:
                assert isinstance(item, str) and item, (key, item)
                out[key] = "<time>"
            else:
                out[key] = normalised(item)
        return out
    if isinstance(value, list):
        return [normalised(item) for item in value]
    return value


def untimed(text: str) -> str:
    """A JSON text with its timestamps blanked."""
    return re.sub(r'"(timestamp|confirmed_at)":"[^"]+"', r'"\1":"<time>"', text)


# ------------------------------------------------------------------------------ requests
def interview_path(sid: str) -> str:
    return f"/api/sessions/{sid}/messages"


def family_path(sid: str) -> str:
    return f"/api/sessions/{sid}/family/messages"


def headers_for(key: str | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    headers = dict(extra or {})
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


async def post_sse(
    api: httpx.AsyncClient,
    path: str,
    message: str,
    key: str | None = None,
    extra: dict[str, str] | None = None,
) -> httpx.Response:
    return await api.post(
        path, json={"message": message}, headers={**SSE, **headers_for(key, extra)}
    )


async def stream(
    api: httpx.AsyncClient,
    path: str,
    message: str,
    key: str | None = None,
    extra: dict[str, str] | None = None,
) -> Streamed:
    """A streamed request in-process (the whole body at once), checked to be a stream."""
    response = await post_sse(api, path, message, key, extra)
    assert_event_stream(response)
    parser = parse_sse(response.text)
    return Streamed(response, parser.events, parser.comments)


async def post_json(
    api: httpx.AsyncClient, path: str, message: str, key: str | None = None
) -> httpx.Response:
    return await api.post(path, json={"message": message}, headers=headers_for(key))


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


async def status_of(api: httpx.AsyncClient, sid: str) -> dict[str, Any]:
    body: dict[str, Any] = ok(await api.get(f"/api/sessions/{sid}/status"))
    return body


async def family_status_of(api: httpx.AsyncClient, sid: str) -> dict[str, Any]:
    body: dict[str, Any] = ok(await api.get(f"/api/sessions/{sid}/family/status"))
    return body


async def interviewed(api: httpx.AsyncClient, sid: str | None = None) -> str:
    """A session whose offline interview is complete (sent as JSON)."""
    sid = sid or await new_session(api)
    for message in INTERVIEW:
        body = ok(await post_json(api, interview_path(sid), message))
    assert body["profile_complete"], body["missing_fields"]
    return sid


async def stored_state(api: ApiClient, sid: str) -> dict[str, Any]:
    snap = await api.app.state.services.sessions.load(session_id=sid, docs=["state"])
    state: dict[str, Any] = snap.doc("state")
    return state


# ------------------------------------------------------------------------------ apps
OpenApi = Callable[..., Awaitable[ApiClient]]


@pytest.fixture
async def make_api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OpenApi]:
    """Opens in-process apps on a stack (file+disk unless named), each with its own data,
    with offline brains the test holds (to count model calls) unless the settings ask for
    Gemini; all shut down afterwards."""
    async with AsyncExitStack() as stack:
        count = 0

        async def open_api(stack_name: str = "file-disk", **overrides: Any) -> ApiClient:
            nonlocal count
            count += 1
            settings = stack_settings(stack_name, tmp_path / f"app-{count}", request, **overrides)
            brains = (
                test_brains.TestBrains() if settings.resolved_llm_provider == "offline" else None
            )
            client = await stack.enter_async_context(
                _opened(settings, brains.replacements() if brains else None)
            )
            client.brains = brains
            return client

        yield open_api


@asynccontextmanager
async def _opened(settings: Settings, replacements: Any) -> AsyncIterator[ApiClient]:
    clients = open_client(settings, replacements)
    client = await anext(clients)
    try:
        yield client
    finally:
        with suppress(StopAsyncIteration):
            await anext(clients)  # the lifespan's exit and the stack's cleanup


def model_calls(api: ApiClient) -> list[str]:
    """The offline model calls the app makes from now on (a list that grows)."""
    assert api.brains is not None
    api.brains.calls.clear()
    return api.brains.calls


def gemini_settings(fake: FakeGemini, **overrides: Any) -> dict[str, Any]:
    return {
        "llm_provider": "gemini",
        "gemini_api_key": "test-key",
        "gemini_base_url": fake.base_url,
        "llm_timeout_seconds": 5.0,
        "llm_max_retries": 1,
        **overrides,
    }


def gemini_answer(pieces: int) -> tuple[str, dict[str, Any]]:
    """Hera's reply, and a Gemini answer holding it whose JSON text the fake streams in
    exactly `pieces` pieces (of PIECE_CHARS characters)."""
    empty = json.dumps({"reply": "", "extracted": EXTRACTED}, ensure_ascii=False)
    room = pieces * PIECE_CHARS - len(empty)
    assert room > 0
    reply = (FILLER * (room // len(FILLER) + 1))[:room]
    answer = {"reply": reply, "extracted": EXTRACTED}
    assert len(json.dumps(answer, ensure_ascii=False)) == pieces * PIECE_CHARS
    return reply, json_text_body(answer)


# ------------------------------------------------------------------------------ live servers
@dataclass
class Live:
    """A real uvicorn server on a loopback port in this event loop, and a client of it."""

    app: Any
    client: httpx.AsyncClient
    server: uvicorn.Server


@asynccontextmanager
async def live_server(settings: Settings) -> AsyncIterator[Live]:
    app = create_app(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # bound here: no free-port race
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))

    async def started() -> bool:
        if task.done():
            task.result()  # a failed start raises here
            raise AssertionError("the server stopped while starting")
        return server.started

    try:
        await eventually(started, within=10.0, what="the uvicorn server starting")
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=10.0) as client:
            yield Live(app, client, server)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15.0)
        sock.close()


async def stream_live(
    client: httpx.AsyncClient,
    path: str,
    message: str,
    *,
    key: str | None = None,
    stop: Callable[[Event], bool] = lambda _: False,
    on_event: Callable[[Event], Awaitable[None]] | None = None,
) -> Streamed:
    """A streamed request read line by line as the lines arrive (each event and comment
    stamped with time.monotonic()); `stop` closes the connection after the event it accepts."""
    parser = SseParser()
    headers = {**SSE, **headers_for(key)}
    async with client.stream("POST", path, json={"message": message}, headers=headers) as response:
        assert_event_stream(response)
        async for line in response.aiter_lines():
            event = parser.feed(line, time.monotonic())
            if event is not None:
                if on_event is not None:
                    await on_event(event)
                if stop(event):
                    break  # leaving the block closes the connection mid-stream
        else:
            parser.end()
    return Streamed(response, parser.events, parser.comments)


# ============================================================================ format
@pytest.mark.parametrize("stack", STACKS)
async def test_an_interview_turn_streams_heras_line_then_done(
    make_api: OpenApi, stack: str
) -> None:
    api = await make_api(stack)
    sid = await new_session(api)

    streamed = await stream(api, interview_path(sid), INTERVIEW[0])

    deltas = streamed.of("delta")
    assert deltas, streamed.events
    assert streamed.kinds == ["delta"] * len(deltas) + ["done"]
    assert streamed.comments == []
    for delta in deltas:
        assert delta.data.keys() == {"speaker", "line", "text"}  # Hera has no role
        assert (delta.data["speaker"], delta.data["line"]) == ("hera", 0)
        assert delta.data["text"]
    done = streamed.done
    assert done["reply"] and joined(deltas) == done["reply"]
    history = done["conversation_history"]
    assert [(e["speaker"], e["message"]) for e in history] == [
        ("user", INTERVIEW[0]),
        ("hera", done["reply"]),
    ]
    assert done["last_extracted_fields"] == ["age", "gender", "relationship_status"]
    assert (await status_of(api, sid))["conversation_history"] == history


@pytest.mark.parametrize("stack", STACKS)
async def test_a_family_turn_streams_each_members_line_and_the_plan_texts(
    make_api: OpenApi, stack: str
) -> None:
    api = await make_api(stack)
    sid = await interviewed(api)
    turns = [await stream(api, family_path(sid), message) for message in FAMILY]

    members = turns[-1].done["members"]
    partner = members[0]["name"]
    assert [m["id"] for m in members] == ["partner", "child_1", "child_2"]
    for message, turn in zip(FAMILY, turns, strict=True):
        done = turn.done
        deltas = turn.of("delta")
        lines = by_line(deltas)
        reply = done["reply"]
        # Every reply line streamed, under its index, in order; nothing else.
        assert sorted(lines) == list(range(len(reply))), turn.events
        first_seen = list(dict.fromkeys(d.data["line"] for d in deltas))
        assert first_seen == list(range(len(reply)))
        for index, entry in enumerate(reply):
            pieces = lines[index]
            assert all(d.data.keys() == {"speaker", "role", "line", "text"} for d in pieces)
            assert {(d.data["speaker"], d.data["role"]) for d in pieces} == {
                (entry["speaker"], entry["role"])
            }
            assert joined(pieces) == entry["message"]
        # The history ends with the user's message and these lines.
        history = done["conversation_history"]
        assert (history[-len(reply) - 1]["speaker"], history[-len(reply) - 1]["message"]) == (
            "user",
            message,
        )
        assert history[-len(reply) :] == reply

    first, proposing, agreeing = turns
    assert set(first.kinds) == {"delta", "done"}
    assert first.done["proposal_pending"] is False
    # The partner proposes in a line of its own, after the partner's own first line.
    assert set(proposing.kinds) == {"delta", "done"}
    assert proposing.done["proposal_pending"] is True
    reply = proposing.done["reply"]
    assert [e["speaker"] for e in reply] == [partner, *(m["name"] for m in members[1:]), partner]
    assert reply[-1]["message"].startswith("じゃあ、沖縄で")
    partner_lines = {d.data["line"] for d in proposing.of("delta") if d.data["speaker"] == partner}
    assert partner_lines == {0, len(reply) - 1}

    # The agreeing turn: the members' lines, then the story and the letter side by side.
    plan = agreeing.done["family_plan"]
    assert agreeing.done["conversation_complete"] is True
    assert plan is not None and plan["destination"] == "沖縄"
    story, letter = agreeing.of("story"), agreeing.of("letter")
    assert story and letter
    assert all(event.data.keys() == {"text"} for event in [*story, *letter])
    assert joined(story) == plan["story"]
    assert joined(letter) == plan["letter"]
    kinds = agreeing.kinds
    last_delta = max(i for i, kind in enumerate(kinds) if kind == "delta")
    assert last_delta < kinds.index("story") and last_delta < kinds.index("letter")
    # Side by side, not one after the other: each begins before the other ends.
    last_story = max(i for i, kind in enumerate(kinds) if kind == "story")
    last_letter = max(i for i, kind in enumerate(kinds) if kind == "letter")
    assert kinds.index("letter") < last_story and kinds.index("story") < last_letter, kinds

    # A message after the plan: the partner's closing line, streamed, and no plan texts.
    closing = await stream(api, family_path(sid), "また話そうね")
    assert closing.kinds == ["delta"] * (len(closing.kinds) - 1) + ["done"]
    assert [e["speaker"] for e in closing.done["reply"]] == [partner]
    assert {(d.data["speaker"], d.data["line"]) for d in closing.of("delta")} == {(partner, 0)}
    assert joined(closing.of("delta")) == closing.done["reply"][0]["message"]
    assert closing.done["family_plan"] == plan
    assert await family_status_of(api, sid) == {
        k: v for k, v in closing.done.items() if k != "reply"
    }


# ============================================================================ done == JSON
@pytest.mark.parametrize("stack", STACKS)
async def test_done_is_the_json_routes_body_for_the_same_turn(
    make_api: OpenApi, stack: str
) -> None:
    """Two apps, one session id (personas are derived from it), the same messages: one
    driven as JSON, one streamed; every `done` is the JSON body but for timestamps, to the
    byte (same keys, same order, same rendering)."""
    as_json, as_sse = await make_api(stack), await make_api(stack)
    created = await as_json.app.state.services.sessions.create()
    sid = created.session_id
    await as_sse.app.state.services.sessions.create(session_id=sid)

    async def same_turn(path: str, message: str) -> Streamed:
        expected = await post_json(as_json, path, message)
        ok(expected)
        streamed = await stream(as_sse, path, message)
        assert normalised(streamed.done) == normalised(expected.json())
        assert untimed(streamed.events[-1].text) == untimed(expected.text)
        assert '"timestamp":"<time>"' in untimed(expected.text)
        return streamed

    for message in INTERVIEW:
        streamed = await same_turn(interview_path(sid), message)
        assert joined(streamed.of("delta")) == streamed.done["reply"]
    done = streamed.done
    assert done["completion_message"] and done["session_status"] == "COMPLETED"
    assert done["conversation_history"][-1]["message"] == done["completion_message"]
    for message in (*FAMILY, "また話そうね"):
        done = (await same_turn(family_path(sid), message)).done
    assert done["family_plan"] is not None
    # And the stores hold the same.
    assert normalised(await status_of(as_sse, sid)) == normalised(await status_of(as_json, sid))
    assert normalised(await family_status_of(as_sse, sid)) == normalised(
        await family_status_of(as_json, sid)
    )


async def test_without_the_header_the_routes_answer_json(make_api: OpenApi) -> None:
    api = await make_api()
    sid = await new_session(api)
    for accept in (None, "application/json", "*/*"):
        headers = {"Accept": accept} if accept else {}
        response = await api.post(
            interview_path(sid), json={"message": INTERVIEW[0]}, headers=headers
        )
        body = ok(response)
        assert "cache-control" not in response.headers
        assert "x-accel-buffering" not in response.headers
        assert body["reply"] and body["conversation_history"][-1]["message"] == body["reply"]
    await interviewed(api, sid)
    response = await api.post(family_path(sid), json={"message": FAMILY[0]})
    body = ok(response)
    assert [e["speaker"] for e in body["reply"]] == [m["name"] for m in body["members"]]
    assert not response.text.startswith("event:")


# ============================================================================ refusals
async def refused_alike(
    api: httpx.AsyncClient,
    path: str,
    message: str,
    status: int,
    code: str,
    extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The streamed request is refused with the JSON error (status, body) that the same
    request without the header gets: no stream begins."""
    streamed = await post_sse(api, path, message, extra=extra)
    body = assert_json_error(streamed, status, code)
    assert "x-accel-buffering" not in streamed.headers
    plain = await api.post(path, json={"message": message}, headers=headers_for(None, extra))
    assert (plain.status_code, plain.json()) == (status, body)
    return body


async def test_an_unknown_session_is_a_json_404(make_api: OpenApi) -> None:
    api = await make_api()
    calls = model_calls(api)
    unknown = "00000000-0000-4000-8000-000000000000"
    for sid in (unknown, "not-a-session-id"):
        for path in (interview_path(sid), family_path(sid)):
            await refused_alike(api, path, "こんにちは", 404, "session_not_found")
    assert calls == []


async def test_an_empty_or_too_long_message_is_a_json_error(make_api: OpenApi) -> None:
    limit = max(len(message) for message in INTERVIEW)  # the interview still fits
    api = await make_api(max_message_chars=limit)
    sid = await interviewed(api)
    before = await status_of(api, sid), await family_status_of(api, sid)
    calls = model_calls(api)
    for path in (interview_path(sid), family_path(sid)):
        for blank in ("", "   \n "):
            await refused_alike(api, path, blank, 422, "validation_error")
        too_long = "あ" * (limit + 1)
        body = await refused_alike(api, path, too_long, 413, "message_too_long")
        assert body["limit"] == limit
    assert calls == []
    assert (await status_of(api, sid), await family_status_of(api, sid)) == before


async def test_the_family_before_the_interview_is_complete_is_a_json_409(
    make_api: OpenApi,
) -> None:
    api = await make_api()
    sid = await new_session(api)
    ok(await post_json(api, interview_path(sid), INTERVIEW[0]))
    missing = (await status_of(api, sid))["missing_fields"]
    calls = model_calls(api)

    body = await refused_alike(api, family_path(sid), FAMILY[0], 409, "interview_incomplete")

    assert body["missing_fields"] == missing and missing
    assert calls == []
    assert (await family_status_of(api, sid))["conversation_history"] == []


async def test_a_used_up_quota_is_a_json_429(make_api: OpenApi) -> None:
    api = await make_api(session_max_interview_messages=1)
    sid = await new_session(api)
    first = await stream(api, interview_path(sid), INTERVIEW[0])
    assert first.done["reply"]
    calls = model_calls(api)

    body = await refused_alike(
        api, interview_path(sid), INTERVIEW[1], 429, "session_quota_exceeded"
    )

    assert (body["quota"], body["limit"]) == ("interview_messages", 1)
    assert calls == []
    history = (await status_of(api, sid))["conversation_history"]
    assert history == first.done["conversation_history"]


async def test_a_busy_session_is_a_json_409(make_api: OpenApi) -> None:
    api = await make_api(lock_wait_seconds=0.2)
    sid = await new_session(api)
    calls = model_calls(api)
    async with api.app.state.services.sessions.lock(session_id=sid, wait=1.0):
        await refused_alike(api, interview_path(sid), INTERVIEW[0], 409, "session_busy")
    assert calls == []
    assert (await status_of(api, sid))["conversation_history"] == []
    # Free again: the same request streams.
    assert (await stream(api, interview_path(sid), INTERVIEW[0])).done["reply"]


async def test_a_bad_token_or_another_persons_session_is_a_json_error(
    make_api: OpenApi, jwks: JwksServer, issuer: Issuer
) -> None:
    api = await make_api(**auth_settings(jwks))
    owner = issuer.bearer("owner-5c1e")
    sid = ok(await api.post("/api/sessions", headers=owner), 201)["session_id"]
    calls = model_calls(api)

    bad = {"Authorization": "Bearer x.y.z"}
    await refused_alike(api, interview_path(sid), "こんにちは", 401, "invalid_token", bad)
    refused = await post_sse(api, interview_path(sid), "こんにちは", extra=bad)
    assert refused.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    for who in ({}, issuer.bearer("someone-else-2b7d")):  # a guest, another person
        await refused_alike(api, interview_path(sid), "こんにちは", 404, "session_not_found", who)
    assert calls == []
    assert (await stream(api, interview_path(sid), INTERVIEW[0], extra=owner)).done["reply"]


async def test_the_turns_rate_limit_refuses_a_stream_with_a_json_429(make_api: OpenApi) -> None:
    # Per hour, not per minute (as in test_limits): no window boundary falls inside the test.
    api = await make_api(rate_limit_turns="2/hour")
    sid = await new_session(api)
    for message in INTERVIEW[:2]:
        assert (await stream(api, interview_path(sid), message)).done["reply"]
    calls = model_calls(api)

    refused = await post_sse(api, interview_path(sid), INTERVIEW[2])

    assert assert_json_error(refused, 429, "rate_limited")["limit"] == 2
    assert "x-accel-buffering" not in refused.headers
    assert 1 <= int(refused.headers["Retry-After"]) <= 3600
    assert refused.headers["RateLimit-Limit"] == "2"
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert calls == []
    assert len((await status_of(api, sid))["conversation_history"]) == 4


# ============================================================================ model failures
async def test_a_model_failure_mid_stream_is_an_error_event_and_stores_nothing(
    make_api: OpenApi, fake_gemini: FakeGemini
) -> None:
    api = await make_api(**gemini_settings(fake_gemini, session_max_interview_messages=1))
    # What the JSON route answers for a model failure (the attempt and its retry fail).
    for _ in range(2):
        fake_gemini.enqueue(500, error_body(500, "INTERNAL"))
    failed_json = await post_json(api, interview_path(await new_session(api)), "こんにちは")
    expected = assert_json_error(failed_json, 502, "llm_error")
    fake_gemini.reset()

    sid = await new_session(api)
    before = await status_of(api, sid)
    reply, answer = gemini_answer(pieces=30)
    fake_gemini.responder = lambda _: (200, answer)
    fake_gemini.stream_fail_after = 3  # the connection drops after 3 pieces

    streamed = await stream(api, interview_path(sid), "こんにちは")

    assert streamed.kinds[-1] == "error" and streamed.kinds.count("error") == 1
    deltas = streamed.of("delta")
    assert streamed.kinds == ["delta"] * len(deltas) + ["error"]
    # The pieces the model wrote before the drop, all of them: 3 x 8 characters of JSON.
    shown = 3 * PIECE_CHARS - len('{"reply": "')
    assert joined(deltas) == reply[:shown]
    assert streamed.events[-1].data == expected
    assert len(fake_gemini.requests) == 1  # no retry once a piece was shown
    assert fake_gemini.requests[0].streamed
    assert await status_of(api, sid) == before
    assert await stored_state(api, sid) == {}
    # The quota (one message) was not spent: the next turn runs.
    fake_gemini.stream_fail_after = None
    again = await stream(api, interview_path(sid), "こんにちは")
    assert again.done["reply"] == reply
    assert len(fake_gemini.requests) == 2


async def test_a_model_failure_before_any_piece_is_retried(
    make_api: OpenApi, fake_gemini: FakeGemini
) -> None:
    api = await make_api(**gemini_settings(fake_gemini))
    sid = await new_session(api)
    reply, answer = gemini_answer(pieces=12)
    fake_gemini.enqueue(503, error_body(503, "UNAVAILABLE"))
    fake_gemini.responder = lambda _: (200, answer)

    streamed = await stream(api, interview_path(sid), "こんにちは")

    assert "error" not in streamed.kinds
    assert joined(streamed.of("delta")) == reply
    assert streamed.done["reply"] == reply
    assert [r.streamed for r in fake_gemini.requests] == [True, True]
    assert [(e["speaker"], e["message"]) for e in streamed.done["conversation_history"]] == [
        ("user", "こんにちは"),
        ("hera", reply),
    ]
    assert {k: streamed.done["user_profile"][k] for k in EXTRACTED} == EXTRACTED


# ============================================================================ idempotency
@pytest.mark.parametrize("stack", STACKS)
async def test_a_streamed_retry_with_the_same_key_streams_only_the_first_done(
    make_api: OpenApi, stack: str
) -> None:
    api = await make_api(stack)
    sid = await new_session(api)
    calls = model_calls(api)
    first = await stream(api, interview_path(sid), INTERVIEW[0], key="turn-1")
    assert first.of("delta") and calls == ["interview_turn"]

    again = await stream(api, interview_path(sid), INTERVIEW[0], key="turn-1")

    assert again.kinds == ["done"]
    assert again.events[0].text == first.events[-1].text  # byte for byte
    assert calls == ["interview_turn"]
    assert len((await status_of(api, sid))["conversation_history"]) == 2

    reused = await post_sse(api, interview_path(sid), INTERVIEW[1], key="turn-1")
    assert_json_error(reused, 422, "idempotency_key_reused")
    assert "x-accel-buffering" not in reused.headers
    assert calls == ["interview_turn"]

    # Across formats: a JSON request's streamed retry is its body, and the other way round.
    as_json = await post_json(api, interview_path(sid), INTERVIEW[1], key="turn-2")
    ok(as_json)
    replayed = await stream(api, interview_path(sid), INTERVIEW[1], key="turn-2")
    assert replayed.kinds == ["done"]
    assert replayed.events[0].text == as_json.text
    assert (await post_json(api, interview_path(sid), INTERVIEW[0], key="turn-1")).text == (
        first.events[-1].text
    )
    assert calls == ["interview_turn", "interview_turn"]


async def test_a_retried_agreeing_family_turn_streams_only_its_done(make_api: OpenApi) -> None:
    api = await make_api()
    sid = await interviewed(api)
    for message in FAMILY[:-1]:
        ok(await post_json(api, family_path(sid), message))
    calls = model_calls(api)
    first = await stream(api, family_path(sid), FAMILY[-1], key="agree-1")
    assert first.of("story") and first.of("letter")
    assert sorted(calls) == ["family_turn", "write_letter", "write_story"]

    again = await stream(api, family_path(sid), FAMILY[-1], key="agree-1")

    assert again.kinds == ["done"]
    assert again.events[0].text == first.events[-1].text
    assert sorted(calls) == ["family_turn", "write_letter", "write_story"]


# ============================================================================ live servers
async def test_a_client_that_leaves_mid_stream_does_not_cancel_the_turn(
    tmp_path: Path, request: pytest.FixtureRequest, fake_gemini: FakeGemini
) -> None:
    settings = stack_settings("file-disk", tmp_path, request, **gemini_settings(fake_gemini))
    reply, answer = gemini_answer(pieces=36)
    fake_gemini.responder = lambda _: (200, answer)
    fake_gemini.stream_first_delay, fake_gemini.stream_interval = 0.2, 0.05
    async with live_server(settings) as live:
        sid = await new_session(live.client)
        streamed = await stream_live(
            live.client, interview_path(sid), "こんにちは", stop=lambda e: e.kind == "delta"
        )
        left = time.monotonic()
        assert streamed.kinds == ["delta"]
        assert reply.startswith(streamed.events[0].data["text"])

        async def committed() -> bool:
            return len((await status_of(live.client, sid))["conversation_history"]) == 2

        await eventually(committed, within=10.0, what="the turn committed after the client left")
        status = await status_of(live.client, sid)
    assert [(e["speaker"], e["message"]) for e in status["conversation_history"]] == [
        ("user", "こんにちは"),
        ("hera", reply),
    ]
    assert {k: status["user_profile"][k] for k in EXTRACTED} == EXTRACTED
    assert len(fake_gemini.requests) == 1
    # The model was still writing when the client left: the turn went on without it.
    assert fake_gemini.pieces[-1][0] > left
    assert len(fake_gemini.pieces) == 36


async def test_keep_alive_comments_flow_while_the_model_is_silent(
    tmp_path: Path, request: pytest.FixtureRequest, fake_gemini: FakeGemini
) -> None:
    settings = stack_settings(
        "file-disk", tmp_path, request, **gemini_settings(fake_gemini, sse_keepalive_seconds=0.2)
    )
    reply, answer = gemini_answer(pieces=12)
    fake_gemini.responder = lambda _: (200, answer)
    fake_gemini.stream_first_delay = 1.0
    async with live_server(settings) as live:
        sid = await new_session(live.client)
        streamed = await stream_live(live.client, interview_path(sid), "こんにちは")
    first_delta = streamed.of("delta")[0].at
    early = [at for at, _ in streamed.comments if at < first_delta]
    assert early, streamed.comments
    # Sent during the model's silence, before its first piece.
    assert min(early) < fake_gemini.pieces[0][0]
    assert streamed.done["reply"] == reply == joined(streamed.of("delta"))


async def test_the_first_piece_reaches_the_client_while_the_model_still_writes(
    tmp_path: Path, request: pytest.FixtureRequest, fake_gemini: FakeGemini
) -> None:
    settings = stack_settings("file-disk", tmp_path, request, **gemini_settings(fake_gemini))
    reply, answer = gemini_answer(pieces=40)
    fake_gemini.responder = lambda _: (200, answer)
    fake_gemini.stream_interval = 0.02
    async with live_server(settings) as live:
        sid = await new_session(live.client)
        streamed = await stream_live(live.client, interview_path(sid), "こんにちは")
    pieces = fake_gemini.pieces
    assert len(pieces) == 40
    deltas = streamed.of("delta")
    assert joined(deltas) == reply == streamed.done["reply"]
    first_at = deltas[0].at
    written_before = sum(1 for at, _ in pieces if at <= first_at)
    assert first_at < pieces[-1][0], f"the first delta came after all {len(pieces)} pieces"
    assert written_before < len(pieces)
    assert len(deltas) > 1  # streamed along, not sent in one go at the end


async def test_done_is_sent_only_after_the_turn_is_committed(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    settings = stack_settings("file-disk", tmp_path, request)
    async with live_server(settings) as live:
        sessions = live.app.state.services.sessions
        real_commit = sessions.commit
        commits: list[str] = []

        async def slow_commit(*args: Any, **kwargs: Any) -> Any:
            commits.append("started")
            await asyncio.sleep(0.3)  # a slow store: a `done` sent early would be seen
            result = await real_commit(*args, **kwargs)
            commits.append("finished")
            return result

        sid = await new_session(live.client)
        sessions.commit = slow_commit
        seen: list[list[dict[str, Any]]] = []

        async def on_event(event: Event) -> None:
            if event.kind == "done":  # read the session while the stream is still open
                seen.append((await status_of(live.client, sid))["conversation_history"])

        try:
            streamed = await stream_live(
                live.client, interview_path(sid), INTERVIEW[0], on_event=on_event
            )
        finally:
            del sessions.commit
    assert commits == ["started", "finished"]
    assert seen == [streamed.done["conversation_history"]]
    assert len(seen[0]) == 2


async def test_a_gemini_family_turns_lines_keep_their_place_in_done(
    make_api: OpenApi, fake_gemini: FakeGemini
) -> None:
    """The model may speak the child first: the stored reply keeps the order it was shown
    in, so each delta's `line` is that line's place in `done.reply`."""
    api = await make_api(**gemini_settings(fake_gemini))
    sid = await new_session(api)
    fake_gemini.enqueue(200, json_text_body({"reply": "ありがとう", "extracted": COMPLETE_PROFILE}))
    ok(await post_json(api, interview_path(sid), "全部話します"))
    lines = [
        {"speaker": "太郎", "message": "ぼく、沖縄に行きたい！"},
        {"speaker": "健太", "message": "いいですね、沖縄にしましょう。"},
    ]
    answer = {"lines": lines, "trip_info": {"destination": "沖縄"}, "proposal_answer": None}
    fake_gemini.enqueue(200, json_text_body(answer))
    turn = await stream(api, family_path(sid), "沖縄に行きたい")
    streamed = by_line(turn.of("delta"))
    shown = [(streamed[i][0].data["speaker"], joined(streamed[i])) for i in sorted(streamed)]
    assert shown == [(e["speaker"], e["message"]) for e in turn.done["reply"]]
    assert shown[:2] == [(line["speaker"], line["message"]) for line in lines]


async def test_a_server_told_to_stop_lets_a_running_stream_end_with_done(
    tmp_path: Path, request: pytest.FixtureRequest, fake_gemini: FakeGemini
) -> None:
    """A deploy's SIGTERM: uvicorn drains, and a stream already running still ends with its
    `done` (the turn is committed), not cut off in the middle."""
    settings = stack_settings("file-disk", tmp_path, request, **gemini_settings(fake_gemini))
    _, answer = gemini_answer(pieces=30)
    fake_gemini.responder = lambda _: (200, answer)
    fake_gemini.stream_interval = 0.05
    kinds: list[str] = []
    async with live_server(settings) as live:
        sid = await new_session(live.client)
        path = interview_path(sid)
        async with live.client.stream("POST", path, json={"message": "hi"}, headers=SSE) as r:
            async for line in r.aiter_lines():
                if line.startswith("event:"):
                    kinds.append(line.removeprefix("event:").strip())
                    if len(kinds) == 1:
                        live.server.should_exit = True  # what uvicorn's SIGTERM handler sets
    assert kinds[0] == "delta" and kinds[-1] == "done", kinds
