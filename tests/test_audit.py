"""The audit trail: every request that touches a patient's data leaves an AuditEvent (IHE BALP
style) naming who, when, what, the outcome and the Consent(s) that allowed it; refusals are on
record too; the patient reads their own trail with `AuditEvent?patient=`; nobody changes or
deletes it through the API."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.config import Settings

from .auth_helpers import auth, token
from .consent_helpers import grant
from .consent_world import Actors, Record, entries, patient_headers, post
from .helpers import FHIR_JSON

CONSENT_ENTITY = "Consent that permitted this access"




@pytest.fixture
def own(settings: Settings, record: Record) -> dict[str, dict[str, str]]:
    return patient_headers(settings, record.patient)


def trail(anon: TestClient, headers: dict[str, str], patient: str, **params: str) -> list[dict[str, Any]]:
    resp = anon.get("/fhir/AuditEvent", params={"patient": patient, "_count": "200", **params},
                    headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["total"] == len(entries(resp.json()))
    return entries(resp.json())


def by(events: list[dict[str, Any]], who: str) -> list[dict[str, Any]]:
    return [e for e in events if e["agent"][0]["who"].get("reference") == who]


def what(event: dict[str, Any]) -> set[str]:
    return {e["what"]["reference"] for e in event["entity"] if "what" in e}


def test_the_trail_a_patient_sees_after_professionals_read_their_data(
        anon: TestClient, settings: Settings, actors: Actors, record: Record,
        own: dict[str, dict[str, str]], tag: str) -> None:
    consent = grant(anon, record.patient, [
        actors.permit("oncologist"),
        actors.permit("occupational-physician", labels=["functional-capacity", "work-context"]),
        actors.permit("employer", labels=["work-context"])], f"{tag}-consent", headers=own["patient"])
    onc, physician, employer = (actors.headers[r] for r in
                                ("oncologist", "occupational-physician", "employer"))
    assert anon.get(f"/fhir/{record.ref('medical')}", headers=onc).status_code == 200
    found = anon.get("/fhir/Observation", params={"patient": record.patient}, headers=physician)
    assert found.status_code == 200 and found.json()["total"] == 2
    assert anon.get(f"/fhir/{record.ref('medical')}", headers=employer).status_code == 404
    assert anon.get(f"/fhir/{record.ref('work-context')}", headers=employer).status_code == 200
    profile = {k: v for k, v in record.bodies["functional-capacity"].items() if k != "id"}
    assert post(anon, "Observation", profile, physician).status_code == 403

    events = trail(anon, own["patient"], record.patient)
    patient_ref, consent_ref = f"Patient/{record.patient}", f"Consent/{consent['id']}"

    [oncologist] = by(events, actors.fhir_user["oncologist"])
    assert oncologist["subtype"][0]["code"] == "read" and oncologist["action"] == "R"
    assert oncologist["outcome"] == "0" and oncologist["recorded"]
    assert what(oncologist) == {patient_ref, record.ref("medical"), consent_ref}
    assert oncologist["agent"][0]["role"] == [{"text": "oncologist"}]

    searched, refused_write = sorted(by(events, actors.fhir_user["occupational-physician"]),
                                     key=lambda e: e["outcome"])
    assert searched["subtype"][0]["code"] == "search-type" and searched["outcome"] == "0"
    assert what(searched) == {patient_ref, record.ref("functional-capacity"),
                              record.ref("work-context"), consent_ref}
    query = [e for e in searched["entity"] if e.get("role", {}).get("code") == "24"]
    assert f"patient={record.patient}" in query[0]["description"]
    assert refused_write["action"] == "C" and refused_write["outcome"] == "4"
    assert "consent" in refused_write["outcomeDesc"].lower()

    employer_events = by(events, actors.fhir_user["employer"])
    assert sorted(e["outcome"] for e in employer_events) == ["0", "4"]
    refused = next(e for e in employer_events if e["outcome"] == "4")
    assert patient_ref in what(refused) and refused["subtype"][0]["code"] == "read"
    allowed = next(e for e in employer_events if e["outcome"] == "0")
    assert what(allowed) == {patient_ref, record.ref("work-context"), consent_ref}
    assert [e["description"] for e in allowed["entity"] if e["what"]["reference"] == consent_ref] == [
        CONSENT_ENTITY]

    # The trail can be narrowed to one professional; the patient's own requests are on it too.
    assert len(trail(anon, own["patient"], record.patient,
                     agent=actors.fhir_user["oncologist"])) == 1
    mine = by(events, patient_ref)
    assert mine and all(e["purposeOfEvent"][0]["coding"][0]["code"] == "PATRQT" for e in mine)

    # No one else reads the trail: not the professionals (a broad grant does not cover it), not
    # another patient.
    other = auth(token(settings, "user/*.rs", fhir_user="Patient/someone-else", role="patient"))
    for headers in (onc, physician, employer, other):
        assert trail(anon, headers, record.patient) == []
        assert anon.get(f"/fhir/AuditEvent/{oncologist['id']}", headers=headers).status_code == 404


def test_audit_events_cannot_be_changed_or_deleted(anon: TestClient, client: TestClient,
                                                   record: Record, own: dict[str, dict[str, str]]) -> None:
    assert anon.get(f"/fhir/{record.ref('medical')}", headers=own["patient"]).status_code == 200
    event = trail(anon, own["patient"], record.patient)[0]
    path = f"/fhir/AuditEvent/{event['id']}"
    changed = {**event, "outcome": "8", "outcomeDesc": "rewritten"}
    for headers in (own["patient"], own["pgo-app"], dict(client.headers)):
        assert anon.put(path, json=changed, headers={**FHIR_JSON, **headers}).status_code == 403
        assert anon.delete(path, headers=headers).status_code == 403
        patch = [{"op": "replace", "path": "/outcome", "value": "8"}]
        assert anon.patch(path, json=patch, headers={
            **headers, "Content-Type": "application/json-patch+json"}).status_code == 403
        assert anon.delete("/fhir/AuditEvent", params={"_id": event["id"]},
                           headers=headers).status_code == 403
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "DELETE", "url": f"AuditEvent/{event['id']}"}}]}
        assert post(anon, "", bundle, headers).status_code == 403
    # Nor can a patient forge one about themself.
    forged = {k: v for k, v in event.items() if k not in ("id", "meta")}
    assert post(anon, "AuditEvent", forged, own["patient"]).status_code == 403
    stored = client.get(path).json()
    assert stored["meta"]["versionId"] == "1" and stored == event | {"meta": stored["meta"]}


def test_a_write_and_its_audit_event_commit_together(
        anon: TestClient, actors: Actors, record: Record, own: dict[str, dict[str, str]],
        tag: str) -> None:
    grant(anon, record.patient, [actors.permit(
        "occupational-physician", labels=["functional-capacity"], actions=("access", "correct"))],
        f"{tag}-consent", headers=own["patient"])
    physician = actors.headers["occupational-physician"]
    profile = {k: v for k, v in record.bodies["functional-capacity"].items() if k != "id"}
    diagnosis = {k: v for k, v in record.bodies["medical"].items() if k != "id"}
    failed = post(anon, "", {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": profile, "request": {"method": "POST", "url": "Observation"}},
        {"resource": diagnosis, "request": {"method": "POST", "url": "Condition"}}]}, physician)
    assert failed.status_code == 403
    created = post(anon, "Observation", profile, physician)
    assert created.status_code == 201
    ref = f"Observation/{created.json()['id']}"

    events = by(trail(anon, own["patient"], record.patient),
                actors.fhir_user["occupational-physician"])
    [transaction] = [e for e in events if e["subtype"][0]["code"] == "transaction"]
    assert transaction["outcome"] == "4"
    assert not [w for w in what(transaction) if w.startswith("Observation/")]  # rolled back
    [create] = [e for e in events if e["subtype"][0]["code"] == "create"]
    assert create["outcome"] == "0" and create["action"] == "C" and ref in what(create)
    # The record holds exactly the one Observation that was written.
    found = anon.get("/fhir/Observation", params={"patient": record.patient, "code":
                     "https://pgo-work.nl/fhir/CodeSystem/pgo-work-observation|load-capacity-profile"},
                     headers=own["patient"]).json()
    assert found["total"] == 2
