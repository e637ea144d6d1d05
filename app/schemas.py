"""Request and response models of the HTTP API (what OpenAPI shows)."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SESSION_EXAMPLE = "0b6f1c9e-4a5b-4c1d-9e2f-3a4b5c6d7e8f"
TS_EXAMPLE = "2026-11-23T10:00:00+00:00"


class ErrorResponse(BaseModel):
    error: str = Field(
        description="Human-readable message (Japanese).", examples=["見つかりません。"]
    )
    code: str = Field(description="Machine-readable code.", examples=["session_not_found"])
    model_config = ConfigDict(extra="allow")


class ConflictResponse(ErrorResponse):
    """409: the interview is incomplete (with what is missing), or another turn is running."""

    missing_fields: list[str] | None = Field(
        default=None,
        description="Only with code `interview_incomplete`: what is still missing, in order.",
        examples=[["income_range", "children_info"]],
    )
    information_complete: Literal[False] | None = Field(
        default=None, description="Only with code `interview_incomplete`."
    )


class NotReadyResponse(ErrorResponse):
    checks: dict[str, Literal["ok", "down"]] = Field(examples=[{"sessions": "down", "blobs": "ok"}])


# What every documented error status means; routes pick the statuses they can answer with.
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Unreadable body: malformed JSON, invalid UTF-8 or a broken multipart form "
    "(`invalid_json`, `invalid_body`)",
    401: "A bearer token that is not valid (`invalid_token`, with `WWW-Authenticate`), or none "
    "where one is required (`auth_required`)",
    404: "No such session, another person's session, or an id that is not a canonical UUID4 "
    "(`session_not_found`)",
    409: "Another turn of this session is running (`session_busy`)",
    413: "Body over MAX_REQUEST_BYTES (`payload_too_large`) or message over MAX_MESSAGE_CHARS "
    "(`message_too_long`)",
    415: "Body is not `application/json` (`unsupported_media_type`)",
    422: "Validation failed: missing, blank or mistyped field, an over-long id, a malformed "
    "Idempotency-Key, or a key already used for another request (`validation_error`, "
    "`empty_message`, `invalid_idempotency_key`, `idempotency_key_reused`)",
    429: "Too many requests from this client (`rate_limited`, with `Retry-After` and "
    "`RateLimit-*` headers), or a per-session quota is used up (`session_quota_exceeded`, "
    "naming the `quota`)",
    500: "Unexpected error: JSON with a `request_id`, never internals (`internal_error`)",
    502: "The language model failed (`llm_error`)",
    503: "A store is unavailable (`store_unavailable`, naming the `store`), too many model "
    "calls wait in this process (`overloaded`, with `Retry-After`), or the token issuer's "
    "keys were never fetched (`auth_unavailable`)",
    504: "The language model timed out (`llm_timeout`)",
}
SESSION_ERRORS: tuple[int, ...] = (401, 404, 422, 500, 503)  # any route with a session id
BODY_ERRORS: tuple[int, ...] = (400, 413, 415, 422)  # any route that reads a JSON body
LLM_ERRORS: tuple[int, ...] = (409, 502, 504)  # any route that runs a turn of a brain
LIMIT_ERRORS: tuple[int, ...] = (429, 503)  # any route behind a rate limit or a quota


def error_responses(
    *statuses: int,
    descriptions: dict[int, str] | None = None,
    models: dict[int, type[BaseModel]] | None = None,
) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: each status with its JSON error model and description."""
    descriptions, models = descriptions or {}, models or {}
    return {
        status: {
            "model": models.get(status, ErrorResponse),
            "description": descriptions.get(status, ERROR_DESCRIPTIONS[status]),
        }
        for status in sorted(set(statuses))
    }


_BINARY: Final = {"schema": {"type": "string", "format": "binary"}}
IMAGE_CONTENT: Final = {"image/png": _BINARY, "image/jpeg": _BINARY, "image/webp": _BINARY}


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    status: Literal["ok"] = "ok"
    checks: dict[str, str] = Field(examples=[{"sessions": "ok", "blobs": "ok", "users": "ok"}])
    user_records: str = Field(
        "unknown",
        description="How the user store keeps records across its restart: `disk`, `aof`, "
        "`rdb`, `none` (a Redis that keeps nothing: user records would be lost), `unknown`.",
    )


class HistoryEntry(BaseModel):
    speaker: str = Field(examples=["hera"])
    message: str = Field(examples=["こんにちは、ヘーラーです。"])
    timestamp: str = Field(examples=[TS_EXAMPLE])
    model_config = ConfigDict(extra="allow")


class Progress(BaseModel):
    collected: int = Field(ge=0, examples=[3])
    total: int = Field(gt=0, examples=[5])


class InformationProgress(BaseModel):
    basic_info: Progress
    relationship: Progress
    personality: Progress
    children_info: Progress


class MessageRequest(BaseModel):
    message: str = Field(
        min_length=1,
        max_length=100_000,  # the real limit (MAX_MESSAGE_CHARS) is checked by the agent → 413
        description="The user's message.",
        examples=["32歳の女性です。独身で東京に住んでいます。"],
    )

    @field_validator("message")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        # Blank: nothing but whitespace (incl. U+3000) and invisible control/format characters
        # (NUL, zero-width space, BOM, ...). A ZWJ inside an emoji sequence is not alone.
        if all(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf") for ch in value):
            raise ValueError("message must not be blank")
        return value


class SessionCreated(BaseModel):
    session_id: str = Field(examples=[SESSION_EXAMPLE])
    created_at: datetime = Field(examples=[TS_EXAMPLE])
    status: Literal["created"] = "created"


class SessionSummary(BaseModel):
    session_id: str = Field(examples=[SESSION_EXAMPLE])
    created_at: datetime
    updated_at: datetime
    interview_status: Literal["INCOMPLETE", "COMPLETED"]
    profile_complete: bool
    family_status: str = Field(examples=["not_started"])
    images: list[str] = Field(examples=[["user", "partner"]])
    image_urls: dict[str, str] = Field(
        description="Each image's URL (signed and expiring for a signed-in person's session).",
        examples=[
            {"user": "/api/sessions/0b6f1c9e-4a5b-4c1d-9e2f-3a4b5c6d7e8f/photos/user?v=3f2a"}
        ],
    )


class InterviewStatus(BaseModel):
    user_profile: dict[str, Any]
    conversation_history: list[HistoryEntry]
    information_progress: InformationProgress
    missing_fields: list[str] = Field(examples=[["income_range", "children_info"]])
    profile_complete: bool


class MessageResponse(BaseModel):
    reply: str = Field(examples=["ありがとうございます。お住まいはどちらですか？"])
    conversation_history: list[HistoryEntry]
    user_profile: dict[str, Any]
    information_progress: InformationProgress
    missing_fields: list[str]
    profile_complete: bool
    session_status: Literal["INCOMPLETE", "COMPLETED"]
    completion_message: str | None
    last_extracted_fields: list[str] = Field(examples=[["age", "gender"]])


class CompleteResponse(BaseModel):
    message: str
    user_profile: dict[str, Any]
    conversation_history: list[HistoryEntry]
    information_progress: InformationProgress
    missing_fields: list[str] = Field(max_length=0)
    information_complete: Literal[True] = True


class FamilyEntry(HistoryEntry):
    role: str | None = Field(default=None, examples=["妻"])


class TripInfo(BaseModel):
    destination: str | None = Field(default=None, examples=["沖縄"])
    activities: list[str] = Field(default_factory=list, examples=[["海水浴", "水族館"]])


class FamilyPlan(BaseModel):
    destination: str
    activities: list[str]
    story: str
    letter: str
    confirmed_at: str | None = None


class FamilyStatus(BaseModel):
    conversation_history: list[FamilyEntry]
    family_trip_info: TripInfo
    conversation_complete: bool
    family_plan: FamilyPlan | None
    proposal_pending: bool = False
    members: list[dict[str, Any]] = Field(
        default_factory=list, description="The family: id, name, role, kind, age."
    )


class FamilyMessageResponse(FamilyStatus):
    reply: list[FamilyEntry]


class UploadResponse(BaseModel):
    status: Literal["success"] = "success"
    image_url: str = Field(examples=[f"/api/sessions/{SESSION_EXAMPLE}/photos/user?v=3f2a9c1b0d4e"])


class GenerateImageRequest(BaseModel):
    target: Literal["partner"] = "partner"


class ImageResponse(BaseModel):
    status: Literal["success"] = "success"
    image_url: str
    meta: dict[str, Any] = Field(examples=[{"engine": "offline"}])


class ChildImagesResponse(ImageResponse):
    images: list[ImageResponse]
