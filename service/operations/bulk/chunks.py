"""Run export jobs one bounded chunk at a time, as their requesters.

A chunk is one transaction: lock the job row (`export_jobs.lock_active`), read the next page
of the current type through the store under the requester's access policy (rebuilt from the
claims kept with the job: the same compiled consent predicate a search of theirs runs), write
it as one NDJSON file, and move the cursor. Killed mid-chunk, the transaction rolls back and the
chunk is done again after the restart; two instances never hold the same job row, and the
file's (job, seq) key is unique besides. The chunk's read is audited like any search: one
AuditEvent per patient whose record it read, naming the export job.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl

import orjson
from sqlalchemy import Table, select

from ...access.dependencies import build_policy
from ...access.principal import principal_from_claims
from ...fhir import dates
from ...fhir.outcome import FhirError
from ...runtime import Runtime
from ...store import export_jobs
from ...store.records import StoredResource
from ...store.repository import COMP, ResourceStore
from .elements import subset
from .params import ExportParams

log = logging.getLogger("pgo_work.export")
MAX_EMPTY_STEPS = 50
"""Types (or filters) with nothing to export one chunk may step over before it commits."""


async def run_once(rt: Runtime) -> int:
    """One chunk of one due job (jobs take turns), after expiring what is due: the units of
    work done."""
    now = dates.utcnow()
    done = await expire_due(rt, now)
    async with rt.engine.connect() as conn, conn.begin():
        candidates = await export_jobs.due_jobs(conn)
    for job_id, claims in candidates:
        if await run_chunk(rt, job_id, orjson.loads(claims)):
            return done + 1
    return done


async def expire_due(rt: Runtime, now: Any) -> int:
    async with rt.engine.connect() as conn, conn.begin():
        due = await export_jobs.expired_jobs(conn, now)
        for job_id in due:
            await export_jobs.end_job(conn, job_id, "expired", now)
    return len(due)


async def run_chunk(rt: Runtime, job_id: str, claims: dict[str, Any],
                    audit_query: str | None = None) -> bool:
    """Advance one job by one chunk; False when it needed nothing (done, cancelled, or another
    instance holds it)."""
    principal = principal_from_claims(claims, rt.base_url)
    access = await build_policy(principal, rt)
    access.start("operation", audit_query or f"$export job {job_id}")
    try:
        async with rt.store(access, write=True) as store:
            job = await export_jobs.lock_active(store.conn, job_id)
            if job is None:
                return False
            await advance(rt, store, job)
            await export_jobs.save_progress(store.conn, job)
            return True
    except FhirError as exc:
        # What the job asks cannot be done with this access (anymore): it ends, and says why.
        log.warning("export job %s failed: %s", job_id, exc.issues[0].diagnostics)
        async with rt.engine.connect() as conn, conn.begin():
            job = await export_jobs.load_job(conn, job_id)
            if job is not None and job.status in export_jobs.ACTIVE:
                job.status, job.error = "failed", exc.issues[0].diagnostics
                job.updated_at = dates.utcnow()
                await export_jobs.save_progress(conn, job)
        return True


async def advance(rt: Runtime, store: ResourceStore, job: export_jobs.Job) -> None:
    """Export the next non-empty page (stepping over empty types), write it as a file."""
    data = dict(job.params)
    types: list[str] = data.pop("resolved_types")
    params = ExportParams.from_json(data)
    cur = dict(job.cursor or {"t": 0, "f": 0, "c": None, "seq": 1})
    size = rt.settings.export_chunk_size
    for _ in range(MAX_EMPTY_STEPS):
        if cur["t"] >= len(types):
            break
        rtype = types[cur["t"]]
        filters = params.type_filters.get(rtype) or [""]
        pairs = parse_qsl(filters[cur["f"]], keep_blank_values=True)
        if params.since:
            pairs.append(("_lastUpdated", f"gt{params.since}"))
        req = rt.parser.parse(rtype, pairs)
        req.count, req.total, req.cursor, req.sort = size, "none", cur["c"], []
        req.include, req.revinclude, req.summary, req.elements = [], [], None, None
        if params.patients is not None:
            req.records = params.patients
        elif params.level == "patient":
            req.any_record = True
        page = await store.search(req)
        if page.next_cursor:
            cur["c"] = page.next_cursor
        else:
            cur["c"], cur["f"] = None, cur["f"] + 1
            if cur["f"] >= len(filters):
                cur["f"], cur["t"] = 0, cur["t"] + 1
        if page.matches:
            lines = [_line(m, rtype, params.elements) for m in page.matches]
            await export_jobs.add_file(store.conn, job.id, cur["seq"], rtype, lines,
                                       [(m.pk, m.id) for m in page.matches])
            cur["seq"] += 1
            job.exported += len(lines)
            job.patients = sorted(set(job.patients) | await _patients_of(store, page.matches))
            break
    now = dates.utcnow()
    job.cursor, job.updated_at = cur, now
    if cur["t"] >= len(types):
        job.status = "completed"
        job.expires_at = now + timedelta(seconds=rt.settings.export_retention_seconds)
    else:
        job.status = "running"


def _line(m: StoredResource, rtype: str, elements: list[str]) -> str:
    if not elements:
        return (m.content or "{}").replace("\n", "")
    return orjson.dumps(subset(m.json(), rtype, elements)).decode()


async def _patients_of(store: ResourceStore, found: list[StoredResource]) -> set[str]:
    comp: Table = COMP
    rows = await store.conn.execute(select(comp.c.patient_id).where(
        comp.c.resource_pk.in_([m.pk for m in found])).distinct())
    return {r.patient_id for r in rows}
