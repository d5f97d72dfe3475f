"""Structural validation of incoming resources against the FHIR base definitions.

We parse with the `fhir.resources` R4B models, which agree with R4 (4.0.1) for the types we
store except where docs/fhir-version.md lists it; those R4-only differences are relaxed here
so that valid R4 content is never refused.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from ..config import PROJECT_ROOT
from ..fhir.outcome import FhirError, Issue
from .primitives import check_primitives

_MODEL_CACHE: dict[str, Any] = {}
R4_TYPES_FILE = PROJECT_ROOT / "profiles" / "core" / "r4-resource-types.json"
# Types whose R4B model differs from R4 (docs/fhir-version.md): parsing them with R4B would
# refuse valid R4 content, so only the generic checks apply to them.
R4B_CHANGED = frozenset({"ActivityDefinition", "PlanDefinition", "Evidence", "EvidenceVariable",
                         "Substance"})


@lru_cache(maxsize=1)
def r4_resource_types() -> frozenset[str]:
    """The resource types of FHIR R4 (4.0.1): exactly what this server stores."""
    data = orjson.loads(R4_TYPES_FILE.read_bytes())
    return frozenset(data["resourceTypes"])


def model_for(resource_type: str) -> Any | None:
    if resource_type not in _MODEL_CACHE:
        try:
            _MODEL_CACHE[resource_type] = get_fhir_model_class(resource_type)
        except (KeyError, ValueError, AttributeError):
            _MODEL_CACHE[resource_type] = None
    return _MODEL_CACHE[resource_type]


def is_resource_type(name: str) -> bool:
    return name in r4_resource_types()


def validate_structure(resource: dict[str, Any]) -> None:
    """Raise FhirError 422 with one issue per structural problem, each with its path."""
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not is_resource_type(rtype):
        raise FhirError(400, "invalid", f"Unknown resourceType '{rtype}'", "resourceType")
    model = None if rtype in R4B_CHANGED else model_for(rtype)
    if model is None:
        return
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        issues = [_issue(rtype, err) for err in exc.errors()[:50]]
        raise FhirError(422, "structure", issues[0].diagnostics, issues=issues) from exc
    except (ValueError, TypeError, KeyError) as exc:
        # KeyError: fhir_core's lookup of an unknown type, e.g. in `contained`.
        raise FhirError(422, "structure", f"{rtype} is not valid: {exc}", rtype) from exc
    check_primitives(resource, model)  # what the lax models coerce or let through


def _issue(rtype: str, err: Any) -> Issue:
    path = rtype
    for part in err.get("loc", ()):
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("__root__",):
            continue
        else:
            path += f".{part}"
    message = err.get("msg", "invalid")
    code = "structure" if err.get("type") == "extra_forbidden" else "value"
    if err.get("type") == "extra_forbidden":
        message = f"Unknown element '{path.rsplit('.', 1)[-1]}'"
    elif err.get("type") == "missing":
        message = "Required element is missing"
        code = "required"
    return Issue(code, f"{path}: {message}", expression=[path])
