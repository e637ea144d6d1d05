"""`GET /metrics`: the Prometheus exposition (registered only when METRICS_ENABLED=true)."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request, Response

from app.metrics import CONTENT_TYPE

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    observed = request.app.state.services.observer.metrics
    # In multiprocess mode this reads every worker's files: off the event loop.
    body = await anyio.to_thread.run_sync(observed.exposition)
    return Response(body, media_type=CONTENT_TYPE)
