"""The composition root's product: every long-lived object of one app instance."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass

from app.agents.brains.base import FamilyBrain, ImageBrain, InterviewBrain
from app.agents.brains.slots import ModelSlots
from app.agents.family import FamilyAgent
from app.agents.hera import HeraAgent
from app.agents.images import ImageAgent
from app.agents.lifecycle import SessionLifecycle
from app.agents.turns import QUOTA_NAMES, Quotas
from app.ratelimit import RateLimiter, build_rate_limiter
from app.repositories import build_blob_repository, build_session_repository
from app.repositories.base import BlobRepository, SessionRepository
from app.settings import Settings


@dataclass(frozen=True)
class Services:
    settings: Settings
    sessions: SessionRepository
    blobs: BlobRepository
    hera: HeraAgent
    family: FamilyAgent
    images: ImageAgent
    lifecycle: SessionLifecycle
    limiter: RateLimiter


@dataclass(frozen=True)
class Brains:
    interview: InterviewBrain
    family: FamilyBrain
    images: ImageBrain


async def build_brains(settings: Settings, stack: AsyncExitStack) -> Brains:
    if settings.resolved_llm_provider == "gemini":
        from app.agents.brains.gemini import (
            GeminiInterviewBrain,
            close_gemini_client,
            create_gemini_client,
        )
        from app.agents.brains.gemini_family import GeminiFamilyBrain
        from app.agents.brains.gemini_images import GeminiImageBrain

        assert settings.gemini_api_key is not None  # guaranteed by settings validation
        client = create_gemini_client(
            api_key=settings.gemini_api_key.get_secret_value(),
            base_url=settings.gemini_base_url,
            timeout_seconds=settings.llm_timeout_seconds,
        )
        stack.push_async_callback(close_gemini_client, client)
        # One set of slots for every model call of the process (the SDK's pool is unlimited).
        common = {
            "client": client,
            "timeout_seconds": settings.llm_timeout_seconds,
            "max_retries": settings.llm_max_retries,
            "slots": ModelSlots(
                limit=settings.llm_max_concurrency, max_queue=settings.llm_max_queue
            ),
        }
        return Brains(
            interview=GeminiInterviewBrain(model=settings.gemini_model, **common),  # type: ignore[arg-type]
            family=GeminiFamilyBrain(model=settings.gemini_model, **common),  # type: ignore[arg-type]
            images=GeminiImageBrain(model=settings.gemini_image_model, **common),  # type: ignore[arg-type]
        )
    from app.agents.brains.offline_family import OfflineFamilyBrain
    from app.agents.brains.offline_images import OfflineImageBrain
    from app.agents.brains.offline_interview import OfflineInterviewBrain

    return Brains(OfflineInterviewBrain(), OfflineFamilyBrain(), OfflineImageBrain())


async def build_services(settings: Settings, stack: AsyncExitStack) -> Services:
    sessions = await build_session_repository(settings)
    stack.push_async_callback(sessions.aclose)
    blobs = await build_blob_repository(settings)
    stack.push_async_callback(blobs.aclose)
    brains = await build_brains(settings, stack)
    limiter = build_rate_limiter(settings)
    stack.push_async_callback(limiter.aclose)
    quotas = Quotas(**{name: settings.session_quota(name) for name in QUOTA_NAMES})
    limit = settings.max_message_chars
    return Services(
        settings=settings,
        sessions=sessions,
        blobs=blobs,
        hera=HeraAgent(
            sessions=sessions, brain=brains.interview, max_message_chars=limit, quotas=quotas
        ),
        family=FamilyAgent(
            sessions=sessions, brain=brains.family, max_message_chars=limit, quotas=quotas
        ),
        images=ImageAgent(
            sessions=sessions,
            blobs=blobs,
            brain=brains.images,
            max_upload_bytes=settings.max_upload_bytes,
            max_pixels=settings.max_image_pixels,
            quotas=quotas,
        ),
        lifecycle=SessionLifecycle(sessions=sessions, blobs=blobs),
        limiter=limiter,
    )
