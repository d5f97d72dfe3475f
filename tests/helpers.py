"""Small builders shared by tests: realistic resources, tagged so each test sees its own data."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

FHIR_JSON = {"Content-Type": "application/fhir+json"}
TAG_SYSTEM = "https://pgo-work.nl/fhir/test-run"


def tagged(resource: dict[str, Any], tag: str) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), {"system": TAG_SYSTEM, "code": tag}]
    return {**resource, "meta": meta}


def patient(tag: str, family: str = "de Vries", given: str = "Anna", **extra: Any) -> dict[str, Any]:
    return tagged({"resourceType": "Patient", "name": [{"family": family, "given": [given]}],
                   "gender": "female", "birthDate": "1978-04-12", **extra}, tag)


def contract_hours(tag: str, patient_id: str, hours: float, start: str, end: str | None = None,
                   unit: str = "h/wk") -> dict[str, Any]:
    period = {"start": start, **({"end": end} if end else {})}
    return tagged({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "https://pgo-work.nl/fhir/CodeSystem/pgo-work-observation",
                             "code": "contract-hours-per-week"}], "text": "Contract hours per week"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectivePeriod": period,
        "valueQuantity": {"value": hours, "unit": unit, "system": "http://unitsofmeasure.org",
                          "code": unit},
    }, tag)


def create(client: TestClient, resource: dict[str, Any]) -> dict[str, Any]:
    resp = client.post(f"/fhir/{resource['resourceType']}", json=resource, headers=FHIR_JSON)
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body
