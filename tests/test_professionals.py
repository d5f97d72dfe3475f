"""Finding the right professional, referring to them, and the team around a person's work.

- The directory (PractitionerRole with Practitioner, Organization, Location) is searched by
  role, specialty, organisation and region (the Location's city or province, by chaining), by
  anyone with a token, without consent: it belongs to no one's record.
- A referral is a ServiceRequest from one professional to another about a patient: writing it
  needs the patient's consent, and it grants the receiver nothing; the patient's consent does.
- The work CareTeam (category work) records who is involved; everyone the patient gives
  work-context access sees who the others are, and the patient keeps one occupational
  physician (a second active one is refused; a handover ends the former one's period).
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.config import Settings

from .consent_helpers import grant, permit
from .helpers import FHIR_JSON, contract_hours, create, patient, tagged
from .work_helpers import BASE, DEMO, ROLE, as_professional, professional, seed_demo

SNOMED = "http://snomed.info/sct"
OCCUPATIONAL_MEDICINE = f"{SNOMED}|394821009"
MEDICAL_ONCOLOGY = f"{SNOMED}|394593009"


@pytest.fixture(scope="module")
def demo(settings: Settings, client: TestClient) -> None:
    seed_demo(settings)


def roles(client: TestClient, headers: dict[str, str] | None = None, **params: str) -> set[str]:
    resp = client.get("/fhir/PractitionerRole", params={"_tag": DEMO, "_count": "100", **params},
                      headers=headers or {})
    assert resp.status_code == 200, resp.text
    return {e["resource"]["id"] for e in resp.json().get("entry", [])
            if e["search"]["mode"] == "match"}


# -- the directory ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("role", "expected"), [
    ("occupational-physician", {"role-bedrijfsarts"}),
    ("baco", {"role-baco"}),
    ("kag-oncology", {"role-kag-oncologie"}),
    ("labour-expert", {"role-arbeidsdeskundige", "role-arbeidsdeskundige-uwv"}),
    ("insurance-physician", {"role-verzekeringsarts"}),
    ("oncology-physiotherapist", {"role-oncofysio"}),
    ("psychologist", {"role-psycholoog"}),
    ("reintegration-consultant", {"role-reintegratie"}),
])
def test_find_professionals_by_role(client: TestClient, demo: None, role: str, expected: set[str]) -> None:
    assert roles(client, role=f"{ROLE}|{role}") == expected


def test_find_by_specialty_and_by_role_with_specialty(client: TestClient, demo: None) -> None:
    assert roles(client, specialty=OCCUPATIONAL_MEDICINE) == {
        "role-bedrijfsarts", "role-baco", "role-kag-oncologie"}
    assert roles(client, specialty=MEDICAL_ONCOLOGY) == {"role-oncoloog", "role-vs-oncologie"}
    # a doctor (HL7 practitioner-role) in occupational medicine: not the labour expert
    assert roles(client, specialty=OCCUPATIONAL_MEDICINE,
                 role="http://terminology.hl7.org/CodeSystem/practitioner-role|doctor") == {
        "role-bedrijfsarts", "role-baco", "role-kag-oncologie"}


def test_find_by_organisation(client: TestClient, demo: None) -> None:
    assert roles(client, organization="Organization/org-arbodienst") == {
        "role-bedrijfsarts", "role-baco", "role-arbeidsdeskundige", "role-casemanager"}
    # a reintegration agency specialised in cancer, found by its name
    assert roles(client, **{"organization.name:contains": "bij kanker"}) == {"role-reintegratie"}


def test_find_by_city_or_province(client: TestClient, demo: None) -> None:
    assert roles(client, **{"location.address-city": "Amersfoort"}) == {
        "role-bedrijfsarts", "role-arbeidsdeskundige", "role-casemanager"}
    assert roles(client, **{"location.address-state": "Gelderland"}) == {"role-baco"}
    # occupational medicine in the province of Utrecht: the BACO works from Arnhem
    assert roles(client, specialty=OCCUPATIONAL_MEDICINE, **{"location.address-state": "Utrecht"}) == {
        "role-bedrijfsarts", "role-kag-oncologie"}
    resp = client.get("/fhir/PractitionerRole", params={
        "role": f"{ROLE}|baco", "_include": "PractitionerRole:location", "_tag": DEMO})
    found = {e["resource"]["resourceType"]: e["resource"] for e in resp.json()["entry"]}
    assert found["Location"]["address"]["city"] == "Arnhem"


def test_any_professional_may_search_the_directory_without_consent(
        client: TestClient, settings: Settings, tag: str, demo: None) -> None:
    expert = professional(client, tag, "labour-expert")
    headers = as_professional(settings, expert, "labour-expert", scope="user/*.rs")
    assert roles(client, headers, role=f"{ROLE}|baco") == {"role-baco"}


# -- referral --------------------------------------------------------------------------------------
def referral(tag: str, pid: str, requester: str, performer: str, role: str) -> dict[str, Any]:
    return tagged({
        "resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "category": [{"coding": [{"system": SNOMED, "code": "3457005", "display": "Patient referral"}]}],
        "code": {"text": "Verwijzing voor begeleiding bij werk en late gevolgen"},
        "performerType": {"coding": [{"system": ROLE, "code": role}]},
        "subject": {"reference": f"Patient/{pid}"},
        "requester": {"reference": f"PractitionerRole/{requester}"},
        "performer": [{"reference": f"PractitionerRole/{performer}"}],
        "authoredOn": "2026-11-20",
    }, tag)


def test_a_referral_needs_consent_and_grants_the_receiver_nothing(
        client: TestClient, settings: Settings, tag: str, demo: None) -> None:
    pid = create(client, patient(tag))["id"]
    hours = create(client, contract_hours(tag, pid, 32, "2020-01-01"))["id"]
    physician = as_professional(settings, "role-bedrijfsarts", "occupational-physician")
    baco = as_professional(settings, "role-baco", "baco")
    sent = referral(tag, pid, "role-bedrijfsarts", "role-baco", "baco")

    refused = client.post("/fhir/ServiceRequest", json=sent, headers={**FHIR_JSON, **physician})
    assert refused.status_code == 403, refused.text  # no consent of the patient yet
    grant(client, pid, [permit("PractitionerRole/role-bedrijfsarts", actions=("access", "collect"))], tag)
    made = client.post("/fhir/ServiceRequest", json=sent, headers={**FHIR_JSON, **physician})
    assert made.status_code == 201, made.text
    rid = made.json()["id"]

    # the receiver is named in the referral, and that alone opens nothing
    assert client.get(f"/fhir/ServiceRequest/{rid}", headers=baco).status_code == 404
    assert client.get(f"/fhir/Observation/{hours}", headers=baco).status_code == 404
    assert client.get(f"/fhir/Patient/{pid}", headers=baco).status_code == 404
    found = client.get("/fhir/ServiceRequest", params={"performer": "PractitionerRole/role-baco",
                                                        "_tag": f"https://pgo-work.nl/fhir/test-run|{tag}"},
                       headers=baco)
    assert found.status_code == 200 and found.json().get("entry", []) == []
    assert client.get(f"/fhir/Patient/{pid}/$late-effects-signals", headers=baco).status_code == 404

    # the patient's consent does
    grant(client, pid, [permit("PractitionerRole/role-baco")], tag)
    assert client.get(f"/fhir/ServiceRequest/{rid}", headers=baco).json()["requester"] == {
        "reference": "PractitionerRole/role-bedrijfsarts"}
    assert client.get(f"/fhir/Observation/{hours}", headers=baco).status_code == 200


# -- the team around work ----------------------------------------------------------------------------
def member(role_id: str, role: str, end: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"role": [{"coding": [{"system": ROLE, "code": role}]}],
                           "member": {"reference": f"PractitionerRole/{role_id}"}}
    if end:
        out["period"] = {"start": "2025-01-01", "end": end}
    return out


def work_team(tag: str, pid: str, members: list[dict[str, Any]]) -> dict[str, Any]:
    return tagged({
        "resourceType": "CareTeam", "status": "active", "name": "Werk",
        "category": [{"coding": [{"system": f"{BASE}/CodeSystem/careteam-category", "code": "work"}]}],
        "subject": {"reference": f"Patient/{pid}"}, "participant": members}, tag)


def test_everyone_with_access_sees_who_is_in_the_team(client: TestClient, settings: Settings,
                                                     tag: str, demo: None) -> None:
    pid = create(client, patient(tag))["id"]
    expert = professional(client, tag, "labour-expert")
    team = create(client, work_team(tag, pid, [
        member("role-bedrijfsarts", "occupational-physician"), member("role-baco", "baco"),
        member(expert, "labour-expert"), member("role-reintegratie", "reintegration-consultant")]))
    assert {(s["system"], s["code"]) for s in team["meta"]["security"]} == {
        ("https://pgo-work.nl/fhir/CodeSystem/data-category", "work-context")}
    # one consent for the whole team: its members are named through the CareTeam
    grant(client, pid, [permit(f"CareTeam/{team['id']}", labels=["work-context"])], tag)
    everyone = {"role-bedrijfsarts", "role-baco", expert, "role-reintegratie"}
    for who, role in [("role-bedrijfsarts", "occupational-physician"), (expert, "labour-expert"),
                      ("role-reintegratie", "reintegration-consultant")]:
        seen = client.get("/fhir/CareTeam", params={"patient": pid},
                          headers=as_professional(settings, who, role))
        assert seen.status_code == 200, seen.text
        [found] = [e["resource"] for e in seen.json()["entry"]]
        assert {m["member"]["reference"].split("/")[1] for m in found["participant"]} == everyone
    outsider = as_professional(settings, "role-psycholoog", "psychologist")
    assert client.get(f"/fhir/CareTeam/{team['id']}", headers=outsider).status_code == 404


def test_the_patient_keeps_one_occupational_physician(client: TestClient, tag: str, demo: None) -> None:
    pid = create(client, patient(tag))["id"]
    other = professional(client, tag, "occupational-physician")
    two = work_team(tag, pid, [member("role-bedrijfsarts", "occupational-physician"),
                               member(other, "occupational-physician")])
    resp = client.post("/fhir/CareTeam", json=two, headers=FHIR_JSON)
    assert resp.status_code == 422, resp.text
    assert "wct-1" in resp.text and "occupational physician" in resp.text
    assert client.get("/fhir/CareTeam", params={"patient": pid}).json().get("total") == 0
    # a handover: the former occupational physician's period ends, the new one takes over
    team = create(client, work_team(tag, pid, [member("role-bedrijfsarts", "occupational-physician"),
                                               member("role-baco", "baco")]))
    team["participant"].append(member(other, "occupational-physician"))
    refused = client.put(f"/fhir/CareTeam/{team['id']}", json=team, headers=FHIR_JSON)
    assert refused.status_code == 422, refused.text
    team["participant"][0] = member("role-bedrijfsarts", "occupational-physician", end="2026-11-20")
    moved = client.put(f"/fhir/CareTeam/{team['id']}", json=team, headers=FHIR_JSON)
    assert moved.status_code == 200, moved.text


def test_the_demo_team_records_who_is_involved(client: TestClient, demo: None) -> None:
    team = client.get("/fhir/CareTeam/careteam-marieke").json()
    involved = {p["role"][0]["coding"][0]["code"]: p["member"]["reference"] for p in team["participant"]}
    assert involved == {"occupational-physician": "PractitionerRole/role-bedrijfsarts",
                        "baco": "PractitionerRole/role-baco",
                        "labour-expert": "PractitionerRole/role-arbeidsdeskundige"}
