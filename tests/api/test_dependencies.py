"""The agent dependencies: one level each, typed, and overridable by name."""

from __future__ import annotations

from app.agents.hera import InterviewView
from app.deps import get_hera
from app.domain.profile import Profile
from tests.api.conftest import ApiClient


class FixedHera:
    async def view(self, session_id: str, caller: object = None) -> InterviewView:
        profile = Profile(age=41)
        return InterviewView(profile, [{"speaker": "hera", "message": "固定"}], "INCOMPLETE")


async def test_a_service_dependency_can_be_overridden_by_its_name(local_api: ApiClient) -> None:
    sid = (await local_api.post("/api/sessions")).json()["session_id"]
    local_api.app.dependency_overrides[get_hera] = FixedHera
    try:
        body = (await local_api.get(f"/api/sessions/{sid}/status")).json()
    finally:
        local_api.app.dependency_overrides.clear()
    assert body["user_profile"] == {"age": 41}
    assert body["conversation_history"] == [{"speaker": "hera", "message": "固定"}]
    real = (await local_api.get(f"/api/sessions/{sid}/status")).json()
    assert real["user_profile"] == {} and real["conversation_history"] == []
