"""Profile validation on create, update and in transactions, driven by the examples: every
valid example of every profile is accepted, every invalid one is refused with 422 and the
`expression` its .expect.json names."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from .conformance_helpers import (
    OBS,
    PROFILE,
    example,
    example_files,
    expected_expression,
    expressions,
    new_patient,
    post,
    profile_folders,
)
from .helpers import FHIR_JSON, TAG_SYSTEM, contract_hours, create

PROFILES = profile_folders()
VALID = example_files("valid", PROFILES)
INVALID = example_files("invalid", PROFILES)


def test_every_profile_has_valid_and_invalid_examples() -> None:
    assert len(PROFILES) >= 13
    for folder in PROFILES:
        assert any(f == folder for f, _ in VALID), folder
        assert any(f == folder for f, _ in INVALID), folder


@pytest.mark.parametrize(("folder", "name"), VALID, ids=[f"{f}/{n}" for f, n in VALID])
def test_valid_example_is_accepted(client: TestClient, tag: str, folder: str, name: str) -> None:
    resource = example(folder, name, tag, new_patient(client, tag))
    resp = post(client, resource)
    assert resp.status_code == 201, resp.text
    assert f"{PROFILE}/{folder}" in resp.json()["meta"]["profile"]


@pytest.mark.parametrize(("folder", "name"), INVALID, ids=[f"{f}/{n}" for f, n in INVALID])
def test_invalid_example_is_refused_with_its_expression(client: TestClient, tag: str, folder: str,
                                                        name: str) -> None:
    resource = example(folder, name, tag, new_patient(client, tag))
    resp = post(client, resource)
    assert resp.status_code == 422, resp.text
    found = expressions(resp.json())
    assert expected_expression(folder, name) in found
    assert all(issue.get("expression") for issue in resp.json()["issue"])
    hits = client.get(f"/fhir/{resource['resourceType']}",
                      params={"_tag": f"{TAG_SYSTEM}|{tag}"}).json()
    assert hits["total"] == 0


def test_update_is_validated_too(client: TestClient, tag: str) -> None:
    pid = new_patient(client, tag)
    stored = create(client, example("contract-hours", "valid-28h-since-2024.json", tag, pid))
    stored["valueQuantity"]["code"] = "h/d"
    stored["valueQuantity"]["unit"] = "h/d"
    resp = client.put(f"/fhir/Observation/{stored['id']}", json=stored, headers=FHIR_JSON)
    assert resp.status_code == 422, resp.text
    assert expressions(resp.json()) == ["Observation.valueQuantity.code"]
    assert client.get(f"/fhir/Observation/{stored['id']}").json()["meta"]["versionId"] == "1"


def test_a_defining_code_brings_the_profile_without_meta_profile(client: TestClient, tag: str) -> None:
    """An Observation coded contract-hours-per-week is contract hours, claimed or not."""
    pid = new_patient(client, tag)
    good = contract_hours(tag, pid, 32, "2024-01-01")
    assert "profile" not in good.get("meta", {})
    assert post(client, good).status_code == 201
    bad = contract_hours(tag, pid, 32, "2024-01-01", unit="h/d")
    resp = post(client, bad)
    assert resp.status_code == 422
    assert "Observation.valueQuantity.code" in expressions(resp.json())
    no_subject = {k: v for k, v in good.items() if k != "subject"}
    assert expressions(post(client, no_subject).json()) == ["Observation.subject"]


def test_foreign_codes_alone_do_not_force_our_profile(client: TestClient, tag: str) -> None:
    """A zib WorkSituation (SNOMED 364703007, free text only) is not our work-situation
    profile unless it claims it: only codes of our own CodeSystems define a profile."""
    pid = new_patient(client, tag)
    tags = [{"system": TAG_SYSTEM, "code": tag}]
    zib = {"resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{pid}"},
           "code": {"coding": [{"system": "http://snomed.info/sct", "code": "364703007"}]},
           "valueString": "Verpleegkundige, 28 uur", "meta": {"tag": tags}}
    assert post(client, zib).status_code == 201
    claimed = {**zib, "meta": {"tag": tags, "profile": [f"{PROFILE}/work-situation"]}}
    resp = post(client, claimed)
    assert resp.status_code == 422
    assert "Observation" in expressions(resp.json())  # ws-1: no occupation component


def test_unknown_profile_under_our_base_is_refused_foreign_one_ignored(client: TestClient,
                                                                       tag: str) -> None:
    pid = new_patient(client, tag)
    hours = contract_hours(tag, pid, 24, "2025-01-01")
    unknown = {**hours, "meta": {**hours["meta"], "profile": [f"{PROFILE}/no-such-profile"]}}
    resp = post(client, unknown)
    assert resp.status_code == 422
    assert expressions(resp.json()) == ["Observation.meta.profile[0]"]
    foreign = {**hours, "meta": {**hours["meta"], "profile": [
        "http://nictiz.nl/fhir/StructureDefinition/nl-core-ParticipationInSociety.WorkSituation"]}}
    assert post(client, foreign).status_code == 201


def test_profile_of_another_type_is_refused(client: TestClient, tag: str) -> None:
    pid = new_patient(client, tag)
    hours = contract_hours(tag, pid, 24, "2025-01-01")
    wrong = {**hours, "meta": {**hours["meta"], "profile": [f"{PROFILE}/work-goal"]}}
    resp = post(client, wrong)
    assert resp.status_code == 422
    assert expressions(resp.json()) == ["Observation.meta.profile[0]"]


def test_invalid_entry_fails_the_whole_transaction(client: TestClient, tag: str) -> None:
    pid = new_patient(client, tag)
    good = example("worked-hours", "valid-phase1-8h.json", tag, pid)
    bad = example("worked-hours", "invalid-wrong-unit.json", tag, pid)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": good, "request": {"method": "POST", "url": "Observation"}},
        {"resource": bad, "request": {"method": "POST", "url": "Observation"}}]}
    resp = client.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert resp.status_code == 422, resp.text
    assert "Bundle.entry[1].resource.valueQuantity.code" in expressions(resp.json())
    found = client.get("/fhir/Observation", params={"_tag": f"{TAG_SYSTEM}|{tag}"}).json()
    assert found["total"] == 0


def test_invalid_ucum_unit_is_refused(client: TestClient, tag: str) -> None:
    pid = new_patient(client, tag)
    episode = example("sick-leave-episode", "valid-partial-ongoing.json", tag, pid)
    for component in episode["component"]:
        if component["code"]["coding"][0]["code"] == "sick-leave-percentage":
            component["valueQuantity"]["code"] = "procent"
    resp = post(client, episode)
    assert resp.status_code == 422
    assert any(e.endswith(".valueQuantity.code") and e.startswith("Observation.component[")
               for e in expressions(resp.json()))


def test_our_extension_is_checked_where_it_occurs(client: TestClient, tag: str) -> None:
    pid = new_patient(client, tag)
    situation = example("work-situation", "valid-employee-nurse.json", tag, pid)
    employer = next(c for c in situation["component"] if c.get("extension"))
    index = situation["component"].index(employer)
    employer["extension"][0] = {"url": employer["extension"][0]["url"], "valueString": "Rivierland"}
    resp = post(client, situation)
    assert resp.status_code == 422
    assert f"Observation.component[{index}].extension[0].valueString" in expressions(resp.json())


def test_other_observations_are_not_profiled(client: TestClient, tag: str) -> None:
    pid = new_patient(client, tag)
    weight = {"resourceType": "Observation", "status": "final",
              "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
              "subject": {"reference": f"Patient/{pid}"},
              "valueQuantity": {"value": 70, "system": "http://unitsofmeasure.org", "code": "kg"},
              "meta": {"tag": [{"system": TAG_SYSTEM, "code": tag}]}}
    assert post(client, weight).status_code == 201
    panel_member = {**weight, "code": {"coding": [{"system": OBS, "code": "employer"}]},
                    "valueString": "Rivierland"}
    del panel_member["valueQuantity"]
    assert post(client, panel_member).status_code == 201
