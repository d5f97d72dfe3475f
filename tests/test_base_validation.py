"""The base specification's primitive types and required bindings hold on every write, not only
for our profiles (issue 15): what a lax parser would coerce or accept is refused with 422 and
the element's path, and `$validate` reports the same."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from .helpers import FHIR_JSON
from .rest_examples import assert_outcome, count, example, post, put

CASES = [
    ("Patient", {"active": "yes"}, "Patient.active"),
    ("Patient", {"active": 1}, "Patient.active"),
    ("Patient", {"gender": "nonsense"}, "Patient.gender"),
    ("Patient", {"multipleBirthInteger": "3"}, "Patient.multipleBirthInteger"),
    ("Patient", {"telecom": [{"system": "pigeon", "value": "x"}]}, "Patient.telecom[0].system"),
    ("Patient", {"name": [{"use": "formal", "family": "X"}]}, "Patient.name[0].use"),
    ("Patient", {"extension": [{"url": "http://example.org/x", "valueBoolean": "no"}]},
     "Patient.extension[0].valueBoolean"),
    ("Patient", {"contained": [{"resourceType": "Patient", "gender": "x"}]},
     "Patient.contained[0].gender"),
    ("Observation", {"status": "bogus"}, "Observation.status"),
    ("Observation", {"valueQuantity": {"value": "70"}}, "Observation.valueQuantity.value"),
    ("Observation", {"valueQuantity": {"value": 70, "comparator": "about"}},
     "Observation.valueQuantity.comparator"),
]


def _changed(resource: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    return {**resource, **change}


@pytest.mark.parametrize(("rtype", "change", "expression"), CASES)
def test_invalid_base_content_is_422(client: TestClient, tag: str, rtype: str,
                                     change: dict[str, Any], expression: str) -> None:
    assert_outcome(post(client, _changed(example(rtype, tag), change)), 422, expression)
    stored = post(client, example(rtype, tag)).json()
    assert_outcome(put(client, _changed(stored, change)), 422, expression)
    assert count(client, rtype, tag) == 1


@pytest.mark.parametrize(("rtype", "change", "expression"), CASES[:3] + CASES[8:9])
def test_validate_reports_invalid_base_content(client: TestClient, tag: str, rtype: str,
                                               change: dict[str, Any], expression: str) -> None:
    resp = client.post(f"/fhir/{rtype}/$validate", json=_changed(example(rtype, tag), change),
                       headers=FHIR_JSON)
    outcome = resp.json()
    assert outcome["resourceType"] == "OperationOutcome", outcome
    errors = [i for i in outcome["issue"] if i["severity"] in ("error", "fatal")]
    assert any(expression in i.get("expression", []) for i in errors), outcome


def test_every_valid_code_and_number_form_is_accepted(client: TestClient, tag: str) -> None:
    for status in ("registered", "preliminary", "final", "amended", "corrected", "cancelled",
                   "entered-in-error", "unknown"):
        obs = _changed(example("Observation", tag), {"status": status})
        assert post(client, obs).status_code == 201, status
    for value in (70, 70.5, 0, -1.25e2):
        obs = _changed(example("Observation", tag),
                       {"valueQuantity": {"value": value, "comparator": ">=",
                                          "unit": "h", "system": "http://unitsofmeasure.org",
                                          "code": "h"}})
        assert post(client, obs).status_code == 201, value


def test_transaction_entries_are_checked(client: TestClient, tag: str) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": _changed(example("Patient", tag), {"gender": "nonsense"}),
         "request": {"method": "POST", "url": "Patient"}}]}
    resp = client.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert resp.status_code == 422, resp.text
    assert count(client, "Patient", tag) == 0
