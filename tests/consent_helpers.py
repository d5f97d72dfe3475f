"""Build patient Consents (R4, scope patient-privacy) the way a PGO app would write them."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from .helpers import FHIR_JSON, tagged

DATA_CATEGORY = "https://pgo-work.nl/fhir/CodeSystem/data-category"
PROFESSIONAL_ROLE = "https://pgo-work.nl/fhir/CodeSystem/professional-role"
CATEGORIES = ("work-context", "functional-capacity", "absence-benefits", "self-reported-health",
              "medical")


def permit(actor: str, *, labels: list[str] | None = None, types: list[str] | None = None,
           actions: tuple[str, ...] = ("access",), period: dict[str, str] | None = None,
           as_role: str | None = None, exceptions: list[dict[str, Any]] | None = None,
           provision_type: str = "permit") -> dict[str, Any]:
    """One provision naming `actor` (a relative reference)."""
    role = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                        "code": "PRCP", "display": "primary information recipient"}]}
    if as_role:
        role = {"coding": [{"system": PROFESSIONAL_ROLE, "code": as_role}]}
    node: dict[str, Any] = {
        "type": provision_type,
        "actor": [{"role": role, "reference": {"reference": actor}}],
        "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction",
                                "code": a}]} for a in actions],
    }
    if labels is not None:
        node["securityLabel"] = [{"system": DATA_CATEGORY, "code": c} for c in labels]
    if types is not None:
        node["class"] = [{"system": "http://hl7.org/fhir/resource-types", "code": t} for t in types]
    if period:
        node["period"] = period
    if exceptions:
        node["provision"] = exceptions
    return node


def consent(patient_id: str, provisions: list[dict[str, Any]], tag: str,
            status: str = "active") -> dict[str, Any]:
    return tagged({
        "resourceType": "Consent",
        "status": status,
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0",
                                  "display": "Patient Consent"}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "dateTime": "2026-11-01T10:00:00+01:00",
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                   "code": "OPTIN"}]},
        "provision": {"type": "deny", "provision": provisions},
    }, tag)


def grant(client: TestClient, patient_id: str, provisions: list[dict[str, Any]], tag: str,
          headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Store a Consent (by default through the `client` fixture's operator token)."""
    resp = client.post("/fhir/Consent", json=consent(patient_id, provisions, tag),
                       headers={**FHIR_JSON, **(headers or {})})
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body
