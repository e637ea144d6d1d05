"""The one place tests (and benchmarks) wait: polling a condition against a deadline.

Nothing here sleeps for a fixed time to let something happen; each wait ends as soon as the
condition holds and fails with a message naming what did not happen.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager, asynccontextmanager
from typing import TypeVar

import httpx

T = TypeVar("T")
POLL_INTERVAL = 0.05  # between two checks; the deadline, not this, bounds the wait


def wait_until(check: Callable[[], bool], *, within: float, what: str, setup: bool = False) -> None:
    """Poll from synchronous code only: in a coroutine, the sleeps would stall the event loop
    (and every task on it), so there it refuses and `eventually` is the way. `setup` is for
    a session fixture starting a shared server, which pytest may set up lazily from inside an
    async fixture: nothing of the test runs on the loop yet."""
    try:
        in_task = asyncio.current_task() is not None
    except RuntimeError:  # no event loop at all
        in_task = False
    if in_task and not setup:
        raise RuntimeError(f"wait_until ({what}) in async code blocks the loop; use eventually")
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {within} s")
        time.sleep(POLL_INTERVAL)


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within} s")
        await asyncio.sleep(POLL_INTERVAL)


def wait_for_http(
    url: str,
    *,
    within: float = 30.0,
    process: subprocess.Popen[bytes] | subprocess.Popen[str] | None = None,
    ok: Callable[[int], bool] = lambda status: status == 200,
    describe: Callable[[], str] = lambda: "",
) -> None:
    """Poll `url` until it answers with a status `ok` accepts; fail early if `process` exits."""

    def answered() -> bool:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process behind {url} exited ({process.returncode}) {describe()}")
        try:
            return ok(httpx.get(url, timeout=1.0).status_code)
        except httpx.TransportError:
            return False

    try:
        wait_until(answered, within=within, what=f"an answer from {url}")
    except TimeoutError as exc:
        raise TimeoutError(f"{exc} {describe()}") from None


@asynccontextmanager
async def entered_in_thread(manager: AbstractContextManager[T]) -> AsyncIterator[T]:
    """A blocking context manager (start a server, wait until it answers; stop it) used from
    async code: entered and left in a worker thread, so the event loop keeps running."""
    value = await asyncio.to_thread(manager.__enter__)
    try:
        yield value
    except BaseException as exc:
        if not await asyncio.to_thread(manager.__exit__, type(exc), exc, exc.__traceback__):
            raise
    else:
        await asyncio.to_thread(manager.__exit__, None, None, None)
