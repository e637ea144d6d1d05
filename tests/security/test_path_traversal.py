"""Hostile session ids and image names never reach a store and never leave the data dir or
key prefix.

Requests go to the app with their path bytes untouched (httpx would normalise `..` away; a
real server passes them on), on file+disk and on Redis+S3 (moto). For every hostile path and
every route: a 404/422 JSON error, not a single call into either repository (ids and names are
refused before any store access), and afterwards the whole tmp tree (the data dir sits two
levels below it, so a short `..` escape would land inside), the Redis namespace and the bucket
are exactly as before, and no file, Redis key (whole database) or S3 key (any bucket) contains
the canary that every hostile input carries.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.api.images import jpeg_photo
from tests.security.support import (
    STACKS,
    StoreProbe,
    StoreState,
    assert_json_error,
    hostile_client,
    moto_url_of,
    new_canary,
    raw_request,
    store_calls,
)

KEY_PREFIX = "tenant-x"

# {C}: the canary; {U}: a real, live session id. Raw path bytes, as they come off the wire.
HOSTILE_IDS: tuple[bytes, ...] = (
    b"..",
    b"../{C}",
    b"..%2F..%2F{C}",
    b"%2e%2e",
    b"%2e%2e%2f%2e%2e%2f{C}",
    b"%252e%252e%252f{C}",
    b"..%5C..%5C{C}",
    b"..\\..\\{C}",
    b"%2Fetc%2F{C}",
    b"%2F%2F{C}",
    b"C:%5C{C}",
    b"%00{C}",
    b"{U}%00",
    b"{U}%00{C}",
    b"{U}%2F..%2F..%2F{C}",
    b"{U}%2F..",
    b"{UPPER}",
    b"{U}%20",
    b"%c0%ae%c0%ae%2f{C}",  # overlong UTF-8 dots
    b"%7B{C}%7D",  # a Redis hash tag
    b"{C}*",  # a Redis glob
    b"{C}" + b"a" * 4096,
)

HOSTILE_NAMES: tuple[bytes, ...] = (
    b"..",
    b"..%2F..%2F{C}",
    b"%2e%2e%2f{C}",
    b"%252e%252e%252f{C}",
    b"..%5C{C}",
    b"..\\{C}",
    b"%2Fetc%2F{C}",
    b"user%00",
    b"user%00{C}",
    b"user%2F..%2F..%2F{C}",
    b"user.png",
    b"USER",
    b"child_0",
    b"%7B{C}%7D",
    b"{C}*",
    b"{C}" + b"a" * 4096,
)

_JSON = [(b"content-type", b"application/json")]


def _upload_body() -> tuple[bytes, list[tuple[bytes, bytes]]]:
    request = httpx.Request(
        "POST", "http://x/", files={"file": ("me.jpg", jpeg_photo((32, 32)), "image/jpeg")}
    )
    content_type = request.headers["content-type"].encode()
    return request.read(), [(b"content-type", content_type)]


# (method, suffix, body, headers): every route that takes a session id.
def _routes() -> list[tuple[str, str, bytes, list[tuple[bytes, bytes]]]]:
    upload, upload_headers = _upload_body()
    message = b'{"message": "hello"}'
    return [
        ("GET", "", b"", []),
        ("DELETE", "", b"", []),
        ("GET", "/status", b"", []),
        ("POST", "/messages", message, _JSON),
        ("POST", "/complete", b"", []),
        ("GET", "/family/status", b"", []),
        ("POST", "/family/messages", message, _JSON),
        ("POST", "/photos/user", upload, upload_headers),
        ("GET", "/photos/user", b"", []),
        ("POST", "/generate-image", b"", []),
        ("POST", "/generate-child-image", b"", []),
    ]


def _fill(template: bytes, canary: str, sid: str) -> bytes:
    return (
        template.replace(b"{C}", canary.encode())
        .replace(b"{U}", sid.encode())
        .replace(b"{UPPER}", sid.upper().encode())
    )


@pytest.mark.parametrize("stack", STACKS)
async def test_hostile_session_ids_touch_no_store_and_create_nothing(
    stack: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    canary = new_canary()
    async with hostile_client(stack, tmp_path, request, blob_key_prefix=KEY_PREFIX) as api:
        sid = (await api.post("/api/sessions")).json()["session_id"]
        probe = StoreProbe(tmp_path, api, moto_url_of(request, stack))
        try:
            before = probe.snapshot()
            failures: list[str] = []
            with store_calls(api) as calls:
                for template in HOSTILE_IDS:
                    hostile = _fill(template, canary, sid)
                    for method, suffix, body, headers in _routes():
                        path = b"/api/sessions/" + hostile + suffix.encode()
                        where = f"{method} {path[:120]!r}"
                        response = await raw_request(
                            api.app, method, path, body=body, headers=headers
                        )
                        if response.status not in (404, 422):
                            failures.append(f"{where} -> {response.status}")
                            continue
                        assert_json_error(
                            response.status, response.headers, response.json(), where=where
                        )
                        text = response.body.decode()
                        assert str(tmp_path) not in text and "Traceback" not in text, where
                        if calls:
                            failures.append(f"{where} reached the store: {calls[:3]}")
                            calls.clear()
            assert not failures, "\n".join(failures)
            assert probe.snapshot() == before
            assert probe.canary_hits(canary) == []
            # The real session is untouched and still served.
            assert (await api.get(f"/api/sessions/{sid}")).status_code == 200
        finally:
            probe.close()


@pytest.mark.parametrize("stack", STACKS)
async def test_hostile_image_names_touch_no_store_and_create_nothing(
    stack: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    canary = new_canary()
    async with hostile_client(stack, tmp_path, request, blob_key_prefix=KEY_PREFIX) as api:
        sid = (await api.post("/api/sessions")).json()["session_id"]
        # The uploaded file's own name is hostile too: it must not become a key or a path.
        files = {"file": (f"../../{canary}/..\\{canary}.jpg", jpeg_photo(), "image/jpeg")}
        assert (await api.post(f"/api/sessions/{sid}/photos/user", files=files)).status_code == 200
        probe = StoreProbe(tmp_path, api, moto_url_of(request, stack))
        try:
            assert probe.canary_hits(canary) == []
            before = probe.snapshot()
            _assert_blobs_under_prefix(probe, before, tmp_path, sid)
            failures: list[str] = []
            with store_calls(api) as calls:
                for template in HOSTILE_NAMES:
                    path = f"/api/sessions/{sid}/photos/".encode() + _fill(template, canary, sid)
                    where = f"GET {path[:120]!r}"
                    response = await raw_request(api.app, "GET", path)
                    if response.status not in (404, 422):
                        failures.append(f"{where} -> {response.status}")
                        continue
                    assert_json_error(
                        response.status, response.headers, response.json(), where=where
                    )
                    if calls:
                        failures.append(f"{where} reached the store: {calls[:3]}")
                        calls.clear()
            assert not failures, "\n".join(failures)
            assert probe.snapshot() == before
            assert probe.canary_hits(canary) == []
            # The real image is still served.
            image = await api.get(f"/api/sessions/{sid}/photos/user")
            assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
        finally:
            probe.close()


def _assert_blobs_under_prefix(
    probe: StoreProbe, state: StoreState, tmp_path: Path, sid: str
) -> None:
    """Every stored blob lives under `<prefix>/sessions/<id>/` (disk: below the blobs dir)."""
    settings = probe.client.settings
    if settings.resolved_blob_type == "s3":
        assert state.s3_keys, "the upload stored nothing"
        for key in state.s3_keys:
            assert key.startswith(f"{KEY_PREFIX}/sessions/{sid}/"), key
        return
    blobs = settings.blobs_dir.relative_to(tmp_path)
    stored = [
        Path(path).relative_to(blobs)
        for path, (is_dir, _, _) in state.files.items()
        if not is_dir and Path(path).is_relative_to(blobs)
    ]
    assert stored, "the upload stored nothing"
    for path in stored:  # <objects|meta>/<prefix>/sessions/<id>/...
        assert path.parts[1:4] == (KEY_PREFIX, "sessions", sid), path


UI_ESCAPES: tuple[bytes, ...] = (
    b"/../main.py",
    b"/..%2Fmain.py",
    b"/%2e%2e/main.py",
    b"/%2e%2e%2f%2e%2e%2fpyproject.toml",
    b"/%252e%252e/main.py",
    b"/..%5Cmain.py",
    b"/..\\main.py",
    b"/%2Fetc%2Fpasswd",
    b"//etc/passwd",
    b"/index.html%00.py",
    b"/%c0%ae%c0%ae/main.py",
    b"/api/../main.py",
)


async def test_the_ui_mount_serves_nothing_outside_its_folder(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The static UI at `/` sits next to the app's code: nothing above its folder is served."""
    async with hostile_client("file-disk", tmp_path, request) as api:
        for path in UI_ESCAPES:
            response = await raw_request(api.app, "GET", path)
            where = f"GET {path!r}"
            assert response.status == 404, f"{where} -> {response.status}"
            assert_json_error(response.status, response.headers, response.json(), where=where)
            assert b"create_app" not in response.body and b"root:" not in response.body, where
