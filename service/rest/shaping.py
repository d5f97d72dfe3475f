"""`_summary` and `_elements`: return a subset of a resource, marked SUBSETTED (R4 3.1.1.5)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from ..conformance.structure import model_for

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
ALWAYS = frozenset({"resourceType", "id", "meta"})


@lru_cache(maxsize=256)
def summary_elements(resource_type: str) -> frozenset[str]:
    """JSON names of the elements marked isSummary in the base definition of the type."""
    model = model_for(resource_type)
    if model is None:
        return frozenset(ALWAYS)
    names = set(ALWAYS)
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if extra.get("summary_element_property"):
            names.add(info.alias or name)
    return frozenset(names)


def shape(resource: dict[str, Any], summary: str | None, elements: list[str] | None) -> dict[
        str, Any]:
    """The subset a client asked for; the resource itself when it asked for everything."""
    if summary in (None, "false", "count") and not elements:
        return resource
    if summary == "true":
        keep: frozenset[str] = summary_elements(resource["resourceType"])
        out = {k: v for k, v in resource.items() if k in keep}
    elif summary == "text":
        keep = ALWAYS | {"text"} | _mandatory(resource["resourceType"])
        out = {k: v for k, v in resource.items() if k in keep}
    elif summary == "data":
        out = {k: v for k, v in resource.items() if k != "text"}
    else:
        # Mandatory elements come along even when not asked for (R4 3.1.1.5.9, SHOULD).
        wanted = set(elements or []) | ALWAYS | _mandatory(resource["resourceType"])
        out = {k: v for k, v in resource.items() if k in wanted or _choice_of(k, wanted)}
    meta = dict(out.get("meta") or {})
    meta["tag"] = [*(meta.get("tag") or []), SUBSETTED]
    out["meta"] = meta
    return out


def _choice_of(key: str, wanted: set[str]) -> bool:
    """`_elements=value` selects `valueQuantity` too (choice types)."""
    return any(key.startswith(w) and key[len(w):][:1].isupper() for w in wanted)


@lru_cache(maxsize=256)
def _mandatory(resource_type: str) -> frozenset[str]:
    """Top-level elements with a minimum cardinality of 1, complex ones (Observation.code)
    and required choice types included, not only required primitives."""
    model = model_for(resource_type)
    if model is None:
        return frozenset()
    out = set()
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if info.is_required() or extra.get("element_required") or extra.get("one_of_many_required"):
            out.add(info.alias or name)
    return frozenset(out)
