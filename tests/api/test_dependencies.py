"""The service dependencies: one level each, and still overridable by name."""

from __future__ import annotations

import pytest

from app.agents.hera import InterviewView
from app.deps import _service, get_hera
from tests.api.conftest import ApiClient


class FixedHera:
    async def view(self, session_id: str) -> InterviewView:
        return InterviewView({"age": 41}, [{"speaker": "hera", "message": "固定"}], "INCOMPLETE")


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


def test_a_dependency_for_an_unknown_service_fails_at_import_time_not_per_request() -> None:
    with pytest.raises(AttributeError):
        _service("heraa")
