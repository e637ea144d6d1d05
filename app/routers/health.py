"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.deps import ServicesDep
from app.repositories.base import RepositoryError
from app.schemas import ErrorResponse, HealthResponse, ReadyResponse

router = APIRouter(prefix="/api", tags=["health"])
_PING_TIMEOUT = 2.0


@router.get("/health", summary="Liveness: the process answers", response_model=HealthResponse)
async def health() -> HealthResponse:
    return HealthResponse(status="ok")


@router.get(
    "/ready",
    summary="Readiness: both stores answer",
    response_model=ReadyResponse,
    responses={503: {"model": ErrorResponse, "description": "A store is down"}},
)
async def ready(services: ServicesDep) -> ReadyResponse | JSONResponse:
    async def check(ping: object) -> str:
        try:
            await asyncio.wait_for(ping(), _PING_TIMEOUT)  # type: ignore[operator]
        except (RepositoryError, TimeoutError, OSError):
            return "down"
        return "ok"

    sessions, blobs = await asyncio.gather(
        check(services.sessions.ping), check(services.blobs.ping)
    )
    checks = {"sessions": sessions, "blobs": blobs}
    if "down" in checks.values():
        down = [name for name, state in checks.items() if state == "down"]
        return JSONResponse(
            {
                "error": f"store unavailable: {', '.join(down)}",
                "code": "not_ready",
                "checks": checks,
            },
            status_code=503,
        )
    return ReadyResponse(status="ok", checks=checks)
