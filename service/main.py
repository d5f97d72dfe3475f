"""Assemble the application: settings, runtime, routers and error handlers. Nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from . import __version__
from .config import Settings, get_settings
from .conformance.publish import publish_at_startup
from .rest import errors, openapi_doc
from .rest.auth_routes import router as auth_router
from .rest.bulk_routes import router as bulk_router
from .rest.guards import CancelOnDisconnect, RequestGuard
from .rest.health import router as health_router
from .rest.metrics import router as metrics_router
from .rest.middleware import REQUEST_ID_HEADERS, CorrelationIds, StripTrailingSlash
from .rest.operation_routes import router as operation_router
from .rest.routes import router
from .rest.subscription_routes import router as subscription_router
from .rest.telemetry import RequestTelemetry
from .runtime import Runtime, build_runtime
from .telemetry.gauges import install_default_gauges
from .web.routes import router as web_router
from .worker.runner import Background
from .worker.tasks import default_tasks


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime or build_runtime(settings)
        app.state.runtime = rt
        await publish_at_startup(rt)  # serve the profiles/ package through the API
        background = Background(rt, default_tasks() if settings.run_worker else [])
        background.start()
        try:
            yield
        finally:
            await background.stop()
            if runtime is None:
                await rt.close()

    app = FastAPI(
        title="pgo-work FHIR API",
        version=__version__,
        description="FHIR R4 (4.0.1) server for patient-owned work data, shared under consent.",
        lifespan=lifespan,
        redirect_slashes=False,  # StripTrailingSlash serves `/fhir/` itself: never a 307
    )
    errors.install(app)
    app.include_router(health_router)
    app.include_router(metrics_router)
    install_default_gauges()
    app.include_router(auth_router)  # first: /fhir/.well-known/... is not a resource type
    app.include_router(subscription_router)  # before operations: its own $status, $events
    app.include_router(operation_router)  # before the resource routes: `$op` is never an id
    app.include_router(bulk_router)  # `_bulk/...` is no resource type either
    app.include_router(router)
    app.include_router(web_router)  # /app: the web app's static files
    install_middleware(app, settings)
    app.openapi = lambda: openapi_doc.build(app)  # type: ignore[method-assign]
    return app


CORS_HEADERS = ["Authorization", "Content-Type", "Accept", "Prefer", "If-Match", "If-None-Match",
                "If-None-Exist", "If-Modified-Since", *REQUEST_ID_HEADERS]
CORS_EXPOSED = ["Location", "Content-Location", "ETag", "Last-Modified", "WWW-Authenticate",
                *REQUEST_ID_HEADERS]


def install_middleware(app: FastAPI, settings: Settings) -> None:
    """Outermost first: timing and naming every request for metrics and the access log, then
    correlation ids on every answer (CORS refusals and 414s too), then CORS
    (SMART App Launch: browser apps call the API and the token endpoint with a bearer token, no
    cookies, so credentials stay off), then the request guard (414 for an over-long URL, 400 for
    NUL), the trailing-slash rewrite before routing, and innermost the cancellation of a
    request whose client went away."""
    app.add_middleware(CancelOnDisconnect)
    app.add_middleware(StripTrailingSlash)
    app.add_middleware(RequestGuard, max_url_bytes=settings.max_url_bytes)
    origins = settings.cors_origin_list()
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_credentials=False,
                           allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"],
                           allow_headers=CORS_HEADERS, expose_headers=CORS_EXPOSED, max_age=600)
    app.add_middleware(CorrelationIds)
    app.add_middleware(RequestTelemetry)
