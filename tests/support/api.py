"""Small HTTP helpers shared by the API-level tests."""

from __future__ import annotations

from typing import Any

import httpx


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
