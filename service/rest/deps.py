"""Named dependencies for the FHIR routes (FastAPI style: `Annotated[..., Depends(...)]`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from ..conformance.structure import is_resource_type
from ..fhir.outcome import FhirError
from ..runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    """`async`, as every dependency of the hot path: FastAPI runs a plain `def` dependency
    in the thread pool, a thread hop per dependency per request."""
    runtime: Runtime = request.app.state.runtime
    return runtime


async def resource_type(type: Annotated[str, Path(description="A FHIR R4 resource type")]) -> str:
    if not is_resource_type(type):
        raise FhirError(404, "not-supported", f"Resource type '{type}' is not supported")
    return type


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
TypeDep = Annotated[str, Depends(resource_type)]
