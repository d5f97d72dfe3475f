"""Load the conformance resources shipped under `profiles/` (an NPM-style FHIR package).

Loaded once at start-up: they are read-only definitions, not patient data, so holding them in
memory keeps instances stateless in the sense that matters (nothing written lives there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

SKIP = {"package.json", ".index.json"}


@dataclass
class ConformancePackage:
    resources: list[dict[str, Any]] = field(default_factory=list)

    def of_type(self, resource_type: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if r.get("resourceType") == resource_type]

    def by_url(self, url: str) -> dict[str, Any] | None:
        base = url.split("|")[0]
        for r in self.resources:
            if r.get("url") == base:
                return r
        return None

    @property
    def patient_compartment(self) -> dict[str, Any] | None:
        for r in self.of_type("CompartmentDefinition"):
            if r.get("code") == "Patient":
                return r
        return None


def load_package(root: Path) -> ConformancePackage:
    """Every FHIR resource (a JSON object with resourceType) below `root`."""
    package = ConformancePackage()
    if not root.exists():
        return package
    for path in sorted(root.rglob("*.json")):
        if path.name in SKIP or path.parent.name == "rules":
            continue
        data = orjson.loads(path.read_bytes())
        if isinstance(data, dict) and "resourceType" in data:
            package.resources.append(data)
    return package
