"""Uploads and image routes: content sniffing, limits, EXIF, hostile names."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from tests.api.conftest import ApiClient
from tests.api.images import jpeg_photo
from tests.support.api import new_session


async def upload(
    api: ApiClient, sid: str, name: str, data: bytes, ctype: str = "image/jpeg"
) -> object:
    return await api.post(f"/api/sessions/{sid}/photos/user", files={"file": (name, data, ctype)})


async def test_a_png_name_with_jpeg_bytes_is_stored_as_jpeg(local_api: ApiClient) -> None:
    sid = await new_session(local_api)
    response = await upload(local_api, sid, "photo.png", jpeg_photo(), "image/png")
    assert response.status_code == 200  # type: ignore[attr-defined]
    image = await local_api.get(f"/api/sessions/{sid}/photos/user")
    assert image.headers["content-type"] == "image/jpeg"


async def test_a_text_file_named_jpg_is_415(local_api: ApiClient) -> None:
    sid = await new_session(local_api)
    response = await upload(local_api, sid, "photo.jpg", b"hello, I am text" * 10)
    assert response.status_code == 415  # type: ignore[attr-defined]
    assert response.json()["code"] == "unsupported_media_type"  # type: ignore[attr-defined]
    assert (await local_api.get(f"/api/sessions/{sid}")).json()["images"] == []


async def test_an_11_mb_upload_is_413(local_api: ApiClient) -> None:
    sid = await new_session(local_api)
    big = jpeg_photo() + b"\0" * (11 * 1024 * 1024)
    response = await upload(local_api, sid, "big.jpg", big)
    assert response.status_code == 413  # type: ignore[attr-defined]
    assert response.json()["error"]  # type: ignore[attr-defined]


async def test_a_decompression_bomb_is_rejected(local_api: ApiClient) -> None:
    sid = await new_session(local_api)
    out = io.BytesIO()
    Image.new("1", (20000, 20000)).save(out, "PNG")  # tiny file, 400 million pixels
    response = await upload(local_api, sid, "bomb.png", out.getvalue(), "image/png")
    assert response.status_code == 413  # type: ignore[attr-defined]
    assert response.json()["code"] == "image_too_large"  # type: ignore[attr-defined]


async def test_exif_gps_is_not_kept_in_the_stored_photo(local_api: ApiClient) -> None:
    sid = await new_session(local_api)
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"
    exif[0x8825] = {1: "N", 2: (35.0, 39.0, 0.0), 3: "E", 4: (139.0, 44.0, 0.0)}
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(out, "JPEG", exif=exif)
    assert b"Exif" in out.getvalue()
    assert (await upload(local_api, sid, "gps.jpg", out.getvalue())).status_code == 200  # type: ignore[attr-defined]
    stored = (await local_api.get(f"/api/sessions/{sid}/photos/user")).content
    assert b"Exif" not in stored
    assert not Image.open(io.BytesIO(stored)).getexif()


@pytest.mark.parametrize(
    "name",
    ["..%2F..%2Fetc%2Fpasswd", "%2e%2e", "user.png", "USER", "child_0", "partner%00", "a" * 300],
)
async def test_hostile_image_names_are_404(local_api: ApiClient, name: str) -> None:
    sid = await new_session(local_api)
    await upload(local_api, sid, "me.jpg", jpeg_photo())
    response = await local_api.get(f"/api/sessions/{sid}/photos/{name}")
    assert response.status_code == 404
    assert response.json()["code"] in ("image_not_found", "not_found")


async def test_child_images_need_the_user_photo_and_partner_first(local_api: ApiClient) -> None:
    from tests.api.scripted_user import SCRIPT

    sid = await new_session(local_api)
    for message in SCRIPT:
        await local_api.post(f"/api/sessions/{sid}/messages", json={"message": message})
    response = await local_api.post(f"/api/sessions/{sid}/generate-child-image")
    assert response.status_code == 409
    assert response.json()["code"] == "user_photo_missing"


async def test_an_if_none_match_hit_is_304_from_the_index_without_opening_the_blob(
    local_api: ApiClient,
) -> None:
    sid = await new_session(local_api)
    await upload(local_api, sid, "me.jpg", jpeg_photo())
    url = f"/api/sessions/{sid}/photos/user"
    blobs = local_api.app.state.services.blobs
    opened: list[str] = []
    real_open = blobs.open

    async def counted_open(*, key: str) -> Any:
        opened.append(key)
        return await real_open(key=key)

    blobs.open = counted_open
    try:
        first = await local_api.get(url)
        assert first.status_code == 200 and len(opened) == 1
        again = await local_api.get(url, headers={"if-none-match": first.headers["etag"]})
        assert again.status_code == 304 and again.headers["etag"] == first.headers["etag"]
        assert len(opened) == 1  # the 304 came from the index entry alone
        stale = await local_api.get(url, headers={"if-none-match": '"not-this-one"'})
        assert stale.status_code == 200 and stale.content == first.content
        assert len(opened) == 2
    finally:
        del blobs.open  # back to the class's method
