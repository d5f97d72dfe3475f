"""A FHIR interaction as plain values, so the same handlers serve HTTP routes and Bundle entries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass
class FhirRequest:
    method: str
    resource_type: str | None = None
    id: str | None = None
    version: str | None = None
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    """Lower-case header names."""
    body: Any = None
    new_id: str | None = None
    """For a create inside a transaction: the id chosen up front so references can point at it."""
    compartment: str | None = None
    """Compartment search (`GET Patient/x/Observation`): the patient whose compartment."""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def prefer(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for part in (self.header("prefer") or "").split(","):
            key, _, value = part.strip().partition("=")
            if key:
                out[key.strip()] = value.strip().strip('"')
        return out


@dataclass
class FhirResponse:
    status: int
    body: dict[str, Any] | None = None
    raw: str | None = None
    """Pre-serialised resource JSON (a stored resource), sent as is."""
    headers: dict[str, str] = field(default_factory=dict)

    def payload(self) -> dict[str, Any] | None:
        if self.body is not None:
            return self.body
        if self.raw is not None:
            loaded: dict[str, Any] = orjson.loads(self.raw)
            return loaded
        return None
