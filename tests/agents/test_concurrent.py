"""`all_or_none`: results in order, a bound on what runs at once, and a failure that stops
the rest (those waiting for their turn never start). And the quota names are the limits."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from app.agents.concurrent import all_or_none
from app.agents.turns import QUOTA_NAMES, Quotas


async def test_results_come_in_the_order_of_the_calls_with_at_most_the_bound_running() -> None:
    running, most = 0, 0

    async def call(n: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.001 * (n % 3))  # finishing out of order
        running -= 1
        return n

    assert await all_or_none([call(n) for n in range(20)], at_most=5) == list(range(20))
    assert most == 5


async def test_the_first_failure_is_raised_itself_and_the_waiting_calls_never_start() -> None:
    started: list[int] = []

    async def call(n: int) -> int:
        started.append(n)
        await asyncio.sleep(0)
        if n == 1:
            raise LookupError("the second one fails")
        await asyncio.Event().wait()  # only a cancel ends the others
        return n

    calls = [call(n) for n in range(10)]
    with pytest.raises(LookupError):
        await all_or_none(calls, at_most=3)
    # Every call ended: finished, cancelled, or closed before it ran (none left to warn
    # "never awaited" when collected).
    assert all(inspect.getcoroutinestate(c) == inspect.CORO_CLOSED for c in calls)
    # The three first, and at most the one the failure freed a place for: the rest were
    # cancelled while waiting for their turn (closed, never run).
    assert started[:3] == [0, 1, 2] and len(started) <= 4


def test_every_quota_name_is_a_limit_of_quotas_and_nothing_else() -> None:
    assert tuple(Quotas.__dataclass_fields__) == QUOTA_NAMES
