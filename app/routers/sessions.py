"""Session lifecycle and the Hera interview. Thin: parse, call the agent, shape."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from app.agents.hera import COMPLETION_MESSAGE, InterviewView
from app.deps import BlobsDep, FamilyDep, HeraDep, SessionIdDep, SessionsDep
from app.repositories.base import session_blob_prefix
from app.schemas import (
    CompleteResponse,
    ErrorResponse,
    IncompleteResponse,
    InterviewStatus,
    MessageRequest,
    MessageResponse,
    SessionCreated,
    SessionSummary,
)

router = APIRouter(prefix="/api/sessions", tags=["sessions"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such session (or not a UUID)"},
    503: {"model": ErrorResponse, "description": "A store is unavailable"},
}
TURN_ERRORS: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    409: {"model": ErrorResponse, "description": "Another turn of this session is running"},
    413: {"model": ErrorResponse, "description": "Message longer than MAX_MESSAGE_CHARS"},
    422: {"model": ErrorResponse, "description": "Blank or malformed message"},
    502: {"model": ErrorResponse, "description": "The language model failed"},
    504: {"model": ErrorResponse, "description": "The language model timed out"},
}


def _status_body(view: InterviewView) -> dict[str, Any]:
    return {
        "user_profile": view.profile,
        "conversation_history": view.history,
        "information_progress": view.progress,
        "missing_fields": view.missing,
        "profile_complete": view.complete,
    }


@router.post(
    "",
    status_code=201,
    summary="Start a session",
    response_model=SessionCreated,
    responses={503: NOT_FOUND[503]},
)
async def create_session(sessions: SessionsDep) -> SessionCreated:
    meta = await sessions.create()
    return SessionCreated(session_id=meta.session_id, created_at=meta.created_at)


@router.get(
    "/{session_id}",
    summary="Session summary",
    response_model=SessionSummary,
    responses=NOT_FOUND,
)
async def get_session(session_id: SessionIdDep, hera: HeraDep) -> dict[str, Any]:
    return await hera.summary(session_id)


@router.delete(
    "/{session_id}",
    status_code=204,
    summary="Delete a session with all its data and images",
    responses=NOT_FOUND,
)
async def delete_session(
    session_id: SessionIdDep, sessions: SessionsDep, blobs: BlobsDep
) -> Response:
    await sessions.get_meta(session_id=session_id)  # 404 for an unknown session
    # Blobs first: if this fails the session still exists and the delete can be retried.
    await blobs.delete_prefix(prefix=session_blob_prefix(session_id))
    await sessions.delete(session_id=session_id)
    return Response(status_code=204)


@router.post(
    "/{session_id}/messages",
    summary="Send a message to Hera",
    response_model=MessageResponse,
    responses=TURN_ERRORS,
)
async def send_message(
    session_id: SessionIdDep, body: MessageRequest, hera: HeraDep
) -> dict[str, Any]:
    result = await hera.handle_message(session_id, body.message)
    return {
        "reply": result.reply,
        **_status_body(result.view),
        "session_status": result.view.status,
        "completion_message": result.completion_message,
        "last_extracted_fields": result.extracted_fields,
    }


@router.get(
    "/{session_id}/status",
    summary="Interview status and progress",
    response_model=InterviewStatus,
    responses=NOT_FOUND,
)
async def interview_status(session_id: SessionIdDep, hera: HeraDep) -> dict[str, Any]:
    return _status_body(await hera.view(session_id))


@router.post(
    "/{session_id}/complete",
    summary="Finish the interview",
    response_model=CompleteResponse,
    responses={
        **NOT_FOUND,
        409: {"model": IncompleteResponse, "description": "Required fields are missing"},
    },
)
async def complete_interview(
    session_id: SessionIdDep, hera: HeraDep, family: FamilyDep
) -> dict[str, Any]:
    view = await hera.complete(session_id)
    await family.start(session_id)  # the family is created once, here or on its first message
    body = _status_body(view)
    body.pop("profile_complete")
    return {**body, "message": COMPLETION_MESSAGE, "information_complete": True}
