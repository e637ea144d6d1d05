"""Photo upload, image generation and image serving. Thin: parse, call the agent, shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, File, Path, Query, Request, Response, UploadFile
from fastapi.responses import RedirectResponse, StreamingResponse

from app.agents.access import Caller
from app.agents.images import StoredImage
from app.agents.turns import RequestKey
from app.deps import (
    CallerDep,
    IdempotencyKeyDep,
    ImagesDep,
    SessionIdDep,
    SettingsDep,
    rate_limit,
)
from app.routers.bodies import LimitedRoute, UploadRoute
from app.routers.urls import image_url, photo_path
from app.schemas import (
    BODY_ERRORS,
    IMAGE_CONTENT,
    LIMIT_ERRORS,
    LLM_ERRORS,
    SESSION_ERRORS,
    ChildImagesResponse,
    ConflictResponse,
    GenerateImageRequest,
    ImageResponse,
    UploadResponse,
    error_responses,
)

router = APIRouter(prefix="/api/sessions/{session_id}", tags=["images"], route_class=LimitedRoute)
# The upload reads a file of up to MAX_UPLOAD_BYTES; its route class says so.
uploads = APIRouter(prefix="/api/sessions/{session_id}", tags=["images"], route_class=UploadRoute)
_READ_CHUNK = 64 * 1024
_IMAGE_ERRORS = {
    409: "The profile or a prerequisite image is missing (`interview_incomplete`, "
    "`user_photo_missing`, `partner_image_missing`, ...), or another turn is running",
    502: "The image model failed (`llm_error`)",
    504: "The image model timed out (`llm_timeout`)",
}
_GENERATE_ERRORS = error_responses(
    *SESSION_ERRORS,
    *LLM_ERRORS,
    *LIMIT_ERRORS,
    descriptions=_IMAGE_ERRORS,
    models={409: ConflictResponse},
)
ImageName = Annotated[
    str,
    Path(
        description="`user`, `partner` or `child_<n>`; anything else is 404 before any lookup.",
        examples=["user"],
    ),
]


def _url(request: Request, caller: Caller, session_id: str, image: StoredImage) -> str:
    auth = request.app.state.services.auth
    return image_url(auth, caller, session_id, image.name, image.version)


def _shape(request: Request, caller: Caller, session_id: str, image: StoredImage) -> dict[str, Any]:
    url = _url(request, caller, session_id, image)
    return {"status": "success", "image_url": url, "meta": image.meta}


@uploads.post(
    "/photos/user",
    summary="Upload the user's photo (JPEG, PNG or WebP)",
    response_model=UploadResponse,
    responses=error_responses(
        *SESSION_ERRORS,
        *BODY_ERRORS,
        409,
        429,
        descriptions={
            400: "Not a readable image, or a broken multipart form",
            413: "Over MAX_UPLOAD_BYTES (`payload_too_large`) or too many pixels "
            "(`image_too_large`)",
            415: "Not JPEG, PNG or WebP, or not a `multipart/form-data` body "
            "(`unsupported_media_type`)",
        },
    ),
    dependencies=[rate_limit("uploads")],
)
async def upload_user_photo(
    request: Request,
    session_id: SessionIdDep,
    images: ImagesDep,
    file: Annotated[UploadFile, File(description="The photo (JPEG, PNG or WebP)")],
    key: IdempotencyKeyDep,
    caller: CallerDep,
) -> dict[str, Any]:
    async def chunks() -> AsyncIterator[bytes]:
        while chunk := await file.read(_READ_CHUNK):
            yield chunk

    # The agent fingerprints the file itself: a retry's multipart framing differs.
    stored = await images.upload_user_photo(session_id, chunks(), key, caller)
    return {"status": "success", "image_url": _url(request, caller, session_id, stored)}


@router.post(
    "/generate-image",
    summary="Draw the partner from the profile's description",
    response_model=ImageResponse,
    responses={**_GENERATE_ERRORS, **error_responses(*BODY_ERRORS)},
    dependencies=[rate_limit("images")],
)
async def generate_partner_image(
    request: Request,
    session_id: SessionIdDep,
    images: ImagesDep,
    key: IdempotencyKeyDep,
    caller: CallerDep,
    body: GenerateImageRequest | None = None,
) -> dict[str, Any]:
    stored = await images.generate_partner(session_id, RequestKey.of(key, "partner_image"), caller)
    return _shape(request, caller, session_id, stored)


@router.post(
    "/generate-child-image",
    summary="Draw every child from the user's photo and the partner image",
    response_model=ChildImagesResponse,
    responses=_GENERATE_ERRORS,
    dependencies=[rate_limit("images")],
)
async def generate_child_images(
    request: Request,
    session_id: SessionIdDep,
    images: ImagesDep,
    key: IdempotencyKeyDep,
    caller: CallerDep,
) -> dict[str, Any]:
    stored = await images.generate_children(session_id, RequestKey.of(key, "child_images"), caller)
    shaped = [_shape(request, caller, session_id, image) for image in stored]
    return {**shaped[0], "images": shaped}


@router.get(
    "/photos/{name}",
    summary="An image of the session (streamed, or a redirect to a presigned URL)",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": IMAGE_CONTENT,
            "description": "The image, with `ETag` and `Cache-Control`",
        },
        304: {"description": "Not modified (If-None-Match)"},
        307: {"description": "Redirect to a short-lived presigned URL (BLOB_URL_MODE=presigned)"},
        **error_responses(
            *SESSION_ERRORS,
            descriptions={
                404: "No such session or image, another person's session, or a forged, "
                "expired or another image's signature (`session_not_found`, `image_not_found`)"
            },
        ),
    },
)
async def get_photo(
    session_id: SessionIdDep,
    name: ImageName,
    request: Request,
    images: ImagesDep,
    settings: SettingsDep,
    caller: CallerDep,
    exp: Annotated[str | None, Query(description="Expiry of a signed URL (Unix time).")] = None,
    sig: Annotated[str | None, Query(description="Signature of a signed URL.")] = None,
) -> Response:
    signer = request.app.state.services.auth.signer
    if signer is not None and signer.valid(photo_path(session_id, name), exp, sig):
        caller = Caller(owner_id=caller.owner_id, signed=True)  # the URL is the proof
    # Access is checked here, before a redirect or a byte; a hostile name is 404 (the agent
    # checks it) before any store is touched.
    entry = await images.image_entry(session_id, name, caller)
    if settings.blob_url_mode == "presigned":
        url = await images.presigned(entry, settings.presigned_url_ttl)
        if url is not None:
            return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
    etag = f'"{entry["etag"]}"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=3600"}
    if request.headers.get("if-none-match") == etag:  # the index says so: no blob GET
        return Response(status_code=304, headers=headers)
    reader = await images.open_image(entry)
    headers["Content-Length"] = str(reader.info.size)
    return StreamingResponse(reader.chunks(), media_type=entry["content_type"], headers=headers)
