"""Routes for named operations: `/$op`, `/{type}/$op`, `/{type}/{id}/$op`, by GET and POST.

Registered before the generic resource routes, so `$name` is never mistaken for an id.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ..access.dependencies import AccessDep
from ..operations.registry import OperationCall
from .deps import RuntimeDep, TypeDep
from .negotiation import check_accept, fhir_response, read_body

router = APIRouter(prefix="/fhir", dependencies=[Depends(check_accept)], tags=["operations"])
PARAMETERS_BODY: dict[str, Any] = {"requestBody": {"required": False, "content": {
    "application/fhir+json": {"schema": {"type": "object",
                                         "description": "A Parameters resource or a resource"}}}}}


async def _call(request: Request, rt: RuntimeDep, access: AccessDep, name: str, level: str,
                rtype: str | None, rid: str | None) -> Response:
    op = rt.operations.resolve(name, level, rtype)
    body = None
    if request.method == "POST":
        body = await read_body(request, rt.settings.max_body_bytes, optional=True)
    query = [(k, v) for k, v in request.query_params.multi_items()
             if k not in ("_format", "_pretty")]
    headers = {k.lower(): v for k, v in request.headers.items()}
    access.start("operation", f"${name}" + (f"?{request.url.query}" if request.url.query else ""),
                 (rtype, rid) if rtype and rid else None)
    async with rt.store(access, write=op.affects_state) as store:
        access.check_operation(name)
        call = OperationCall(rt, store, name, level, rtype, rid, query, body, headers,
                             getattr(request.state, "claims", None), str(request.url))
        result = await op.handler(call)
    return fhir_response(request, result.status, result.resource, result.raw, result.headers)


@router.get("/${name}", summary="System-level operation", operation_id="system_operation_get")
@router.post("/${name}", summary="System-level operation", operation_id="system_operation_post",
             openapi_extra=PARAMETERS_BODY)
async def system_operation(request: Request, name: str, rt: RuntimeDep, access: AccessDep) -> Response:
    return await _call(request, rt, access, name, "system", None, None)


@router.get("/{type}/${name}", summary="Type-level operation", operation_id="type_operation_get")
@router.post("/{type}/${name}", summary="Type-level operation", operation_id="type_operation_post",
             openapi_extra=PARAMETERS_BODY)
async def type_operation(request: Request, rtype: TypeDep, name: str, rt: RuntimeDep,
                         access: AccessDep) -> Response:
    return await _call(request, rt, access, name, "type", rtype, None)


@router.get("/{type}/{id}/${name}", summary="Instance-level operation",
            operation_id="instance_operation_get")
@router.post("/{type}/{id}/${name}", summary="Instance-level operation",
             operation_id="instance_operation_post", openapi_extra=PARAMETERS_BODY)
async def instance_operation(request: Request, rtype: TypeDep, id: str, name: str, rt: RuntimeDep,
                             access: AccessDep) -> Response:
    return await _call(request, rt, access, name, "instance", rtype, id)
