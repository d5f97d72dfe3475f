"""The table of operations: which names exist, at which levels, on which types.

The REST layer routes `$name` URLs through this table, and the CapabilityStatement lists it,
so an operation that is not registered cannot be called or advertised.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..fhir.outcome import FhirError, bad_request
from ..runtime import Runtime
from ..store.repository import ResourceStore


@dataclass
class OperationCall:
    runtime: Runtime
    store: ResourceStore
    name: str
    level: str  # system | type | instance
    resource_type: str | None
    id: str | None
    query: list[tuple[str, str]] = field(default_factory=list)
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    claims: dict[str, Any] | None = None
    """The caller's verified token claims (an operation that runs later, as `$export`, keeps
    them to rebuild the caller's access; never the token)."""
    url: str = ""
    """The request URL as the client sent it."""

    def _parameters(self) -> list[dict[str, Any]]:
        if self.body and self.body.get("resourceType") == "Parameters":
            params: list[dict[str, Any]] = self.body.get("parameter", [])
            return params
        return []

    def values(self, name: str) -> list[Any]:
        """Every value of a parameter, from the query string and a Parameters body."""
        out: list[Any] = [v for k, v in self.query if k == name]
        for p in self._parameters():
            if p.get("name") != name:
                continue
            if "resource" in p:
                out.append(p["resource"])
            else:
                out.extend(v for k, v in p.items() if k.startswith("value"))
        return out

    def value(self, name: str) -> Any:
        values = self.values(name)
        if len(values) > 1:
            raise bad_request(f"Parameter '{name}' may appear only once", name)
        return values[0] if values else None

    def require(self, name: str) -> Any:
        value = self.value(name)
        if value is None:
            raise bad_request(f"Parameter '{name}' is required for ${self.name}", name)
        return value


@dataclass
class OperationResult:
    resource: dict[str, Any] | None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    claims: dict[str, Any] | None = None
    """The caller's verified token claims (an operation that runs later, as `$export`, keeps
    them to rebuild the caller's access; never the token)."""
    url: str = ""
    """The request URL as the client sent it."""
    raw: str | None = None


Handler = Callable[[OperationCall], Awaitable[OperationResult]]


@dataclass(frozen=True)
class Operation:
    name: str
    levels: frozenset[str]
    handler: Handler
    types: frozenset[str] | None = None
    """None: every resource type."""
    affects_state: bool = False
    definition: str | None = None
    """Canonical URL of the OperationDefinition (in profiles/ when it is ours)."""
    listed_as: str | None = None
    """The name the CapabilityStatement lists it under when that is not its code (the Bulk
    Data IG's `patient-export` and `group-export` are both `$export`)."""


class OperationRegistry:
    def __init__(self) -> None:
        self._ops: dict[str, list[Operation]] = {}

    def register(self, op: Operation) -> None:
        self._ops.setdefault(op.name, []).append(op)

    def resolve(self, name: str, level: str, resource_type: str | None) -> Operation:
        candidates = self._ops.get(name)
        if not candidates:
            raise FhirError(404, "not-supported", f"Operation ${name} is not supported")
        for op in candidates:
            if level in op.levels and (op.types is None or resource_type in op.types):
                return op
        where = f"{resource_type or 'system'} {level} level"
        raise FhirError(404, "not-supported", f"Operation ${name} is not supported at {where}")

    def names(self) -> frozenset[str]:
        """The registered operation names (without `$`): the closed set metrics label by."""
        return frozenset(self._ops)

    def all(self) -> list[Operation]:
        return [op for ops in self._ops.values() for op in ops]


def default_registry() -> OperationRegistry:
    """Every operation pgo-work offers; each module contributes its own `OPERATIONS`."""
    from . import (
        everything,
        extract,
        poortwachter,
        progress,
        red_flags,
        terminology_ops,
        validate,
        work_summary,
    )

    registry = OperationRegistry()
    from .bulk import kickoff as bulk_export

    for module in (everything, validate, terminology_ops, extract, red_flags, progress, work_summary,
                   poortwachter, bulk_export):
        for op in module.OPERATIONS:
            registry.register(op)
    return registry
