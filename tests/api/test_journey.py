"""The whole journey over HTTP with the offline brains, on every store combination:
interview → photo → partner → children → complete → family chat → proposal → acceptance
→ story and letter → closing reply. Every image is fetched back byte-identical."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from app.repositories.base import read_all
from app.schemas import FamilyStatus, InterviewStatus
from tests.api.conftest import ApiClient, open_client, stack_settings
from tests.api.images import jpeg_photo
from tests.api.scripted_user import FAMILY_AGREEING, SCRIPT

FAMILY_SCRIPT = ("こんにちは！みんなで旅行に行きたいね。", *FAMILY_AGREEING)


async def shaped(api: ApiClient, path: str, model: type[BaseModel]) -> dict[str, Any]:
    """GET a read route and check its body is exactly its response model's: those routes
    send the stored data as is (no re-validation), so nothing may be missing or extra."""
    response = await api.get(path)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert model.model_validate(body).model_dump(mode="json") == body
    return body


@pytest.fixture(params=["file-disk", "redis-s3", "redis-gcs"])
async def stack(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ApiClient]:
    async for client in open_client(stack_settings(request.param, tmp_path, request)):
        yield client


async def fetch_image(api: ApiClient, sid: str, url: str, name: str) -> bytes:
    response = await api.get(url)
    assert response.status_code == 200, response.text
    services = api.app.state.services
    entry = (await services.sessions.load(session_id=sid, docs=["images"])).doc("images")[name]
    stored = await read_all(await services.blobs.open(key=entry["key"]))
    assert response.content == stored
    assert response.headers["content-type"] == entry["content_type"]
    assert response.headers["etag"] == f'"{entry["etag"]}"'
    again = await api.get(url, headers={"if-none-match": response.headers["etag"]})
    assert again.status_code == 304
    return response.content


async def interview(api: ApiClient) -> str:
    sid = (await api.post("/api/sessions")).json()["session_id"]
    for message in SCRIPT:
        body = (await api.post(f"/api/sessions/{sid}/messages", json={"message": message})).json()
        if body["profile_complete"]:
            return str(sid)
    raise AssertionError(f"interview incomplete: {body['missing_fields']}")


async def test_the_whole_journey_with_offline_brains(stack: ApiClient) -> None:
    api = stack
    sid = await interview(api)

    upload = await api.post(
        f"/api/sessions/{sid}/photos/user",
        files={"file": ("me.png", jpeg_photo(), "image/png")},
    )
    assert upload.status_code == 200, upload.text
    assert upload.json()["status"] == "success"
    user_bytes = await fetch_image(api, sid, upload.json()["image_url"], "user")
    assert user_bytes[:2] == b"\xff\xd8"  # JPEG by content, whatever the name said

    partner = await api.post(f"/api/sessions/{sid}/generate-image", json={"target": "partner"})
    assert partner.status_code == 200, partner.text
    assert partner.json()["meta"]["engine"] == "offline"
    await fetch_image(api, sid, partner.json()["image_url"], "partner")

    children = await api.post(f"/api/sessions/{sid}/generate-child-image")
    assert children.status_code == 200, children.text
    kids: list[dict[str, Any]] = children.json()["images"]
    profile = (await shaped(api, f"/api/sessions/{sid}/status", InterviewStatus))["user_profile"]
    assert len(kids) == len(profile["children_info"])
    for index, kid in enumerate(kids, start=1):
        assert f"/photos/child_{index}?" in kid["image_url"]
        await fetch_image(api, sid, kid["image_url"], f"child_{index}")
    summary = (await api.get(f"/api/sessions/{sid}")).json()
    assert summary["images"] == sorted(
        ["user", "partner", *(f"child_{i}" for i in range(1, len(kids) + 1))]
    )

    complete = await api.post(f"/api/sessions/{sid}/complete")
    assert complete.status_code == 200, complete.text
    status = await shaped(api, f"/api/sessions/{sid}/family/status", FamilyStatus)
    members = status["members"]
    assert members[0]["kind"] == "partner"
    assert len(members) == 1 + len(profile["children_info"])

    body: dict[str, Any] = {}
    for message in FAMILY_SCRIPT:
        response = await api.post(f"/api/sessions/{sid}/family/messages", json={"message": message})
        assert response.status_code == 200, response.text
        body = response.json()
        names = {m["name"] for m in members}
        assert body["reply"] and all(r["speaker"] in names for r in body["reply"])
        if body["conversation_complete"]:
            break
    assert body["conversation_complete"] is True, body
    plan = body["family_plan"]
    assert plan["destination"] == "沖縄"
    assert len(plan["activities"]) >= 2
    assert 800 <= len(plan["story"]) <= 1200
    assert 600 <= len(plan["letter"]) <= 900

    status_after = await shaped(api, f"/api/sessions/{sid}/family/status", FamilyStatus)
    assert status_after["family_plan"] == plan
    closing = await api.post(
        f"/api/sessions/{sid}/family/messages", json={"message": "ありがとう！"}
    )
    assert closing.status_code == 200
    assert len(closing.json()["reply"]) == 1
    final = await shaped(api, f"/api/sessions/{sid}/family/status", FamilyStatus)
    assert final["conversation_history"] == status_after["conversation_history"]
    assert final["family_plan"] == plan

    assert (await api.delete(f"/api/sessions/{sid}")).status_code == 204
    blobs = api.app.state.services.blobs
    assert [i async for i in blobs.list(prefix=f"sessions/{sid}/")] == []
