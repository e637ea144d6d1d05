"""ASGI middlewares: request context (outermost), then inside CORS the JSON 500 guard.

Request body limits are the routes' own (`app/routers/bodies.py`)."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import error_body
from app.logs import request_id_var

log = logging.getLogger("hera.access")


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of a (lower-case) request header, without building a dict of all."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Methods as metric labels; anything else a client sends is "other" (labels stay bounded).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class RequestContextMiddleware:
    """Request id and one access line per request. The outermost middleware, so even a CORS
    preflight answered by CORSMiddleware itself is logged with its id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope["app"].state if "app" in scope else None
        trace_id = state.trace_id(scope) if state is not None and state.trace_id else None
        incoming = (header(scope, b"x-request-id") or b"").decode("latin-1")
        request_id = trace_id or (incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            # A template, never the concrete path (ids are capabilities); "" is the UI mount.
            path = getattr(route, "path", None) or ("/<ui>" if route else "<unmatched>")
            duration = time.perf_counter() - started
            services = getattr(state, "services", None) if state is not None else None
            if services is not None and services.observer.metrics is not None:
                method = scope["method"] if scope["method"] in _METHODS else "other"
                observed = services.observer.metrics
                observed.http_requests.labels(method, path, str(status)).inc()
                observed.http_seconds.labels(method, path).observe(duration)
            log.info(
                "%s %s %s",
                scope["method"],
                path,
                status,
                extra={
                    "method": scope["method"],
                    "path": path,
                    "status": status,
                    "duration_ms": round(duration * 1000, 1),
                },
            )
            request_id_var.reset(token)


class ErrorMiddleware:
    """A JSON 500 for anything unexpected, logged with the request id, never echoed.

    It sits inside CORSMiddleware, so even a 500 carries CORS headers (a handler registered
    for Exception would run outside CORS and the browser would only see a CORS failure).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            log.exception("unhandled error")
            if not response_started:
                response = error_body(
                    500, "internal_error", "内部エラーが発生しました。",
                    request_id=request_id_var.get(),
                )  # fmt: skip
                await response(scope, receive, send)
