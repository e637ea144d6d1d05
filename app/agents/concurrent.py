"""Running an agent's independent store or model calls side by side."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any, Final, TypeVar

T = TypeVar("T")
# Reads of one listing in flight at once: a page of 100 is not 100 connections at once.
READS_AT_ONCE: Final = 16


async def _gated(call: Coroutine[Any, Any, T], gate: asyncio.Semaphore | None) -> T:
    if gate is None:
        return await call
    try:
        await gate.acquire()
    except BaseException:
        call.close()  # cancelled before it started: nothing of it ran
        raise
    try:
        return await call
    finally:
        gate.release()


async def all_or_none(
    calls: Sequence[Coroutine[Any, Any, T]], *, at_most: int | None = None
) -> list[T]:
    """The results in the order of `calls`, run side by side (`at_most` at a time). On the
    first failure the rest are cancelled (no time is spent on results nobody will use) and
    that failure itself is raised, not a group."""
    gate = asyncio.Semaphore(at_most) if at_most is not None else None
    tasks = [asyncio.ensure_future(_gated(call, gate)) for call in calls]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # wait until they have stopped
        raise
