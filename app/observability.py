"""Metrics and spans around the ports: every store operation and model call, lock waits.

The container wraps the stores and brains it built in these proxies only when metrics or
tracing are on, so with both off nothing here runs on the hot path. A proxy times each
coroutine method of the object it wraps (a span named `<store>.<operation>` or
`model.<kind>`, and the Prometheus series of `app/metrics.py`); the agents and adapters do
not know they are observed.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import AsyncIterator, Callable
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    nullcontext,
)
from dataclasses import dataclass
from typing import Any, Final

from app.agents.brains import BrainTimeout, Overloaded
from app.metrics import Metrics
from app.repositories.base import SessionBusy, StoreUnavailable

# Which model kind each brain method (and each Gemini call's purpose) is: a bounded label.
PURPOSE_KINDS: Final = {
    "interview": "interview",
    "family turn": "family",
    "story": "story",
    "letter": "letter",
    "partner image": "image",
    "child image": "image",
}
MODEL_KINDS: Final = {
    "interview_turn": "interview",
    "family_turn": "family",
    "write_story": "story",
    "write_letter": "letter",
    "partner_image": "image",
    "child_image": "image",
}
# Coroutine methods of a store that are not operations. (Its lock is timed by its own
# wrapper, and its listings, async generators, are never wrapped.)
_NOT_OPERATIONS: Final = frozenset({"aclose"})


class _Series:
    """The Prometheus series of one wrapped method, label children bound once: the
    duration's at wrapping, the count's the first time each outcome happens (so only
    outcomes that happened are exposed). The hot path then skips prometheus-client's label
    lookup."""

    __slots__ = ("_children", "_counter", "_labels", "seconds")

    def __init__(self, counter: Any, seconds: Any, *labels: str) -> None:
        self._counter = counter
        self._labels = labels
        self._children: dict[str, Any] = {}
        self.seconds = seconds

    def count(self, outcome: str) -> None:
        child = self._children.get(outcome)
        if child is None:
            child = self._children[outcome] = self._counter.labels(*self._labels, outcome)
        child.inc()


@dataclass(frozen=True)
class Observer:
    metrics: Metrics | None = None
    tracer: Any = None  # an OpenTelemetry Tracer when tracing is on

    def _span(self, name: str, **attributes: str) -> AbstractContextManager[Any]:
        if self.tracer is None:
            return nullcontext()
        span: AbstractContextManager[Any] = self.tracer.start_as_current_span(
            name, attributes=attributes
        )
        return span

    def store_series(self, store: str, operation: str) -> _Series | None:
        if self.metrics is None:
            return None
        seconds = self.metrics.store_seconds.labels(store, operation)
        return _Series(self.metrics.store_operations, seconds, store, operation)

    def model_series(self, provider: str, model: str, kind: str) -> _Series | None:
        if self.metrics is None:
            return None
        seconds = self.metrics.model_seconds.labels(provider, kind)
        return _Series(self.metrics.model_calls, seconds, provider, model, kind)

    def retried(self, provider: str, purpose: str) -> None:
        if self.metrics is not None:
            kind = PURPOSE_KINDS.get(purpose, "other")
            self.metrics.model_retries.labels(provider, kind).inc()

    def refused(self, reason: str, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.refusals.labels(reason, kind).inc()


def _store_outcome(exc: BaseException) -> str:
    if isinstance(exc, StoreUnavailable):
        return "unavailable"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"  # its caller went away: neither the store's answer nor a failure
    return "error"  # not found, busy, conflict ...: the store answered


def _model_outcome(exc: BaseException) -> str:
    if isinstance(exc, Overloaded):
        return "overloaded"
    if isinstance(exc, BrainTimeout):
        return "timeout"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return "error"


def _observed(
    method: Any,
    observer: Observer,
    series: _Series | None,
    span: tuple[str, dict[str, str]],
    outcome_of: Callable[[BaseException], str],
) -> Any:
    """`method` timed into `series` (when metrics are on) inside a span (when tracing is)."""
    tracer = observer.tracer
    name, attributes = span

    @functools.wraps(method)
    async def observed(*args: Any, **kwargs: Any) -> Any:
        started, outcome = time.perf_counter(), "ok"
        try:
            if tracer is None:
                return await method(*args, **kwargs)
            with tracer.start_as_current_span(name, attributes=attributes):
                return await method(*args, **kwargs)
        except BaseException as exc:
            outcome = outcome_of(exc)
            raise
        finally:
            if series is not None:
                series.count(outcome)
                series.seconds.observe(time.perf_counter() - started)

    return observed


class _Proxy:
    """Times every coroutine method of `inner` (the bound wrappers are made once)."""

    def __init__(
        self, inner: Any, wrap: Callable[[str, Any], Any], overrides: dict[str, Any] | None = None
    ) -> None:
        self._inner = inner
        self._wrap = wrap
        self.__dict__.update(overrides or {})

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name.startswith("_") or not inspect.iscoroutinefunction(attribute):
            return attribute
        wrapped = self._wrap(name, attribute)
        setattr(self, name, wrapped)  # found directly from now on
        return wrapped


def observe_store(inner: Any, store: str, observer: Observer) -> Any:
    """A store (sessions, blobs, users) whose operations are observed; the sessions' lock
    also records how long a turn waited for it and how many turns hold one."""

    def wrap(name: str, method: Any) -> Any:
        if name in _NOT_OPERATIONS:
            return method
        series = observer.store_series(store, name)
        span = (f"{store}.{name}", {"hera.store": store})
        return _observed(method, observer, series, span, _store_outcome)

    overrides = {"lock": _observed_lock(inner.lock, observer)} if store == "sessions" else {}
    return _Proxy(inner, wrap, overrides)


def _observed_lock(lock: Any, observer: Observer) -> Any:
    @functools.wraps(lock)
    def observed(*args: Any, **kwargs: Any) -> AbstractAsyncContextManager[Any]:
        return _held(lock(*args, **kwargs), observer)

    return observed


@asynccontextmanager
async def _held(lock: AbstractAsyncContextManager[Any], observer: Observer) -> AsyncIterator[Any]:
    metrics = observer.metrics
    started = time.perf_counter()
    span = observer._span("sessions.lock")
    try:
        with span:
            lease = await lock.__aenter__()
    except SessionBusy:
        if metrics is not None:
            metrics.session_busy.inc()
        raise
    finally:
        if metrics is not None:
            metrics.lock_wait_seconds.observe(time.perf_counter() - started)
    if metrics is not None:
        metrics.turns_in_flight.inc()
    try:
        yield lease
    except BaseException as exc:
        if not await lock.__aexit__(type(exc), exc, exc.__traceback__):
            raise
    else:
        await lock.__aexit__(None, None, None)
    finally:
        if metrics is not None:
            metrics.turns_in_flight.dec()


def observe_brain(inner: Any, provider: str, model: str, observer: Observer) -> Any:
    """A brain whose calls are observed (kind by method: interview, family, story ...)."""

    def wrap(name: str, method: Any) -> Any:
        kind = MODEL_KINDS.get(name)
        if kind is None:
            return method
        series = observer.model_series(provider, model, kind)
        span = (f"model.{kind}", {"hera.model": model, "hera.provider": provider})
        return _observed(method, observer, series, span, _model_outcome)

    return _Proxy(inner, wrap)
