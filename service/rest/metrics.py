"""`GET /metrics`: Prometheus metrics, outside the FHIR API like /healthz (no FHIR token, no
audit, no content negotiation).

What it carries: request counts and latencies by FHIR interaction, resource type, operation and
status class, and gauges read from the database at this scrape (`telemetry.db_gauges`), such as
how many resources of each type are stored. No ids, no query strings, nothing about any patient:
every label value comes from a closed set. So it is open by default, as scrapers expect and as
/healthz is; set `PGO_WORK_METRICS_TOKEN` to require `Authorization: Bearer <that token>` (a
static secret a Prometheus `authorization` block can send) where the numbers themselves (traffic,
how many records the server holds) should not be public.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import JSONResponse, Response

from ..telemetry.db_gauges import read_all
from ..telemetry.exposition import render
from .deps import RuntimeDep

router = APIRouter(tags=["health"])


def _authorized(request: Request, secret: str) -> bool:
    if not secret:
        return True
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), secret.encode())


@router.get("/metrics", summary="Prometheus metrics (text exposition format)",
            response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}})
async def metrics(request: Request, rt: RuntimeDep) -> Response:
    if not _authorized(request, rt.settings.metrics_token):
        return JSONResponse({"error": "a bearer token is required for /metrics"}, status_code=401,
                            headers={"WWW-Authenticate": 'Bearer realm="metrics"',
                                     "Cache-Control": "no-store"})
    body = render(await read_all(rt.engine))
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})
