"""The composition root's product: every long-lived object of one app instance.

The only module that turns settings into concrete stores and brains (their SDKs imported
lazily). `Replacements` is the front door for fakes: a test hands in its own stores, brains
or clock, and everything else is built as in production around them.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import httpx

from app.agents.brains import FamilyBrain, ImageBrain, InterviewBrain
from app.agents.family import FamilyAgent
from app.agents.hera import HeraAgent
from app.agents.images import ImageAgent
from app.agents.keepsakes import KeepsakeAgent
from app.agents.lifecycle import SessionLifecycle
from app.agents.people import PeopleAgent
from app.agents.streams import TurnTasks
from app.agents.turns import QUOTA_NAMES, Quotas
from app.auth.jwks import JwksCache
from app.auth.tokens import TokenVerifier
from app.auth.urls import UrlSigner
from app.metrics import Metrics
from app.observability import Observer, observe_brain, observe_store
from app.ratelimit import RateLimiter, build_rate_limiter
from app.repositories.base import BlobRepository, SessionRepository
from app.repositories.users import UserRepository
from app.settings import Settings

if TYPE_CHECKING:  # the Redis client is imported only when Redis is configured
    from app.repositories._redis import RedisClient, RedisTarget

Clock = Callable[[], float]  # seconds since the epoch
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Brains:
    interview: InterviewBrain
    family: FamilyBrain
    images: ImageBrain


@dataclass(frozen=True)
class Replacements:
    """What to use instead of what the settings would build (tests, tools). A replaced store
    or brain is not closed by the app: its owner closes it."""

    sessions: SessionRepository | None = None
    blobs: BlobRepository | None = None
    users: UserRepository | None = None
    brains: Brains | None = None
    clock: Clock | None = None  # the file store's idea of now (expiry)
    span_exporter: Any = None  # traces go here instead of OTLP (tracing then on)


@dataclass(frozen=True)
class Auth:
    """Sign-in as configured: the mode, the token verifier and the image URL signer (None
    while AUTH_MODE=off)."""

    mode: str = "off"
    verifier: TokenVerifier | None = None
    signer: UrlSigner | None = None


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
    auth: Auth
    users: UserRepository
    keepsakes: KeepsakeAgent
    people: PeopleAgent
    turn_tasks: TurnTasks  # streamed turns, each ending whole whatever its client does
    observer: Observer  # metrics and spans (both None when off)


def redis_target(settings: Settings) -> RedisTarget:
    """Where the Redis of these settings is (standalone, Cluster or Sentinel)."""
    from app.repositories._redis import RedisTarget

    assert settings.redis_url is not None  # guaranteed by settings validation
    return RedisTarget(
        url=settings.redis_url,
        mode=settings.redis_mode,
        sentinels=tuple(settings.sentinel_addresses),
        sentinel_master=settings.redis_sentinel_master,
    )


def redis_client(settings: Settings) -> RedisClient:
    """A client of the Redis these settings name, with the pool size they set."""
    from app.repositories._redis import create_redis_client

    return create_redis_client(
        redis_target(settings), max_connections=settings.redis_max_connections
    )


async def build_session_repository(
    settings: Settings, *, clock: Clock | None = None, client: RedisClient | None = None
) -> SessionRepository:
    """The session store of these settings. On Redis it uses `client` when given (shared:
    its owner closes it), else a client of its own that its `aclose` closes."""
    if settings.resolved_session_type == "redis":
        from app.repositories.redis_sessions import RedisSessionRepository

        return RedisSessionRepository(
            client=client or redis_client(settings),
            ttl_seconds=settings.session_ttl,
            lock_ttl_seconds=settings.lock_ttl_seconds,
            lock_wait_seconds=settings.lock_wait_seconds,
            namespace=settings.redis_namespace,
            owns_client=client is None,
        )
    from app.repositories.file_sessions import FileSessionRepository

    return FileSessionRepository(
        root=settings.resolved_sessions_dir,
        ttl_seconds=settings.session_ttl,
        lock_wait_seconds=settings.lock_wait_seconds,
        clock=clock or time.time,
    )


async def build_user_repository(
    settings: Settings, *, client: RedisClient | None = None
) -> UserRepository:
    """The durable tier beside the sessions: the same Redis (its own keys, no TTL), or files
    under HERA_DATA_DIR/users. `client` as for build_session_repository."""
    if settings.resolved_session_type == "redis":
        from app.repositories.redis_users import RedisUserRepository

        users = RedisUserRepository(
            client=client or redis_client(settings),
            namespace=settings.redis_namespace,
            owns_client=client is None,
        )
        if await users.durability() == "none":
            log.warning(
                "Redis keeps nothing on disk (neither AOF nor RDB): user records and "
                "indexes would not survive its restart"
            )
        return users
    from app.repositories.file_users import FileUserRepository

    return FileUserRepository(root=settings.users_dir)


async def build_blob_repository(settings: Settings) -> BlobRepository:
    kind = settings.resolved_blob_type
    if kind == "s3":
        from app.repositories.s3_blobs import open_s3

        assert settings.s3_bucket_name is not None
        secret = settings.aws_secret_access_key
        return await open_s3(
            bucket=settings.s3_bucket_name,
            region=settings.aws_region,
            endpoint_url=settings.s3_endpoint_url,
            access_key_id=settings.aws_access_key_id,
            secret_access_key=secret.get_secret_value() if secret else None,
            key_prefix=settings.blob_key_prefix,
            presign_endpoint_url=settings.s3_presign_endpoint_url,
        )
    if kind == "gcs":
        from app.repositories.gcs_blobs import open_gcs

        assert settings.gcs_bucket_name is not None
        return await open_gcs(
            bucket=settings.gcs_bucket_name,
            api_root=settings.storage_emulator_host,
            service_file=settings.google_application_credentials,
            key_prefix=settings.blob_key_prefix,
        )
    from app.repositories.disk_blobs import DiskBlobRepository

    return DiskBlobRepository(root=settings.blobs_dir, key_prefix=settings.blob_key_prefix)


async def build_auth(settings: Settings, stack: AsyncExitStack) -> Auth:
    mode = settings.resolved_auth_mode
    if mode == "off":
        return Auth()
    issuer, audience = settings.resolved_auth_issuer, settings.resolved_auth_audience
    jwks_url, key = settings.resolved_auth_jwks_url, settings.url_signing_key
    assert issuer and audience and jwks_url and key  # guaranteed by settings validation
    # One async client per process for the issuer's keys (never a blocking fetch).
    client = httpx.AsyncClient(timeout=httpx.Timeout(5.0, connect=2.0), follow_redirects=True)
    stack.push_async_callback(client.aclose)
    keys = JwksCache(url=jwks_url, client=client)
    return Auth(
        mode=mode,
        verifier=TokenVerifier(keys=keys, issuer=issuer, audience=audience),
        signer=UrlSigner(key=key.get_secret_value().encode(), ttl_seconds=settings.image_url_ttl),
    )


async def build_brains(
    settings: Settings, stack: AsyncExitStack, observer: Observer | None = None
) -> Brains:
    if settings.resolved_llm_provider == "gemini":
        from app.brains.gemini.caller import (
            GeminiOptions,
            close_gemini_client,
            create_gemini_client,
        )
        from app.brains.gemini.family import GeminiFamilyBrain
        from app.brains.gemini.images import GeminiImageBrain
        from app.brains.gemini.interview import GeminiInterviewBrain
        from app.brains.slots import ModelSlots

        assert settings.gemini_api_key is not None  # guaranteed by settings validation
        client = create_gemini_client(
            api_key=settings.gemini_api_key.get_secret_value(),
            base_url=settings.gemini_base_url,
            timeout_seconds=settings.llm_timeout_seconds,
        )
        stack.push_async_callback(close_gemini_client, client)
        # One set of slots for every model call of the process (the SDK's pool is unlimited).
        slots = ModelSlots(limit=settings.llm_max_concurrency, max_queue=settings.llm_max_queue)

        def options(model: str) -> GeminiOptions:
            return {
                "client": client,
                "model": model,
                "timeout_seconds": settings.llm_timeout_seconds,
                "max_retries": settings.llm_max_retries,
                "slots": slots,
                "on_retry": functools.partial(observer.retried, "gemini") if observer else None,
            }

        return Brains(
            interview=GeminiInterviewBrain(**options(settings.gemini_model)),
            family=GeminiFamilyBrain(**options(settings.gemini_model)),
            images=GeminiImageBrain(**options(settings.gemini_image_model)),
        )
    from app.brains.offline.family import OfflineFamilyBrain
    from app.brains.offline.images import OfflineImageBrain
    from app.brains.offline.interview import OfflineInterviewBrain
    from app.brains.offline.japanese import JapaneseAnalyser

    # One analyser (its dictionary) per process, shared by every session.
    analyser = await anyio.to_thread.run_sync(JapaneseAnalyser.load)
    stack.callback(analyser.close)
    return Brains(OfflineInterviewBrain(analyser), OfflineFamilyBrain(), OfflineImageBrain())


def build_observer(settings: Settings, stack: AsyncExitStack, tracer: Any = None) -> Observer:
    metrics = None
    if settings.metrics_enabled:
        metrics = Metrics(multiprocess_dir=settings.prometheus_multiproc_dir)
        stack.callback(metrics.close)
    return Observer(metrics=metrics, tracer=tracer)


def observed(settings: Settings, observer: Observer, brains: Brains) -> Brains:
    """The brains with their calls observed (provider, model and kind as labels)."""
    provider = settings.resolved_llm_provider
    text = settings.gemini_model if provider == "gemini" else "offline"
    image = settings.gemini_image_model if provider == "gemini" else "offline"
    return Brains(
        interview=observe_brain(brains.interview, provider, text, observer),
        family=observe_brain(brains.family, provider, text, observer),
        images=observe_brain(brains.images, provider, image, observer),
    )


async def build_services(
    settings: Settings,
    stack: AsyncExitStack,
    replace: Replacements | None = None,
    *,
    tracer: Any = None,
) -> Services:
    replace = replace or Replacements()
    observer = build_observer(settings, stack, tracer)
    # One Redis client per process for the stores and the limiter, closed after them (LIFO).
    shared = redis_client(settings) if settings.resolved_session_type == "redis" else None
    if shared is not None:
        stack.push_async_callback(shared.aclose)
    sessions = replace.sessions
    if sessions is None:
        sessions = await build_session_repository(settings, clock=replace.clock, client=shared)
        stack.push_async_callback(sessions.aclose)
    blobs = replace.blobs
    if blobs is None:
        blobs = await build_blob_repository(settings)
        stack.push_async_callback(blobs.aclose)
    users = replace.users
    if users is None:
        users = await build_user_repository(settings, client=shared)
        stack.push_async_callback(users.aclose)
    brains = replace.brains or await build_brains(settings, stack, observer)
    if observer.metrics is not None or observer.tracer is not None:
        sessions = observe_store(sessions, "sessions", observer)
        blobs = observe_store(blobs, "blobs", observer)
        users = observe_store(users, "users", observer)
        brains = observed(settings, observer, brains)
    limiter = build_rate_limiter(
        settings, redis_target(settings) if shared is not None else None, client=shared
    )
    stack.push_async_callback(limiter.aclose)
    auth = await build_auth(settings, stack)
    quotas = Quotas(**{name: settings.session_quota(name) for name in QUOTA_NAMES})
    keepsakes = KeepsakeAgent(sessions=sessions, blobs=blobs, users=users)
    lifecycle = SessionLifecycle(sessions=sessions, blobs=blobs, users=users, keepsakes=keepsakes)
    limit = settings.max_message_chars
    turn_tasks = TurnTasks()
    stack.push_async_callback(turn_tasks.aclose)  # before the stores close (LIFO)
    return Services(
        settings=settings,
        sessions=sessions,
        blobs=blobs,
        hera=HeraAgent(
            sessions=sessions, brain=brains.interview, max_message_chars=limit, quotas=quotas
        ),
        family=FamilyAgent(
            sessions=sessions,
            brain=brains.family,
            max_message_chars=limit,
            quotas=quotas,
            keepsakes=keepsakes,
        ),
        images=ImageAgent(
            sessions=sessions,
            blobs=blobs,
            brain=brains.images,
            max_upload_bytes=settings.max_upload_bytes,
            max_pixels=settings.max_image_pixels,
            quotas=quotas,
        ),
        lifecycle=lifecycle,
        limiter=limiter,
        auth=auth,
        users=users,
        keepsakes=keepsakes,
        people=PeopleAgent(
            sessions=sessions,
            blobs=blobs,
            users=users,
            lifecycle=lifecycle,
            session_ttl=settings.session_ttl,
        ),
        turn_tasks=turn_tasks,
        observer=observer,
    )
