"""Liveness and readiness."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.deps import ServicesDep
from app.errors import error_body
from app.repositories.base import RepositoryError
from app.routers.bodies import LimitedRoute
from app.schemas import HealthResponse, NotReadyResponse, ReadyResponse, error_responses

router = APIRouter(prefix="/api", tags=["health"], route_class=LimitedRoute)
log = logging.getLogger("hera.health")
# Below the 2 s a probe (and a client) is promised an answer in, even when a store hangs.
_PING_TIMEOUT = 1.5


@router.get(
    "/health",
    summary="Liveness: the process answers (touches no store)",
    response_model=HealthResponse,
    responses=error_responses(500),
)
async def health() -> HealthResponse:
    return HealthResponse(status="ok")


@router.get(
    "/ready",
    summary="Readiness: both stores answer",
    response_model=ReadyResponse,
    responses=error_responses(
        500,
        503,
        descriptions={503: "A store is down (`not_ready`); `checks` names which"},
        models={503: NotReadyResponse},
    ),
)
async def ready(services: ServicesDep) -> ReadyResponse | JSONResponse:
    async def check(ping: Callable[[], Awaitable[None]]) -> str:
        try:
            await asyncio.wait_for(ping(), _PING_TIMEOUT)
        except (RepositoryError, TimeoutError, OSError):
            return "down"
        except Exception as exc:  # a readiness probe answers 503, never 500
            log.warning("readiness ping failed: %s", type(exc).__name__)
            return "down"
        return "ok"

    sessions, blobs, users = await asyncio.gather(
        check(services.sessions.ping), check(services.blobs.ping), check(services.users.ping)
    )
    checks = {"sessions": sessions, "blobs": blobs, "users": users}
    if "down" in checks.values():
        down = [name for name, state in checks.items() if state == "down"]
        return error_body(503, "not_ready", f"store unavailable: {', '.join(down)}", checks=checks)
    # Whether a person's record would survive the store's restart ("none": memory only).
    durability = await services.users.durability()
    return ReadyResponse(status="ok", checks=checks, user_records=durability)
