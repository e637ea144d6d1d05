"""Model slots: how many model calls one process runs at once, and how many may wait.

The SDK's connection pool is unlimited, so the slots are the bound. When every slot is busy
and `max_queue` calls already wait, a new call is shed at once with `Overloaded` (503 with
Retry-After) instead of joining a queue that could only grow.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from app.agents.brains import Overloaded


class ModelSlots:
    def __init__(self, *, limit: int, max_queue: int) -> None:
        if limit <= 0 or max_queue < 0:
            raise ValueError("limit must be > 0 and max_queue >= 0")
        self._semaphore = asyncio.Semaphore(limit)
        self._max_queue = max_queue
        self._waiting = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    async def __aenter__(self) -> None:
        if self._semaphore.locked() and self._waiting >= self._max_queue:
            raise Overloaded
        self._waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self._waiting -= 1

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._semaphore.release()
