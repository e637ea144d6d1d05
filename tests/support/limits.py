"""Helpers for the rate-limit, quota and load-shedding tests: what a session holds."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI


async def stored(app: FastAPI, session_id: str) -> dict[str, Any]:
    """Everything the stores hold for one session: meta, documents, logs and blob keys."""
    services = app.state.services
    snap = await services.sessions.load(session_id=session_id)
    blobs = [
        (info.key, info.etag)
        async for info in services.blobs.list(prefix=f"sessions/{session_id}/")
    ]
    return {"meta": snap.meta, "docs": snap.docs, "logs": snap.logs, "blobs": sorted(blobs)}


async def session_ids(app: FastAPI) -> set[str]:
    return {sid async for sid in app.state.services.sessions.iter_ids()}
