"""The composition root's product: every long-lived object of one app instance."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from dataclasses import dataclass

from app.agents.hera import HeraAgent
from app.repositories import build_blob_repository, build_session_repository
from app.repositories.base import BlobRepository, SessionRepository
from app.settings import Settings


@dataclass(frozen=True)
class Services:
    settings: Settings
    sessions: SessionRepository
    blobs: BlobRepository
    hera: HeraAgent


async def _interview_brain(settings: Settings, stack: AsyncExitStack) -> object:
    if settings.resolved_llm_provider == "gemini":
        from app.agents.brains.gemini import (
            GeminiInterviewBrain,
            close_gemini_client,
            create_gemini_client,
        )

        assert settings.gemini_api_key is not None
        client = create_gemini_client(
            api_key=settings.gemini_api_key.get_secret_value(),
            base_url=settings.gemini_base_url,
            timeout_seconds=settings.llm_timeout_seconds,
        )
        stack.push_async_callback(close_gemini_client, client)
        return GeminiInterviewBrain(
            client=client,
            model=settings.gemini_model,
            timeout_seconds=settings.llm_timeout_seconds,
            max_retries=settings.llm_max_retries,
            semaphore=asyncio.Semaphore(settings.llm_max_concurrency),
        )
    from app.agents.brains.offline_interview import OfflineInterviewBrain

    return OfflineInterviewBrain()


async def build_services(settings: Settings, stack: AsyncExitStack) -> Services:
    sessions = await build_session_repository(settings)
    stack.push_async_callback(sessions.aclose)
    blobs = await build_blob_repository(settings)
    stack.push_async_callback(blobs.aclose)
    brain = await _interview_brain(settings, stack)
    hera = HeraAgent(sessions=sessions, brain=brain)  # type: ignore[arg-type]
    return Services(settings=settings, sessions=sessions, blobs=blobs, hera=hera)
