"""Photo upload, image generation and image serving. Thin: parse, call the agent, shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, File, Request, Response, UploadFile
from fastapi.responses import RedirectResponse, StreamingResponse

from app.agents.images import StoredImage
from app.deps import ImagesDep, SessionIdDep, SettingsDep
from app.routers.sessions import NOT_FOUND
from app.schemas import (
    ChildImagesResponse,
    ErrorResponse,
    GenerateImageRequest,
    ImageResponse,
    UploadResponse,
)

router = APIRouter(prefix="/api/sessions/{session_id}", tags=["images"])
_READ_CHUNK = 64 * 1024
_GENERATE_ERRORS: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    409: {"model": ErrorResponse, "description": "Profile or prerequisite image missing"},
    502: {"model": ErrorResponse, "description": "The image model failed"},
    504: {"model": ErrorResponse, "description": "The image model timed out"},
}


def image_url(session_id: str, image: StoredImage) -> str:
    # The version makes a regenerated image a new URL, so caches never show the old one.
    return f"/api/sessions/{session_id}/photos/{image.name}?v={image.version}"


def _shape(session_id: str, image: StoredImage) -> dict[str, Any]:
    return {"status": "success", "image_url": image_url(session_id, image), "meta": image.meta}


@router.post(
    "/photos/user",
    summary="Upload the user's photo (JPEG, PNG or WebP)",
    response_model=UploadResponse,
    responses={
        **NOT_FOUND,
        400: {"model": ErrorResponse, "description": "Not a readable image"},
        413: {"model": ErrorResponse, "description": "Over MAX_UPLOAD_BYTES or too many pixels"},
        415: {"model": ErrorResponse, "description": "Not JPEG, PNG or WebP"},
    },
)
async def upload_user_photo(
    session_id: SessionIdDep,
    images: ImagesDep,
    file: Annotated[UploadFile, File(description="The photo (JPEG, PNG or WebP)")],
) -> dict[str, Any]:
    async def chunks() -> AsyncIterator[bytes]:
        while chunk := await file.read(_READ_CHUNK):
            yield chunk

    stored = await images.upload_user_photo(session_id, chunks())
    return {"status": "success", "image_url": image_url(session_id, stored)}


@router.post(
    "/generate-image",
    summary="Draw the partner from the profile's description",
    response_model=ImageResponse,
    responses=_GENERATE_ERRORS,
)
async def generate_partner_image(
    session_id: SessionIdDep, images: ImagesDep, body: GenerateImageRequest | None = None
) -> dict[str, Any]:
    return _shape(session_id, await images.generate_partner(session_id))


@router.post(
    "/generate-child-image",
    summary="Draw every child from the user's photo and the partner image",
    response_model=ChildImagesResponse,
    responses=_GENERATE_ERRORS,
)
async def generate_child_images(session_id: SessionIdDep, images: ImagesDep) -> dict[str, Any]:
    stored = await images.generate_children(session_id)
    shaped = [_shape(session_id, image) for image in stored]
    return {**shaped[0], "images": shaped}


@router.get(
    "/photos/{name}",
    summary="An image of the session (streamed, or a redirect to a presigned URL)",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"image/png": {}, "image/jpeg": {}}, "description": "The image"},
        304: {"description": "Not modified (If-None-Match)"},
        307: {"description": "Redirect to a short-lived presigned URL"},
        **NOT_FOUND,
    },
)
async def get_photo(
    session_id: SessionIdDep,
    name: str,
    request: Request,
    images: ImagesDep,
    settings: SettingsDep,
) -> Response:
    if settings.blob_url_mode == "presigned":
        url = await images.presigned(session_id, name, settings.presigned_url_ttl)
        if url is not None:
            return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
    entry, reader = await images.open_image(session_id, name)
    etag = f'"{entry["etag"]}"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=3600"}
    if request.headers.get("if-none-match") == etag:
        await reader.aclose()
        return Response(status_code=304, headers=headers)
    headers["Content-Length"] = str(reader.info.size)
    return StreamingResponse(reader.chunks(), media_type=entry["content_type"], headers=headers)
