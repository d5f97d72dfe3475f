"""The conformance package is served by the API, and our SearchParameters (ICF category and
qualifier, employment type, work status, late effect, ...) find what they should."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from .conformance_helpers import BASE, LABELS, example, new_patient
from .helpers import TAG_SYSTEM, create

WORK = Path(__file__).parents[1] / "profiles" / "work"
SERVED = ["StructureDefinition", "ValueSet", "CodeSystem", "Questionnaire", "SearchParameter",
          "OperationDefinition"]


@pytest.mark.parametrize("rtype", SERVED)
def test_package_resources_are_served(client: TestClient, rtype: str) -> None:
    shipped = {orjson.loads(p.read_bytes())["url"] for p in WORK.glob(f"{rtype}-*.json")}
    assert shipped
    # the FHIR core defines no `url` search on OperationDefinition: list them all there
    scoped = {} if rtype == "OperationDefinition" else {"url:below": BASE}
    resp = client.get(f"/fhir/{rtype}", params={**scoped, "_count": "200", "_elements": "url"})
    assert resp.status_code == 200, resp.text
    served = {e["resource"].get("url") for e in resp.json().get("entry", [])}
    assert shipped <= served


def test_a_served_profile_is_the_shipped_one(client: TestClient) -> None:
    shipped = orjson.loads((WORK / "StructureDefinition-contract-hours.json").read_bytes())
    served = client.get("/fhir/StructureDefinition/contract-hours").json()
    assert {k: v for k, v in served.items() if k != "meta"} == shipped
    by_url = client.get("/fhir/StructureDefinition", params={"url": shipped["url"]}).json()
    assert [e["resource"]["id"] for e in by_url["entry"]] == ["contract-hours"]


def _search(client: TestClient, tag: str, **params: str) -> set[str]:
    query = {"_tag": f"{TAG_SYSTEM}|{tag}", **params}
    resp = client.get("/fhir/Observation", params=query)
    assert resp.status_code == 200, resp.text
    return {e["resource"]["id"] for e in resp.json().get("entry", [])}


def test_search_by_icf_category_qualifier_and_type(client: TestClient, tag: str) -> None:
    pid = new_patient(client, tag)
    d220 = create(client, example("load-capacity-item", "valid-d220-capacity.json", tag, pid))["id"]
    fatigue = create(client, example("load-capacity-item", "valid-b4552-fatiguability.json", tag, pid))["id"]
    e330 = create(client, example("load-capacity-item", "valid-e330-facilitator.json", tag, pid))["id"]
    assert _search(client, tag, **{"icf-category": "http://hl7.org/fhir/sid/icf|d220"}) == {d220}
    assert _search(client, tag, **{"icf-category": "b4552,e330"}) == {fatigue, e330}
    qualifiers = {i: client.get(f"/fhir/Observation/{i}").json()["valueCodeableConcept"]["coding"][0]["code"]
                  for i in (d220, fatigue, e330)}
    for oid, code in qualifiers.items():
        assert oid in _search(client, tag, **{"icf-qualifier": f"{BASE}/CodeSystem/icf-qualifier|{code}"})
    assert _search(client, tag, **{"icf-qualifier-type": "facilitator"}) == {e330}
    assert _search(client, tag, **{"icf-qualifier-type": "capacity"}) == {d220}


def test_search_by_employment_type_work_status_and_wia(client: TestClient, tag: str) -> None:
    pid = new_patient(client, tag)
    nurse = create(client, example("work-situation", "valid-employee-nurse.json", tag, pid))["id"]
    zzp = create(client, example("work-situation", "valid-self-employed-free-text.json", tag, pid))["id"]
    status = create(client, example("employment-status", "valid-permanent.json", tag, pid))["id"]
    partly = create(client, example("work-status", "valid-partially-working.json", tag, pid))["id"]
    working = create(client, example("work-status", "valid-working.json", tag, pid))["id"]
    wia = create(client, example("wia-benefit", "valid-partial-current.json", tag, pid))["id"]
    permanent = _search(client, tag, **{"employment-type": "employee-permanent"})
    assert nurse in permanent and zzp not in permanent and status in permanent
    assert _search(client, tag, **{"employment-type": f"{BASE}/CodeSystem/employment-type|zzp"}) == {zzp}
    assert _search(client, tag, **{"work-status": "partially-working"}) == {partly}
    assert _search(client, tag, **{"work-status": "working"}) == {working}
    assert _search(client, tag, **{"wia-status": "partial"}) == {wia}


def test_search_by_late_effect_vulnerable_group_and_percentage(client: TestClient, tag: str) -> None:
    pid = new_patient(client, tag)
    fatigue = create(client, example("late-effect-report", "valid-fatigue.json", tag, pid))["id"]
    balance = create(client, example("late-effect-report", "valid-work-private-balance-red-flag.json",
                                     tag, pid))["id"]
    screening = create(client, example("vulnerable-group-screening", "valid-screening.json", tag, pid))
    sick = create(client, example("sick-leave-episode", "valid-partial-ongoing.json", tag, pid))["id"]
    assert _search(client, tag, **{"late-effect": "fatigue"}) == {fatigue}
    assert _search(client, tag, **{"late-effect": "work-private-balance"}) == {balance}
    applies = {c["code"]["coding"][0]["code"] for c in screening["component"] if c["valueBoolean"]}
    absent = {c["code"]["coding"][0]["code"] for c in screening["component"] if not c["valueBoolean"]}
    assert applies and absent
    for code in applies:
        assert _search(client, tag, **{"vulnerable-group": code}) == {screening["id"]}
    for code in absent:
        assert _search(client, tag, **{"vulnerable-group": code}) == set()
    assert _search(client, tag, **{"sick-leave-percentage": "ge10"}) == {sick}
    assert _search(client, tag, **{"sick-leave-percentage": "gt100"}) == set()


def test_search_by_data_category(client: TestClient, tag: str) -> None:
    pid = new_patient(client, tag)
    hours = create(client, example("contract-hours", "valid-28h-since-2024.json", tag, pid))["id"]
    report = create(client, example("late-effect-report", "valid-fatigue.json", tag, pid))["id"]
    assert _search(client, tag, **{"data-category": "work-context"}) == {hours}
    assert _search(client, tag, **{"data-category": f"{LABELS}|self-reported-health"}) == {report}
    assert _search(client, tag, **{"data-category:not": "work-context"}) == {report}
