"""Domain errors of the HTTP edge and the one table that maps every error to JSON.

Every non-2xx response is `{"error": <human message>, "code": <machine code>, ...}`.
"""

from __future__ import annotations

import email.message
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.agents.brains import BrainError, BrainTimeout, Overloaded
from app.agents.errors import (
    AgentError,
    EmptyMessage,
    IdempotencyKeyReused,
    ImageNotFound,
    InterviewIncomplete,
    MessageTooLong,
    PreconditionFailed,
    QuotaExceeded,
    UploadTooLarge,
)
from app.agents.uploads import ImageTooLarge, UnsupportedImage
from app.auth.jwks import KeysUnavailable
from app.auth.tokens import AuthRequired, InvalidToken
from app.ratelimit import RateLimited
from app.repositories.base import (
    BlobNotFound,
    InvalidId,
    LockLost,
    RepositoryError,
    SessionBusy,
    SessionNotFound,
    StoreUnavailable,
)
from app.repositories.users import BadCursor, TooManyTags

log = logging.getLogger("hera.errors")


class AppError(Exception):
    """An error with its HTTP status, machine code and extra JSON fields."""

    status: int = 500
    code: str = "internal_error"
    message: str = "内部エラーが発生しました。"

    def __init__(self, message: str | None = None, *, code: str | None = None, **extra: Any):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.code = code or self.code
        self.extra = extra


class NotFound(AppError):
    status, code, message = 404, "not_found", "見つかりません。"


class InvalidInput(AppError):
    status, code, message = 422, "invalid_input", "入力が正しくありません。"


@dataclass(frozen=True)
class ErrorReply:
    """An error as the edge answers it: the status, the `{"error", "code", ...}` body and
    headers. A JSON route sends it as a response; a stream sends its body as an event."""

    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] | None = None

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status, headers=self.headers)


def error_reply(
    status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any
) -> ErrorReply:
    return ErrorReply(status, {"error": message, "code": code, **extra}, headers)


def error_body(
    status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return error_reply(status, code, message, headers=headers, **extra).response()


# (exception type, status, code, message) — the most specific type first.
_DOMAIN_TABLE: tuple[tuple[type[Exception], int, str, str], ...] = (
    (SessionNotFound, 404, "session_not_found", "セッションが見つかりません。"),
    (BadCursor, 422, "invalid_cursor", "cursor は前のページの next_cursor を渡してください。"),
    (InvalidId, 404, "not_found", "見つかりません。"),
    (EmptyMessage, 422, "empty_message", "メッセージを入力してください。"),
    (TooManyTags, 422, "too_many_tags", "タグは50個までです。"),
    (IdempotencyKeyReused, 422, "idempotency_key_reused", "この Idempotency-Key は別のリクエストに使われています。"),
    (UploadTooLarge, 413, "payload_too_large", "画像ファイルが大きすぎます。"),
    (ImageTooLarge, 413, "image_too_large", "画像の画素数が多すぎます。"),
    (UnsupportedImage, 415, "unsupported_media_type", "JPEG・PNG・WebP の画像をアップロードしてください。"),
    (ImageNotFound, 404, "image_not_found", "画像が見つかりません。"),
    (BlobNotFound, 404, "image_not_found", "画像が見つかりません。"),
    (LockLost, 409, "session_busy", "処理中に別の操作と重なりました。もう一度お試しください。"),
    (SessionBusy, 409, "session_busy", "前のメッセージを処理中です。少し待ってからもう一度送ってください。"),
    (StoreUnavailable, 503, "store_unavailable", "保存先に接続できません。しばらくしてから再試行してください。"),
    (BrainTimeout, 504, "llm_timeout", "AIの応答が時間内に返りませんでした。もう一度お試しください。"),
    (BrainError, 502, "llm_error", "AIの応答を取得できませんでした。もう一度お試しください。"),
)  # fmt: skip


def reply_for(exc: Exception) -> ErrorReply | None:
    """What the edge answers for a known error, or None for an unexpected one."""
    if isinstance(exc, AppError):
        return error_reply(exc.status, exc.code, exc.message, **exc.extra)
    if isinstance(exc, InterviewIncomplete):
        return error_reply(
            409,
            "interview_incomplete",
            "まだ伺っていない項目があります。",
            missing_fields=exc.missing,
            information_complete=False,
        )
    if isinstance(exc, MessageTooLong):
        message = f"メッセージは{exc.limit}文字以内で入力してください。"
        return error_reply(413, "message_too_long", message, limit=exc.limit)
    if isinstance(exc, PreconditionFailed):
        return error_reply(409, exc.code, exc.message)
    if isinstance(exc, InvalidToken):
        message = "ログイン情報を確認できません。もう一度ログインしてください。"
        headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        return error_reply(401, "invalid_token", message, headers=headers)
    if isinstance(exc, AuthRequired):
        message = "ログインが必要です。"
        return error_reply(401, "auth_required", message, headers={"WWW-Authenticate": "Bearer"})
    if isinstance(exc, KeysUnavailable):
        log.warning("the token issuer's keys could not be fetched")
        message = "ログインを確認できません。しばらくしてから再試行してください。"
        return error_reply(503, "auth_unavailable", message, headers={"Retry-After": "30"})
    if isinstance(exc, SessionBusy) and exc.same_request:
        message = "同じリクエストを処理中です。少し待ってからもう一度お試しください。"
        return error_reply(409, "request_in_progress", message)
    if isinstance(exc, RateLimited):
        message = "リクエストが多すぎます。しばらく待ってからもう一度お試しください。"
        return error_reply(429, "rate_limited", message, headers=exc.headers(), limit=exc.limit)
    if isinstance(exc, QuotaExceeded):
        message = "このセッションで使える回数の上限に達しました。"
        return error_reply(429, "session_quota_exceeded", message, quota=exc.quota, limit=exc.limit)
    if isinstance(exc, Overloaded):
        message = "ただいま混み合っています。少し待ってからもう一度お試しください。"
        headers = {"Retry-After": str(exc.retry_after)}
        return error_reply(503, "overloaded", message, headers=headers)
    for kind, status, code, message in _DOMAIN_TABLE:
        if isinstance(exc, kind):
            extra: dict[str, Any] = {}
            if isinstance(exc, StoreUnavailable):
                extra["store"] = exc.store
                log.warning("store unavailable: %s", exc)
            elif isinstance(exc, BrainError):
                log.warning("llm failure: %s", type(exc).__name__)
            return error_reply(status, code, message, **extra)
    return None


def response_for(exc: Exception) -> JSONResponse | None:
    """The JSON response for a known error, or None for an unexpected one."""
    reply = reply_for(exc)
    return reply.response() if reply is not None else None


async def _domain_handler(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, RateLimited | QuotaExceeded):
        services = getattr(request.app.state, "services", None)
        if services is not None:
            reason, kind = (
                ("rate_limit", exc.kind) if isinstance(exc, RateLimited) else ("quota", exc.quota)
            )
            services.observer.refused(reason, kind)
    response = response_for(exc)
    if response is None:  # registered types always map; keep mypy and readers sure
        raise exc
    return response


def _expected_media_type(request: Request) -> str | None:
    """The media type the matched route reads its body as (None: it reads no body)."""
    body_field = getattr(request.scope.get("route"), "body_field", None)
    if body_field is None:
        return None
    return str(getattr(body_field.field_info, "media_type", None) or "application/json")


def _media_type_matches(content_type: str | None, expected: str) -> bool:
    """Whether a Content-Type is what the route reads (JSON: also `application/*+json`)."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    actual = message.get_content_type()
    if expected == "application/json":
        main, _, sub = actual.partition("/")
        return main == "application" and (sub == "json" or sub.endswith("+json"))
    if expected == "multipart/form-data":
        return actual == "multipart/form-data"
    return actual == expected


def _unsupported_media(expected: str) -> JSONResponse:
    return error_body(
        415,
        "unsupported_media_type",
        f"Content-Type は {expected} で送信してください。",
        expected=expected,
    )


async def _http_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    expected = _expected_media_type(request)
    if exc.status_code == 400 and expected is not None:
        # FastAPI could not read the body at all: invalid UTF-8, a broken multipart form.
        if expected == "application/json":
            return error_body(400, "invalid_json", "リクエストの JSON を読み取れません。")
        return error_body(400, "invalid_body", "送信されたデータを読み取れません。")
    try:
        phrase = HTTPStatus(exc.status_code).phrase
    except ValueError:
        phrase = "Error"
    code = getattr(exc, "code", None) or phrase.lower().replace(" ", "_").replace("-", "_")
    message = exc.detail if isinstance(exc.detail, str) and exc.status_code < 500 else phrase
    return error_body(exc.status_code, code, message, headers=exc.headers)


async def _validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        details.append({"loc": loc, "msg": err.get("msg", ""), "type": err.get("type", "")})
    if any(d["type"] == "json_invalid" for d in details):
        return error_body(
            400, "invalid_json", "リクエストの JSON を読み取れません。", details=details
        )
    expected = _expected_media_type(request)
    body_errors = [d for d in details if d["loc"][:1] == ["body"]]
    if expected is not None and body_errors:
        content_type = request.headers.get("content-type")
        # A body the route did not read for its type (text/plain, a form, no Content-Type):
        # 415 says what to send. An absent body stays a 422 "field required".
        absent = not content_type and all(d["type"] == "missing" for d in body_errors)
        if not absent and not _media_type_matches(content_type, expected):
            return _unsupported_media(expected)
    first = details[0] if details else {"loc": [], "msg": "", "type": ""}
    if first["loc"] == ["body"] and first["type"] in ("model_attributes_type", "dict_type"):
        # A JSON array, string, number or null where an object was expected.
        message = "リクエストの本文は JSON オブジェクトで送信してください。"
        return error_body(422, "validation_error", message, details=details)
    where = ".".join(p for p in first["loc"] if p not in ("body",)) or "request"
    return error_body(422, "validation_error", f"{where}: {first['msg']}", details=details)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _domain_handler)
    app.add_exception_handler(RepositoryError, _domain_handler)
    app.add_exception_handler(BrainError, _domain_handler)
    app.add_exception_handler(AgentError, _domain_handler)
    app.add_exception_handler(RateLimited, _domain_handler)
    for auth_error in (InvalidToken, AuthRequired, KeysUnavailable):
        app.add_exception_handler(auth_error, _domain_handler)
    app.add_exception_handler(Overloaded, _domain_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
