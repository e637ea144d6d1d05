"""Prometheus series of one app (`METRICS_ENABLED=true`), exposed at `GET /metrics`.

Built in the lifespan with a registry of its own. With `--workers N`, set
`PROMETHEUS_MULTIPROC_DIR` to an empty directory (`hera serve` empties it before the workers
start): prometheus-client then keeps each worker's values in files there, `/metrics` adds up
the files of every worker, and a worker that exits is marked dead. Labels are bounded: route
templates (never paths), store and operation names, model kinds, outcomes, status codes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
_FAST: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_SLOW: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)


class Metrics:
    def __init__(self, *, multiprocess_dir: Path | None = None) -> None:
        self._multiprocess_dir = multiprocess_dir
        registry = self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "hera_http_requests_total", "HTTP requests answered",
            ["method", "route", "status"], registry=registry,
        )  # fmt: skip
        self.http_seconds = Histogram(
            "hera_http_request_duration_seconds", "Time to answer a request (a stream: to its end)",
            ["method", "route"], buckets=_SLOW, registry=registry,
        )  # fmt: skip
        self.model_calls = Counter(
            "hera_model_calls_total",
            "Model calls by outcome (ok, error, timeout, overloaded, cancelled)",
            ["provider", "model", "kind", "outcome"], registry=registry,
        )  # fmt: skip
        self.model_seconds = Histogram(
            "hera_model_call_duration_seconds", "Time of a model call, retries included",
            ["provider", "kind"], buckets=_SLOW, registry=registry,
        )  # fmt: skip
        self.model_retries = Counter(
            "hera_model_retries_total", "Model call attempts that were tried again",
            ["provider", "kind"], registry=registry,
        )  # fmt: skip
        self.store_operations = Counter(
            "hera_store_operations_total",
            "Store operations by outcome (ok, error, unavailable, cancelled)",
            ["store", "operation", "outcome"], registry=registry,
        )  # fmt: skip
        self.store_seconds = Histogram(
            "hera_store_operation_duration_seconds", "Time of a store operation",
            ["store", "operation"], buckets=_FAST, registry=registry,
        )  # fmt: skip
        self.lock_wait_seconds = Histogram(
            "hera_lock_wait_seconds", "Time a turn waited for its session's lock",
            buckets=_FAST, registry=registry,
        )  # fmt: skip
        self.session_busy = Counter(
            "hera_session_busy_total", "Requests refused because their session stayed busy",
            registry=registry,
        )  # fmt: skip
        self.turns_in_flight = Gauge(
            "hera_turns_in_flight", "Operations holding a session's lock now",
            registry=registry, multiprocess_mode="livesum",
        )  # fmt: skip
        self.refusals = Counter(
            "hera_refusals_total", "Requests refused by a rate limit or a session quota",
            ["reason", "kind"], registry=registry,
        )  # fmt: skip

    def exposition(self) -> bytes:
        """The text format of every series (of every worker in multiprocess mode)."""
        if self._multiprocess_dir is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        _multiprocess().MultiProcessCollector(merged, path=str(self._multiprocess_dir))
        return generate_latest(merged)

    def close(self) -> None:
        """This worker is gone: its live gauges stop counting."""
        if self._multiprocess_dir is not None:
            _multiprocess().mark_process_dead(os.getpid(), path=str(self._multiprocess_dir))


def _multiprocess() -> Any:
    """prometheus-client's multiprocess helpers (untyped), imported only in that mode."""
    from prometheus_client import multiprocess

    return multiprocess


def empty_multiprocess_dir(directory: Path) -> None:
    """Before the workers start: stale files of an earlier run would be added to every
    scrape."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in directory.glob("*.db"):
        path.unlink(missing_ok=True)
