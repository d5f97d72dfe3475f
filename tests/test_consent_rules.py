"""Consent over time and for writes: withdrawal counts from the next request, the rules no
consent overrides, professional writes need a write permit and leave a Provenance (who, on whose
behalf, under which Consent), conditional writes and bundles never act on hidden resources,
$extract follows consent, and only the patient writes their Consents."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.config import Settings

from .auth_helpers import auth, token
from .conformance_helpers import example
from .consent_helpers import CATEGORIES, DATA_CATEGORY, grant
from .consent_world import Actors, Record, entries, patient_headers, post
from .helpers import FHIR_JSON, TAG_SYSTEM

READ_WRITE = ("access", "correct")




@pytest.fixture
def own(settings: Settings, record: Record) -> dict[str, dict[str, str]]:
    return patient_headers(settings, record.patient)


def status(anon: TestClient, headers: dict[str, str], path: str) -> int:
    return int(anon.get(f"/fhir/{path}", headers=headers).status_code)


def total(anon: TestClient, headers: dict[str, str], record: Record) -> int:
    resp = anon.get("/fhir/", params={"_tag": record.tag_query, "_summary": "count"}, headers=headers)
    assert resp.status_code == 200, resp.text
    return int(resp.json()["total"])


def put(anon: TestClient, resource: dict[str, Any], headers: dict[str, str]) -> Any:
    return anon.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource,
                    headers={**FHIR_JSON, **headers})


def without_id(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in ("id", "meta")} | {
        "meta": {"tag": resource["meta"]["tag"]}}


def test_withdrawal_counts_from_the_next_request(anon: TestClient, actors: Actors, record: Record,
                                                 own: dict[str, dict[str, str]], tag: str) -> None:
    onc = actors.headers["oncologist"]
    assert status(anon, onc, record.ref("medical")) == 404
    consent = grant(anon, record.patient, [actors.permit("oncologist")], f"{tag}-consent",
                    headers=own["patient"])
    assert status(anon, onc, record.ref("medical")) == 200 and total(anon, onc, record) == 6

    withdrawn = put(anon, {**consent, "status": "inactive"}, own["patient"])
    assert withdrawn.status_code == 200, withdrawn.text
    assert status(anon, onc, record.ref("medical")) == 404 and total(anon, onc, record) == 0
    assert status(anon, onc, f"Patient/{record.patient}") == 404

    active = {**withdrawn.json(), "status": "active"}
    assert put(anon, active, own["pgo-app"]).status_code == 200
    assert status(anon, onc, record.ref("medical")) == 200

    # A provision whose period has not started yet grants nothing yet.
    later = {**active, "provision": {**active["provision"], "provision": [
        actors.permit("oncologist", period={"start": "2099-01-01"})]}}
    assert put(anon, later, own["patient"]).status_code == 200
    assert status(anon, onc, record.ref("medical")) == 404
    assert put(anon, active, own["patient"]).status_code == 200
    assert status(anon, onc, record.ref("medical")) == 200

    assert anon.delete(f"/fhir/Consent/{consent['id']}", headers=own["pgo-app"]).status_code == 204
    assert status(anon, onc, record.ref("medical")) == 404 and total(anon, onc, record) == 0


def test_an_employer_never_receives_medical_data(anon: TestClient, client: TestClient, settings: Settings,
                                                 actors: Actors, record: Record, tag: str) -> None:
    """Whatever the consent says (an explicit medical label, the type named, a broad grant),
    and however the employer's account is set up (the base role, or the professional role code
    employer-hr)."""
    grant(client, record.patient, [
        actors.permit("employer", labels=["medical"]),
        actors.permit("employer", types=["Condition"], labels=["medical"]),
        actors.permit("employer")], f"{tag}-consent")
    hr_role = actors.fhir_user["employer"]
    accounts = [actors.headers["employer"],
                auth(token(settings, "user/*.rs", fhir_user=hr_role, role="employer-hr")),
                auth(token(settings, "user/*.rs", fhir_user=hr_role, role="practitioner"))]
    for headers in accounts:
        assert status(anon, headers, record.ref("work-context")) == 200
        assert status(anon, headers, record.ref("medical")) == 404
        assert total(anon, headers, record) == 2  # issue 11: work context (and the Patient) only
        everything = anon.get(f"/fhir/Patient/{record.patient}/$everything", headers=headers).json()
        assert {r["resourceType"] for r in entries(everything)} == {"Patient", "Observation"}
    # Nor may an employer record medical data, even with a write permit.
    grant(client, record.patient, [actors.permit("employer", actions=READ_WRITE)], f"{tag}-consent")
    diagnosis = without_id(record.bodies["medical"])
    assert post(anon, "Condition", diagnosis, actors.headers["employer"]).status_code == 403
    assert post(anon, "Observation", without_id(record.bodies["work-context"]),
                actors.headers["employer"]).status_code == 201


def test_a_labour_expert_sees_medical_data_only_when_it_is_named(
        anon: TestClient, client: TestClient, actors: Actors, record: Record,
        own: dict[str, dict[str, str]], tag: str) -> None:
    expert = actors.headers["labour-expert"]
    consent = grant(anon, record.patient, [actors.permit("labour-expert")], f"{tag}-consent",
                    headers=own["patient"])
    assert status(anon, expert, record.ref("work-context")) == 200
    assert status(anon, expert, record.ref("medical")) == 404
    # Naming the resource type is not naming the category.
    typed = {**consent, "provision": {**consent["provision"], "provision": [
        actors.permit("labour-expert", types=["Condition", "Observation"])]}}
    assert put(anon, typed, own["patient"]).status_code == 200
    assert status(anon, expert, record.ref("medical")) == 404
    named = {**consent, "provision": {**consent["provision"], "provision": [
        actors.permit("labour-expert", labels=["medical"])]}}
    assert put(anon, named, own["patient"]).status_code == 200
    assert status(anon, expert, record.ref("medical")) == 200
    assert status(anon, expert, record.ref("work-context")) == 404
    assert total(anon, expert, record) == 2  # the diagnosis and whose record it is


def _provenance(anon: TestClient, headers: dict[str, str], target: str) -> list[dict[str, Any]]:
    resp = anon.get("/fhir/Provenance", params={"target": target}, headers=headers)
    assert resp.status_code == 200, resp.text
    return entries(resp.json())


def test_professional_writes_need_a_write_permit_and_leave_a_provenance(
        anon: TestClient, settings: Settings, actors: Actors, record: Record, own: dict[str, dict[str, str]],
        tag: str) -> None:
    physician = actors.headers["occupational-physician"]
    profile = without_id(record.bodies["functional-capacity"])
    consent = grant(anon, record.patient, [actors.permit(
        "occupational-physician", labels=["functional-capacity", "work-context"])],
        f"{tag}-consent", headers=own["patient"])
    refused = post(anon, "Observation", profile, physician)
    assert refused.status_code == 403, refused.text
    assert refused.json()["issue"][0]["code"] == "forbidden"

    writable = {**consent, "provision": {**consent["provision"], "provision": [actors.permit(
        "occupational-physician", labels=["functional-capacity", "work-context"], actions=READ_WRITE)]}}
    assert put(anon, writable, own["patient"]).status_code == 200
    created = post(anon, "Observation", profile, physician)
    assert created.status_code == 201, created.text
    written = created.json()
    # Only the categories the permit covers: a diagnosis or a sick-leave episode is refused.
    assert post(anon, "Condition", without_id(record.bodies["medical"]), physician).status_code == 403
    assert post(anon, "Observation", without_id(record.bodies["absence-benefits"]),
                physician).status_code == 403

    # Who wrote what, on whose behalf, under which Consent: the patient can see it.
    ref = f"Observation/{written['id']}"
    provenance = _provenance(anon, own["patient"], ref)
    assert len(provenance) == 1
    p = provenance[0]
    assert [t["reference"] for t in p["target"]] == [f"{ref}/_history/1"]
    agent = p["agent"][0]
    assert agent["who"] == {"reference": actors.fhir_user["occupational-physician"]}
    assert agent["onBehalfOf"] == {"reference": f"Patient/{record.patient}"}
    assert p["policy"] == [f"Consent/{consent['id']}"]
    assert p["activity"]["coding"][0]["code"] == "CREATE"
    assert p["recorded"]

    # An update and a delete are recorded too; the patient's own writes are not (they are theirs).
    updated = put(anon, {**written, "status": "amended"}, physician)
    assert updated.status_code == 200, updated.text
    assert anon.delete(f"/fhir/{ref}", headers=physician).status_code == 204
    activities = sorted(p["activity"]["coding"][0]["code"] for p in _provenance(anon, own["patient"], ref))
    assert activities == ["CREATE", "DELETE", "UPDATE"]
    mine = post(anon, "Observation", profile, own["patient"]).json()
    assert _provenance(anon, own["patient"], f"Observation/{mine['id']}") == []

    # Others see the provenance as far as they may see what was written: the insurance
    # physician given functional capacity does, the employer given work context does not, nor
    # does another patient.
    grant(anon, record.patient, [actors.permit("insurance-physician", labels=["functional-capacity"]),
                                 actors.permit("employer", labels=["work-context"])],
          f"{tag}-consent", headers=own["patient"])
    assert len(_provenance(anon, actors.headers["insurance-physician"], ref)) == 3
    assert _provenance(anon, actors.headers["employer"], ref) == []
    assert _provenance(anon, other_patient(settings), ref) == []


def other_patient(settings: Settings) -> dict[str, str]:
    """A token of some other patient."""
    return auth(token(settings, "user/*.rs", fhir_user="Patient/someone-else", role="patient"))


def test_no_one_but_the_patient_writes_their_consents(
        anon: TestClient, client: TestClient, actors: Actors, record: Record,
        own: dict[str, dict[str, str]], tag: str) -> None:
    consent = grant(anon, record.patient, [
        actors.permit("oncologist", actions=READ_WRITE),
        actors.permit("oncologist", types=["Consent"], actions=READ_WRITE)], f"{tag}-consent",
        headers=own["patient"])
    onc = actors.headers["oncologist"]
    assert status(anon, onc, f"Consent/{consent['id']}") == 200  # shared with them by name
    forged = {**consent, "provision": {**consent["provision"], "provision": [
        actors.permit("employer")]}}
    assert put(anon, forged, onc).status_code == 403
    new = {k: v for k, v in forged.items() if k not in ("id", "meta")}
    assert post(anon, "Consent", new, onc).status_code == 403
    assert anon.delete(f"/fhir/Consent/{consent['id']}", headers=onc).status_code == 403
    assert anon.delete("/fhir/Consent", params={"_id": consent["id"]}, headers=onc).status_code == 403
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": new, "request": {"method": "POST", "url": "Consent"}}]}
    assert post(anon, "", bundle, onc).status_code == 403
    # Nothing changed: the employer still sees nothing; the patient's consent is as it was.
    assert status(anon, actors.headers["employer"], record.ref("work-context")) == 404
    assert anon.get(f"/fhir/Consent/{consent['id']}", headers=own["patient"]).json()["meta"][
        "versionId"] == "1"


def test_conditional_writes_never_match_hidden_resources(
        anon: TestClient, client: TestClient, actors: Actors, record: Record, tag: str) -> None:
    grant(client, record.patient, [actors.permit(
        "occupational-physician", labels=["functional-capacity"], actions=READ_WRITE)], f"{tag}-consent")
    physician = actors.headers["occupational-physician"]
    diagnosis = record.ids["medical"]
    # Update by criteria: the hidden diagnosis is no match, so this is a create, which the
    # permit does not cover; the diagnosis is untouched.
    resp = anon.put("/fhir/Condition", params={"_id": diagnosis},
                    json=without_id(record.bodies["medical"]), headers={**FHIR_JSON, **physician})
    assert resp.status_code == 403, resp.text
    # Delete by criteria: nothing matches, nothing is deleted.
    assert anon.delete("/fhir/Condition", params={"_id": diagnosis}, headers=physician).status_code == 204
    assert anon.delete("/fhir/Observation", params={"_id": record.ids["absence-benefits"]},
                       headers=physician).status_code == 204
    for category in ("medical", "absence-benefits"):
        assert client.get(f"/fhir/{record.ref(category)}").json()["meta"]["versionId"] == "1"
    # Create unless it exists: a hidden match does not stop the create.
    profile = without_id(record.bodies["functional-capacity"])
    hidden = post(anon, "Observation", profile, physician,
                  {"If-None-Exist": f"_id={record.ids['absence-benefits']}"})
    assert hidden.status_code == 201, hidden.text
    seen = post(anon, "Observation", profile, physician,
                {"If-None-Exist": f"_id={record.ids['functional-capacity']}"})
    assert seen.status_code == 200 and seen.json()["id"] == record.ids["functional-capacity"]
    # A visible match the permit covers is updated.
    resp = anon.put("/fhir/Observation", params={"_id": record.ids["functional-capacity"]},
                    json={**profile, "status": "amended"}, headers={**FHIR_JSON, **physician})
    assert resp.status_code == 200 and resp.json()["meta"]["versionId"] == "2"


def test_bundle_entries_are_checked_one_by_one(anon: TestClient, client: TestClient, actors: Actors,
                                               record: Record, tag: str) -> None:
    grant(client, record.patient, [actors.permit(
        "occupational-physician", labels=["functional-capacity"], actions=READ_WRITE)], f"{tag}-consent")
    physician = actors.headers["occupational-physician"]
    profile, diagnosis = (without_id(record.bodies[c]) for c in ("functional-capacity", "medical"))
    entries_ = [{"resource": profile, "request": {"method": "POST", "url": "Observation"}},
                {"resource": diagnosis, "request": {"method": "POST", "url": "Condition"}},
                {"request": {"method": "GET", "url": record.ref("medical")}}]
    transaction = post(anon, "", {"resourceType": "Bundle", "type": "transaction",
                                  "entry": entries_[:2]}, physician)
    assert transaction.status_code == 403, transaction.text
    assert total(anon, client.headers, record) == 6  # nothing of it was written
    batch = post(anon, "", {"resourceType": "Bundle", "type": "batch", "entry": entries_}, physician)
    assert batch.status_code == 200, batch.text
    assert [e["response"]["status"].split()[0] for e in batch.json()["entry"]] == ["201", "403", "404"]
    assert total(anon, client.headers, record) == 7


def test_extract_follows_consent(anon: TestClient, client: TestClient, settings: Settings,
                                 actors: Actors, record: Record, own: dict[str, dict[str, str]],
                                 tag: str) -> None:
    response = example("load-capacity", "response-sample.json", tag, record.patient)
    stored = post(anon, "QuestionnaireResponse", response, own["patient"])
    assert stored.status_code == 201, stored.text
    qr = stored.json()
    assert {s["code"] for s in qr["meta"]["security"] if s["system"] == DATA_CATEGORY} == {
        "functional-capacity"}
    path = f"QuestionnaireResponse/{qr['id']}/$extract"
    consent = grant(anon, record.patient, [
        actors.permit("employer", labels=["work-context"]),
        actors.permit("occupational-physician", labels=["functional-capacity"])], f"{tag}-consent",
        headers=own["patient"])
    assert post(anon, path, {"resourceType": "Parameters"}, actors.headers["employer"]).status_code == 404
    physician = actors.headers["occupational-physician"]
    assert post(anon, path, {"resourceType": "Parameters"}, physician).status_code == 403

    writable = {**consent, "provision": {**consent["provision"], "provision": [
        actors.permit("employer", labels=["work-context"]),
        actors.permit("occupational-physician", labels=["functional-capacity"], actions=READ_WRITE)]}}
    assert put(anon, writable, own["patient"]).status_code == 200
    extracted = post(anon, path, {"resourceType": "Parameters"}, physician)
    assert extracted.status_code == 200, extracted.text
    observations = [e["resource"] for e in extracted.json()["entry"]
                    if e["resource"]["resourceType"] == "Observation"]
    assert observations

    # The extraction's own Provenance tells what was derived from the patient's response: not
    # something every authenticated caller may read.
    assert client.get("/fhir/Provenance", params={
        "entity": f"QuestionnaireResponse/{qr['id']}"}).json()["total"] == 1
    for headers in (actors.headers["employer"], actors.headers["oncologist"], other_patient(settings)):
        found = anon.get("/fhir/Provenance", params={"entity": f"QuestionnaireResponse/{qr['id']}"},
                         headers=headers)
        assert found.status_code == 200 and found.json()["total"] == 0
        first = observations[0]["id"]
        assert status(anon, headers, f"Observation/{first}") == 404
    # Each Observation the physician wrote into the record has its consent-backed Provenance,
    # beside the extraction's own (which derives it from the response); the patient sees both,
    # as part of their record.
    for obs in observations:
        found = _provenance(anon, own["patient"], f"Observation/{obs['id']}")
        [provenance] = [p for p in found if "policy" in p]
        assert provenance["policy"] == [f"Consent/{consent['id']}"]
        assert provenance["agent"][0]["who"] == {"reference": actors.fhir_user["occupational-physician"]}
        [derivation] = [p for p in found if "policy" not in p]
        assert any(e["what"]["reference"].startswith(f"QuestionnaireResponse/{qr['id']}")
                   for e in derivation["entity"])


@pytest.mark.parametrize("category", CATEGORIES)
def test_a_permit_for_one_category_shows_that_category_only(
        anon: TestClient, client: TestClient, actors: Actors, record: Record, tag: str,
        category: str) -> None:
    """The insurance physician (named through a CareTeam) given one category at a time."""
    grant(client, record.patient, [actors.permit("insurance-physician", labels=[category])],
          f"{tag}-consent")
    physician = actors.headers["insurance-physician"]
    visible = {c for c in CATEGORIES if status(anon, physician, record.ref(c)) == 200}
    assert visible == {category}
    found = anon.get("/fhir/", params={"_tag": f"{TAG_SYSTEM}|{tag}"}, headers=physician).json()
    assert {e["resource"]["resourceType"] for e in found["entry"]} >= {"Patient"}
    assert found["total"] == 2


def test_a_care_team_member_loses_access_when_the_team_is_ended(
        anon: TestClient, client: TestClient, actors: Actors, record: Record, tag: str) -> None:
    team_ref = actors.actor["insurance-physician"][0]
    team = client.get(f"/fhir/{team_ref}").json()
    grant(client, record.patient, [actors.permit("insurance-physician")], f"{tag}-consent")
    physician = actors.headers["insurance-physician"]
    assert status(anon, physician, record.ref("work-context")) == 200
    ended = client.put(f"/fhir/{team_ref}", json={**team, "status": "inactive"}, headers=FHIR_JSON)
    assert ended.status_code == 200, ended.text
    try:
        assert status(anon, physician, record.ref("work-context")) == 404
    finally:
        assert client.put(f"/fhir/{team_ref}", json={**ended.json(), "status": "active"},
                          headers=FHIR_JSON).status_code == 200


def test_a_new_diagnosis_by_the_patient_is_visible_to_whom_they_shared_it_with(
        anon: TestClient, client: TestClient, actors: Actors, record: Record,
        own: dict[str, dict[str, str]], tag: str) -> None:
    """The consent covers data the patient adds later, by category, not a list of resources."""
    grant(client, record.patient, [actors.permit("oncologist", labels=["medical"]),
                                   actors.permit("employer", labels=["medical", "work-context"])],
          f"{tag}-consent")
    added = post(anon, "Condition", without_id(record.bodies["medical"]), own["pgo-app"]).json()
    assert status(anon, actors.headers["oncologist"], f"Condition/{added['id']}") == 200
    assert status(anon, actors.headers["employer"], f"Condition/{added['id']}") == 404
