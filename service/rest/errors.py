"""Every failure leaves as an OperationOutcome with the right status: the one place that maps."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from ..fhir.outcome import FhirError, Issue, operation_outcome
from ..runtime import too_costly
from ..store import faults
from ..store.database import is_statement_timeout
from .negotiation import fhir_response

log = logging.getLogger("pgo_work.errors")

_HTTP_CODES = {404: "not-found", 405: "not-supported", 406: "not-supported", 413: "too-long",
               415: "not-supported", 401: "login", 403: "forbidden"}


def install(app: FastAPI) -> None:
    @app.exception_handler(FhirError)
    async def fhir_error(request: Request, exc: FhirError) -> Response:
        response = fhir_response(request, exc.status, exc.outcome, headers=exc.headers)
        if request.url.path.startswith("/fhir/_bulk/"):
            # Bulk Data status and file endpoints answer in plain JSON (their clients parse
            # `application/json`, not FHIR content types).
            response.headers["content-type"] = "application/json"
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        issues = []
        for err in exc.errors()[:20]:
            loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
            issues.append(Issue("invalid", f"{loc}: {err.get('msg')}", expression=[loc] if loc else []))
        return fhir_response(request, 400, operation_outcome(issues))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "processing")
        detail = exc.detail if isinstance(exc.detail, str) else "Request failed"
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"No FHIR endpoint at {request.url.path}"
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        return fhir_response(request, exc.status_code, operation_outcome([Issue(code, detail)]),
                             headers=dict(exc.headers or {}))

    _install_transient(app)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: ClientDisconnect) -> Response:
        # The client closed (or was closed for being too slow) while we read its body: there is
        # no one to answer, and it is not a server error worth a traceback.
        return Response(status_code=400)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        if is_statement_timeout(exc):  # a statement outside a request's store (token checks)
            error = too_costly(request.app.state.runtime.settings.statement_timeout_ms)
            return fhir_response(request, error.status, error.outcome)
        log.exception("Unhandled error on %s %s", request.method, request.url.path)
        return fhir_response(request, 500, operation_outcome(
            [Issue("exception", "Internal server error; the change was not saved")]))


def _install_transient(app: FastAPI) -> None:
    """503 `transient` with `Retry-After` while the database is unavailable.

    These handlers run inside the application (not in the server-error middleware, which
    re-raises, so uvicorn would log a traceback and close the client's connection): the
    client keeps its keep-alive connection and the log gets one line per failure. Anything
    that is not an outage is raised on, to the 500 handler, as before.
    """

    async def unavailable(request: Request, exc: Exception) -> Response:
        cause = faults.transient(exc)
        if cause is None:
            raise exc
        runtime = getattr(request.app.state, "runtime", None)
        retry = runtime.settings.retry_after_seconds if runtime is not None else 5
        log.warning("503 %s %s: database unavailable (%s)", request.method, request.url.path,
                    faults.describe(cause))
        return fhir_response(request, 503, operation_outcome([Issue(
            "transient", "The database is unavailable; retry after the Retry-After interval")]),
            headers={"Retry-After": str(retry)})

    for kind in faults.DATABASE_ERRORS:
        app.add_exception_handler(kind, unavailable)
