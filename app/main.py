"""Composition root: `create_app(settings)` builds the app; the lifespan builds the stores."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from starlette.routing import Match, Mount
from starlette.types import Scope

from app.container import Replacements, build_services
from app.errors import install_error_handlers
from app.logs import configure_logging
from app.middleware import ErrorMiddleware, RequestContextMiddleware
from app.routers import family, health, photos, sessions, users
from app.settings import Settings, settings_or_exit

STATIC_DIR = Path(__file__).resolve().parent / "static"


class UIMount(Mount):
    """The single-page UI at `/`, which never answers for `/api/...`: unknown API paths keep
    the router's JSON 404 / 405 instead of being looked up as files."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if path == "/api" or path.startswith("/api/"):
            return Match.NONE, {}
        return super().matches(scope)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        tracer = None
        if app.state.tracer_provider is not None:
            from app.tracing import Tracing

            replacements = app.state.replacements or Replacements()
            tracing = Tracing(app.state.tracer_provider, replacements.span_exporter)
            tracing.start()
            stack.callback(tracing.stop)
            tracer = tracing.tracer
        app.state.services = await build_services(
            app.state.settings, stack, app.state.replacements, tracer=tracer
        )
        yield


def create_app(
    settings: Settings | None = None, replacements: Replacements | None = None
) -> FastAPI:
    """The app; `replacements` hands in stores, brains or a clock instead of the configured
    ones (tests, tools)."""
    settings = settings or settings_or_exit()
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    app = FastAPI(
        title="Hera API",
        version="0.1.0",
        summary="Backend of the Hera future family simulator.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.replacements = replacements
    app.state.tracer_provider = None
    app.state.trace_id = None  # set with tracing: the access log's request id is the trace id
    install_error_handlers(app)
    app.add_middleware(ErrorMiddleware)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.allowed_origins,
        allow_credentials=settings.cors_allow_credentials,
        allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "X-Request-ID", "Idempotency-Key"],
        expose_headers=[
            "X-Request-ID",
            "WWW-Authenticate",
            "Retry-After",
            "RateLimit-Limit",
            "RateLimit-Remaining",
            "RateLimit-Reset",
        ],
    )
    app.add_middleware(RequestContextMiddleware)  # outermost: every response gets an id
    routers = (health, sessions, family, photos, users)
    for router in (*(m.router for m in routers), photos.uploads):
        app.include_router(router)
    if settings.metrics_enabled:
        from app.routers import metrics

        app.include_router(metrics.router)
    if settings.otel_exporter_otlp_endpoint or (replacements and replacements.span_exporter):
        from app.tracing import current_trace_id, instrument

        app.state.tracer_provider = instrument(app)  # its middleware goes outside all ours
        app.state.trace_id = current_trace_id
    # Last, so every API route has priority; `html=True` serves index.html for `/`.
    app.router.routes.append(
        UIMount("/", app=StaticFiles(directory=STATIC_DIR, html=True), name="ui")
    )
    return app


app = create_app()
