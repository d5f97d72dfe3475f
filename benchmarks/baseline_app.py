"""The reference a FHIR read is measured against: the least an audited read over HTTP can do.

A minimal FastAPI app on asyncpg that answers `GET /fhir/{type}/{id}` with one primary-key
SELECT of the stored JSON and one audit INSERT (who, which patient, when, outcome) in ONE
transaction, then returns the stored bytes. No token check, no consent, no FHIR: whatever
pgo-work spends above this is the price of the FHIR layer. `bench_http` serves it with
uvicorn (2 workers, uvloop, httptools) next to `pgo-work serve`, on the same database.

    BASELINE_DSN=postgresql://postgres@127.0.0.1:5432/db \\
        uvicorn benchmarks.baseline_app:app --workers 2 --loop uvloop --http httptools
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import Response

AUDIT_TABLE = """CREATE TABLE IF NOT EXISTS bench_baseline_audit (
    pk BIGSERIAL PRIMARY KEY, recorded TIMESTAMPTZ NOT NULL DEFAULT now(),
    agent TEXT NOT NULL, patient TEXT, entity TEXT NOT NULL, outcome INT NOT NULL)"""
READ = "SELECT content FROM resource WHERE resource_type = $1 AND id = $2 AND NOT deleted"
AUDIT = ("INSERT INTO bench_baseline_audit (agent, patient, entity, outcome) "
         "VALUES ($1, $2, $3, $4)")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    pool = await asyncpg.create_pool(os.environ["BASELINE_DSN"], min_size=2,
                                     max_size=int(os.environ.get("BASELINE_POOL", "10")))
    async with pool.acquire() as conn:
        await conn.execute(AUDIT_TABLE)
    app.state.pool = pool
    yield
    await pool.close()


app = FastAPI(lifespan=lifespan)


@app.get("/fhir/{rtype}/{rid}")
async def read(rtype: str, rid: str, request: Request) -> Any:
    pool: asyncpg.Pool = request.app.state.pool
    async with pool.acquire() as conn, conn.transaction():
        content = await conn.fetchval(READ, rtype, rid)
        await conn.execute(AUDIT, request.headers.get("authorization", "")[-16:], None,
                           f"{rtype}/{rid}", 200 if content is not None else 404)
    if content is None:
        return Response(status_code=404)
    return Response(content, media_type="application/fhir+json")
