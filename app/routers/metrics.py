"""`GET /metrics`: the Prometheus exposition (registered only when METRICS_ENABLED=true)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app.metrics import CONTENT_TYPE

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    observed = request.app.state.services.observer.metrics
    return Response(observed.exposition(), media_type=CONTENT_TYPE)
