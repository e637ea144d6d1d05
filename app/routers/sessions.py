"""Session lifecycle and the Hera interview. Thin: parse, call the agent, shape."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from app.agents.access import Caller
from app.agents.hera import COMPLETION_MESSAGE, InterviewView, TurnResult
from app.agents.streams import TurnStream
from app.agents.turns import RequestKey
from app.deps import (
    CallerDep,
    HeraDep,
    IdempotencyKeyDep,
    LifecycleDep,
    PrincipalDep,
    SessionIdDep,
    client_scoped,
    rate_limit,
)
from app.routers.bodies import LimitedRoute
from app.routers.responses import ShapedJSON
from app.routers.streaming import event_stream_doc, stream_turn, wants_events
from app.routers.urls import image_url
from app.schemas import (
    BODY_ERRORS,
    LIMIT_ERRORS,
    LLM_ERRORS,
    SESSION_ERRORS,
    CompleteResponse,
    ConflictResponse,
    InterviewStatus,
    MessageRequest,
    MessageResponse,
    SessionCreated,
    SessionSummary,
    error_responses,
)

router = APIRouter(prefix="/api/sessions", tags=["sessions"], route_class=LimitedRoute)

# Every route with a session id can answer these; the others add what they can answer.
NOT_FOUND = error_responses(*SESSION_ERRORS)
TURN_ERRORS = error_responses(*SESSION_ERRORS, *BODY_ERRORS, *LLM_ERRORS, *LIMIT_ERRORS)


def _status_body(view: InterviewView) -> dict[str, Any]:
    return {
        "user_profile": view.profile.stored(),
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
    responses=error_responses(401, 422, 429, 500, 503),
    dependencies=[rate_limit("sessions", session_route=False)],
)
async def create_session(
    request: Request, lifecycle: LifecycleDep, key: IdempotencyKeyDep, caller: CallerDep
) -> SessionCreated:
    # No session holds this key yet, so it is this client's own (another client's same key
    # is another request); a signed-in person's own, from any address.
    scoped = RequestKey.of(client_scoped(request, caller, key) if key else None, "create_session")
    meta = await lifecycle.create(scoped, caller)
    return SessionCreated(session_id=meta.session_id, created_at=meta.created_at)


@router.get(
    "/{session_id}",
    summary="Session summary",
    response_model=SessionSummary,
    responses=NOT_FOUND,
)
async def get_session(
    request: Request, session_id: SessionIdDep, lifecycle: LifecycleDep, caller: CallerDep
) -> dict[str, Any]:
    return _summary(request, await lifecycle.summary(session_id, caller), caller)


def _summary(request: Request, summary: dict[str, Any], caller: Caller) -> dict[str, Any]:
    auth = request.app.state.services.auth
    sid, version = summary["session_id"], summary.pop("image_versions")
    urls = {name: image_url(auth, caller, sid, name, version[name]) for name in summary["images"]}
    return {**summary, "image_urls": urls}


@router.delete(
    "/{session_id}",
    status_code=204,
    summary="Delete a session with all its data and images",
    response_class=Response,
    responses={204: {"description": "Deleted (no body)"}, **NOT_FOUND},
)
async def delete_session(
    session_id: SessionIdDep, lifecycle: LifecycleDep, caller: CallerDep
) -> Response:
    await lifecycle.delete(session_id, caller)
    return Response(status_code=204)


def _message_body(result: TurnResult) -> dict[str, Any]:
    return {
        "reply": result.reply,
        **_status_body(result.view),
        "session_status": result.view.status,
        "completion_message": result.completion_message,
        "last_extracted_fields": result.extracted_fields,
    }


@router.post(
    "/{session_id}/messages",
    summary="Send a message to Hera",
    description="With `Accept: text/event-stream` the reply streams as server-sent events "
    "(`delta` pieces, then `done` with this route's JSON body, or `error`).",
    response_model=MessageResponse,
    responses={**TURN_ERRORS, **event_stream_doc("Hera's reply and the interview's state")},
    dependencies=[rate_limit("turns")],
)
async def send_message(
    request: Request,
    session_id: SessionIdDep,
    body: MessageRequest,
    hera: HeraDep,
    key: IdempotencyKeyDep,
    caller: CallerDep,
) -> Any:
    turn_key = RequestKey.of(key, "interview_message", body.message)

    async def turn(stream: TurnStream | None = None) -> TurnResult:
        return await hera.handle_message(session_id, body.message, turn_key, caller, stream)

    if wants_events(request):
        return await stream_turn(request, turn, _message_body, MessageResponse)
    return _message_body(await turn())


@router.get(
    "/{session_id}/status",
    summary="Interview status and progress",
    response_model=InterviewStatus,
    responses=NOT_FOUND,
)
async def interview_status(
    session_id: SessionIdDep, hera: HeraDep, caller: CallerDep
) -> ShapedJSON:
    return ShapedJSON(_status_body(await hera.view(session_id, caller)))


@router.post(
    "/{session_id}/complete",
    summary="Finish the interview",
    response_model=CompleteResponse,
    responses=error_responses(
        *SESSION_ERRORS,
        409,
        descriptions={
            409: "Required fields are missing (`interview_incomplete`, with `missing_fields`), "
            "or another turn is running (`session_busy`, `request_in_progress`)"
        },
        models={409: ConflictResponse},
    ),
)
async def complete_interview(
    session_id: SessionIdDep, hera: HeraDep, key: IdempotencyKeyDep, caller: CallerDep
) -> dict[str, Any]:
    # Finishing the interview also creates the family (once), in the same commit.
    view = await hera.complete(session_id, RequestKey.of(key, "complete"), caller)
    body = _status_body(view)
    body.pop("profile_complete")
    return {**body, "message": COMPLETION_MESSAGE, "information_complete": True}


@router.post(
    "/{session_id}/claim",
    summary="Keep a guest session as the signed-in person's own",
    response_model=SessionSummary,
    responses=error_responses(*SESSION_ERRORS, 401),
)
async def claim_session(
    request: Request,
    session_id: SessionIdDep,
    lifecycle: LifecycleDep,
    principal: PrincipalDep,
) -> dict[str, Any]:
    """Signing in at the end keeps the family: the session becomes the caller's alone (and
    a completed one becomes a keepsake). Claiming one's own session again changes nothing;
    another person's is not found."""
    caller = Caller(owner_id=principal.subject)
    summary = await lifecycle.claim(session_id, caller)
    return _summary(request, summary, caller)
