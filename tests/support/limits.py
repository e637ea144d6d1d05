"""Helpers for the rate-limit, quota and load-shedding tests: what a session holds, what the
brains were asked."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

# Every call of a brain port that would reach a model (offline or Gemini).
MODEL_CALLS = frozenset(
    {"interview_turn", "family_turn", "write_story", "write_letter", "partner_image", "child_image"}
)


class CountingBrain:
    """A brain that forwards every model call to the one it wraps and records its name."""

    def __init__(self, inner: Any, calls: list[str]) -> None:
        self._inner = inner
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in MODEL_CALLS:
            return attr
        return self._counted(name, attr)

    def _counted(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            self._calls.append(name)
            result = method(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result

        return call


def count_model_calls(app: FastAPI) -> list[str]:
    """Wrap the brain of every agent of a running app; returns the (growing) list of calls."""
    calls: list[str] = []
    services = app.state.services
    for agent in (services.hera, services.family, services.images):
        agent._brain = CountingBrain(agent._brain, calls)
    return calls


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
