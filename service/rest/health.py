"""Liveness and readiness for load balancers and orchestrators, outside the FHIR API (no
token, no audit, plain JSON).

`/healthz`: the process serves and its database answers. `/readyz`: also the schema is at the
revision this code expects, so an instance never takes traffic against a database that still
needs `pgo-work migrate` (or was migrated by newer code).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from sqlalchemy import text
from starlette.responses import JSONResponse

from ..store.migrate import current_revisions, head_revisions
from .deps import RuntimeDep

router = APIRouter(tags=["health"])
NO_CACHE = {"Cache-Control": "no-store"}
PROBE_SECONDS = 5.0


async def _probe(rt: Any, schema: bool) -> tuple[bool, dict[str, Any]]:
    checks: dict[str, Any] = {}
    try:
        async with asyncio.timeout(PROBE_SECONDS):
            async with rt.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
                checks["database"] = "ok"
                if schema:
                    current, head = await current_revisions(conn), head_revisions()
                    checks["migrations"] = {"current": sorted(current), "head": sorted(head)}
                    if current != head:
                        checks["migrations"]["status"] = "not at head: run pgo-work migrate"
                        return False, checks
                    checks["migrations"]["status"] = "ok"
    except Exception as exc:  # any failure means "not healthy": say what, never a 500
        checks["database"] = f"unavailable: {type(exc).__name__}"
        return False, checks
    return True, checks


def _answer(ok: bool, checks: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks},
                        status_code=200 if ok else 503, headers=NO_CACHE)


@router.get("/healthz", summary="Liveness: the server runs and its database answers")
async def healthz(rt: RuntimeDep) -> JSONResponse:
    return _answer(*await _probe(rt, schema=False))


@router.get("/readyz", summary="Readiness: the database answers and its schema is at head")
async def readyz(rt: RuntimeDep) -> JSONResponse:
    return _answer(*await _probe(rt, schema=True))
