"""A representative: a legal guardian or someone the patient authorised acts as the patient for
that one record (reads it, gives and withdraws consents), because the patient's own record names
them (an active RelatedPerson with a guardian or attorney relationship). Anyone else the record
names as a related person sees only what a consent gives them."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.config import Settings

from .auth_helpers import account, auth, exchange, login, public_client, token
from .consent_helpers import consent as consent_for
from .consent_helpers import grant
from .consent_world import Actors, Record, build_record, entries, patient_headers, post
from .helpers import FHIR_JSON

ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"




@pytest.fixture
def other(client: TestClient, tag: str) -> Record:
    return build_record(client, f"{tag}-other", f"Other{tag}")


def related_person(anon: TestClient, patient_headers: dict[str, str], patient: str, code: str,
                   **extra: Any) -> dict[str, Any]:
    """Recorded by the patient themself, in their own record."""
    resp = post(anon, "RelatedPerson", {
        "resourceType": "RelatedPerson", "active": True, "patient": {"reference": f"Patient/{patient}"},
        "relationship": [{"coding": [{"system": ROLE_CODE, "code": code}]}],
        "name": [{"family": "Jansen", "given": ["Els"]}], **extra}, patient_headers)
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


def as_related(settings: Settings, person: dict[str, Any], patient: str) -> dict[str, str]:
    """The token a PGO app gets for the related person, launched for the patient's record."""
    return auth(token(settings, "launch/patient user/*.cruds", fhir_user=f"RelatedPerson/{person['id']}",
                      patient=patient, role="representative"))


def visible(anon: TestClient, headers: dict[str, str], record: Record) -> int:
    resp = anon.get("/fhir/", params={"_tag": record.tag_query, "_summary": "count"}, headers=headers)
    assert resp.status_code == 200, resp.text
    return int(resp.json()["total"])


def test_a_guardian_acts_as_the_patient_for_that_record_only(
        anon: TestClient, settings: Settings, actors: Actors, record: Record, other: Record,
        tag: str) -> None:
    own = patient_headers(settings, record.patient)["patient"]
    guardian = related_person(anon, own, record.patient, "GUARD")
    headers = as_related(settings, guardian, record.patient)

    assert anon.get(f"/fhir/{record.ref('medical')}", headers=headers).status_code == 200
    assert visible(anon, headers, record) == 6  # five categories and the Patient
    assert visible(anon, headers, other) == 0
    assert anon.get(f"/fhir/{other.ref('work-context')}", headers=headers).status_code == 404

    # They give consent on the patient's behalf, and only on this patient's behalf.
    onc = actors.headers["oncologist"]
    assert anon.get(f"/fhir/{record.ref('medical')}", headers=onc).status_code == 404
    consent = grant(anon, record.patient, [actors.permit("oncologist")], f"{tag}-consent",
                    headers=headers)
    assert anon.get(f"/fhir/{record.ref('medical')}", headers=onc).status_code == 200
    refused = post(anon, "Consent", consent_for(other.patient, [actors.permit("oncologist")],
                                                f"{tag}-consent"), headers)
    assert refused.status_code == 403, refused.text
    # ... and withdraw it.
    withdrawn = anon.put(f"/fhir/Consent/{consent['id']}", json={**consent, "status": "inactive"},
                         headers={**FHIR_JSON, **headers})
    assert withdrawn.status_code == 200, withdrawn.text
    assert anon.get(f"/fhir/{record.ref('medical')}", headers=onc).status_code == 404

    # The patient sees on their trail who acted for them, and why.
    trail = anon.get("/fhir/AuditEvent", params={"patient": record.patient, "_count": "200"},
                     headers=own).json()
    acted = [e for e in entries(trail) if e["agent"][0]["who"].get("reference") ==
             f"RelatedPerson/{guardian['id']}"]
    assert acted and all(e["purposeOfEvent"][0]["coding"][0]["code"] == "PWATRNY" for e in acted)

    # When the patient ends the relationship, the next request is refused.
    ended = anon.put(f"/fhir/RelatedPerson/{guardian['id']}", json={**guardian, "active": False},
                     headers={**FHIR_JSON, **own})
    assert ended.status_code == 200, ended.text
    assert anon.get(f"/fhir/{record.ref('medical')}", headers=headers).status_code == 404
    assert visible(anon, headers, record) == 0


def test_an_authorisation_that_has_expired_or_names_another_patient_gives_nothing(
        anon: TestClient, settings: Settings, record: Record, other: Record) -> None:
    own = patient_headers(settings, record.patient)["patient"]
    expired = related_person(anon, own, record.patient, "POWATT",
                             period={"start": "2020-01-01", "end": "2021-12-31"})
    assert visible(anon, as_related(settings, expired, record.patient), record) == 0
    attorney = related_person(anon, own, record.patient, "HPOWATT")
    assert visible(anon, as_related(settings, attorney, record.patient), record) == 6
    # The same person's token launched for another patient's record: not their representative.
    assert visible(anon, as_related(settings, attorney, other.patient), other) == 0


def test_a_related_person_without_authority_sees_what_a_consent_gives(
        anon: TestClient, settings: Settings, record: Record, tag: str) -> None:
    own = patient_headers(settings, record.patient)["patient"]
    partner = related_person(anon, own, record.patient, "SPS")
    headers = as_related(settings, partner, record.patient)
    assert visible(anon, headers, record) == 0
    grant(anon, record.patient, [{
        "type": "permit", "actor": [{"role": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
            "reference": {"reference": f"RelatedPerson/{partner['id']}"}}],
        "securityLabel": [{"system": "https://pgo-work.nl/fhir/CodeSystem/data-category",
                           "code": "work-context"}]}], f"{tag}-consent", headers=own)
    assert anon.get(f"/fhir/{record.ref('work-context')}", headers=headers).status_code == 200
    assert anon.get(f"/fhir/{record.ref('medical')}", headers=headers).status_code == 404
    own_grant = consent_for(record.patient, [{"type": "permit", "actor": [{"role": {"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
        "reference": {"reference": f"RelatedPerson/{partner['id']}"}}]}], f"{tag}-consent")
    assert post(anon, "Consent", own_grant, headers).status_code == 403


def test_a_representative_logs_in_with_a_pgo_app_for_the_patient_they_represent(
        anon: TestClient, client: TestClient, settings: Settings, record: Record, other: Record) -> None:
    """The built-in authorization server launches a related person's PGO app for the patient
    their RelatedPerson belongs to; authority is checked on every request all the same."""
    own = patient_headers(settings, record.patient)["patient"]
    guardian = related_person(anon, own, record.patient, "GUARD")
    app_id = public_client(settings)
    username = account(settings, f"RelatedPerson/{guardian['id']}", "representative")
    code, verifier = login(anon, app_id, username, "launch/patient user/*.cruds fhirUser")
    tokens = exchange(anon, app_id, code, verifier).json()
    assert tokens["patient"] == record.patient
    headers = auth(tokens["access_token"])
    assert visible(anon, headers, record) == 6 and visible(anon, headers, other) == 0

    partner = related_person(anon, own, record.patient, "SPS")
    username = account(settings, f"RelatedPerson/{partner['id']}", "representative")
    code, verifier = login(anon, app_id, username, "launch/patient user/*.cruds fhirUser")
    tokens = exchange(anon, app_id, code, verifier).json()
    assert tokens["patient"] == record.patient  # the context, not the authority
    assert visible(anon, auth(tokens["access_token"]), record) == 0
