"""Small HTTP helpers shared by the API-level tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from app.main import create_app
from app.settings import Settings


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """One app instance (one set of store clients) for the whole test, driven over ASGI."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://hera.test") as client:
            yield client


def json_of(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.request.url}: {response.text}"
    return response.json()


def assert_200_or_store_unavailable(
    response: httpx.Response, what: str, store: str = "sessions"
) -> None:
    """During an outage or a failover: an answer, or the JSON 503 of the unavailable store."""
    if response.status_code == 200:
        return
    assert response.status_code == 503, f"{what}: {response.status_code} {response.text}"
    assert response.headers["content-type"].startswith("application/json"), what
    body = response.json()
    assert body["code"] == "store_unavailable" and body["store"] == store, (what, body)


async def new_session(api: httpx.AsyncClient) -> str:
    response = await api.post("/api/sessions")
    assert response.status_code == 201, response.text
    return str(response.json()["session_id"])


def assert_json_error(
    response: httpx.Response, status: int, code: str | None = None
) -> dict[str, Any]:
    """The API's error shape: `status`, a JSON body with a non-empty `error` and `code`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["code"], str) and body["code"]
    if code is not None:
        assert body["code"] == code, body
    return body
