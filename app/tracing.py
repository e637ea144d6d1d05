"""OpenTelemetry traces, on only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (or a test hands in
an exporter). Off, nothing of OpenTelemetry is imported.

`instrument(app)` (in `create_app`) wraps the app in the official FastAPI instrumentation
with a tracer provider of this app's own (never the process-global one); the lifespan then
starts exporting (`start`: the OTLP/HTTP exporter, configured by the standard `OTEL_*`
variables, in a batch processor) and instruments redis-py and httpx with the same provider.
Spans: the request (FastAPI), every store operation and model call (`app/observability.py`),
each Redis command and outgoing HTTP call. The access log's request id is then the trace id.
"""

from __future__ import annotations

from typing import Any

from starlette.types import Scope


def instrument(app: Any) -> Any:
    """The app's tracer provider, with the FastAPI instrumentation in place."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    # Resource.create also reads OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES.
    provider = TracerProvider(resource=Resource.create({"service.name": "hera"}))
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, excluded_urls="api/health,api/ready,metrics"
    )
    return provider


class Tracing:
    """What the lifespan starts and stops: export, and the redis / httpx instrumentation."""

    def __init__(self, provider: Any, exporter: Any = None) -> None:
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            processor: Any = BatchSpanProcessor(OTLPSpanExporter())
        else:  # a test's in-memory exporter: every span at once
            processor = SimpleSpanProcessor(exporter)
        provider.add_span_processor(processor)
        self.provider = provider
        self.tracer = provider.get_tracer("hera")
        self._instrumentors: list[Any] = []

    def start(self) -> None:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        for instrumentor in (RedisInstrumentor(), HTTPXClientInstrumentor()):
            if not instrumentor.is_instrumented_by_opentelemetry:
                instrumentor.instrument(tracer_provider=self.provider)
                self._instrumentors.append(instrumentor)

    def stop(self) -> None:
        for instrumentor in self._instrumentors:
            instrumentor.uninstrument()
        self.provider.shutdown()  # flushes what the batch still holds


def current_trace_id(_: Scope) -> str | None:
    """The trace id of the request's span (32 hex digits), when there is one."""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None
