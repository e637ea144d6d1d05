"""`app.main:app` unchanged, plus an `X-Served-By: <pid>` response header.

Only for `uvicorn --workers N` tests: it tells which worker process answered each request, so
a test can prove that every worker served part of the journey.
"""

from __future__ import annotations

import os

from starlette.types import Message, Receive, Scope, Send

from app.main import app as hera_app

_PID = str(os.getpid()).encode()


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        await hera_app(scope, receive, send)  # lifespan: the real app builds its stores
        return

    async def send_with_pid(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), (b"x-served-by", _PID)]
        await send(message)

    await hera_app(scope, receive, send_with_pid)
