"""The observing proxies of app/observability.py, on their own (no app): a store operation or
model call cancelled while it runs is counted as `cancelled` (never `ok`) and the
cancellation goes on; each wrapped method binds its label children once, not per call."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.metrics import Metrics
from app.observability import Observer, observe_brain, observe_store


class Hanging:
    """A store and a brain whose calls wait until cancelled (or answer at once)."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()

    async def get(self, *, key: str) -> bytes:
        self.entered.set()
        await asyncio.Event().wait()
        raise AssertionError("never reached")

    async def interview_turn(self, **_: Any) -> str:
        return await self.get(key="turn")

    async def ping(self) -> None:
        return None


def count(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def cancel_while_running(hanging: Hanging, call: Any) -> None:
    task = asyncio.create_task(call)
    await hanging.entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_cancelled_store_operation_is_counted_as_cancelled() -> None:
    metrics, hanging = Metrics(), Hanging()
    store = observe_store(hanging, "blobs", Observer(metrics=metrics))
    await cancel_while_running(hanging, store.get(key="k"))
    series = "hera_store_operations_total"
    assert count(metrics, series, store="blobs", operation="get", outcome="cancelled") == 1
    assert count(metrics, series, store="blobs", operation="get", outcome="ok") is None
    seconds = "hera_store_operation_duration_seconds_count"
    assert count(metrics, seconds, store="blobs", operation="get") == 1


async def test_a_cancelled_model_call_is_counted_as_cancelled() -> None:
    metrics, hanging = Metrics(), Hanging()
    brain = observe_brain(hanging, "offline", "offline", Observer(metrics=metrics))
    await cancel_while_running(hanging, brain.interview_turn())
    labels = {"provider": "offline", "model": "offline", "kind": "interview"}
    assert count(metrics, "hera_model_calls_total", **labels, outcome="cancelled") == 1
    assert count(metrics, "hera_model_calls_total", **labels, outcome="ok") is None


async def test_a_store_operation_binds_its_series_once(monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = Metrics()
    bound: list[tuple[str, ...]] = []
    for family in (metrics.store_operations, metrics.store_seconds):
        labels = family.labels

        def counted(*values: str, _labels: Any = labels) -> Any:
            bound.append(values)
            return _labels(*values)

        monkeypatch.setattr(family, "labels", counted)
    store = observe_store(Hanging(), "blobs", Observer(metrics=metrics))
    for _ in range(3):
        await store.ping()
    assert sorted(bound) == [("blobs", "ping"), ("blobs", "ping", "ok")]
    ok = {"store": "blobs", "operation": "ping", "outcome": "ok"}
    assert count(metrics, "hera_store_operations_total", **ok) == 3
