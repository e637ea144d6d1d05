"""The future family conversation. Thin: parse, call the agent, shape."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from app.agents.family import FamilyTurnResult, FamilyView
from app.agents.streams import TurnStream
from app.agents.turns import RequestKey
from app.deps import (
    CallerDep,
    FamilyDep,
    IdempotencyKeyDep,
    SessionIdDep,
    rate_limit,
)
from app.routers.bodies import LimitedRoute
from app.routers.responses import ShapedJSON
from app.routers.sessions import NOT_FOUND
from app.routers.streaming import event_stream_doc, stream_turn, wants_events
from app.schemas import (
    BODY_ERRORS,
    LIMIT_ERRORS,
    LLM_ERRORS,
    SESSION_ERRORS,
    ConflictResponse,
    FamilyMessageResponse,
    FamilyStatus,
    MessageRequest,
    error_responses,
)

router = APIRouter(
    prefix="/api/sessions/{session_id}/family", tags=["family"], route_class=LimitedRoute
)

_MEMBER_FIELDS = {"id", "name", "role", "kind", "age"}


def _body(view: FamilyView) -> dict[str, Any]:
    return {
        "conversation_history": view.history,
        "family_trip_info": view.trip_info.stored(),
        "conversation_complete": view.complete,
        "family_plan": view.plan.stored() if view.plan else None,
        "proposal_pending": view.proposal is not None,
        "members": [p.model_dump(include=_MEMBER_FIELDS) for p in view.personas],
    }


@router.get(
    "/status",
    summary="Family conversation state (read-only)",
    response_model=FamilyStatus,
    responses=NOT_FOUND,
)
async def family_status(
    session_id: SessionIdDep, family: FamilyDep, caller: CallerDep
) -> ShapedJSON:
    return ShapedJSON(_body(await family.status(session_id, caller)))


def _message_body(result: FamilyTurnResult) -> dict[str, Any]:
    return {"reply": result.reply, **_body(result.view)}


@router.post(
    "/messages",
    summary="Talk with the future family",
    description="With `Accept: text/event-stream` the members' lines (and on the agreeing "
    "turn the story and the letter) stream as server-sent events (`delta`, `story`, "
    "`letter`, then `done` with this route's JSON body, or `error`).",
    response_model=FamilyMessageResponse,
    responses={
        **event_stream_doc("The family's reply and the conversation's state"),
        **error_responses(
            *SESSION_ERRORS,
            *BODY_ERRORS,
            *LLM_ERRORS,
            *LIMIT_ERRORS,
            descriptions={
                409: "The interview is incomplete (`interview_incomplete`, with `missing_fields`), "
                "or another turn is running (`session_busy`, `request_in_progress`)"
            },
            models={409: ConflictResponse},
        ),
    },
    dependencies=[rate_limit("turns")],
)
async def family_message(
    request: Request,
    session_id: SessionIdDep,
    body: MessageRequest,
    family: FamilyDep,
    key: IdempotencyKeyDep,
    caller: CallerDep,
) -> Any:
    turn_key = RequestKey.of(key, "family_message", body.message)

    async def turn(stream: TurnStream | None = None) -> FamilyTurnResult:
        return await family.handle_message(session_id, body.message, turn_key, caller, stream)

    if wants_events(request):
        return await stream_turn(request, turn, _message_body, FamilyMessageResponse)
    return _message_body(await turn())
