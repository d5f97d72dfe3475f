"""HTTP routes of the FHIR API: each adapts HTTP to a FhirRequest and back, nothing more."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, Path, Request
from starlette.responses import Response

from ..access.dependencies import AccessDep
from ..fhir.outcome import FhirError, bad_request
from ..runtime import Runtime
from ..store.access import AccessPolicy
from ..store.repository import ResourceStore
from . import capability
from .bundle import BundleProcessor
from .deps import RuntimeDep, TypeDep
from .interactions import Interactions
from .messages import FhirRequest, FhirResponse
from .negotiation import check_accept, fhir_response, read_body

RESERVED_TYPES = {"metadata": "GET", "_history": "GET"}
RESERVED_IDS = {"_history": "GET", "_search": "POST"}


async def reserved_path(request: Request) -> None:
    """405 for a wrong method on a named endpoint (`DELETE /metadata`, `PUT /Patient/_history`).

    Such a request would otherwise fall through to a generic `/{type}` or `/{type}/{id}` route
    and be answered as an unknown type (404) or bad id (400), which misleads the client.
    """
    params = request.path_params
    allow = RESERVED_TYPES.get(params.get("type", "")) or RESERVED_IDS.get(params.get("id", ""))
    if allow:
        raise FhirError(405, "not-supported",
                        f"{request.method} is not allowed on {request.url.path}",
                        headers={"Allow": allow})


router = APIRouter(prefix="/fhir", dependencies=[Depends(check_accept), Depends(reserved_path)])
Handler = Callable[[ResourceStore, FhirRequest], Awaitable[FhirResponse]]
IdPath = Annotated[str, Path(description="Logical id", pattern=r"^[A-Za-z0-9\-.]{1,64}$")]
RESOURCE_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/fhir+json": {"schema": {"type": "object", "description": "A FHIR R4 resource"}}}}}


def _request(request: Request, method: str, rtype: str | None = None, rid: str | None = None,
             version: str | None = None, body: Any = None) -> FhirRequest:
    query = [(k, v) for k, v in request.query_params.multi_items()]
    headers = {k.lower(): v for k, v in request.headers.items()}
    return FhirRequest(method, rtype, rid, version, query, headers, body)


def interaction_name(handler_name: str, freq: FhirRequest) -> str:
    """The FHIR restful-interaction code of a handler, for the audit record."""
    if handler_name == "search":
        return "search-type" if freq.resource_type else "search-system"
    if handler_name == "history":
        return "history-instance" if freq.id else ("history-type" if freq.resource_type
                                                   else "history-system")
    return handler_name.removeprefix("conditional_")


def audit_query(freq: FhirRequest) -> str | None:
    """The request as the audit records it (IHE BALP's query): what it was about and every
    parameter, those a POST `_search` sent in its body too."""
    if not freq.query:
        return None
    path = "/".join(p for p in (freq.resource_type, freq.id) if p)
    return f"{path}?{urlencode(freq.query, safe='/|:,$')}"


async def _run(rt: Runtime, access: AccessPolicy, request: Request, handler: Handler,
               freq: FhirRequest, write: bool) -> Response:
    target = (freq.resource_type, freq.id) if freq.resource_type and freq.id else None
    access.start(interaction_name(handler.__name__, freq), audit_query(freq), target)
    async with rt.store(access, write=write) as store:
        resp = await handler(store, freq)
    return fhir_response(request, resp.status, resp.body, resp.raw, resp.headers)


@router.get("/metadata", summary="CapabilityStatement", tags=["system"])
async def metadata(request: Request, rt: RuntimeDep) -> Response:
    return fhir_response(request, 200, capability.build(rt))


@router.post("", summary="Process a transaction or batch Bundle", tags=["system"],
             openapi_extra=RESOURCE_BODY)
async def bundle(request: Request, rt: RuntimeDep, access: AccessDep) -> Response:
    body = await read_body(request, rt.settings.max_body_bytes)
    if isinstance(body, dict) and body.get("type") == "batch":
        request.state.telemetry_interaction = "batch"  # the metrics' name for it (rest.telemetry)
    result = await BundleProcessor(rt).process(body, access, request.headers.get("prefer"))
    return fhir_response(request, 200, result)


@router.get("/_history", summary="History of all resources", tags=["system"])
async def system_history(request: Request, rt: RuntimeDep, access: AccessDep) -> Response:
    return await _run(rt, access, request, Interactions(rt).history,
                      _request(request, "GET"), write=False)


@router.get("", summary="Search across all resource types", tags=["system"])
async def system_search(request: Request, rt: RuntimeDep, access: AccessDep) -> Response:
    return await _run(rt, access, request, Interactions(rt).search,
                      _request(request, "GET"), write=False)


@router.get("/{type}", summary="Search a resource type", tags=["type"])
async def search(request: Request, rtype: TypeDep, rt: RuntimeDep, access: AccessDep) -> Response:
    return await _run(rt, access, request, Interactions(rt).search,
                      _request(request, "GET", rtype), write=False)


@router.post("/{type}/_search", summary="Search a resource type (form POST)", tags=["type"])
async def search_post(request: Request, rtype: TypeDep, rt: RuntimeDep, access: AccessDep) -> Response:
    ctype = request.headers.get("content-type", "").split(";")[0].strip()
    if ctype and ctype != "application/x-www-form-urlencoded":
        raise bad_request("POST _search takes application/x-www-form-urlencoded parameters")
    form = parse_qsl((await request.body()).decode(), keep_blank_values=True)
    freq = _request(request, "GET", rtype)
    freq.query = freq.query + form
    return await _run(rt, access, request, Interactions(rt).search, freq, write=False)


@router.post("/{type}", summary="Create (If-None-Exist for conditional create)", tags=["type"],
             status_code=201, openapi_extra=RESOURCE_BODY)
async def create(request: Request, rtype: TypeDep, rt: RuntimeDep, access: AccessDep) -> Response:
    body = await read_body(request, rt.settings.max_body_bytes)
    return await _run(rt, access, request, Interactions(rt).create,
                      _request(request, "POST", rtype, body=body), write=True)


@router.put("/{type}", summary="Conditional update", tags=["type"], openapi_extra=RESOURCE_BODY)
async def conditional_update(request: Request, rtype: TypeDep, rt: RuntimeDep,
                             access: AccessDep) -> Response:
    body = await read_body(request, rt.settings.max_body_bytes)
    return await _run(rt, access, request, Interactions(rt).conditional_update,
                      _request(request, "PUT", rtype, body=body), write=True)


@router.delete("/{type}", summary="Conditional delete", tags=["type"])
async def conditional_delete(request: Request, rtype: TypeDep, rt: RuntimeDep,
                             access: AccessDep) -> Response:
    return await _run(rt, access, request, Interactions(rt).conditional_delete,
                      _request(request, "DELETE", rtype), write=True)


@router.get("/{type}/_history", summary="History of a resource type", tags=["type"])
async def type_history(request: Request, rtype: TypeDep, rt: RuntimeDep,
                       access: AccessDep) -> Response:
    return await _run(rt, access, request, Interactions(rt).history,
                      _request(request, "GET", rtype), write=False)


@router.get("/{type}/{id}", summary="Read", tags=["instance"])
async def read(request: Request, rtype: TypeDep, id: IdPath, rt: RuntimeDep,
               access: AccessDep) -> Response:
    return await _run(rt, access, request, Interactions(rt).read,
                      _request(request, "GET", rtype, id), write=False)


@router.put("/{type}/{id}", summary="Update (or create with a client id); If-Match", tags=["instance"],
            openapi_extra=RESOURCE_BODY)
async def update(request: Request, rtype: TypeDep, id: IdPath, rt: RuntimeDep,
                 access: AccessDep) -> Response:
    body = await read_body(request, rt.settings.max_body_bytes)
    return await _run(rt, access, request, Interactions(rt).update,
                      _request(request, "PUT", rtype, id, body=body), write=True)


@router.patch("/{type}/{id}", summary="JSON Patch", tags=["instance"], openapi_extra={
    "requestBody": {"required": True, "content": {"application/json-patch+json": {
        "schema": {"type": "array", "items": {"type": "object"}}}}}})
async def patch(request: Request, rtype: TypeDep, id: IdPath, rt: RuntimeDep,
                access: AccessDep) -> Response:
    body = await read_body(request, rt.settings.max_body_bytes, allow_patch=True)
    return await _run(rt, access, request, Interactions(rt).patch,
                      _request(request, "PATCH", rtype, id, body=body), write=True)


@router.delete("/{type}/{id}", summary="Delete", tags=["instance"], status_code=204)
async def delete(request: Request, rtype: TypeDep, id: IdPath, rt: RuntimeDep,
                 access: AccessDep) -> Response:
    return await _run(rt, access, request, Interactions(rt).delete,
                      _request(request, "DELETE", rtype, id), write=True)


@router.get("/{type}/{id}/_history", summary="History of a resource", tags=["instance"])
async def instance_history(request: Request, rtype: TypeDep, id: IdPath, rt: RuntimeDep,
                           access: AccessDep) -> Response:
    return await _run(rt, access, request, Interactions(rt).history,
                      _request(request, "GET", rtype, id), write=False)


@router.get("/{type}/{id}/_history/{vid}", summary="Read a version (vread)", tags=["instance"])
async def vread(request: Request, rtype: TypeDep, id: IdPath, vid: str, rt: RuntimeDep,
                access: AccessDep) -> Response:
    return await _run(rt, access, request, Interactions(rt).vread,
                      _request(request, "GET", rtype, id, vid), write=False)


@router.get("/{compartment}/{id}/{type}", summary="Search a type in a Patient's compartment",
            tags=["instance"])
async def compartment_search(request: Request, compartment: str, id: IdPath, rtype: TypeDep,
                             rt: RuntimeDep, access: AccessDep) -> Response:
    """`GET Patient/x/Observation` (R4 3.1.1.5.7): what the compartment table says is in that
    patient's record, which is also what `$everything` returns; only the Patient compartment
    is defined here."""
    if compartment != "Patient":
        raise FhirError(404, "not-supported", f"Compartment '{compartment}' is not supported; "
                        "only Patient/[id]/[type]")
    freq = _request(request, "GET", rtype)
    freq.compartment = id
    return await _run(rt, access, request, Interactions(rt).search, freq, write=False)
