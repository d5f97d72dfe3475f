"""$validate at type and instance level, with and without `profile`."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from .conformance_helpers import PROFILE, example, expressions, new_patient
from .helpers import FHIR_JSON, TAG_SYSTEM, contract_hours, create


def _validate(client: TestClient, url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    resp = client.post(url, json=body, headers=FHIR_JSON) if body is not None else client.get(url)
    assert resp.status_code == 200, resp.text
    outcome: dict[str, Any] = resp.json()
    assert outcome["resourceType"] == "OperationOutcome"
    return outcome


def _ok(outcome: dict[str, Any]) -> bool:
    return [(i["severity"], i["code"]) for i in outcome["issue"]] == [("information", "informational")]


def test_type_level_valid_and_invalid(client: TestClient, tag: str) -> None:
    pid = new_patient(client, tag)
    valid = example("wia-benefit", "valid-partial-current.json", tag, pid)
    assert _ok(_validate(client, "/fhir/Observation/$validate", valid))
    invalid = example("wia-benefit", "invalid-value-not-in-valueset.json", tag, pid)
    outcome = _validate(client, "/fhir/Observation/$validate", invalid)
    assert "Observation.valueCodeableConcept" in expressions(outcome)
    assert all(i["severity"] == "error" for i in outcome["issue"])
    found = client.get("/fhir/Observation", params={"_tag": f"{TAG_SYSTEM}|{tag}"}).json()
    assert found["total"] == 0  # $validate stores nothing


def test_parameters_body_and_structure_errors(client: TestClient, tag: str) -> None:
    pid = new_patient(client, tag)
    invalid = example("contract-hours", "invalid-wrong-unit.json", tag, pid)
    params = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": invalid}]}
    assert expressions(_validate(client, "/fhir/Observation/$validate", params)) == [
        "Observation.valueQuantity.code"]
    broken = {**invalid, "status": 42, "unknownElement": True}
    assert "Observation.unknownElement" in expressions(
        _validate(client, "/fhir/Observation/$validate", broken))


def test_profile_parameter(client: TestClient, tag: str) -> None:
    """A plain Observation passes on its own, but not against a profile it does not meet."""
    pid = new_patient(client, tag)
    plain = {"resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{pid}"},
             "code": {"text": "Werksituatie"}, "effectiveDateTime": "2026-01-05"}
    assert _ok(_validate(client, "/fhir/Observation/$validate", plain))
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": plain},
        {"name": "profile", "valueUri": f"{PROFILE}/work-status"}]}
    found = expressions(_validate(client, "/fhir/Observation/$validate", params))
    assert "Observation.code" in found and "Observation.valueCodeableConcept" in found
    stored = create(client, {**plain, "meta": {"tag": [{"system": TAG_SYSTEM, "code": tag}]}})
    url = f"/fhir/Observation/{stored['id']}/$validate"
    assert _ok(_validate(client, url))
    found = expressions(_validate(client, f"{url}?profile={PROFILE}/work-status"))
    assert "Observation.code" in found


def test_unknown_profile_parameter_is_400(client: TestClient, tag: str) -> None:
    stored = create(client, contract_hours(tag, new_patient(client, tag), 20, "2025-02-01"))
    resp = client.get(f"/fhir/Observation/{stored['id']}/$validate",
                      params={"profile": f"{PROFILE}/nothing-like-this"})
    assert resp.status_code == 400
    assert expressions(resp.json()) == ["profile"]


def test_instance_level_validates_the_stored_version(client: TestClient, tag: str) -> None:
    stored = create(client, contract_hours(tag, new_patient(client, tag), 20, "2025-02-01"))
    assert _ok(_validate(client, f"/fhir/Observation/{stored['id']}/$validate",
                         {"resourceType": "Parameters"}))
    assert client.get("/fhir/Observation/does-not-exist/$validate").status_code == 404


def test_wrong_resource_type_in_body_is_400(client: TestClient, tag: str) -> None:
    resp = client.post("/fhir/Goal/$validate", json=contract_hours(tag, "x", 1, "2025-01-01"),
                       headers=FHIR_JSON)
    assert resp.status_code == 400


def test_extensible_miss_is_a_warning_not_an_error(client: TestClient, tag: str) -> None:
    item = example("load-capacity-item", "valid-d450-other-icf-list.json", tag, new_patient(client, tag))
    outcome = _validate(client, "/fhir/Observation/$validate", item)
    assert [(i["severity"], i["expression"]) for i in outcome["issue"]] == [
        ("warning", ["Observation.code"])]


def test_questionnaire_response_is_validated_against_its_questionnaire(client: TestClient,
                                                                        tag: str) -> None:
    pid = new_patient(client, tag)
    bad = example("bar", "invalid-option-not-allowed.json", tag, pid)
    outcome = _validate(client, "/fhir/QuestionnaireResponse/$validate", bad)
    assert expressions(outcome) == ["QuestionnaireResponse.item[3].item[0].answer[0]"]
    good = example("bar", "valid-minimal.json", tag, pid)
    assert _ok(_validate(client, "/fhir/QuestionnaireResponse/$validate", good))
