"""Hostile request bodies: oversized (declared or chunked), malformed, mistyped, blank,
invalid UTF-8 — always a JSON 4xx, and nothing is stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import ApiClient
from tests.api.images import jpeg_photo
from tests.security.support import hostile_client
from tests.support.api import assert_json_error

MESSAGE_ROUTES = ("/messages", "/family/messages")
BODY_ROUTES = (*MESSAGE_ROUTES, "/generate-image")


async def history(api: ApiClient, sid: str) -> list[Any]:
    status = await api.get(f"/api/sessions/{sid}/status")
    family = await api.get(f"/api/sessions/{sid}/family/status")
    return [*status.json()["conversation_history"], *family.json()["conversation_history"]]


# ------------------------------------------------------------------------------ size limits
@pytest.mark.parametrize("route", BODY_ROUTES)
async def test_a_body_over_max_request_bytes_is_413(local: ApiClient, sid: str, route: str) -> None:
    limit = local.settings.max_request_bytes
    body = b'{"message": "' + b"a" * limit + b'"}'
    response = await local.post(
        f"/api/sessions/{sid}{route}", content=body, headers={"content-type": "application/json"}
    )
    assert assert_json_error(response, 413, "payload_too_large")["limit_bytes"] == limit
    assert await history(local, sid) == []


async def test_a_body_on_a_route_without_one_is_limited_too(local: ApiClient) -> None:
    big = b"{" + b" " * (local.settings.max_request_bytes + 1) + b"}"
    response = await local.post(
        "/api/sessions", content=big, headers={"content-type": "application/json"}
    )
    assert_json_error(response, 413, "payload_too_large")


class ChunkedBody:
    """An async generator body: httpx sends it chunked, without Content-Length."""

    def __init__(self, prefix: bytes, chunk: bytes, count: int, suffix: bytes) -> None:
        self.parts = [prefix, *([chunk] * count), suffix]
        self.sent = 0

    @property
    def total(self) -> int:
        return len(self.parts)

    async def __call__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            self.sent += 1
            yield part


@pytest.mark.parametrize("route", MESSAGE_ROUTES)
async def test_a_chunked_body_over_the_limit_is_413_while_it_arrives(
    local: ApiClient, sid: str, route: str
) -> None:
    limit = local.settings.max_request_bytes
    body = ChunkedBody(b'{"message": "', b"a" * 1024, 4 * limit // 1024, b'"}')
    request = local.build_request(
        "POST",
        f"/api/sessions/{sid}{route}",
        content=body(),
        headers={"content-type": "application/json"},
    )
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"
    response = await local.send(request)
    assert_json_error(response, 413, "payload_too_large")
    # Counted as the bytes arrived: the app stopped reading soon after the limit.
    assert body.sent < body.total // 2, (body.sent, body.total)
    assert await history(local, sid) == []


async def test_a_chunked_upload_over_max_upload_bytes_is_413(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with hostile_client("file-disk", tmp_path, request, max_upload_bytes=256 * 1024) as api:
        sid = (await api.post("/api/sessions")).json()["session_id"]
        boundary = "hera-test-boundary"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        body = ChunkedBody(
            head + jpeg_photo(), b"\0" * 16384, 64, f"\r\n--{boundary}--\r\n".encode()
        )
        request_ = api.build_request(
            "POST",
            f"/api/sessions/{sid}/photos/user",
            content=body(),
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        )
        assert "content-length" not in request_.headers
        assert_json_error(await api.send(request_), 413)
        assert body.sent < body.total
        assert (await api.get(f"/api/sessions/{sid}")).json()["images"] == []


@pytest.mark.parametrize("route", MESSAGE_ROUTES)
async def test_a_message_over_max_message_chars_is_413(
    local: ApiClient, sid: str, route: str
) -> None:
    limit = local.settings.max_message_chars
    # Characters, not bytes: 4-byte emoji up to the limit are fine, one more is not.
    response = await local.post(f"/api/sessions/{sid}{route}", json={"message": "😀" * (limit + 1)})
    assert assert_json_error(response, 413, "message_too_long")["limit"] == limit
    assert await history(local, sid) == []
    accepted = await local.post(f"/api/sessions/{sid}/messages", json={"message": "😀" * limit})
    assert accepted.status_code == 200, accepted.text


# ------------------------------------------------------------------------------ malformed
MALFORMED: tuple[bytes, ...] = (
    b'{"message": "broken',
    b"{message: 'unquoted'}",
    b'{"message": "trailing comma",}',
    b'{"message": "x"} {"message": "y"}',
    b"\x00\x01\x02",
    b'{"message": "x"',
)


@pytest.mark.parametrize("route", BODY_ROUTES)
@pytest.mark.parametrize("body", MALFORMED, ids=range(len(MALFORMED)))
async def test_malformed_json_is_a_json_400(
    local: ApiClient, sid: str, route: str, body: bytes
) -> None:
    response = await local.post(
        f"/api/sessions/{sid}{route}", content=body, headers={"content-type": "application/json"}
    )
    body_json = assert_json_error(response, 400, "invalid_json")
    assert "Traceback" not in response.text and "JSONDecodeError" not in body_json["error"]
    assert await history(local, sid) == []


INVALID_UTF8: tuple[tuple[bytes, int], ...] = (
    (b'{"message": "\xff\xfe"}', 400),
    (b'{"message": "\xc0\xaf"}', 400),  # overlong "/"
    (b'{"message": "\xe3\x81"}', 400),  # a truncated sequence
    (b'{"message": "\xf8\x88\x80\x80\x80"}', 400),  # a five-byte form
    # A UTF-16 surrogate encoded as UTF-8: json decodes it (surrogatepass) to a lone
    # surrogate, which the model refuses as not a valid string.
    (b'{"message": "\xed\xa0\x80"}', 422),
)


@pytest.mark.parametrize("route", MESSAGE_ROUTES)
@pytest.mark.parametrize(("body", "status"), INVALID_UTF8, ids=range(len(INVALID_UTF8)))
async def test_invalid_utf8_is_a_json_4xx(
    local: ApiClient, sid: str, route: str, body: bytes, status: int
) -> None:
    response = await local.post(
        f"/api/sessions/{sid}{route}", content=body, headers={"content-type": "application/json"}
    )
    assert_json_error(response, status, "invalid_json" if status == 400 else "validation_error")
    assert "\ufffd" not in response.text and "Traceback" not in response.text
    assert await history(local, sid) == []


@pytest.mark.parametrize("route", MESSAGE_ROUTES)
async def test_escaped_lone_surrogates_are_422(local: ApiClient, sid: str, route: str) -> None:
    for body in (b'{"message": "\\ud800"}', b'{"message": "a\\udfffb"}'):
        response = await local.post(
            f"/api/sessions/{sid}{route}",
            content=body,
            headers={"content-type": "application/json"},
        )
        assert_json_error(response, 422, "validation_error")
    assert await history(local, sid) == []


# ------------------------------------------------------------------------------ types
WRONG_TYPES: tuple[tuple[str | None, bytes], ...] = (
    ("text/plain", b'{"message": "hi"}'),
    ("text/plain;charset=UTF-8", b'{"message": "hi"}'),  # what fetch() sends for a string
    (None, b'{"message": "hi"}'),
    ("application/x-www-form-urlencoded", b"message=hi"),
    ("multipart/form-data; boundary=x", b'--x\r\nContent-Disposition: form-data; name="message"\r\n\r\nhi\r\n--x--\r\n'),
    ("application/xml", b"<message>hi</message>"),
    ("image/png", b"\x89PNG\r\n\x1a\n"),
)  # fmt: skip


@pytest.mark.parametrize("route", BODY_ROUTES)
@pytest.mark.parametrize(("content_type", "body"), WRONG_TYPES, ids=range(len(WRONG_TYPES)))
async def test_a_wrong_content_type_is_415(
    local: ApiClient, sid: str, route: str, content_type: str | None, body: bytes
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await local.post(f"/api/sessions/{sid}{route}", content=body, headers=headers)
    assert (
        assert_json_error(response, 415, "unsupported_media_type")["expected"] == "application/json"
    )
    assert await history(local, sid) == []


async def test_json_to_the_upload_route_is_415(local: ApiClient, sid: str) -> None:
    response = await local.post(f"/api/sessions/{sid}/photos/user", json={"file": "x"})
    assert (
        assert_json_error(response, 415, "unsupported_media_type")["expected"]
        == "multipart/form-data"
    )


NOT_OBJECTS = (b"[]", b'["hi"]', b'"hi"', b"42", b"true", b"null")


@pytest.mark.parametrize(
    ("route", "body"),
    # generate-image's body is optional: JSON null there is the same as no body.
    [(r, b) for r in BODY_ROUTES for b in NOT_OBJECTS if (r, b) != ("/generate-image", b"null")],
)
async def test_json_that_is_not_an_object_is_422(
    local: ApiClient, sid: str, route: str, body: bytes
) -> None:
    response = await local.post(
        f"/api/sessions/{sid}{route}", content=body, headers={"content-type": "application/json"}
    )
    assert_json_error(response, 422, "validation_error")
    assert await history(local, sid) == []


@pytest.mark.parametrize("route", MESSAGE_ROUTES)
@pytest.mark.parametrize("message", [42, None, ["hi"], {"text": "hi"}, True])
async def test_a_message_that_is_not_a_string_is_422(
    local: ApiClient, sid: str, route: str, message: object
) -> None:
    response = await local.post(f"/api/sessions/{sid}{route}", json={"message": message})
    assert "message" in assert_json_error(response, 422, "validation_error")["error"]


async def test_unknown_fields_are_ignored_and_never_stored(local: ApiClient, sid: str) -> None:
    response = await local.post(
        f"/api/sessions/{sid}/messages",
        json={
            "message": "32歳の女性です。",
            "speaker": "hera",
            "admin": True,
            "user_profile": {"age": 99, "image_path": "/etc/passwd"},
            "__proto__": {"polluted": True},
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user_profile"].get("age") == 32
    assert "image_path" not in body["user_profile"]
    first = body["conversation_history"][0]
    assert first["speaker"] == "user" and first["message"] == "32歳の女性です。"
    assert set(first) == {"speaker", "message", "timestamp"}


BLANK = (" ", "   ", "\n\t\r", "\u3000\u3000", "\u00a0", "\u200b", "\ufeff", "\u0000", " \u200b\n")


@pytest.mark.parametrize("route", MESSAGE_ROUTES)
@pytest.mark.parametrize("message", BLANK, ids=range(len(BLANK)))
async def test_a_blank_message_is_422(local: ApiClient, sid: str, route: str, message: str) -> None:
    response = await local.post(f"/api/sessions/{sid}{route}", json={"message": message})
    assert "message" in assert_json_error(response, 422)["error"]
    assert await history(local, sid) == []


@pytest.mark.parametrize("route", MESSAGE_ROUTES)
async def test_a_missing_or_empty_body_is_422(local: ApiClient, sid: str, route: str) -> None:
    assert_json_error(await local.post(f"/api/sessions/{sid}{route}"), 422)
    assert_json_error(await local.post(f"/api/sessions/{sid}{route}", json={}), 422)
    assert_json_error(await local.post(f"/api/sessions/{sid}{route}", json={"message": ""}), 422)
    assert await history(local, sid) == []
