"""`$export` kick-off at system, Patient and Group level (HL7 Bulk Data Access 2.0).

The kick-off checks the request, resolves what it covers (the resource types the caller may
read, a Group's members) and stores a job row; the worker (`service.operations.bulk.chunks`)
runs it under the caller's own access, rebuilt from the claims kept with the job. The answer is
202 with the status URL in `Content-Location`.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import orjson

from ...conformance.structure import r4_resource_types
from ...fhir import dates
from ...fhir.outcome import FhirError
from ...runtime import Runtime
from ...store import export_jobs
from ...store.repository import ResourceStore
from ..registry import Operation, OperationCall, OperationResult
from . import params as P
from .owner import owner_of_claims, status_url

BULK = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition"


async def kick_off(call: OperationCall) -> OperationResult:
    P.check_headers(call.headers)
    if call.claims is None:
        raise FhirError(403, "forbidden", "$export runs as a verified caller")
    rt = call.runtime
    level = {"system": "system", "type": "patient", "instance": "group"}[call.level]
    names = [k for k, _ in call.query] + [p.get("name", "") for p in call._parameters()]
    params = P.parse(level, call.values, call.headers, rt.parser, r4_resource_types(), names)
    if level == "group":
        assert call.id is not None
        members = await _members(call, call.id)
        params.group = call.id
        params.patients = [p for p in members if params.patients is None or p in params.patients]
    job = await start_job(call.runtime, call.store, call.claims, params, call.url)
    url = status_url(rt.base_url, job.id)
    body = {"resourceType": "OperationOutcome", "issue": [{
        "severity": "information", "code": "informational",
        "diagnostics": f"Export accepted; poll {url} for its status"}]}
    return OperationResult(body, 202, {"Content-Location": url})


async def start_job(rt: Runtime, store: ResourceStore, claims: dict[str, Any],
                    params: P.ExportParams, url: str) -> export_jobs.Job:
    """Store a new export job for the caller whose `store` this is (the kick-off's, or the
    operator's on the command line): the types it covers are fixed now, as the caller's
    scopes allow."""
    types = params.types
    if types is None:
        present = await export_jobs.present_types(store.conn)
        types = [t for t in present if t not in P.DEFAULT_EXCLUDED and _may_search(store, t)]
    else:
        for t in types:
            store.access.check_type(t, "search")  # 403 for a type the scopes do not cover
    now = dates.utcnow()
    job = export_jobs.Job(
        id=str(uuid.uuid4()), owner=owner_of_claims(claims, rt.base_url),
        claims=claims, params={**params.to_json(), "resolved_types": types},
        request_url=url, status="accepted", cursor={"t": 0, "f": 0, "c": None, "seq": 1},
        exported=0, patients=[], error=None, transaction_time=now, created_at=now,
        updated_at=now, expires_at=now + timedelta(seconds=rt.settings.export_max_run_seconds))
    await export_jobs.create_job(store.conn, job)
    if params.warnings:
        outcome = {"resourceType": "OperationOutcome", "issue": [
            {"severity": "warning", "code": "not-supported", "diagnostics": w}
            for w in params.warnings]}
        await export_jobs.add_file(store.conn, job.id, 0, "OperationOutcome",
                                   [orjson.dumps(outcome).decode()], [])
    return job


def _may_search(store: ResourceStore, rtype: str) -> bool:
    try:
        store.access.check_type(rtype, "search")
    except FhirError:
        return False
    return True


async def _members(call: OperationCall, group_id: str) -> list[str]:
    """The Patients a Group names now (`member.entity`, not `inactive`, not ended): the export
    covers their records as they are while it runs. A Group the caller cannot see is 404."""
    group = (await call.store.read("Group", group_id)).json()
    today = dates.to_instant(dates.utcnow())
    out: list[str] = []
    for member in group.get("member", []):
        ref = (member.get("entity") or {}).get("reference", "")
        end = (member.get("period") or {}).get("end")
        if member.get("inactive") or (end and str(end) < today[:len(str(end))]):
            continue
        if ref.startswith("Patient/"):
            out.append(ref[8:])
    return list(dict.fromkeys(out))


OPERATIONS = [
    Operation("export", frozenset({"system"}), kick_off, None, definition=f"{BULK}/export"),
    Operation("export", frozenset({"type"}), kick_off, frozenset({"Patient"}),
              definition=f"{BULK}/patient-export", listed_as="patient-export"),
    Operation("export", frozenset({"instance"}), kick_off, frozenset({"Group"}),
              definition=f"{BULK}/group-export", listed_as="group-export"),
]
