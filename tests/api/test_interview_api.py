"""The Hera interview over HTTP, on file+disk and on Redis+S3."""

from __future__ import annotations

from datetime import datetime

from app.repositories.base import is_session_id, session_blob_key
from tests.api.conftest import ApiClient
from tests.api.scripted_user import SCRIPT
from tests.support.api import new_session


async def test_create_returns_a_uuid_and_utc_timestamp(api: ApiClient) -> None:
    response = await api.post("/api/sessions")
    assert response.status_code == 201
    body = response.json()
    assert is_session_id(body["session_id"])
    assert body["status"] == "created"
    assert datetime.fromisoformat(body["created_at"]).utcoffset().total_seconds() == 0  # type: ignore[union-attr]


async def test_summary_of_a_new_session(api: ApiClient) -> None:
    sid = await new_session(api)
    body = (await api.get(f"/api/sessions/{sid}")).json()
    assert body["session_id"] == sid
    assert body["interview_status"] == "INCOMPLETE"
    assert body["profile_complete"] is False
    assert body["images"] == []


async def test_one_message_appends_user_and_hera_entries(api: ApiClient) -> None:
    sid = await new_session(api)
    response = await api.post(f"/api/sessions/{sid}/messages", json={"message": SCRIPT[0]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reply"]
    assert [e["speaker"] for e in body["conversation_history"]] == ["user", "hera"]
    assert body["conversation_history"][0]["message"] == SCRIPT[0]
    assert body["user_profile"]["age"] == 32
    assert "age" in body["last_extracted_fields"]
    assert body["session_status"] == "INCOMPLETE"
    assert body["information_progress"]["basic_info"]["total"] == 5
    status = (await api.get(f"/api/sessions/{sid}/status")).json()
    assert status["conversation_history"] == body["conversation_history"]
    assert status["user_profile"] == body["user_profile"]


async def test_scripted_user_completes_the_interview_on_the_sixth_turn(api: ApiClient) -> None:
    sid = await new_session(api)
    body: dict[str, object] = {}
    turn = 0
    for turn, message in enumerate(SCRIPT, start=1):  # noqa: B007 (used after the loop)
        response = await api.post(f"/api/sessions/{sid}/messages", json={"message": message})
        assert response.status_code == 200, response.text
        body = response.json()
        if body["profile_complete"]:
            break
    assert body["profile_complete"] is True, body["missing_fields"]
    assert turn == 6  # the six messages that carry the profile, not a turn more
    assert body["session_status"] == "COMPLETED"
    assert body["completion_message"]
    assert body["missing_fields"] == []
    complete = await api.post(f"/api/sessions/{sid}/complete")
    assert complete.status_code == 200, complete.text
    done = complete.json()
    assert done["information_complete"] is True
    assert done["missing_fields"] == []
    assert done["user_profile"] == body["user_profile"]
    summary = (await api.get(f"/api/sessions/{sid}")).json()
    assert summary["interview_status"] == "COMPLETED"
    assert summary["profile_complete"] is True


async def test_complete_with_missing_fields_is_refused_with_the_list(api: ApiClient) -> None:
    sid = await new_session(api)
    await api.post(f"/api/sessions/{sid}/messages", json={"message": SCRIPT[0]})
    response = await api.post(f"/api/sessions/{sid}/complete")
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "interview_incomplete"
    assert body["information_complete"] is False
    assert body["error"]
    assert body["missing_fields"][0] == "location"
    assert "age" not in body["missing_fields"]
    summary = (await api.get(f"/api/sessions/{sid}")).json()  # the refusal stored nothing
    assert summary["interview_status"] == "INCOMPLETE"
    assert summary["family_status"] == "not_started"


async def test_delete_removes_the_session_and_its_images(api: ApiClient) -> None:
    sid = await new_session(api)
    await api.post(f"/api/sessions/{sid}/messages", json={"message": SCRIPT[0]})
    blobs = api.app.state.services.blobs
    key = session_blob_key(sid, "user.png")
    await blobs.put(key=key, data=b"\x89PNG...", content_type="image/png")
    assert (await api.delete(f"/api/sessions/{sid}")).status_code == 204
    assert not await blobs.exists(key=key)
    for path in ("", "/status"):
        gone = await api.get(f"/api/sessions/{sid}{path}")
        assert gone.status_code == 404
        assert gone.json()["code"] == "session_not_found"
    again = await api.delete(f"/api/sessions/{sid}")
    assert again.status_code == 404


async def test_two_interleaved_sessions_never_see_each_other(api: ApiClient) -> None:
    first, second = await new_session(api), await new_session(api)
    await api.post(
        f"/api/sessions/{first}/messages", json={"message": "32歳の女性です。独身です。"}
    )
    await api.post(
        f"/api/sessions/{second}/messages", json={"message": "45歳の男性です。既婚です。"}
    )
    await api.post(f"/api/sessions/{first}/messages", json={"message": "東京に住んでいます。"})
    await api.post(f"/api/sessions/{second}/messages", json={"message": "大阪に住んでいます。"})
    one = (await api.get(f"/api/sessions/{first}/status")).json()
    two = (await api.get(f"/api/sessions/{second}/status")).json()
    assert (one["user_profile"]["age"], one["user_profile"]["location"]) == (32, "東京")
    assert (two["user_profile"]["age"], two["user_profile"]["location"]) == (45, "大阪")
    assert all(
        "大阪" not in e["message"] for e in one["conversation_history"] if e["speaker"] == "user"
    )
    assert len(one["conversation_history"]) == len(two["conversation_history"]) == 4


async def test_status_of_unknown_session_is_404_json(api: ApiClient) -> None:
    response = await api.get("/api/sessions/0b6f1c9e-4a5b-4c1d-9e2f-3a4b5c6d7e8f/status")
    assert response.status_code == 404
    assert response.json()["code"] == "session_not_found"
