"""Small helpers the conformance operations share: typed parameters and Parameters output."""

from __future__ import annotations

from typing import Any

from ..conformance.engine import Conformance
from ..fhir.digits import is_digits
from ..fhir.outcome import FhirError, bad_request
from .registry import OperationCall


def conformance(call: OperationCall) -> Conformance:
    """The runtime's conformance engine (always built by `build_runtime`)."""
    engine = call.runtime.conformance
    if engine is None:
        raise FhirError(501, "not-supported", "Conformance resources are not loaded")
    return engine


def text(call: OperationCall, name: str) -> str | None:
    value = call.value(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request(f"Parameter '{name}' must be a string", name)
    return value


def integer(call: OperationCall, name: str) -> int | None:
    value = call.value(name)
    if value is None:
        return None
    if isinstance(value, bool) or not is_digits(str(value)):
        raise bad_request(f"Parameter '{name}' must be a non-negative integer", name)
    return int(value)


def boolean(call: OperationCall, name: str) -> bool:
    value = call.value(name)
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if str(value) in ("true", "false"):
        return str(value) == "true"
    raise bad_request(f"Parameter '{name}' must be true or false", name)


def mapping(call: OperationCall, name: str) -> dict[str, Any] | None:
    """A complex parameter (Coding, CodeableConcept, a resource); only a Parameters body has one."""
    value = call.value(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad_request(f"Parameter '{name}' must be a FHIR {name} (POST a Parameters)", name)
    return value


def parameters(*parts: tuple[str, str, Any]) -> dict[str, Any]:
    """A Parameters resource from (name, value[x] key, value) triples; None values are left out."""
    return {"resourceType": "Parameters",
            "parameter": [{"name": n, key: v} for n, key, v in parts if v is not None]}
