"""A signed-in person's own space: their record and tags, their sessions, their keepsakes,
and erasing everything. Every route needs a valid bearer token (401 without)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from app.agents.access import Caller
from app.agents.images import check_image_name
from app.agents.keepsakes import Keepsake
from app.auth.tokens import Principal
from app.deps import CallerDep, KeepsakesDep, PeopleDep, PrincipalDep, SessionIdDep
from app.errors import NotFound
from app.repositories.users import is_owner_key, owner_key
from app.routers.bodies import LimitedRoute
from app.routers.urls import image_url
from app.schemas import BODY_ERRORS, IMAGE_CONTENT, error_responses
from app.schemas_users import (
    ArtifactsPage,
    ProfileResponse,
    SessionsPage,
    TagRequest,
    TagsResponse,
    UserMe,
    UserUpdate,
)

router = APIRouter(prefix="/api", tags=["me"], route_class=LimitedRoute)
ME_ERRORS = error_responses(401, 422, 500, 503)
WITH_BODY = error_responses(*BODY_ERRORS, 401, 500, 503)
Limit = Annotated[int, Query(ge=1, le=100, description="How many per page.")]
Cursor = Annotated[str | None, Query(max_length=512, description="From the previous page.")]


def _claims(principal: Principal) -> dict[str, Any]:
    claims = principal.claims
    return {
        k: claims.get(k) if isinstance(claims.get(k), str) else None
        for k in ("email", "name", "picture")
    }


def _me(principal: Principal, record: dict[str, Any]) -> dict[str, Any]:
    claims = _claims(principal)
    return {
        "uid": principal.subject,
        **claims,
        "name": record.get("name") or claims["name"],
        "age": record.get("age"),
        "location": record.get("location"),
        "personality_traits": record.get("personality_traits") or {},
        "tags": record.get("tags", []),
        "created_at": record.get("created_at"),
        "updated_at": record.get("updated_at"),
    }


def _first(stored: Any, interviewed: Any) -> Any:
    """What the person set wins (an age of 0 too), else what their interview found."""
    return interviewed if stored is None else stored


@router.get("/users/me", summary="The signed-in person", response_model=UserMe, responses=ME_ERRORS)
async def get_me(principal: PrincipalDep, people: PeopleDep) -> dict[str, Any]:
    return _me(principal, await people.record(principal.subject))


@router.put(
    "/users/me", summary="Change the person's record (partial)", response_model=UserMe,
    responses=WITH_BODY,
)  # fmt: skip
async def put_me(principal: PrincipalDep, body: UserUpdate, people: PeopleDep) -> dict[str, Any]:
    fields = body.model_dump(exclude_unset=True, exclude_none=True)
    return _me(principal, await people.update(principal.subject, fields))


@router.post(
    "/users/me/tags", summary="Add a tag", response_model=TagsResponse, responses=WITH_BODY
)
async def add_tag(principal: PrincipalDep, body: TagRequest, people: PeopleDep) -> TagsResponse:
    return TagsResponse(tags=await people.add_tag(principal.subject, body.tag))


@router.delete(
    "/users/me/tags", summary="Remove a tag (body `{tag}`)", response_model=TagsResponse,
    responses=WITH_BODY,
)  # fmt: skip
async def remove_tag(principal: PrincipalDep, body: TagRequest, people: PeopleDep) -> TagsResponse:
    return TagsResponse(tags=await people.remove_tag(principal.subject, body.tag))


@router.get(
    "/profile", summary="The person, with what their newest interview knows",
    response_model=ProfileResponse, responses=ME_ERRORS,
)  # fmt: skip
async def get_profile(request: Request, principal: PrincipalDep) -> dict[str, Any]:
    services = request.app.state.services
    record, newest = await asyncio.gather(  # two stores: neither waits for the other
        services.people.record(principal.subject),
        services.people.newest_profile(principal.subject),
    )
    profile = newest.profile if newest else None
    photo = None
    if newest and newest.photo_version:
        caller = Caller(owner_id=principal.subject)
        photo = image_url(services.auth, caller, newest.session_id, "user", newest.photo_version)
    traits = (
        profile.user_personality_traits.known()
        if profile and profile.user_personality_traits
        else {}
    )
    claims = _claims(principal)
    return {
        **claims,
        "name": record.get("name") or claims["name"],
        "age": _first(record.get("age"), profile.age if profile else None),
        "location": _first(record.get("location"), profile.location if profile else None),
        "personality_traits": record.get("personality_traits") or traits,
        "user_image_path": photo,
    }


@router.get(
    "/users/me/sessions", summary="My sessions, newest first", response_model=SessionsPage,
    responses=ME_ERRORS,
)  # fmt: skip
async def my_sessions(
    principal: PrincipalDep, people: PeopleDep, limit: Limit = 20, cursor: Cursor = None
) -> dict[str, Any]:
    found, next_cursor = await people.sessions(principal.subject, limit, cursor)
    return {"sessions": found, "next_cursor": next_cursor}


def _keepsake_url(request: Request, keepsake: Keepsake, name: str) -> str | None:
    if keepsake.image_key(name) is None:
        return None
    path = f"/api/keepsakes/{keepsake.owner}/{keepsake.session_id}/{quote(name)}"
    signer = request.app.state.services.auth.signer
    return f"{path}?{signer.sign(path)}" if signer else path


def _artifact(request: Request, keepsake: Keepsake) -> dict[str, Any]:
    doc = keepsake.document
    children = [
        {"name": c["name"], "image_path": _keepsake_url(request, keepsake, c["image"])}
        for c in doc.get("children", [])
    ]
    return {
        "session_id": doc["session_id"],
        "created_at": doc["created_at"],
        "story": doc["story"],
        "letter": doc["letter"],
        "images": {
            "user": _keepsake_url(request, keepsake, "user"),
            "partner": _keepsake_url(request, keepsake, "partner"),
            "children": children,
        },
        "trip_plan": doc["trip_plan"],
    }


@router.get(
    "/users/me/artifacts", summary="My keepsakes (story, letter, trip, images), newest first",
    response_model=ArtifactsPage, response_model_by_alias=True, responses=ME_ERRORS,
)  # fmt: skip
async def my_artifacts(
    request: Request,
    principal: PrincipalDep,
    keepsakes: KeepsakesDep,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> dict[str, Any]:
    found, next_cursor = await keepsakes.page(principal.subject, limit, cursor)
    return {"artifacts": [_artifact(request, k) for k in found], "next_cursor": next_cursor}


@router.delete(
    "/users/me/artifacts/{session_id}", status_code=204, response_class=Response,
    summary="Delete one keepsake and its images",
    responses={204: {"description": "Deleted"}, **error_responses(401, 404, 422, 500, 503)},
)  # fmt: skip
async def forget_artifact(
    session_id: SessionIdDep, principal: PrincipalDep, keepsakes: KeepsakesDep
) -> Response:
    if not await keepsakes.forget(principal.subject, session_id):
        raise NotFound("記念品が見つかりません。", code="keepsake_not_found")
    return Response(status_code=204)


@router.delete(
    "/users/me", status_code=204, response_class=Response,
    summary="Erase everything of the person: sessions, images, keepsakes, record",
    responses={204: {"description": "Erased"}, **ME_ERRORS},
)  # fmt: skip
async def erase_me(principal: PrincipalDep, people: PeopleDep) -> Response:
    await people.erase(principal.subject)
    return Response(status_code=204)


@router.get(
    "/keepsakes/{owner}/{session_id}/{name}",
    summary="An image of a keepsake (a signed URL, or the owner's token)",
    response_class=StreamingResponse,
    responses={
        200: {"content": IMAGE_CONTENT, "description": "The image"},
        **error_responses(401, 404, 422, 500, 503),
    },
)
async def keepsake_image(
    request: Request,
    session_id: SessionIdDep,
    owner: Annotated[str, Path(max_length=32)],
    name: Annotated[str, Path(max_length=16)],
    caller: CallerDep,
    keepsakes: KeepsakesDep,
    exp: Annotated[str | None, Query()] = None,
    sig: Annotated[str | None, Query()] = None,
) -> Response:
    missing = NotFound("画像が見つかりません。", code="image_not_found")
    check_image_name(name)
    if not is_owner_key(owner):
        raise missing
    path = f"/api/keepsakes/{owner}/{session_id}/{name}"
    signer = request.app.state.services.auth.signer
    signed = signer is not None and signer.valid(path, exp, sig)
    own = caller.owner_id is not None and owner_key(caller.owner_id) == owner
    if not (signed or own):
        raise missing
    reader = await keepsakes.open_image(owner, session_id, name)
    if reader is None:
        raise missing
    headers = {"Cache-Control": "private, max-age=3600", "Content-Length": str(reader.info.size)}
    return StreamingResponse(reader.chunks(), media_type=reader.info.content_type, headers=headers)
