"""A turn's text as the brain writes it, for the routes that stream it (server-sent events).

A streamed turn runs in a task of its own (`TurnTasks`), apart from the request that started
it, so a client that goes away never cancels or splits a turn: it is committed whole, as a
JSON request's would be. The turn writes the pieces of its texts into a `TurnStream`; the
route's sender takes what is there whenever it can send. Pieces of one text that pile up
while the sender waits are joined, so a stream holds only what it has not sent yet; once
its client is gone, new pieces are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any, Final, Literal, TypeVar

from app.agents.brains import LineSink, TextSink

T = TypeVar("T")
EventKind = Literal["delta", "story", "letter"]
log = logging.getLogger(__name__)
SHUTDOWN_GRACE_SECONDS: Final = 30.0


class TurnStream:
    """What one streamed turn has written and not yet sent, and whether it has begun (its
    checks passed and the model was asked: from then on a failure is an `error` event)."""

    def __init__(self) -> None:
        self._pending: dict[tuple[EventKind, int], dict[str, Any]] = {}
        self._wake = asyncio.Event()
        self.began = asyncio.Event()
        self._closed = False
        self._lines: dict[str, int] = {}  # speaker -> their current line's index
        self._next_line = 0

    # -- the turn's side -----------------------------------------------------------------
    def begin(self) -> None:
        self.began.set()

    def delta(self, speaker: str, text: str, *, role: str | None = None) -> None:
        """The next piece of `speaker`'s line in this turn (`line`: its place among the
        turn's lines, counted from 0)."""
        line = self._lines.setdefault(speaker, self._next_line)
        self._next_line = max(self._next_line, line + 1)
        data: dict[str, Any] = {"speaker": speaker, "line": line, "text": ""}
        if role is not None:
            data["role"] = role
        self._add("delta", line, data, text)

    def say(self, speaker: str, text: str, *, role: str | None = None) -> None:
        """A whole new line of `speaker` (one the agent adds, not the model)."""
        self._lines[speaker] = self._next_line
        self.delta(speaker, text, role=role)

    def reply_sink(self, speaker: str) -> TextSink:
        return lambda text: self.delta(speaker, text)

    def line_sink(self, roles: dict[str, str]) -> LineSink:
        """Member lines (name -> role); a name that is not a member is not streamed (the
        turn drops its line too)."""

        def sink(speaker: str, text: str) -> None:
            if speaker in roles:
                self.delta(speaker, text, role=roles[speaker])

        return sink

    def text_sink(self, kind: Literal["story", "letter"]) -> TextSink:
        return lambda text: self._add(kind, 0, {"text": ""}, text)

    def _add(self, kind: EventKind, index: int, data: dict[str, Any], text: str) -> None:
        if self._closed or not text:
            return
        pending = self._pending.setdefault((kind, index), data)
        pending["text"] += text
        self._wake.set()

    # -- the sender's side ---------------------------------------------------------------
    async def wait(self) -> None:
        """Until there is something to send."""
        await self._wake.wait()

    def take(self) -> list[tuple[EventKind, dict[str, Any]]]:
        """Everything not yet sent, oldest first; the stream then holds nothing."""
        taken = [(kind, data) for (kind, _), data in self._pending.items()]
        self._pending.clear()
        self._wake.clear()
        return taken

    def close(self) -> None:
        """The client is gone: later pieces are dropped (the turn itself goes on)."""
        self._closed = True
        self._pending.clear()


class TurnTasks:
    """The streamed turns of this process, each in a task of its own so that it ends whole
    whatever happens to its request; shutdown waits for them (a bounded time)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self, turn: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(turn)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            # Its sender reports it as an `error` event; a gone client's turn only logs it.
            log.debug("a streamed turn failed: %s", type(error).__name__)

    def __len__(self) -> int:
        return len(self._tasks)

    async def aclose(self) -> None:
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*self._tasks, return_exceptions=True),
                    SHUTDOWN_GRACE_SECONDS,
                )
