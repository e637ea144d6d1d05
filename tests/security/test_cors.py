"""CORS: only the configured origins, never `*` with credentials, and errors — a 500 included
— still carry the headers an allowed origin needs to read them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.settings import Settings, SettingsError
from tests.api.conftest import ApiClient
from tests.security.support import hostile_client

ALLOWED = "https://app.example.jp"
OTHER = "https://app.example.jp.evil.test"
EVIL = ("https://evil.test", OTHER, "http://app.example.jp", "null", "https://APP.EXAMPLE.JP.")


@pytest.fixture(params=[False, True], ids=["no-credentials", "credentials"])
async def cors_api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ApiClient]:
    async with hostile_client(
        "file-disk",
        tmp_path,
        request,
        allowed_origins=[ALLOWED, "http://localhost:5173"],
        cors_allow_credentials=request.param,
    ) as client:
        yield client


def preflight_headers(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "origin": origin,
        "access-control-request-method": method,
        "access-control-request-headers": "content-type",
    }


def assert_allowed(response: Any, credentials: bool) -> None:
    assert response.headers.get("access-control-allow-origin") == ALLOWED
    assert "origin" in response.headers.get("vary", "").lower()
    if credentials:
        assert response.headers.get("access-control-allow-credentials") == "true"
    else:
        assert "access-control-allow-credentials" not in response.headers


def assert_not_allowed(response: Any) -> None:
    # Without Access-Control-Allow-Origin the browser hides the response from the page.
    # (Starlette also sends Allow-Credentials on every response when it is configured; that
    # header alone grants nothing.)
    assert "access-control-allow-origin" not in response.headers


async def test_preflight_from_an_allowed_origin(cors_api: ApiClient) -> None:
    sid = (await cors_api.post("/api/sessions")).json()["session_id"]
    response = await cors_api.options(
        f"/api/sessions/{sid}/messages", headers=preflight_headers(ALLOWED)
    )
    assert response.status_code == 200
    assert_allowed(response, cors_api.settings.cors_allow_credentials)
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "content-type" in response.headers["access-control-allow-headers"].lower()


@pytest.mark.parametrize("origin", EVIL)
async def test_preflight_from_another_origin_is_refused(cors_api: ApiClient, origin: str) -> None:
    response = await cors_api.options("/api/sessions", headers=preflight_headers(origin))
    assert response.status_code == 400
    assert_not_allowed(response)


async def test_preflight_for_a_method_that_is_not_allowed_is_refused(cors_api: ApiClient) -> None:
    response = await cors_api.options("/api/sessions", headers=preflight_headers(ALLOWED, "PUT"))
    assert response.status_code == 400
    assert "PUT" not in response.headers.get("access-control-allow-methods", "")


async def test_simple_request_from_an_allowed_origin(cors_api: ApiClient) -> None:
    response = await cors_api.post("/api/sessions", headers={"origin": ALLOWED})
    assert response.status_code == 201
    assert_allowed(response, cors_api.settings.cors_allow_credentials)
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()


@pytest.mark.parametrize("origin", EVIL)
async def test_simple_request_from_another_origin_gets_no_cors_headers(
    cors_api: ApiClient, origin: str
) -> None:
    response = await cors_api.get("/api/health", headers={"origin": origin})
    assert response.status_code == 200  # CORS is enforced by the browser; the body is public
    assert_not_allowed(response)


async def test_errors_carry_cors_headers_for_an_allowed_origin(cors_api: ApiClient) -> None:
    credentials = cors_api.settings.cors_allow_credentials
    headers = {"origin": ALLOWED}
    missing = await cors_api.get(
        "/api/sessions/0b6f1c9e-4a5b-4c1d-9e2f-3a4b5c6d7e8f", headers=headers
    )
    assert missing.status_code == 404
    assert_allowed(missing, credentials)
    too_big = await cors_api.post(
        "/api/sessions",
        content=b"x" * (cors_api.settings.max_request_bytes + 1),
        headers={**headers, "content-type": "application/json"},
    )
    assert too_big.status_code == 413
    assert_allowed(too_big, credentials)


async def test_a_500_is_json_and_still_carries_cors_headers(
    cors_api: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = (await cors_api.post("/api/sessions")).json()["session_id"]

    async def explode(*_: Any, **__: Any) -> Any:
        raise RuntimeError("internal detail /srv/secret/path")

    monkeypatch.setattr(cors_api.app.state.services.hera, "view", explode)
    response = await cors_api.get(f"/api/sessions/{sid}/status", headers={"origin": ALLOWED})
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["code"] == "internal_error" and body["error"]
    assert body["request_id"] == response.headers["x-request-id"]
    assert "secret" not in response.text and "RuntimeError" not in response.text
    # The catch-all sits inside CORS, so the browser can read this error.
    assert_allowed(response, cors_api.settings.cors_allow_credentials)
    other = await cors_api.get(
        f"/api/sessions/{sid}/status", headers={"origin": "https://evil.test"}
    )
    assert other.status_code == 500
    assert_not_allowed(other)


async def test_wildcard_without_credentials_never_sends_credentials(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with hostile_client("file-disk", tmp_path, request, allowed_origins=["*"]) as api:
        for origin in ("https://evil.test", ALLOWED):
            response = await api.get("/api/health", headers={"origin": origin})
            assert response.headers["access-control-allow-origin"] == "*"
            assert "access-control-allow-credentials" not in response.headers
            preflight = await api.options("/api/sessions", headers=preflight_headers(origin))
            assert preflight.status_code == 200
            assert preflight.headers["access-control-allow-origin"] == "*"
            assert "access-control-allow-credentials" not in preflight.headers


def test_wildcard_with_credentials_is_refused_at_start_up() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings(
            _env_file=None, allowed_origins="*", cors_allow_credentials=True, llm_provider="offline"
        )
    assert any("CORS_ALLOW_CREDENTIALS" in problem for problem in caught.value.problems)


async def test_no_origins_configured_means_no_cors_at_all(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with hostile_client("file-disk", tmp_path, request, allowed_origins=[]) as api:
        response = await api.get("/api/health", headers={"origin": ALLOWED})
        assert_not_allowed(response)
        preflight = await api.options("/api/sessions", headers=preflight_headers(ALLOWED))
        assert_not_allowed(preflight)
