"""Security labels computed from content (profiles/rules/security-labels.json) on every write,
and a writer cannot lower them."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from .conformance_helpers import LABELS, example, expressions, labels, new_patient, post
from .helpers import FHIR_JSON, TAG_SYSTEM, create, tagged

CASES = [
    ("work-situation", "valid-employee-nurse.json", {"work-context"}),
    ("contract-hours", "valid-28h-since-2024.json", {"work-context"}),
    ("work-status", "valid-partially-working.json", {"work-context", "absence-benefits"}),
    ("sick-leave-episode", "valid-partial-ongoing.json", {"absence-benefits"}),
    ("wia-benefit", "valid-partial-current.json", {"absence-benefits"}),
    ("load-capacity-item", "valid-d220-capacity.json", {"functional-capacity"}),
    ("late-effect-report", "valid-fatigue.json", {"self-reported-health"}),
    # Issue 11: the incurable-cancer question has a resource of its own (medical); the rest is
    # shared with a labour expert with consent, never with an employer.
    ("vulnerable-group-screening", "valid-screening.json", {"work-context", "absence-benefits"}),
    ("incurable-cancer-screening", "valid-yes.json", {"medical"}),
    ("work-goal", "valid-contract-hours-target.json", {"work-context"}),
    # Issue 11: free text about the home situation or the prognosis makes a BAR response medical.
    ("bar", "valid-complete.json", {"functional-capacity", "work-context", "medical"}),
    ("employer-statement", "valid-hours-per-day.json", {"employer-summary"}),
    ("hours-limitation", "valid-4h-per-day.json", {"functional-capacity"}),
]


@pytest.mark.parametrize(("folder", "name", "expected"), CASES, ids=[c[0] for c in CASES])
def test_labels_follow_content(client: TestClient, tag: str, folder: str, name: str,
                               expected: set[str]) -> None:
    stored = create(client, example(folder, name, tag, new_patient(client, tag)))
    assert labels(stored) == expected


def test_unrecognised_clinical_data_is_medical_and_directory_data_unlabelled(client: TestClient,
                                                                           tag: str) -> None:
    pid = new_patient(client, tag)
    condition = create(client, tagged({"resourceType": "Condition", "code": {"text": "Mammacarcinoom"},
                                       "subject": {"reference": f"Patient/{pid}"}}, tag))
    assert labels(condition) == {"medical"}
    loinc = {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]}
    weight = create(client, tagged({"resourceType": "Observation", "status": "final", "code": loinc,
                                    "subject": {"reference": f"Patient/{pid}"}}, tag))
    assert labels(weight) == {"medical"}
    org = create(client, tagged({"resourceType": "Organization", "name": "Arbodienst Oost"}, tag))
    assert labels(org) == set()
    assert labels(client.get(f"/fhir/Patient/{pid}").json()) == set()


def test_update_without_labels_keeps_them(client: TestClient, tag: str) -> None:
    stored = create(client, example("vulnerable-group-screening", "valid-screening.json", tag,
                                    new_patient(client, tag)))
    assert labels(stored) == {"work-context", "absence-benefits"}
    bare = {**stored, "meta": {"tag": stored["meta"]["tag"]}}
    resp = client.put(f"/fhir/Observation/{stored['id']}", json=bare, headers=FHIR_JSON)
    assert resp.status_code == 200, resp.text
    assert labels(resp.json()) == {"work-context", "absence-benefits"}


def test_a_client_cannot_remove_medical(client: TestClient, tag: str) -> None:
    pid = new_patient(client, tag)
    condition = create(client, tagged({"resourceType": "Condition", "code": {"text": "Mammacarcinoom"},
                                       "subject": {"reference": f"Patient/{pid}"}}, tag))
    lowered = {**condition, "meta": {"tag": condition["meta"]["tag"], "security": [
        {"system": LABELS, "code": "work-context"}]}}
    resp = client.put(f"/fhir/Condition/{condition['id']}", json=lowered, headers=FHIR_JSON)
    assert resp.status_code == 200, resp.text
    assert labels(resp.json()) == {"medical", "work-context"}
    patch = [{"op": "remove", "path": "/meta/security"}]
    resp = client.patch(f"/fhir/Condition/{condition['id']}", json=patch,
                        headers={"Content-Type": "application/json-patch+json"})
    assert resp.status_code == 200, resp.text
    assert "medical" in labels(resp.json())
    found = client.get("/fhir/Condition", params={"_tag": f"{TAG_SYSTEM}|{tag}",
                                                  "_security": f"{LABELS}|medical"}).json()
    assert found["total"] == 1


def test_a_client_may_add_labels_but_not_invent_codes(client: TestClient, tag: str) -> None:
    hours = example("contract-hours", "valid-28h-since-2024.json", tag, new_patient(client, tag))
    stricter = {**hours, "meta": {**hours["meta"], "security": [{"system": LABELS, "code": "medical"}]}}
    stored = create(client, stricter)
    assert labels(stored) == {"medical", "work-context"}
    invented = {**hours, "meta": {**hours["meta"], "security": [{"system": LABELS, "code": "public"}]}}
    resp = post(client, invented)
    assert resp.status_code == 422
    assert expressions(resp.json()) == ["Observation.meta.security[0]"]


def test_labels_in_a_transaction(client: TestClient, tag: str) -> None:
    pid = new_patient(client, tag)
    report = example("late-effect-report", "valid-fatigue.json", tag, pid)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": report, "request": {"method": "POST", "url": "Observation"}}]}
    resp = client.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert resp.status_code == 200, resp.text
    location = resp.json()["entry"][0]["response"]["location"]
    stored = client.get(f"/fhir/{location.split('/_history')[0]}").json()
    assert labels(stored) == {"self-reported-health"}
