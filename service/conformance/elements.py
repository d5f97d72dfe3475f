"""Walking FHIR JSON by element path, with the instance paths our OperationOutcomes report.

An element path from a StructureDefinition (`Observation.value[x].code`) names many places in
an instance; these helpers find them and name each the way a client can locate it:
`Observation.valueQuantity.code`, `Goal.target[0].measure` (an index exactly where the JSON
holds an array).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

TYPE_NAMES = frozenset({
    "base64Binary", "boolean", "canonical", "code", "date", "dateTime", "decimal", "id",
    "instant", "integer", "markdown", "oid", "positiveInt", "string", "time", "unsignedInt",
    "uri", "url", "uuid", "Address", "Age", "Annotation", "Attachment", "CodeableConcept",
    "Coding", "ContactDetail", "ContactPoint", "Contributor", "Count", "DataRequirement",
    "Distance", "Dosage", "Duration", "Expression", "HumanName", "Identifier", "Meta", "Money",
    "ParameterDefinition", "Period", "Quantity", "Range", "Ratio", "Reference",
    "RelatedArtifact", "SampledData", "Signature", "Timing", "TriggerDefinition",
    "UsageContext",
})
"""The FHIR R4 data types a choice element `[x]` can take; the JSON key is name + Type."""
_BY_SUFFIX = {t[0].upper() + t[1:]: t for t in TYPE_NAMES}

Located = tuple[Any, str]
"""A value in an instance and the path that names it."""


def choice_type(key: str, base: str) -> str | None:
    """The FHIR type of a choice key (`valueQuantity` for base `value` -> `Quantity`)."""
    if not key.startswith(base):
        return None
    return _BY_SUFFIX.get(key[len(base):])


def type_suffix(type_code: str) -> str:
    return type_code[0].upper() + type_code[1:]


def children(node: Any, name: str, path: str) -> list[Located]:
    """The values of element `name` (possibly `x[x]`) below one node, one per repetition."""
    if not isinstance(node, dict):
        return []
    out: list[Located] = []
    if name.endswith("[x]"):
        base = name[:-3]
        for key, value in node.items():
            if choice_type(key, base) is not None:
                out.extend(_spread(value, f"{path}.{key}"))
    elif name in node:
        out.extend(_spread(node[name], f"{path}.{name}"))
    return out


def _spread(value: Any, path: str) -> list[Located]:
    if isinstance(value, list):
        return [(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return [(value, path)]


def locate(node: Any, segments: tuple[str, ...], path: str) -> list[Located]:
    """Every value reached from `node` by following element names `segments`."""
    current: list[Located] = [(node, path)]
    for name in segments:
        current = [c for value, p in current for c in children(value, name, p)]
    return current


def walk(node: Any, path: str) -> Iterator[Located]:
    """Every object and value in an instance, depth first, with its path."""
    yield node, path
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "resourceType":
                continue
            for item, p in _spread(value, f"{path}.{key}"):
                yield from walk(item, p)


@lru_cache(maxsize=512)
def repeats(resource_type: str, name: str) -> bool:
    """Whether a top-level element of a resource type is an array in FHIR JSON (base max > 1)."""
    try:
        model = get_fhir_model_class(resource_type)
    except (KeyError, ValueError, AttributeError):
        return False
    fld = model.model_fields.get(name)
    return fld is not None and "List[" in str(fld.annotation)
