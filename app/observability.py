"""Metrics and spans around the ports: every store operation and model call, lock waits.

The container wraps the stores and brains it built in these proxies only when metrics or
tracing are on, so with both off nothing here runs on the hot path. A proxy times each
coroutine method of the object it wraps (a span named `<store>.<operation>` or
`model.<kind>`, and the Prometheus series of `app/metrics.py`); the agents and adapters do
not know they are observed.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager, nullcontext
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
_NOT_OPERATIONS: Final = frozenset({"aclose", "lock", "iter_ids", "iter_owners", "list"})


@dataclass(frozen=True)
class Observer:
    metrics: Metrics | None = None
    tracer: Any = None  # an OpenTelemetry Tracer when tracing is on

    @contextmanager
    def _span(self, name: str, **attributes: str) -> Iterator[None]:
        if self.tracer is None:
            yield
            return
        with self.tracer.start_as_current_span(name, attributes=attributes):
            yield

    @contextmanager
    def store_operation(self, store: str, operation: str) -> Iterator[None]:
        started, outcome = time.perf_counter(), "ok"
        try:
            with self._span(f"{store}.{operation}", **{"hera.store": store}):
                yield
        except StoreUnavailable:
            outcome = "unavailable"
            raise
        except Exception:
            outcome = "error"  # not found, busy, conflict ...: the store answered
            raise
        finally:
            if self.metrics is not None:
                self.metrics.store_operations.labels(store, operation, outcome).inc()
                self.metrics.store_seconds.labels(store, operation).observe(
                    time.perf_counter() - started
                )

    @contextmanager
    def model_call(self, provider: str, model: str, kind: str) -> Iterator[None]:
        started, outcome = time.perf_counter(), "ok"
        try:
            with self._span(f"model.{kind}", **{"hera.model": model, "hera.provider": provider}):
                yield
        except Overloaded:
            outcome = "overloaded"
            raise
        except BrainTimeout:
            outcome = "timeout"
            raise
        except Exception:
            outcome = "error"
            raise
        finally:
            if self.metrics is not None:
                self.metrics.model_calls.labels(provider, model, kind, outcome).inc()
                self.metrics.model_seconds.labels(provider, kind).observe(
                    time.perf_counter() - started
                )

    def retried(self, provider: str, purpose: str) -> None:
        if self.metrics is not None:
            kind = PURPOSE_KINDS.get(purpose, "other")
            self.metrics.model_retries.labels(provider, kind).inc()

    def refused(self, reason: str, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.refusals.labels(reason, kind).inc()


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

        @functools.wraps(method)
        async def observed(*args: Any, **kwargs: Any) -> Any:
            with observer.store_operation(store, name):
                return await method(*args, **kwargs)

        return observed

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
    span = observer._span("sessions.lock") if observer.tracer is not None else nullcontext()
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

        @functools.wraps(method)
        async def observed(*args: Any, **kwargs: Any) -> Any:
            with observer.model_call(provider, model, kind):
                return await method(*args, **kwargs)

        return observed

    return _Proxy(inner, wrap)
