"""OpenTelemetry traces: on only with OTEL_EXPORTER_OTLP_ENDPOINT (or a test's exporter).

A turn is one trace: the request's server span (named by its route template) with a span for
the lock, each store operation and the model call; the response's X-Request-ID and the access
line's request id are its trace id. Off, not one OpenTelemetry module is imported (checked in
a fresh interpreter). On with a real endpoint, the official OTLP/HTTP exporter posts the spans
to a local recording server on a loopback port.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from app.container import Replacements
from tests.api.conftest import open_client, stack_settings
from tests.reliability._servers import REPO, server_env
from tests.support.api import new_session
from tests.support.polling import eventually

SESSION = "/api/sessions/{session_id}"


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    """The app replaces its root handler; put the previous ones back (capsys's stream dies)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@dataclass
class OtlpRecorder:
    """A tiny OTLP/HTTP endpoint: records every POST (path, content type, body)."""

    url: str
    posts: list[tuple[str, str, bytes]] = field(default_factory=list)

    def traces(self) -> list[bytes]:
        return [body for path, _, body in list(self.posts) if path == "/v1/traces"]


@pytest.fixture
def otlp_recorder() -> Iterator[OtlpRecorder]:
    recorder = OtlpRecorder(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            recorder.posts.append((self.path, self.headers.get("content-type", ""), body))
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")  # an empty ExportTraceServiceResponse
            self.end_headers()

        def log_message(self, *_: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _hex(trace_id: int) -> str:
    return f"{trace_id:032x}"


def _ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[str]:
    names = []
    parent = span.parent
    while parent is not None and parent.span_id in by_id:
        names.append(by_id[parent.span_id].name)
        parent = by_id[parent.span_id].parent
    return names


# ------------------------------------------------------------------------------ one turn
async def test_a_turn_is_one_trace_and_its_id_is_the_request_id(
    tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    exporter = InMemorySpanExporter()
    settings = stack_settings(
        "file-disk", tmp_path, request, rate_limits="off", log_format="json", log_level="INFO"
    )
    assert settings.otel_exporter_otlp_endpoint is None  # on through the exporter alone
    async for api in open_client(settings, Replacements(span_exporter=exporter)):
        sid = await new_session(api)
        exporter.clear()
        capsys.readouterr()
        # A request id the client chose gives way to the trace id.
        response = await api.post(
            f"/api/sessions/{sid}/messages",
            json={"message": "こんにちは"},
            headers={"x-request-id": "client-chosen-id"},
        )
        assert response.status_code == 200, response.text
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
        second = await api.get(f"/api/sessions/{sid}")
        assert second.status_code == 200

    spans = list(exporter.get_finished_spans())
    servers = [s for s in spans if s.kind == SpanKind.SERVER]
    assert [s.name for s in servers] == [f"POST {SESSION}/messages", f"GET {SESSION}"]
    server = servers[0]
    assert server.attributes is not None
    assert server.attributes.get("http.route") == f"{SESSION}/messages"
    assert sid not in server.name
    trace_id = server.context.trace_id
    turn = [s for s in spans if s.context.trace_id == trace_id]
    by_id = {s.context.span_id: s for s in turn}
    names = [s.name for s in turn if s.kind == SpanKind.INTERNAL and "http " not in s.name]
    assert names == ["sessions.lock", "sessions.load", "model.interview", "sessions.commit"]
    for span in turn:
        if span is not server:  # every span of the turn hangs under the request's span
            assert _ancestors(span, by_id)[-1] == server.name, span.name
    model = next(s for s in turn if s.name == "model.interview")
    assert model.attributes is not None
    assert (model.attributes["hera.provider"], model.attributes["hera.model"]) == (
        "offline",
        "offline",
    )
    load = next(s for s in turn if s.name == "sessions.load")
    assert load.attributes is not None and load.attributes["hera.store"] == "sessions"
    assert all(sid not in s.name for s in spans)

    # The request id is the trace id: in the response header and on the access line.
    request_id = response.headers["x-request-id"]
    assert request_id == _hex(trace_id)
    assert len(request_id) == 32 and int(request_id, 16) == trace_id
    access = [line for line in lines if line.get("logger") == "hera.access"]
    assert [(line["path"], line["request_id"]) for line in access] == [
        (f"{SESSION}/messages", request_id)
    ]
    assert all(line["request_id"] == request_id for line in lines)
    # Another request is another trace.
    assert second.headers["x-request-id"] == _hex(servers[1].context.trace_id) != request_id


# ------------------------------------------------------------------------------ off / on
# What the app itself would load to trace: none of it when off. (FastAPI imports the
# OpenTelemetry API for its native telemetry, and redis-py 8 its metrics SDK, whatever the
# app does: those come with the imports, and serving requests must add nothing to them.)
TRACING_MODULES = (
    "app.tracing",
    "opentelemetry.sdk.trace",
    "opentelemetry.instrumentation",
    "opentelemetry.exporter",
)

_PROBE = textwrap.dedent(
    """
    import asyncio, json, sys

    def otel():
        return sorted(m for m in sys.modules if m.split(".")[0] in ("opentelemetry", "app"))

    import fastapi, httpx, redis.asyncio  # the libraries' own imports
    imported = otel()
    from app.main import create_app

    async def main():
        app = create_app()
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://hera.test") as c:
                created = await c.post("/api/sessions")
                assert created.status_code == 201, created.text
                sid = created.json()["session_id"]
                turn = await c.post(f"/api/sessions/{sid}/messages", json={"message": "hi"})
                assert turn.status_code == 200, turn.text
                served = otel()
        print("PROBE " + json.dumps({"imported": imported, "served": served}))

    asyncio.run(main())
    """
)


def _tracing(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == t or m.startswith(f"{t}.") for t in TRACING_MODULES)]


@pytest.mark.parametrize("endpoint", [False, True], ids=["off", "on"])
def test_tracing_off_imports_none_of_it(
    endpoint: bool, tmp_path: Path, otlp_recorder: OtlpRecorder
) -> None:
    """A fresh interpreter builds the app from the environment and serves a turn; only with
    the endpoint set is anything of tracing imported (the second case proves the probe sees
    it)."""
    env = {k: v for k, v in server_env().items() if not k.upper().startswith("OTEL_")}
    env.update(HERA_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(REPO))
    if endpoint:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp_recorder.url
    result = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=tmp_path,  # no .env of the checkout
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("PROBE "))
    probe = json.loads(line.removeprefix("PROBE "))
    imported = [m for m in probe["imported"] if m.startswith("opentelemetry")]
    served = [m for m in probe["served"] if m.startswith("opentelemetry")]
    assert _tracing(probe["imported"]) == []
    if endpoint:
        loaded = _tracing(probe["served"])
        assert {t for t in TRACING_MODULES if any(m.startswith(t) for m in loaded)} == set(
            TRACING_MODULES
        )
        assert otlp_recorder.traces(), "the shutdown flushed no spans to the endpoint"
    else:
        assert _tracing(probe["served"]) == []
        assert sorted(set(served) - set(imported)) == []  # the app added not one module
        assert otlp_recorder.posts == []


async def test_spans_reach_a_real_otlp_endpoint(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    otlp_recorder: OtlpRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As deployed: the variable itself (the exporter reads it), a short batch delay.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_recorder.url)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    settings = stack_settings("file-disk", tmp_path, request, rate_limits="off")
    assert settings.otel_exporter_otlp_endpoint == otlp_recorder.url
    async for api in open_client(settings):
        response = await api.post("/api/sessions")
        assert response.status_code == 201

        async def exported() -> bool:
            return bool(otlp_recorder.traces())

        # Exported while the app runs (the batch's schedule), not only at shutdown.
        await eventually(exported, within=10.0, what="a POST of spans to /v1/traces")
    posts = [(path, kind) for path, kind, _ in otlp_recorder.posts]
    assert set(posts) == {("/v1/traces", "application/x-protobuf")}
    names, services, request_traces = set(), set(), set()
    for body in otlp_recorder.traces():
        assert body
        export = ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            for attribute in resource_spans.resource.attributes:
                if attribute.key == "service.name":
                    services.add(attribute.value.string_value)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    names.add(span.name)
                    if span.name == "POST /api/sessions":
                        request_traces.add(span.trace_id.hex())
    assert "POST /api/sessions" in names
    assert "sessions.create" in names
    assert request_traces == {response.headers["x-request-id"]}
    assert services == {os.environ.get("OTEL_SERVICE_NAME", "hera")}
