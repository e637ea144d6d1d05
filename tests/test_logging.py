"""Logs as operations sees them: the app's own handler on stderr, in-process over ASGI.

One JSON object per line (LOG_FORMAT=json) or readable text, a request id on every
line of a request, one access line per request naming the route template, and no chat text
or photo bytes at INFO. The app is built by `create_app` exactly as in production; stderr is
captured with `capsys` (the app is built inside each test, while capsys's stream is live).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, PngImagePlugin

from tests.api.conftest import ApiClient, open_client, stack_settings
from tests.support.api import new_session

GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")
ACCESS_FIELDS = {"request_id", "method", "path", "status", "duration_ms"}


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    """The app replaces its root handler; put the previous ones back (capsys's stream dies)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def logged_app(
    tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> Callable[..., AbstractAsyncContextManager[ApiClient]]:
    """`async with logged_app("json") as api:` an app over file+disk, logging into capsys.

    The app is built inside the test: pytest swaps the captured `sys.stderr` between the
    setup and call phases, and the app's handler binds the stream it finds at creation.
    """

    @asynccontextmanager
    async def open_app(fmt: str = "json") -> AsyncIterator[ApiClient]:
        settings = stack_settings("file-disk", tmp_path, request, log_format=fmt, log_level="INFO")
        async for client in open_client(settings):
            handler = next(h for h in logging.getLogger().handlers if h.get_name() == "hera")
            assert isinstance(handler, logging.StreamHandler)
            assert handler.stream is sys.stderr  # the app logs to stderr, captured here
            capsys.readouterr()
            yield client

    return open_app


# ------------------------------------------------------------------------------ helpers
def json_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """Every stderr line since the last call; each must be one JSON object."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"a stderr line is not JSON: {line!r}")
        assert isinstance(record, dict), line
        records.append(record)
    return records


def access_lines(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("logger") == "hera.access" and r.get("level") == "INFO"]


def only_access_line(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    lines = access_lines(json_lines(capsys))
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.keys() >= ACCESS_FIELDS, line
    assert isinstance(line["duration_ms"], int | float) and line["duration_ms"] >= 0
    return line


def marked_png(marker: str) -> bytes:
    """A real PNG that carries `marker` as text in its bytes (a tEXt chunk)."""
    image = Image.new("RGB", (64, 48), (180, 140, 120))
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", marker)
    out = io.BytesIO()
    image.save(out, "PNG", pnginfo=info)
    return out.getvalue()


def byte_traces(data: bytes) -> list[str]:
    """Forms in which logged bytes would show: repr, base64 of the start, hex of the start."""
    head = data[:48]
    return [repr(head)[2:40], base64.b64encode(head).decode()[:40], head.hex()[:40]]


# ------------------------------------------------------------------------------ access lines
LoggedApp = Callable[..., AbstractAsyncContextManager[ApiClient]]


async def test_each_request_logs_one_access_line_with_the_route_template(
    logged_app: LoggedApp, capsys: pytest.CaptureFixture[str]
) -> None:
    async with logged_app() as api:
        sid = await new_session(api)
        line = only_access_line(capsys)
        assert (line["method"], line["path"], line["status"]) == ("POST", "/api/sessions", 201)

        too_long = "あ" * (api.settings.max_message_chars + 1)
        other = str(uuid.uuid4())  # a well-formed id of no session
        cases = [
            ("POST", f"/api/sessions/{sid}/messages", {"message": "こんにちは"}, 200,
             "/api/sessions/{session_id}/messages"),
            ("GET", f"/api/sessions/{sid}/status", None, 200, "/api/sessions/{session_id}/status"),
            ("GET", f"/api/sessions/{sid}", None, 200, "/api/sessions/{session_id}"),
            ("GET", f"/api/sessions/{other}/status", None, 404,
             "/api/sessions/{session_id}/status"),
            ("GET", "/api/sessions/not-a-uuid/status", None, 404,
             "/api/sessions/{session_id}/status"),
            ("POST", f"/api/sessions/{sid}/messages", {"message": too_long}, 413,
             "/api/sessions/{session_id}/messages"),
            ("POST", f"/api/sessions/{sid}/messages", {"wrong": 1}, 422,
             "/api/sessions/{session_id}/messages"),
            ("GET", f"/api/sessions/{sid}/photos/user", None, 404,
             "/api/sessions/{session_id}/photos/{name}"),
            ("GET", "/api/health", None, 200, "/api/health"),
        ]  # fmt: skip
        for method, url, body, status, template in cases:
            response = await api.request(method, url, json=body)
            assert response.status_code == status, (url, response.text)
            line = only_access_line(capsys)
            assert line["method"] == method
            assert line["path"] == template
            assert line["status"] == status
            assert line["request_id"] == response.headers["x-request-id"]
            for concrete in (sid, other, "not-a-uuid"):
                assert concrete not in json.dumps(line, ensure_ascii=False), line


async def test_a_streamed_photo_logs_one_access_line(
    logged_app: LoggedApp, capsys: pytest.CaptureFixture[str]
) -> None:
    async with logged_app() as api:
        sid = await new_session(api)
        upload = await api.post(
            f"/api/sessions/{sid}/photos/user",
            files={"file": ("me.png", marked_png("x"), "image/png")},
        )
        assert upload.status_code == 200, upload.text
        json_lines(capsys)
        response = await api.get(f"/api/sessions/{sid}/photos/user")
        assert response.status_code == 200 and response.content
        line = only_access_line(capsys)
        assert line["path"] == "/api/sessions/{session_id}/photos/{name}"
        assert line["status"] == 200


async def test_an_unknown_path_is_logged_without_its_concrete_path(
    logged_app: LoggedApp, capsys: pytest.CaptureFixture[str]
) -> None:
    async with logged_app() as api:
        response = await api.get("/api/secret-token-abc123/nothing")
        assert response.status_code == 404
        line = only_access_line(capsys)
        assert line["status"] == 404
        assert "secret-token-abc123" not in json.dumps(line)


async def test_a_cors_preflight_is_logged_too(
    logged_app: LoggedApp, capsys: pytest.CaptureFixture[str]
) -> None:
    async with logged_app() as api:
        response = await api.options(
            "/api/sessions",
            headers={"origin": "https://other.example", "access-control-request-method": "POST"},
        )
        assert response.status_code == 400  # not an allowed origin
        line = only_access_line(capsys)
        assert (line["method"], line["status"]) == ("OPTIONS", response.status_code)
        assert line["request_id"] == response.headers.get("x-request-id")


# ------------------------------------------------------------------------------ request id
async def test_a_valid_request_id_is_taken_and_returned(
    logged_app: LoggedApp, capsys: pytest.CaptureFixture[str]
) -> None:
    async with logged_app() as api:
        for given in ("abc-123", "Req_1.2-x", "a" * 64):
            response = await api.get("/api/health", headers={"x-request-id": given})
            assert response.headers["x-request-id"] == given
            assert only_access_line(capsys)["request_id"] == given


async def test_a_missing_or_invalid_request_id_is_generated(
    logged_app: LoggedApp, capsys: pytest.CaptureFixture[str]
) -> None:
    invalid = [b"", b"bad id", b"a" * 65, b"x/../y", "évil".encode(), b'{"a":1}']
    seen = set()
    async with logged_app() as api:
        for given in [None, *invalid]:
            headers = {} if given is None else {b"x-request-id": given}
            response = await api.get("/api/health", headers=headers)
            returned = response.headers["x-request-id"]
            assert GENERATED_ID.match(returned), (given, returned)
            assert only_access_line(capsys)["request_id"] == returned
            seen.add(returned)
    assert len(seen) == 1 + len(invalid)  # a new one every time


async def test_every_line_of_a_request_carries_its_id(
    logged_app: LoggedApp, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.repositories.base import StoreUnavailable

    async def down() -> None:
        raise StoreUnavailable("blobs", "test")

    async with logged_app() as api:
        api.app.state.services.blobs.ping = down  # /api/ready answers 503
        response = await api.get("/api/ready", headers={"x-request-id": "ready-1"})
        assert response.status_code == 503
        records = json_lines(capsys)
    assert records
    assert all(r.get("request_id") == "ready-1" for r in records), records


# ------------------------------------------------------------------------------ privacy
async def test_chat_text_and_photo_bytes_never_reach_the_log_at_info(
    logged_app: LoggedApp, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = f"ひみつ{uuid.uuid4().hex[:10]}"
    message = f"32歳の女性です。趣味は{marker}です。"
    photo = marked_png(f"photo-{marker}")
    async with logged_app() as api:
        sid = await new_session(api)
        sessions = f"/api/sessions/{sid}"
        sent = await api.post(f"{sessions}/messages", json={"message": message})
        assert sent.status_code == 200
        too_long = marker * (api.settings.max_message_chars // len(marker) + 1)
        refused = await api.post(f"{sessions}/messages", json={"message": too_long})
        assert refused.status_code == 413
        invalid = await api.post(f"{sessions}/messages", json={"message": [marker]})
        assert invalid.status_code == 422
        upload = await api.post(
            f"{sessions}/photos/user", files={"file": ("me.png", photo, "image/png")}
        )
        assert upload.status_code == 200, upload.text
        served = await api.get(f"{sessions}/photos/user")
        assert served.status_code == 200
        rejected = await api.post(
            f"{sessions}/photos/user",
            files={"file": ("note.txt", f"not an image {marker}".encode(), "text/plain")},
        )
        assert rejected.status_code == 415
        assert (await api.get(f"{sessions}/status")).status_code == 200
        assert (await api.get(sessions)).status_code == 200
        records = json_lines(capsys)

    assert len(access_lines(records)) == 9
    text = "\n".join(json.dumps(r, ensure_ascii=False) for r in records)
    assert marker not in text
    assert "32歳" not in text
    for trace in byte_traces(photo) + byte_traces(served.content):
        assert trace not in text, trace


# ------------------------------------------------------------------------------ errors
async def test_an_unhandled_error_logs_one_error_line_and_answers_json_500(
    logged_app: LoggedApp, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(session_id: str, caller: object = None) -> None:
        raise RuntimeError("bug in view")

    async with logged_app() as api:
        monkeypatch.setattr(api.app.state.services.hera, "view", broken)
        sid = await new_session(api)
        json_lines(capsys)
        response = await api.get(f"/api/sessions/{sid}/status", headers={"x-request-id": "e-1"})
        records = json_lines(capsys)

    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["code"] == "internal_error"
    assert body["request_id"] == "e-1" == response.headers["x-request-id"]
    assert "bug in view" not in response.text

    errors = [r for r in records if r["level"] in ("ERROR", "CRITICAL")]
    assert len(errors) == 1, errors
    assert errors[0]["request_id"] == "e-1"
    assert "RuntimeError" in errors[0].get("exc", "")
    lines = access_lines(records)
    assert len(lines) == 1, lines
    assert (lines[0]["status"], lines[0]["request_id"]) == (500, "e-1")
    assert lines[0]["path"] == "/api/sessions/{session_id}/status"


async def test_an_unhandled_error_gets_a_generated_id_when_none_is_given(
    logged_app: LoggedApp, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(session_id: str, caller: object = None) -> None:
        raise RuntimeError("bug")

    async with logged_app() as api:
        monkeypatch.setattr(api.app.state.services.hera, "view", broken)
        sid = await new_session(api)
        json_lines(capsys)
        response = await api.get(f"/api/sessions/{sid}/status")
        records = json_lines(capsys)
    assert response.status_code == 500
    request_id = response.json()["request_id"]
    assert GENERATED_ID.match(request_id)
    assert response.headers["x-request-id"] == request_id
    assert [r["request_id"] for r in records if r["level"] == "ERROR"] == [request_id]


# ------------------------------------------------------------------------------ text format
async def test_text_format_gives_readable_lines_with_the_request_id(
    logged_app: LoggedApp, capsys: pytest.CaptureFixture[str]
) -> None:
    async with logged_app("text") as api:
        response = await api.get("/api/health", headers={"x-request-id": "text-req-1"})
        assert response.status_code == 200
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    line = lines[0]
    assert "[text-req-1]" in line
    assert "INFO" in line and "hera.access" in line
    assert "GET /api/health 200" in line
    assert not line.lstrip().startswith("{")  # readable, not JSON
