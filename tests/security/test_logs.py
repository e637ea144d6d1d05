"""What users send — message text, hostile paths, file names, header values — never reaches
the logs (INFO and above, extra fields included); the access line names the route template,
not the raw path."""

from __future__ import annotations

import logging

import pytest

from tests.api.conftest import ApiClient
from tests.api.images import jpeg_photo
from tests.security.support import new_canary, raw_request


def _everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    # Every record at INFO and above, with every extra field (the JSON formatter emits them).
    return "\n".join(f"{record.getMessage()} {vars(record)}" for record in caplog.records)


async def test_user_input_never_reaches_the_logs(
    local: ApiClient, sid: str, caplog: pytest.LogCaptureFixture
) -> None:
    canary = new_canary()
    caplog.set_level(logging.INFO)
    await local.post(f"/api/sessions/{sid}/messages", json={"message": f"秘密の{canary}です"})
    await local.post(f"/api/sessions/{sid}/family/messages", json={"message": canary})
    await local.post(
        f"/api/sessions/{sid}/messages",
        content=f'{{"message": "{canary}'.encode(),  # malformed: the 400 path
        headers={"content-type": "application/json"},
    )
    files = {"file": (f"{canary}.jpg", jpeg_photo(), "image/jpeg")}
    await local.post(f"/api/sessions/{sid}/photos/user", files=files)
    await local.post(
        f"/api/sessions/{sid}/photos/user",
        files={"file": (f"{canary}.jpg", canary.encode() * 20, "image/jpeg")},  # the 415 path
    )
    await raw_request(local.app, "GET", f"/api/sessions/..%2F{canary}/status".encode())
    await raw_request(local.app, "GET", f"/api/sessions/{sid}/photos/{canary}".encode())
    await local.get("/api/health", headers={"x-request-id": f"{canary}\nforged line"})
    await local.get("/api/health", headers={"user-agent": canary, "origin": canary})
    logged = _everything_logged(caplog)
    assert caplog.records, "nothing was logged at all"
    assert canary not in logged
    # The access lines carry route templates (the raw path of a 404 is "<unmatched>").
    paths = {getattr(r, "path", None) for r in caplog.records if r.name == "hera.access"}
    assert "/api/sessions/{session_id}/messages" in paths
    assert all(path is None or canary not in path for path in paths)
