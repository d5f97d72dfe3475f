"""Routes of a Bulk Data export after its kick-off: the status endpoint (poll, cancel) and
the NDJSON files (`service.operations.bulk.status`). Not under the FHIR content negotiation:
the status answers in `application/json` and the files in `application/fhir+ndjson`, as the
Bulk Data specification says."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from ..access.dependencies import AccessDep
from ..fhir.outcome import not_found
from ..operations.bulk import status as S
from ..operations.bulk.owner import owner_of
from .deps import RuntimeDep
from .negotiation import fhir_response

router = APIRouter(prefix="/fhir/_bulk", tags=["bulk data"])
NDJSON = "application/fhir+ndjson"


@router.get("/{job_id}", summary="Bulk Data export status (202 while running, then the manifest)",
            operation_id="bulk_status")
async def bulk_status(request: Request, job_id: str, rt: RuntimeDep, access: AccessDep) -> Response:
    access.start("operation", "$export status")
    async with rt.store(access) as store:
        answer = await S.status(store, job_id, owner_of(request.state.principal), rt.base_url)
    if answer.body is None:
        return Response(status_code=answer.status, headers=answer.headers)
    response = fhir_response(request, answer.status, answer.body, headers=answer.headers)
    response.headers["content-type"] = "application/json"
    return response


@router.delete("/{job_id}", summary="Cancel a Bulk Data export and delete its files",
               operation_id="bulk_cancel", status_code=202)
async def bulk_cancel(request: Request, job_id: str, rt: RuntimeDep, access: AccessDep) -> Response:
    access.start("operation", "$export cancel")
    async with rt.store(access, write=True) as store:
        await S.cancel(store, job_id, owner_of(request.state.principal))
    body = {"resourceType": "OperationOutcome", "issue": [{
        "severity": "information", "code": "informational",
        "diagnostics": f"Export {job_id} cancelled; its files are deleted"}]}
    return fhir_response(request, 202, body)


@router.get("/{job_id}/{name}", summary="One NDJSON file of a finished Bulk Data export",
            operation_id="bulk_file", response_class=Response,
            responses={200: {"content": {NDJSON: {}}}})
async def bulk_file(request: Request, job_id: str, name: str, rt: RuntimeDep,
                    access: AccessDep) -> Response:
    stem, dot, ext = name.partition(".")
    if ext != "ndjson" or not dot or not stem.isdigit():
        raise not_found(f"No export file {name}")
    access.start("operation", f"$export file {job_id}/{name}")
    async with rt.store(access) as store:
        content = await S.download(store, job_id, int(stem), owner_of(request.state.principal))
    return Response(content=content.encode(), media_type=NDJSON)
