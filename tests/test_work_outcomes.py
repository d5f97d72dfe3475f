"""Work outcomes and follow-up (issue 11 items 3 and 5), over HTTP.

- the Work Ability Score: one question, scored into a band by $extract, repeated over time, and
  self-reported health (never for an employer);
- the vulnerable-group screening: the incurable-cancer answer is a medical resource of its own,
  the rest is shared with a labour expert who has consent; each group maps to suggested help;
- the ICF selection the seeds' complaints need, Dutch wording, BIG and AGB identifiers.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from service.config import PROJECT_ROOT, Settings

from .conformance_helpers import example, new_patient
from .consent_helpers import CATEGORIES, grant
from .consent_world import Actors, entries
from .helpers import FHIR_JSON, create
from .work_helpers import seed_demo

BASE = "https://pgo-work.nl/fhir"
PW = f"{BASE}/CodeSystem/pgo-work-observation"
EMPTY = {"resourceType": "Parameters"}


def extract(client: TestClient, qr: dict[str, Any]) -> list[dict[str, Any]]:
    stored = create(client, qr)
    resp = client.post(f"/fhir/QuestionnaireResponse/{stored['id']}/$extract", json=EMPTY,
                       headers=FHIR_JSON)
    assert resp.status_code == 200, resp.text
    found = client.get("/fhir/Observation", params={
        "derived-from": f"QuestionnaireResponse/{stored['id']}"}).json()
    return entries(found)


def was_response(tag: str, pid: str, score: int, authored: str) -> dict[str, Any]:
    qr = example("work-ability", "valid-seven.json", tag, pid)
    qr["item"][0]["answer"] = [{"valueInteger": score}]
    qr["authored"] = authored
    return qr


def labels(resource: dict[str, Any]) -> set[str]:
    return {s["code"] for s in resource["meta"].get("security", [])
            if s["system"] == f"{BASE}/CodeSystem/data-category"}


def test_the_work_ability_score_is_scored_and_repeated_over_time(
        client: TestClient, anon: TestClient, actors: Actors, tag: str) -> None:
    pid = new_patient(client, tag)
    bands = {}
    for score, authored in ((4, "2026-07-01T10:00:00+02:00"), (7, "2026-09-01T10:00:00+02:00"),
                            (10, "2026-11-02T10:00:00+01:00")):
        [obs] = extract(client, was_response(tag, pid, score, authored))
        assert obs["valueInteger"] == score
        [band] = obs["interpretation"][0]["coding"]
        bands[score] = band["code"]
        assert labels(obs) == {"self-reported-health"}
    # The bands of CodeSystem work-ability-category: 0-5, 6-7, 8-9, 10.
    assert bands == {4: "poor", 7: "moderate", 10: "excellent"}
    series = client.get("/fhir/Observation", params={
        "patient": pid, "code": f"{PW}|work-ability-score", "_sort": "date"}).json()
    assert [e["resource"]["valueInteger"] for e in series["entry"]] == [4, 7, 10]
    # A wrong band is refused: the interpretation must be the band the score falls in.
    wrong = example("work-ability-score", "invalid-wrong-band.json", tag, pid)
    assert client.post("/fhir/Observation", json=wrong, headers=FHIR_JSON).status_code == 422
    # Self-reported: an employer never sees it, even with the broadest consent.
    grant(client, pid, [actors.permit("employer", labels=[*CATEGORIES, "employer-summary"]),
                        actors.permit("employer")], f"{tag}-consent")
    seen = anon.get("/fhir/Observation", params={"patient": pid}, headers=actors.headers["employer"])
    assert seen.status_code == 200 and entries(seen.json()) == []


def test_the_incurable_cancer_answer_is_medical_and_the_rest_is_for_a_labour_expert(
        client: TestClient, anon: TestClient, actors: Actors, tag: str) -> None:
    pid = new_patient(client, tag)
    observations = extract(client, example("vulnerable-groups", "valid-complete.json", tag, pid))
    by_code = {o["code"]["coding"][0]["code"]: o for o in observations}
    screening, incurable = by_code["vulnerable-group-screening"], by_code["incurable-cancer-screening"]
    assert incurable["valueBoolean"] is True and labels(incurable) == {"medical"}
    assert labels(screening) == {"work-context", "absence-benefits"}
    groups = {c["code"]["coding"][0]["code"] for c in screening["component"]}
    assert "incurable-cancer" not in groups and "sole-earner" in groups

    def visible(role: str) -> set[str]:
        found = anon.get("/fhir/Observation", params={"patient": pid}, headers=actors.headers[role])
        assert found.status_code == 200, found.text
        return {o["code"]["coding"][0]["code"] for o in entries(found.json())}

    grant(client, pid, actors.permits(("labour-expert", "employer")), f"{tag}-broad")
    assert visible("labour-expert") == {"vulnerable-group-screening"}
    assert visible("employer") == set()
    grant(client, pid, [actors.permit("labour-expert", labels=list(CATEGORIES)),
                        actors.permit("employer", labels=list(CATEGORIES))], f"{tag}-explicit")
    assert visible("labour-expert") == {"vulnerable-group-screening", "incurable-cancer-screening"}
    assert visible("employer") == set()


def test_every_vulnerable_group_maps_to_help_with_a_source(client: TestClient) -> None:
    directory = orjson.loads((PROJECT_ROOT / "profiles/rules/help-directory.json").read_bytes())
    groups = client.get("/fhir/ValueSet/$expand",
                        params={"url": f"{BASE}/ValueSet/vulnerable-group"}).json()
    codes = {c["code"] for c in groups["expansion"]["contains"]}
    assert {"incurable-cancer", "flex-worker", "young-adult"} <= codes
    assert set(directory["byGroup"]) == codes
    for group, entry in directory["byGroup"].items():
        assert entry["help"] and entry["why"], group
        for help_id in entry["help"]:
            assert directory["directory"][help_id]["source"], help_id
    roles = {e.get("role") for e in directory["directory"].values()} - {None}
    for role in roles:  # every professional named there is a role the server knows
        found = client.get("/fhir/CodeSystem/$lookup", params={
            "system": f"{BASE}/CodeSystem/professional-role", "code": role})
        assert found.status_code == 200, role
    assert "aya-care" in directory["byGroup"]["young-adult"]["help"]


@pytest.mark.parametrize(("code", "dutch"), [("case-manager", "Casemanager"),
                                             ("line-manager", "Leidinggevende"),
                                             ("occupational-therapist", "Ergotherapeut"),
                                             ("medical-social-worker", "Medisch maatschappelijk werker")])
def test_the_new_professional_roles(client: TestClient, code: str, dutch: str) -> None:
    out = client.get("/fhir/ValueSet/$expand", params={
        "url": f"{BASE}/ValueSet/professional-role", "displayLanguage": "nl"}).json()
    assert {c["code"]: c["display"] for c in out["expansion"]["contains"]}[code] == dutch


def test_icf_selection_and_dutch_wording(client: TestClient) -> None:
    out = client.get("/fhir/ValueSet/$expand", params={
        "url": f"{BASE}/ValueSet/icf-cancer-work", "displayLanguage": "nl"}).json()
    dutch = {c["code"]: c["display"] for c in out["expansion"]["contains"]}
    assert dutch["b130"] == "Energie en driften"
    assert {"e325", "e425", "e430", "d440", "d445", "b265", "b270", "b310", "b320", "d760",
            "d920"} <= set(dutch)
    english = client.get("/fhir/ValueSet/$expand", params={
        "url": f"{BASE}/ValueSet/icf-cancer-work"}).json()
    titles = {c["code"]: c["display"] for c in english["expansion"]["contains"]}
    assert titles["e430"] == "Individual attitudes of people in positions of authority"
    assert titles["d445"] == "Hand and arm use"
    qualifier = client.get("/fhir/ValueSet/icf-qualifier/$expand", params={
        "includeDesignations": "true"}).json()
    moderate = next(c for c in qualifier["expansion"]["contains"] if c["code"] == "2")
    assert any(d["value"] == "Matig ondersteunend (+2)" and d["use"]["code"] == "facilitator"
               for d in moderate["designation"])
    intake = client.get("/fhir/Questionnaire/work-situation-intake").json()
    texts = orjson.dumps(intake).decode()
    assert "Wat is uw werksituatie?" in texts and "ziekgemeld" in texts and "ziek gemeld" not in texts
    signals = orjson.dumps(client.get("/fhir/Questionnaire/late-effects-signals").json()).decode()
    assert "Meldt u zich vaak (kort) ziek?" in signals
    bar = client.get("/fhir/Questionnaire/bar").json()
    assert "e310 (immediate family) is an ICF environmental factor" in bar["purpose"]
    assert "Brach M" in client.get("/fhir/ValueSet/icf-cancer-work").json()["description"]


def test_demo_practitioners_carry_big_and_agb(settings: Settings, client: TestClient) -> None:
    seed_demo(settings)
    big = client.get("/fhir/Practitioner", params={
        "identifier": "http://fhir.nl/fhir/NamingSystem/big|19000000606"}).json()
    assert [e["resource"]["id"] for e in big["entry"]] == ["prac-bedrijfsarts"]
    agb = client.get("/fhir/Practitioner", params={
        "identifier": "http://fhir.nl/fhir/NamingSystem/agb-z|"}).json()
    assert {"prac-oncoloog", "prac-oncofysio", "prac-ergotherapeut"} <= {
        e["resource"]["id"] for e in agb["entry"]}
    anna = client.get("/fhir/Observation", params={
        "patient": "pat-anna", "code": f"{PW}|work-ability-score", "_sort": "date"}).json()
    assert [e["resource"]["valueInteger"] for e in anna["entry"]] == [4, 6, 7]
