"""`_elements` for export: only the named top-level elements of each resource (with what every
resource keeps: resourceType, id, meta), marked SUBSETTED as R4 search's `_elements` is."""

from __future__ import annotations

from typing import Any

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
             "code": "SUBSETTED"}
ALWAYS = ("resourceType", "id", "meta")


def subset(resource: dict[str, Any], rtype: str, elements: list[str]) -> dict[str, Any]:
    """`elements` holds `name` (every type) or `Type.name` (that type only). A type none of
    them names is exported whole."""
    wanted = set()
    for e in elements:
        head, _, tail = e.partition(".")
        if not tail:
            wanted.add(head)
        elif head == rtype:
            wanted.add(tail.split(".")[0])
    if not wanted:
        return resource
    out = {k: v for k, v in resource.items() if k in ALWAYS or k in wanted}
    meta = dict(out.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    out["meta"] = meta
    return out
