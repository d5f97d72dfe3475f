"""Minimal, valid FHIR R4 examples of every resource type issue 2 names, plus small REST helpers.

Each example is what a Dutch PGO or EHR would plausibly send: required elements filled with
real code systems, references in `Type/id` form. They are tagged with the test's tag so a test
can count exactly its own resources with `_tag`.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient

from .helpers import FHIR_JSON, TAG_SYSTEM, tagged

BSN = "http://fhir.nl/fhir/NamingSystem/bsn"
AGB = "http://fhir.nl/fhir/NamingSystem/agb-z"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
NOTE_URL = "https://pgo-work.nl/fhir/StructureDefinition/test-note"


def _examples(pid: str) -> dict[str, dict[str, Any]]:
    patient_ref = {"reference": f"Patient/{pid}"}
    return {
        "Patient": {
            "resourceType": "Patient",
            "identifier": [{"system": BSN, "value": "999911120"}],
            "name": [{"family": "Jansen", "given": ["Pieter"]}],
            "gender": "male",
            "birthDate": "1969-03-02",
        },
        "Practitioner": {
            "resourceType": "Practitioner",
            "identifier": [{"system": AGB, "value": "01012345"}],
            "name": [{"family": "Bakker", "given": ["Sanne"], "prefix": ["dr."]}],
        },
        "PractitionerRole": {
            "resourceType": "PractitionerRole",
            "active": True,
            "practitioner": {"reference": "Practitioner/bedrijfsarts-1"},
            "organization": {"reference": "Organization/arbodienst-1"},
            "code": [{"coding": [{"system": SNOMED, "code": "309398001",
                                  "display": "Occupational health physician"}]}],
        },
        "Organization": {
            "resourceType": "Organization",
            "identifier": [{"system": "http://fhir.nl/fhir/NamingSystem/kvk", "value": "12345678"}],
            "active": True,
            "name": "Arbodienst Midden",
        },
        "Observation": {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "29463-7", "display": "Body weight"}]},
            "subject": patient_ref,
            "effectiveDateTime": "2024-03-01T09:30:00+01:00",
            "valueQuantity": {"value": 72.5, "unit": "kg", "system": "http://unitsofmeasure.org",
                              "code": "kg"},
        },
        "Questionnaire": {
            "resourceType": "Questionnaire",
            "url": f"https://example.org/fhir/Questionnaire/test-{uuid.uuid4().hex[:8]}",
            "status": "active",
            "item": [{"linkId": "hours", "text": "Hoeveel uur werkt u per week?",
                      "type": "decimal"}],
        },
        "QuestionnaireResponse": {
            "resourceType": "QuestionnaireResponse",
            "questionnaire": "https://example.org/fhir/Questionnaire/weekly-hours",
            "status": "completed",
            "subject": patient_ref,
            "authored": "2024-03-01T10:00:00+01:00",
            "item": [{"linkId": "hours", "answer": [{"valueDecimal": 24}]}],
        },
        "Consent": {
            "resourceType": "Consent",
            "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                  "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": LOINC, "code": "59284-0",
                                      "display": "Patient Consent"}]}],
            "patient": patient_ref,
            "dateTime": "2024-03-01T10:00:00+01:00",
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                       "code": "OPTIN"}]},
            "provision": {"type": "permit",
                          "period": {"start": "2024-03-01", "end": "2025-03-01"}},
        },
        "AuditEvent": {
            "resourceType": "AuditEvent",
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
                     "code": "rest", "display": "RESTful Operation"},
            "action": "R",
            "recorded": "2024-03-01T10:00:00+01:00",
            "outcome": "0",
            "agent": [{"requestor": True, "who": {"reference": "Practitioner/bedrijfsarts-1"}}],
            "source": {"observer": {"display": "pgo-work"}},
            "entity": [{"what": patient_ref}],
        },
        "Provenance": {
            "resourceType": "Provenance",
            "target": [{"reference": "Observation/weight-1"}],
            "recorded": "2024-03-01T10:00:00+01:00",
            "agent": [{"who": {"reference": "Practitioner/bedrijfsarts-1"}}],
        },
        "Goal": {
            "resourceType": "Goal",
            "lifecycleStatus": "active",
            "description": {"text": "Binnen 12 weken weer 32 uur per week werken"},
            "subject": patient_ref,
            "target": [{"dueDate": "2024-06-01"}],
        },
        "CarePlan": {
            "resourceType": "CarePlan",
            "status": "active",
            "intent": "plan",
            "title": "Re-integratieplan",
            "subject": patient_ref,
            "period": {"start": "2024-03-01", "end": "2024-06-01"},
        },
        "CareTeam": {
            "resourceType": "CareTeam",
            "status": "active",
            "name": "Re-integratieteam",
            "subject": patient_ref,
            "participant": [{"member": {"reference": "Practitioner/bedrijfsarts-1"}}],
        },
        "ServiceRequest": {
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "code": {"coding": [{"system": SNOMED, "code": "385804009",
                                 "display": "Consultation"}]},
            "subject": patient_ref,
            "authoredOn": "2024-03-01",
        },
    }


TYPES = sorted(_examples("x"))


def example(resource_type: str, tag: str, patient_id: str = "example") -> dict[str, Any]:
    """A fresh, tagged, valid example of `resource_type` (patient references to `patient_id`)."""
    return tagged(_examples(patient_id)[resource_type], tag)


def with_note(resource: dict[str, Any], note: str) -> dict[str, Any]:
    """The resource with a (replaced) test extension: a change every resource type accepts."""
    return {**resource, "extension": [{"url": NOTE_URL, "valueString": note}]}


def note_of(resource: dict[str, Any]) -> str | None:
    for ext in resource.get("extension", []):
        if ext.get("url") == NOTE_URL:
            value: str = ext["valueString"]
            return value
    return None


def post(client: TestClient, resource: dict[str, Any], **headers: str) -> Any:
    return client.post(f"/fhir/{resource['resourceType']}", json=resource,
                       headers={**FHIR_JSON, **headers})


def put(client: TestClient, resource: dict[str, Any], url: str | None = None, **headers: str) -> Any:
    url = url or f"/fhir/{resource['resourceType']}/{resource['id']}"
    return client.put(url, json=resource, headers={**FHIR_JSON, **headers})


def tag_param(tag: str) -> str:
    return f"{TAG_SYSTEM}|{tag}"


def count(client: TestClient, resource_type: str, tag: str, **params: str) -> int:
    """How many current resources of a type carry the test's tag (and match `params`)."""
    resp = client.get(f"/fhir/{resource_type}", params={"_tag": tag_param(tag), **params})
    assert resp.status_code == 200, resp.text
    total: int = resp.json()["total"]
    return total


def assert_outcome(resp: Any, status: int, expression: str | None = None) -> dict[str, Any]:
    """The response is an OperationOutcome with `status`, FHIR JSON, and (optionally) an issue
    whose expression starts with `expression`."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/fhir+json"), resp.headers
    body: dict[str, Any] = resp.json()
    assert body["resourceType"] == "OperationOutcome", body
    assert body["issue"] and all(i["severity"] in ("fatal", "error") for i in body["issue"]), body
    if expression is not None:
        expressions = [e for i in body["issue"] for e in i.get("expression", [])]
        assert any(e == expression or e.startswith(expression + ".") or
                   e.startswith(expression + "[") for e in expressions), (expression, body)
    return body
