"""Name a request by what it does in FHIR terms, from its method and path alone.

Metrics and the access log label a request with its FHIR restful interaction (R4
`restful-interaction` codes: read, vread, search-type, create, ...), its resource type and,
for an operation, the operation's name. Every label value comes from a closed set (the
interaction codes, the R4 resource types, the registered operations), never from an id, a
version or a query string, so the number of series stays bounded whatever a client sends and no
label can carry patient data.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from functools import lru_cache

from ..conformance.structure import r4_resource_types

FHIR_PREFIX = "/fhir"
INVALID_TYPE = "invalid"
"""The resource type label of a path whose type segment names no R4 resource type."""
UNKNOWN_OPERATION = "$unknown"
"""The operation label of a `$name` that no registered operation has."""
READS = ("GET", "HEAD")


@dataclass(frozen=True)
class Interaction:
    interaction: str
    resource_type: str = ""
    operation: str = ""


@lru_cache(maxsize=1)
def _types() -> frozenset[str]:
    return r4_resource_types()


def _type(segment: str) -> str:
    return segment if segment in _types() else INVALID_TYPE


def _outside_fhir(path: str) -> Interaction:
    if path in ("/healthz", "/readyz"):
        return Interaction("health")
    if path == "/metrics":
        return Interaction("metrics")
    if path.startswith(("/auth/", "/.well-known/")):
        return Interaction("auth")
    if path == "/app" or path.startswith("/app/"):
        return Interaction("web")
    return Interaction("other")


def classify(method: str, path: str, operations: Collection[str] = ()) -> Interaction:
    """The interaction of `method path` (path without the query string). `operations`: the
    registered operation names (without `$`); any other `$name` is labelled `$unknown`."""
    if path != FHIR_PREFIX and not path.startswith(FHIR_PREFIX + "/"):
        return _outside_fhir(path)
    parts = [p for p in path[len(FHIR_PREFIX):].split("/") if p]
    read = method in READS
    if parts and parts[0] == ".well-known":
        return Interaction("auth")
    if parts and parts[-1].startswith("$") and len(parts) <= 3:
        name = parts[-1][1:]
        rtype = _type(parts[0]) if len(parts) > 1 else ""
        return Interaction("operation", rtype, f"${name}" if name in operations else UNKNOWN_OPERATION)
    n = len(parts)
    if n == 0:
        return Interaction("search-system" if read else "transaction" if method == "POST" else "other")
    if n == 1:
        if parts[0] == "metadata":
            return Interaction("capabilities")
        if parts[0] == "_history":
            return Interaction("history-system")
        by_method = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
        return Interaction("search-type" if read else by_method.get(method, "other"), _type(parts[0]))
    rtype = _type(parts[0])
    if n == 2:
        if parts[1] == "_search":
            return Interaction("search-type", rtype)
        if parts[1] == "_history":
            return Interaction("history-type", rtype)
        by_method = {"PUT": "update", "PATCH": "patch", "DELETE": "delete"}
        return Interaction("read" if read else by_method.get(method, "other"), rtype)
    if n == 3 and parts[2] == "_history":
        return Interaction("history-instance", rtype)
    if n == 3 and read:
        return Interaction("search-compartment", _type(parts[2]))
    if n == 4 and parts[2] == "_history":
        return Interaction("vread", rtype)
    return Interaction("other", rtype)
