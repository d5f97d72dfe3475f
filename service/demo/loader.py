"""Load the demo Bundles under `service/demo/data/` into the store.

Deterministic (fixed ids) and idempotent: a resource whose content is unchanged is left alone,
so running `pgo-work seed-demo` twice adds no versions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from ..fhir.outcome import FhirError
from ..runtime import Runtime
from ..store.access import SystemAccess

DATA = Path(__file__).parent / "data"


def _body(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}


def demo_resources() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(DATA.glob("*.json")):
        bundle = orjson.loads(path.read_bytes())
        out.extend(e["resource"] for e in bundle.get("entry", []))
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
            if current is not None and _body(current.json()) == _body(checked):
                counts["unchanged"] += 1
                continue
            _, created = await store.update(checked, resource["id"])
            counts["created" if created else "updated"] += 1
    return counts
