"""QuestionnaireResponse/$extract: each questionnaire's sample response becomes profile-valid
Observations with a Provenance, in one transaction, and a second $extract changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from .conformance_helpers import PROFILE, example, expressions, new_patient, post
from .helpers import FHIR_JSON, create

EMPTY = {"resourceType": "Parameters"}
EXPECTED = {
    "work-situation-intake": {"work-situation": 1, "contract-hours": 1, "worked-hours": 1,
                              "work-status": 1, "sick-leave-episode": 1, "wia-benefit": 1},
    "late-effects-signals": {"late-effect-report": 11},
    "load-capacity": {"load-capacity-profile": 1, "load-capacity-item": 8},
    "bar": {"load-capacity-profile": 1, "load-capacity-item": 6},
    "vulnerable-groups": {"vulnerable-group-screening": 1, "incurable-cancer-screening": 1},
    "work-ability": {"work-ability-score": 1},
}


def _extract(client: TestClient, qr_id: str) -> dict[str, Any]:
    resp = client.post(f"/fhir/QuestionnaireResponse/{qr_id}/$extract", json=EMPTY, headers=FHIR_JSON)
    assert resp.status_code == 200, resp.text
    bundle: dict[str, Any] = resp.json()
    assert bundle["type"] == "transaction-response"
    return bundle


def _derived(client: TestClient, qr_id: str) -> list[dict[str, Any]]:
    bundle = client.get("/fhir/Observation", params={"derived-from": f"QuestionnaireResponse/{qr_id}",
                                                     "_count": "100"}).json()
    return [e["resource"] for e in bundle.get("entry", [])]


def _provenance(client: TestClient, qr_id: str) -> list[dict[str, Any]]:
    bundle = client.get("/fhir/Provenance", params={"entity": f"QuestionnaireResponse/{qr_id}"}).json()
    return [e["resource"] for e in bundle.get("entry", [])]


def _profiles(observations: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for o in observations:
        name = o["meta"]["profile"][0].removeprefix(f"{PROFILE}/")
        out[name] = out.get(name, 0) + 1
    return out


@pytest.mark.parametrize("form", sorted(EXPECTED))
def test_sample_response_extracts_once(client: TestClient, tag: str, form: str) -> None:
    pid = new_patient(client, tag)
    qr = create(client, example(form, "response-sample.json", tag, pid))
    bundle = _extract(client, qr["id"])
    statuses = [e["response"]["status"] for e in bundle["entry"]]
    assert set(statuses) == {"201 Created"}
    observations = _derived(client, qr["id"])
    assert _profiles(observations) == EXPECTED[form]
    for obs in observations:
        assert obs["subject"] == {"reference": f"Patient/{pid}"}
        assert obs["derivedFrom"] == [{"reference": f"QuestionnaireResponse/{qr['id']}"}]
        assert obs["meta"]["security"], "extracted data is labelled like any other"
        check = client.get(f"/fhir/Observation/{obs['id']}/$validate").json()
        assert [i["severity"] for i in check["issue"]] == ["information"], check
    provenance = _provenance(client, qr["id"])
    assert len(provenance) == 1
    targets = {t["reference"] for t in provenance[0]["target"]}
    assert targets == {f"Observation/{o['id']}" for o in observations}
    assert provenance[0]["entity"][0]["what"]["reference"] == \
        f"QuestionnaireResponse/{qr['id']}/_history/1"
    assert provenance[0]["agent"][0]["who"] == qr["author"]

    again = _extract(client, qr["id"])
    assert {e["response"]["status"] for e in again["entry"]} == {"200 OK"}
    assert sorted(o["id"] for o in _derived(client, qr["id"])) == sorted(o["id"] for o in observations)
    assert len(_provenance(client, qr["id"])) == 1


def test_panel_lists_its_items_as_members(client: TestClient, tag: str) -> None:
    qr = create(client, example("load-capacity", "response-sample.json", tag, new_patient(client, tag)))
    _extract(client, qr["id"])
    observations = _derived(client, qr["id"])
    panel = next(o for o in observations if o["meta"]["profile"][0].endswith("/load-capacity-profile"))
    items = {f"Observation/{o['id']}" for o in observations if o is not panel}
    assert {m["reference"] for m in panel["hasMember"]} == items
    assert panel["performer"] == [qr["author"]]


def test_extraction_that_breaks_a_profile_stores_nothing(client: TestClient, tag: str) -> None:
    """A load-capacity profile must be performed by a professional (lcp-2): a response authored
    by the patient is valid as a response, but its panel would not conform."""
    pid = new_patient(client, tag)
    sample = example("load-capacity", "response-sample.json", tag, pid)
    qr = create(client, {**sample, "author": {"reference": f"Patient/{pid}"}})
    resp = client.post(f"/fhir/QuestionnaireResponse/{qr['id']}/$extract", json=EMPTY, headers=FHIR_JSON)
    assert resp.status_code == 422, resp.text
    assert "Observation" in expressions(resp.json())
    assert _derived(client, qr["id"]) == []
    assert _provenance(client, qr["id"]) == []


def test_only_completed_responses_are_extracted(client: TestClient, tag: str) -> None:
    sample = example("vulnerable-groups", "response-sample.json", tag, new_patient(client, tag))
    qr = create(client, {**sample, "status": "in-progress"})
    resp = client.post(f"/fhir/QuestionnaireResponse/{qr['id']}/$extract", json=EMPTY, headers=FHIR_JSON)
    assert resp.status_code == 422
    assert expressions(resp.json()) == ["QuestionnaireResponse.status"]
    missing = client.post("/fhir/QuestionnaireResponse/nope/$extract", json=EMPTY, headers=FHIR_JSON)
    assert missing.status_code == 404


def test_type_level_stores_the_response_and_stays_idempotent(client: TestClient, tag: str) -> None:
    sample = example("work-situation-intake", "valid-minimal.json", tag, new_patient(client, tag))
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "questionnaire-response", "resource": sample}]}
    resp = client.post("/fhir/QuestionnaireResponse/$extract", json=params, headers=FHIR_JSON)
    assert resp.status_code == 200, resp.text
    first = resp.json()["entry"]
    assert first[0]["resource"]["resourceType"] == "QuestionnaireResponse"
    assert [e["response"]["status"] for e in first] == ["201 Created"] * 4  # response, 2 obs, prov
    stored = first[0]["resource"]
    assert _profiles(_derived(client, stored["id"])) == {"work-situation": 1, "work-status": 1}
    resp = client.post("/fhir/QuestionnaireResponse/$extract", json=stored, headers=FHIR_JSON)
    assert [e["response"]["status"] for e in resp.json()["entry"]] == ["200 OK"] * 3
    assert client.get(f"/fhir/QuestionnaireResponse/{stored['id']}").json()["meta"]["versionId"] == "1"


def test_type_level_refuses_an_invalid_response(client: TestClient, tag: str) -> None:
    bad = example("work-situation-intake", "invalid-wrong-unit.json", tag, new_patient(client, tag))
    resp = post(client, bad)
    assert resp.status_code == 422
    resp = client.post("/fhir/QuestionnaireResponse/$extract", json=bad, headers=FHIR_JSON)
    assert resp.status_code == 422
    assert "QuestionnaireResponse.item[1].item[0].answer[0]" in expressions(resp.json())
