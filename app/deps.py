"""FastAPI dependencies as Annotated aliases; the only bridge from routes to services.

All are `async def`: FastAPI runs plain `def` dependencies in a thread pool, a costly hop
for what is only an attribute lookup. Each agent has its own typed function (one level:
a sub-dependency on `get_services` would cost every request a second resolution), which a
test can target with `app.dependency_overrides[get_hera] = ...`.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import Depends, Header, Path, Request, Security
from fastapi.params import Depends as DependsParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.agents.access import GUEST, Caller
from app.agents.family import FamilyAgent
from app.agents.hera import HeraAgent
from app.agents.images import ImageAgent
from app.agents.keepsakes import KeepsakeAgent
from app.agents.lifecycle import SessionLifecycle
from app.agents.people import PeopleAgent
from app.auth.tokens import AuthRequired, InvalidToken, Principal
from app.container import Services
from app.errors import InvalidInput, NotFound
from app.repositories.base import InvalidId, check_request_key, is_session_id
from app.repositories.users import owner_key
from app.settings import Settings


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_hera(request: Request) -> HeraAgent:
    services: Services = request.app.state.services
    return services.hera


async def get_family(request: Request) -> FamilyAgent:
    services: Services = request.app.state.services
    return services.family


async def get_images(request: Request) -> ImageAgent:
    services: Services = request.app.state.services
    return services.images


async def get_people(request: Request) -> PeopleAgent:
    services: Services = request.app.state.services
    return services.people


async def get_keepsakes(request: Request) -> KeepsakeAgent:
    services: Services = request.app.state.services
    return services.keepsakes


async def get_lifecycle(request: Request) -> SessionLifecycle:
    services: Services = request.app.state.services
    return services.lifecycle


async def session_id_path(
    session_id: Annotated[
        str,
        Path(
            description="Session id (canonical UUID4).",
            examples=["0b6f1c9e-4a5b-4c1d-9e2f-3a4b5c6d7e8f"],
            max_length=36,
        ),
    ],
) -> str:
    # Anything but a canonical UUID is refused here, before any store is touched.
    if not is_session_id(session_id):
        raise NotFound("セッションが見つかりません。", code="session_not_found")
    return session_id


async def idempotency_key(
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Makes a retry safe: a repeat with the same key and body returns the "
            "first response without doing the work again (1-64 of A-Z a-z 0-9 _ -).",
            examples=["3f2b7c1e-msg-0001"],
        ),
    ] = None,
) -> str | None:
    if key is None:
        return None
    try:
        return check_request_key(key)
    except InvalidId:
        raise InvalidInput(
            "Idempotency-Key は英数字・'_'・'-' の 1〜64 文字で指定してください。",
            code="invalid_idempotency_key",
        ) from None


# Declared for OpenAPI (the bearer scheme on every route that reads it); the header itself is
# read below, so a malformed one is refused instead of quietly making a guest.
_BEARER = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    description="An ID token of the configured issuer (Firebase or OIDC). Optional unless "
    "AUTH_MODE=required; an invalid one is always 401.",
)


async def get_principal(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)] = None,
) -> Principal | None:
    """The verified person behind the request, or None for a guest. A token that is there
    but not valid is 401, wherever a token is optional; with AUTH_MODE=off none is read."""
    auth = request.app.state.services.auth
    if auth.verifier is None:
        return None
    header = request.headers.get("authorization")
    if header is None:
        if auth.mode == "required":
            raise AuthRequired
        return None
    scheme, _sep, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("not a bearer token")
    principal: Principal = await auth.verifier.verify(token.strip())
    return principal


async def get_caller(principal: Annotated[Principal | None, Depends(get_principal)]) -> Caller:
    return Caller(owner_id=principal.subject) if principal else GUEST


async def signed_in(principal: Annotated[Principal | None, Depends(get_principal)]) -> Principal:
    """The verified person; guests are refused (401) where only a person can act."""
    if principal is None:
        raise AuthRequired
    return principal


def client_address(request: Request) -> str:
    """The client as uvicorn resolved it: behind trusted proxies (`--proxy-headers`,
    FORWARDED_ALLOW_IPS) the forwarded address, otherwise the peer. Never a header read here:
    any client could pick its own address (and rate-limit budget) that way."""
    return request.client.host if request.client else "unknown"


def client_identity(request: Request, caller: Caller) -> str:
    """Who a budget or a pre-session key belongs to: the signed-in person (from any address;
    by owner key, so the raw `sub` never names a key), else the client address."""
    return f"user:{owner_key(caller.owner_id)}" if caller.owner_id else client_address(request)


def client_scoped(request: Request, caller: Caller, key: str) -> str:
    """A request key that belongs to this client only (for keys that precede a session)."""
    return hashlib.sha256(f"{client_identity(request, caller)}\0{key}".encode()).hexdigest()


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
HeraDep = Annotated[HeraAgent, Depends(get_hera)]
FamilyDep = Annotated[FamilyAgent, Depends(get_family)]
ImagesDep = Annotated[ImageAgent, Depends(get_images)]
LifecycleDep = Annotated[SessionLifecycle, Depends(get_lifecycle)]
PeopleDep = Annotated[PeopleAgent, Depends(get_people)]
KeepsakesDep = Annotated[KeepsakeAgent, Depends(get_keepsakes)]
SessionIdDep = Annotated[str, Depends(session_id_path)]
IdempotencyKeyDep = Annotated[str | None, Depends(idempotency_key)]
CallerDep = Annotated[Caller, Depends(get_caller)]
PrincipalDep = Annotated[Principal, Depends(signed_in)]


def rate_limit(kind: str, *, session_route: bool = True) -> DependsParam:
    """A route dependency that spends one request of `kind` from the client's budget.

    On a session route it runs after the session id check, so a malformed id is a 404 that
    costs neither a budget nor a round trip to the limiter's store."""

    async def spend(request: Request, caller: CallerDep) -> None:
        services: Services = request.app.state.services
        await services.limiter.hit(kind, client_identity(request, caller))

    async def spend_on_session(
        request: Request, session_id: SessionIdDep, caller: CallerDep
    ) -> None:
        await spend(request, caller)

    dependency = spend_on_session if session_route else spend
    dependency.__name__ = f"rate_limit_{kind}"
    marker: DependsParam = Depends(dependency)
    return marker
