"""Load the demo Bundles under `service/demo/data/` into the store.

Deterministic (fixed ids, fixed dates) and idempotent: a resource whose content is unchanged is
left alone, so running `pgo-work seed-demo` twice adds no versions. Every demo resource carries
the HL7 tag for synthetic data (v3-ActReason HTEST), so `_tag=...|HTEST` finds all of it and no
one mistakes it for a real person's record. What each patient shows, and which late-effects red
flags it should raise, is in `data/README.md` and `data/expected-red-flags.json`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from ..fhir.outcome import FhirError
from ..runtime import Runtime
from ..store.access import SystemAccess

DATA = Path(__file__).parent / "data"
DEMO_TAG = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HTEST",
            "display": "test health data"}
SERVER_META = ("versionId", "lastUpdated", "security")
"""Meta the server owns: the version stamp, and the security labels it computes from content
(and never lowers), so they are not part of what a data file says."""


def _comparable(resource: dict[str, Any]) -> dict[str, Any]:
    """The content that decides whether a write is needed: all but the meta the server owns,
    so a changed profile or tag in a data file is written, and an unchanged file is not."""
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in SERVER_META}
    body = {k: v for k, v in resource.items() if k != "meta"}
    return {**body, "meta": meta} if meta else body


def _tagged(resource: dict[str, Any]) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    tags = list(meta.get("tag", []))
    if not any(t.get("system") == DEMO_TAG["system"] and t.get("code") == DEMO_TAG["code"] for t in tags):
        tags.append(dict(DEMO_TAG))
    meta["tag"] = tags
    return {**resource, "meta": meta}


def demo_resources() -> list[dict[str, Any]]:
    """Every resource of every collection Bundle in `data/`, in file order, tagged as synthetic.

    Other JSON files there (the expected red flags) are data about the demo, not resources."""
    out: list[dict[str, Any]] = []
    for path in sorted(DATA.glob("*.json")):
        bundle = orjson.loads(path.read_bytes())
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            continue
        out.extend(_tagged(e["resource"]) for e in bundle.get("entry", []))
    return out


async def seed(rt: Runtime) -> dict[str, int]:
    """Returns counts of created, updated and unchanged resources."""
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    async with rt.store(SystemAccess(), write=True) as store:
        for resource in demo_resources():
            checked = rt.check_write(resource)
            try:
                current = await store.read(resource["resourceType"], resource["id"])
            except FhirError:
                current = None
            if current is not None and _comparable(current.json()) == _comparable(checked):
                counts["unchanged"] += 1
                continue
            _, created = await store.update(checked, resource["id"])
            counts["created" if created else "updated"] += 1
    return counts
