"""Which record a resource belongs to decides who may see it. Besides the Patient compartment
definition: patient data of a type the definition does not list joins the record of every
Patient it references, and a Provenance joins the records (and carries the labels) of what it
is about, in whichever order a transaction writes them."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.config import Settings

from .auth_helpers import auth, token
from .consent_helpers import grant
from .consent_world import Actors, Record, entries, patient_headers, post
from .helpers import FHIR_JSON, TAG_SYSTEM


@pytest.fixture
def own(settings: Settings, record: Record) -> dict[str, dict[str, str]]:
    return patient_headers(settings, record.patient)


def status(anon: TestClient, headers: dict[str, str], path: str) -> int:
    return int(anon.get(f"/fhir/{path}", headers=headers).status_code)


def other_patient(settings: Settings) -> dict[str, str]:
    return auth(token(settings, "user/*.rs", fhir_user="Patient/someone-else", role="patient"))


UNLISTED = {
    "Procedure": {"status": "completed", "code": {"text": "Lumpectomy"}, "subject": "{patient}"},
    "Communication": {"status": "completed", "subject": "{patient}",
                      "payload": [{"contentString": "Uitslag besproken"}]},
    "Appointment": {"status": "booked", "participant": [{"actor": "{patient}", "status": "accepted"}]},
    "Coverage": {"status": "active", "beneficiary": "{patient}", "payor": ["{patient}"]},
    "RelatedPerson": {"active": True, "patient": "{patient}", "name": [{"family": "Partner"}]},
}
"""Patient data of types the compartment definition does not list (and so, before, no record)."""


def _unlisted(rtype: str, patient: str, tag: str) -> dict[str, Any]:
    def fill(value: Any) -> Any:
        if value == "{patient}":
            return {"reference": f"Patient/{patient}"}
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value
    return {"resourceType": rtype, **fill(UNLISTED[rtype]),
            "meta": {"tag": [{"system": TAG_SYSTEM, "code": tag}]}}


@pytest.mark.parametrize("rtype", sorted(UNLISTED))
def test_patient_data_of_any_type_joins_the_record_it_references(
        anon: TestClient, client: TestClient, settings: Settings, actors: Actors, record: Record,
        own: dict[str, dict[str, str]], tag: str, rtype: str) -> None:
    """A type the compartment definition does not list is still the record of the patient it
    references: the patient and whoever the patient's consent covers see it, nobody else; and
    what no rule recognises is labelled medical, so a grant of work data does not reach it."""
    grant(client, record.patient, [actors.permit("oncologist"),
                                   actors.permit("employer", labels=["work-context"])],
          f"{tag}-consent")
    created = post(client, rtype, _unlisted(rtype, record.patient, tag), {})
    assert created.status_code == 201, created.text
    ref = f"{rtype}/{created.json()['id']}"
    assert [s["code"] for s in created.json()["meta"]["security"]] == ["medical"]
    for headers, sees in ((own["patient"], True), (actors.headers["oncologist"], True),
                          (actors.headers["employer"], False), (actors.headers["ehr-system"], False),
                          (other_patient(settings), False)):
        assert status(anon, headers, ref) == (200 if sees else 404), headers
        found = anon.get(f"/fhir/{rtype}", params={"_tag": f"{TAG_SYSTEM}|{tag}"}, headers=headers)
        assert found.status_code == 200 and found.json()["total"] == (1 if sees else 0)
    everything = anon.get(f"/fhir/Patient/{record.patient}/$everything", headers=own["patient"])
    assert ref in {f"{e['resource']['resourceType']}/{e['resource']['id']}"
                   for e in everything.json()["entry"]}


def test_data_about_no_patient_stays_open_to_every_caller(
        anon: TestClient, client: TestClient, actors: Actors, tag: str) -> None:
    """What names no patient (a medication as a product) is nobody's record: not hidden."""
    medication = post(client, "Medication", {"resourceType": "Medication", "code": {"text": "Tamoxifen"},
                                             "meta": {"tag": [{"system": TAG_SYSTEM, "code": tag}]}}, {})
    assert medication.status_code == 201, medication.text
    assert "security" not in medication.json()["meta"]
    assert status(anon, actors.headers["employer"], f"Medication/{medication.json()['id']}") == 200


def _provenance(target: str, tag: str) -> dict[str, Any]:
    return {"resourceType": "Provenance", "target": [{"reference": target}],
            "recorded": "2026-11-30T10:00:00+01:00",
            "agent": [{"who": {"display": "Import from the hospital EHR"}}],
            "meta": {"tag": [{"system": TAG_SYSTEM, "code": tag}]}}


def _about(anon: TestClient, headers: dict[str, str], target: str) -> list[dict[str, Any]]:
    resp = anon.get("/fhir/Provenance", params={"target": target}, headers=headers)
    assert resp.status_code == 200, resp.text
    return entries(resp.json())


@pytest.mark.parametrize("provenance_first", [True, False], ids=["provenance-first", "target-first"])
def test_a_provenance_belongs_to_the_record_it_is_about(
        anon: TestClient, client: TestClient, settings: Settings, actors: Actors, record: Record,
        own: dict[str, dict[str, str]], tag: str, provenance_first: bool) -> None:
    """Written in one transaction with the diagnosis it is about, before or after it: the
    patient sees it, people without the patient's consent do not, and it is as protected as
    the diagnosis (medical: never the employer's, whatever the consent says)."""
    grant(client, record.patient, [actors.permit("employer")], f"{tag}-consent")
    diagnosis = {"fullUrl": "urn:uuid:4f3c1a8e-2b7d-4c61-9a0e-5d2f8b7c6a10",
                 "resource": {**{k: v for k, v in record.bodies["medical"].items()
                                 if k not in ("id", "meta")},
                              "meta": {"tag": [{"system": TAG_SYSTEM, "code": tag}]}},
                 "request": {"method": "POST", "url": "Condition"}}
    provenance = {"resource": _provenance(diagnosis["fullUrl"], tag),
                  "request": {"method": "POST", "url": "Provenance"}}
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [provenance, diagnosis] if provenance_first else [diagnosis, provenance]}
    done = anon.post("/fhir", json=bundle, headers={**FHIR_JSON, **own["patient"]})
    assert done.status_code == 200, done.text
    locations = [e["response"]["location"].split("/_history")[0] for e in done.json()["entry"]]
    condition = next(loc for loc in locations if loc.startswith("Condition/"))
    stored = next(loc for loc in locations if loc.startswith("Provenance/"))

    [seen] = _about(anon, own["patient"], condition)
    assert f"Provenance/{seen['id']}" == stored
    everything = anon.get(f"/fhir/Patient/{record.patient}/$everything", headers=own["patient"]).json()
    assert stored in {f"{r['resourceType']}/{r['id']}" for r in entries(everything)}
    for headers in (actors.headers["employer"], actors.headers["oncologist"], other_patient(settings)):
        assert _about(anon, headers, condition) == []
        assert status(anon, headers, stored) == 404
    assert status(anon, actors.headers["employer"], record.ref("work-context")) == 200
    if not provenance_first:
        # Written after its target, it carries the target's labels in its own meta as well.
        assert {"medical"} <= {s["code"] for s in seen["meta"].get("security", [])}


def test_a_provenance_written_before_its_target_joins_the_record_when_the_target_does(
        anon: TestClient, client: TestClient, settings: Settings, actors: Actors, record: Record,
        own: dict[str, dict[str, str]], tag: str) -> None:
    """An import writes the Provenance of a diagnosis first (the id is the hospital's), the
    diagnosis arrives later: from then on the Provenance is that record's, with its labels."""
    rid = f"hospital-{tag}"
    early = post(client, "Provenance", _provenance(f"Condition/{rid}", tag), {})
    assert early.status_code == 201, early.text
    stored = f"Provenance/{early.json()['id']}"
    assert status(anon, actors.headers["employer"], stored) == 200  # about nothing known yet

    grant(client, record.patient, [actors.permit("employer")], f"{tag}-consent")
    diagnosis = {**{k: v for k, v in record.bodies["medical"].items() if k != "meta"}, "id": rid,
                 "meta": {"tag": [{"system": TAG_SYSTEM, "code": tag}]}}
    # The import (the operator's client: only it chooses ids) brings the diagnosis.
    arrived = client.put(f"/fhir/Condition/{rid}", json=diagnosis, headers=FHIR_JSON)
    assert arrived.status_code == 201, arrived.text

    assert [p["id"] for p in _about(anon, own["patient"], f"Condition/{rid}")] == [early.json()["id"]]
    for headers in (actors.headers["employer"], actors.headers["oncologist"], other_patient(settings)):
        assert status(anon, headers, stored) == 404
