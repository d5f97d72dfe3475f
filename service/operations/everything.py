"""Patient/[id]/$everything: the patient and every resource in their compartment the caller
may see (R4 patient-operation-everything). Access applies in the store's SQL as for search."""

from __future__ import annotations

import uuid
from typing import Any

from ..fhir import dates
from ..fhir.digits import is_digits
from ..fhir.outcome import bad_request
from .registry import Operation, OperationCall, OperationResult

MAX_RESOURCES = 5000


async def everything(call: OperationCall) -> OperationResult:
    assert call.id is not None
    patient = await call.store.read("Patient", call.id)
    count = call.value("_count")
    limit = MAX_RESOURCES
    if count is not None:
        if not is_digits(str(count)):
            raise bad_request("_count must be a non-negative integer", "_count")
        limit = min(int(count), MAX_RESOURCES)
    members = await call.store.resources_in_compartment(call.id, limit + 1)
    # The audit trail about the record is answered by AuditEvent?patient=, not by $everything.
    members = [m for m in members if not (m.resource_type == "Patient" and m.id == call.id)
               and m.resource_type != "AuditEvent"]
    base = call.runtime.base_url
    entries: list[dict[str, Any]] = [{"fullUrl": f"{base}/Patient/{patient.id}",
                                      "resource": patient.json(), "search": {"mode": "match"}}]
    entries += [{"fullUrl": f"{base}/{m.resource_type}/{m.id}", "resource": m.json(),
                 "search": {"mode": "match"}} for m in members[:limit]]
    bundle = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": dates.to_instant(dates.utcnow())},
        "type": "searchset",
        "total": len(entries),
        "link": [{"relation": "self", "url": f"{base}/Patient/{call.id}/$everything"}],
        "entry": entries,
    }
    return OperationResult(bundle)


OPERATIONS = [
    Operation("everything", frozenset({"instance"}), everything, frozenset({"Patient"}),
              definition="http://hl7.org/fhir/OperationDefinition/Patient-everything"),
]
