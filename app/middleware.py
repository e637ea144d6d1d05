"""ASGI middlewares: request context (outermost), then inside CORS the body-size and 500 guard."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.exceptions import HTTPException as StarletteHTTPException
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


class RequestContextMiddleware:
    """Request id and one access line per request. The outermost middleware, so even a CORS
    preflight answered by CORSMiddleware itself is logged with its id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = (header(scope, b"x-request-id") or b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
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
            log.info(
                "%s %s %s",
                scope["method"],
                path,
                status,
                extra={
                    "method": scope["method"],
                    "path": path,
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
            request_id_var.reset(token)


class _TooLarge(StarletteHTTPException):
    # An HTTPException, so FastAPI's body parsing re-raises it instead of turning it into 400.
    code = "payload_too_large"

    def __init__(self) -> None:
        super().__init__(413, "送信されたデータが大きすぎます。")


class GuardMiddleware:
    """Two guards in one layer (each layer costs every request a frame and a send wrapper):

    - 413 for bodies over the limit, counted as they arrive (chunked bodies included);
    - a JSON 500 for anything unexpected, logged with the request id, never echoed.

    It sits inside CORSMiddleware, so even a 500 carries CORS headers (a handler registered
    for Exception would run outside CORS and the browser would only see a CORS failure).
    """

    def __init__(self, app: ASGIApp, *, default_limit: int, upload_limit: int) -> None:
        self.app = app
        self.default_limit = default_limit
        self.upload_limit = upload_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Multipart framing adds a little around the file itself.
        is_upload = scope["path"].endswith("/photos/user")
        limit = self.upload_limit + 64 * 1024 if is_upload else self.default_limit
        declared = header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._too_large(scope, receive, send, limit)
            return
        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, send_wrapper)
        except _TooLarge:
            if not response_started:
                await self._too_large(scope, receive, send, limit)
        except Exception:
            log.exception("unhandled error")
            if not response_started:
                response = error_body(
                    500, "internal_error", "内部エラーが発生しました。",
                    request_id=request_id_var.get(),
                )  # fmt: skip
                await response(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = error_body(
            413, "payload_too_large", "送信されたデータが大きすぎます。", limit_bytes=limit
        )
        await response(scope, receive, send)
