"""Server-sent events for the chat routes: the same turn, its text sent as it is written.

A route asked with `Accept: text/event-stream` starts its turn in a task of its own
(`TurnTasks`) and waits until the turn has begun (its lock, checks and quota passed) or has
ended. An error before that is the same JSON error the route always answers (404, 409,
429, ...); from then on the answer is `text/event-stream`:

    event: delta    data: {"speaker", "role"?, "line", "text"}   a piece of a line
    event: story    data: {"text"}                                a piece of the story
    event: letter   data: {"text"}                                a piece of the letter
    event: done     data: <the JSON route's body>                 after the commit
    event: error    data: {"error", "code", ...}                  the JSON route's error

with a keep-alive comment after each `SSE_KEEPALIVE_SECONDS` the model is silent. A client that goes away stops only the
sending: the turn is committed whole, and the next read shows it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, TypeVar

from fastapi import Request
from pydantic import BaseModel
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.responses import Response

from app.agents.streams import SHUTDOWN_GRACE_SECONDS, TurnStream
from app.errors import AppError, error_reply, reply_for
from app.logs import request_id_var

T = TypeVar("T")
log = logging.getLogger(__name__)
EVENT_STREAM: Final = "text/event-stream"
SSE_HEADERS: Final = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def wants_events(request: Request) -> bool:
    return EVENT_STREAM in request.headers.get("accept", "").lower()


def event_stream_doc(description: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI entry of a route's streamed 200 (beside its JSON model)."""
    return {
        200: {
            "description": description,
            "content": {EVENT_STREAM: {"schema": {"type": "string"}}},
        }
    }


def error_payload(error: BaseException) -> dict[str, Any]:
    """The body of the JSON error the route would have answered with."""
    reply = reply_for(error) if isinstance(error, Exception) else None
    if reply is None:
        log.error("unhandled error in a streamed turn", exc_info=error)
        unexpected = AppError()  # its status, code and message are the unexpected error's
        reply = error_reply(
            unexpected.status, unexpected.code, unexpected.message, request_id=request_id_var.get()
        )
    return reply.body


def _event(kind: str, data: dict[str, Any]) -> ServerSentEvent:
    # As FastAPI renders JSON (compact, UTF-8 as is), so `done` is the JSON body's text.
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return ServerSentEvent(data=text, event=kind)


async def stream_turn(
    request: Request,
    turn: Callable[[TurnStream], Awaitable[T]],
    shape: Callable[[T], dict[str, Any]],
    model: type[BaseModel],
) -> Response:
    """Run `turn` streamed; `shape` and `model` make the JSON route's body from its result."""
    services = request.app.state.services
    stream = TurnStream()

    async def run() -> T:
        return await turn(stream)

    task = services.turn_tasks.start(run())
    began = asyncio.ensure_future(stream.began.wait())
    try:
        await asyncio.wait({task, began}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        began.cancel()
    if task.done() and (error := task.exception()) is not None:
        raise error  # before the stream began: the route's own JSON error

    def body(result: T) -> dict[str, Any]:
        return model.model_validate(shape(result)).model_dump(mode="json", by_alias=True)

    return EventSourceResponse(
        _events(stream, task, body, services.settings.sse_keepalive_seconds),
        headers=SSE_HEADERS,
        ping=0,  # our own keep-alive: only when the model is silent
        # A server told to stop lets a running turn's stream end with its `done`.
        shutdown_grace_period=SHUTDOWN_GRACE_SECONDS,
    )


async def _events(
    stream: TurnStream,
    task: asyncio.Task[T],
    body: Callable[[T], dict[str, Any]],
    keepalive: float,
) -> AsyncIterator[ServerSentEvent]:
    try:
        while not task.done():
            more = asyncio.ensure_future(stream.wait())
            try:
                await asyncio.wait(
                    {task, more}, timeout=keepalive, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                more.cancel()
            pieces = stream.take()
            if not pieces and not task.done():
                yield ServerSentEvent(comment="keep-alive")  # silent for `keepalive` seconds
            for kind, data in pieces:
                yield _event(kind, data)
        for kind, data in stream.take():
            yield _event(kind, data)
        error = task.exception()
        if error is None:
            yield _event("done", body(task.result()))
        else:
            yield _event("error", error_payload(error))
    finally:
        stream.close()  # a client that went away: the turn goes on, its pieces are dropped
