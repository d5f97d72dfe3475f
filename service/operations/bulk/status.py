"""The status endpoint, the manifest, cancellation and the file download of an export.

Only the caller who started an export learns anything about it: for anyone else (and after
cancellation or expiry) a job and its files do not exist (404). A file is served through the
store under the downloading request's own access: its scopes must cover the file's type, and
a line whose resource the caller may no longer read (a consent withdrawn since the export
ran) is left out; what is served is audited as read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...fhir import dates
from ...fhir.outcome import FhirError, not_found
from ...store import export_jobs
from ...store.repository import ResourceStore
from .owner import file_url

RETRY_AFTER_SECONDS = 2
GONE = ("cancelled", "expired")


@dataclass
class StatusAnswer:
    status: int
    body: dict[str, object] | None = None
    headers: dict[str, str] = field(default_factory=dict)


async def own_job(store: ResourceStore, job_id: str, owner: str) -> export_jobs.Job:
    job = await export_jobs.load_job(store.conn, job_id)
    if job is None or job.owner != owner or job.status in GONE \
            or job.expires_at <= dates.utcnow():
        raise not_found(f"No export {job_id} (unknown, not yours, cancelled or expired)")
    return job


async def status(store: ResourceStore, job_id: str, owner: str, base: str) -> StatusAnswer:
    job = await own_job(store, job_id, owner)
    if job.status == "failed":
        raise FhirError(500, "exception", f"The export failed: {job.error}")
    if job.status != "completed":
        types = job.params.get("resolved_types", [])
        step = min((job.cursor or {}).get("t", 0) + 1, max(len(types), 1))
        progress = f"{job.exported} resources exported; type {step} of {len(types)}"
        return StatusAnswer(202, None, {"X-Progress": progress[:99],
                                        "Retry-After": str(RETRY_AFTER_SECONDS)})
    files = await export_jobs.files_of(store.conn, job.id)
    manifest = {
        "transactionTime": dates.to_instant(job.transaction_time),
        "request": job.request_url,
        "requiresAccessToken": True,
        "output": [{"type": f.resource_type, "url": file_url(base, job.id, f.seq),
                    "count": f.count} for f in files if f.seq > 0],
        "error": [{"type": "OperationOutcome", "url": file_url(base, job.id, f.seq)}
                  for f in files if f.seq == 0],
    }
    return StatusAnswer(200, manifest, {"Expires": dates.to_http_date(job.expires_at)})


async def cancel(store: ResourceStore, job_id: str, owner: str) -> None:
    await own_job(store, job_id, owner)
    await export_jobs.end_job(store.conn, job_id, "cancelled", dates.utcnow())


async def download(store: ResourceStore, job_id: str, seq: int, owner: str) -> str:
    job = await own_job(store, job_id, owner)
    if job.status != "completed":
        raise not_found(f"Export {job_id} has not finished")
    found = await export_jobs.read_file(store.conn, job_id, seq)
    if found is None:
        raise not_found(f"Export {job_id} has no file {seq}")
    rtype, content, refs = found
    if seq == 0:
        return content  # the lenient-handling OperationOutcome: about the request, no data
    store.access.check_type(rtype, "read")
    pairs = [(int(pk), str(rid)) for pk, rid in refs]
    visible = await store.still_visible(rtype, pairs)
    lines = content.splitlines()
    return "".join(line + "\n" for (pk, _), line in zip(pairs, lines, strict=True)
                   if pk in visible)
