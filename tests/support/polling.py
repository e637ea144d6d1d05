"""The one place tests (and benchmarks) wait: polling a condition against a deadline.

Nothing here sleeps for a fixed time to let something happen; each wait ends as soon as the
condition holds and fails with a message naming what did not happen.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable

import httpx

POLL_INTERVAL = 0.05  # between two checks; the deadline, not this, bounds the wait


def wait_until(check: Callable[[], bool], *, within: float, what: str) -> None:
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
