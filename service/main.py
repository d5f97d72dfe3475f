"""Assemble the application: settings, runtime, routers and error handlers. Nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from . import __version__
from .config import Settings, get_settings
from .conformance.publish import publish_at_startup
from .rest import errors, openapi_doc
from .rest.auth_routes import router as auth_router
from .rest.operation_routes import router as operation_router
from .rest.routes import router
from .runtime import Runtime, build_runtime


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime or build_runtime(settings)
        app.state.runtime = rt
        await publish_at_startup(rt)  # serve the profiles/ package through the API
        try:
            yield
        finally:
            if runtime is None:
                await rt.close()

    app = FastAPI(
        title="pgo-work FHIR API",
        version=__version__,
        description="FHIR R4 (4.0.1) server for patient-owned work data, shared under consent.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.include_router(auth_router)  # first: /fhir/.well-known/... is not a resource type
    app.include_router(operation_router)  # before the resource routes: `$op` is never an id
    app.include_router(router)
    app.openapi = lambda: openapi_doc.build(app)  # type: ignore[method-assign]
    return app
