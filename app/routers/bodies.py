"""How much body a route reads, declared by its route class (not guessed from its path).

Every API route uses `LimitedRoute`: a declared `Content-Length` over the limit is refused
before anything is read, and the bytes are also counted as they arrive (chunked bodies have
no length to check) — no request body limit exists anywhere else in the stack. The upload
route declares the larger limit of `UploadRoute`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive

from app.errors import error_body
from app.settings import Settings

MULTIPART_FRAMING = 64 * 1024  # what a multipart form adds around the file itself


class BodyTooLarge(StarletteHTTPException):
    # An HTTPException, so FastAPI's body parsing re-raises it instead of turning it into 400.
    def __init__(self, limit: int) -> None:
        super().__init__(413, "送信されたデータが大きすぎます。")
        self.limit = limit


def too_large(limit: int) -> Response:
    return error_body(
        413, "payload_too_large", "送信されたデータが大きすぎます。", limit_bytes=limit
    )


def _counting(receive: Receive, limit: int) -> Receive:
    received = 0

    async def counted() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(limit)
        return message

    return counted


class LimitedRoute(APIRoute):
    """A route that reads at most `body_limit(settings)` bytes of request body (413 past it)."""

    @staticmethod
    def body_limit(settings: Settings) -> int:
        return settings.max_request_bytes

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        reads_body = self.body_field is not None

        async def limited(request: Request) -> Response:
            limit = self.body_limit(request.app.state.settings)
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                return too_large(limit)
            if not reads_body:  # nothing will read it: no bytes to count
                return await handler(request)
            try:
                return await handler(Request(request.scope, _counting(request.receive, limit)))
            except BodyTooLarge as exc:
                return too_large(exc.limit)

        return limited


class UploadRoute(LimitedRoute):
    """The photo upload: the file may be up to MAX_UPLOAD_BYTES, plus its multipart framing."""

    @staticmethod
    def body_limit(settings: Settings) -> int:
        return settings.max_upload_bytes + MULTIPART_FRAMING
