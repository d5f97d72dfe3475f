"""The synthetic demo data (`pgo-work seed-demo`): it loads idempotently, everything is there,
what claims a profile conforms to it, and the six situations of the domain brief are told by
the data itself, read back through the API.

The late-effects red flags each patient should raise are written down in
`service/demo/data/expected-red-flags.json` (issue 5's tests rely on it); the last test here
checks that the stored data really carries the evidence for exactly those flags, with the
thresholds the demo was designed to (see `service/demo/data/README.md`).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import date
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from service.config import PROJECT_ROOT, Settings
from service.demo.loader import DATA, DEMO_TAG, demo_resources, seed
from service.runtime import build_runtime

PW = "https://pgo-work.nl/fhir/CodeSystem/pgo-work-observation"
DEMO = f"{DEMO_TAG['system']}|{DEMO_TAG['code']}"
RED_FLAG_SYSTEM = "https://pgo-work.nl/fhir/CodeSystem/late-effect-red-flag"
PATIENTS = ["pat-anna", "pat-kees", "pat-ingrid", "pat-marieke", "pat-daan", "pat-peter", "pat-sanne",
            "pat-johan"]


def _seed(settings: Settings) -> dict[str, int]:
    async def run() -> dict[str, int]:
        rt = build_runtime(settings)
        try:
            return await seed(rt)
        finally:
            await rt.close()

    return asyncio.run(run())


@pytest.fixture(scope="module")
def first_load(settings: Settings, client: TestClient) -> dict[str, int]:
    """Load the demo once per database (the `client` fixture has migrated it)."""
    return _seed(settings)


def _search(client: TestClient, path: str, **params: str) -> list[dict[str, Any]]:
    """Every match of a search, following `next` links."""
    resp = client.get(f"/fhir/{path}", params={"_count": "200", **params})
    assert resp.status_code == 200, resp.text
    out: list[dict[str, Any]] = []
    while True:
        body = resp.json()
        out += [e["resource"] for e in body.get("entry", [])
                if e.get("search", {}).get("mode", "match") == "match"]
        nxt = next((lk["url"] for lk in body.get("link", []) if lk["relation"] == "next"), None)
        if nxt is None:
            return out
        resp = client.get(nxt.removeprefix("http://testserver"))
        assert resp.status_code == 200, resp.text


def _obs(client: TestClient, patient: str, code: str, **params: str) -> list[dict[str, Any]]:
    return _search(client, "Observation", patient=patient, code=code, **params)


def _hours(observations: list[dict[str, Any]]) -> list[float]:
    return [o["valueQuantity"]["value"] for o in observations]


def _component(obs: dict[str, Any], system: str, code: str) -> dict[str, Any] | None:
    for comp in obs.get("component", []):
        if any(c.get("system") == system and c.get("code") == code for c in comp["code"]["coding"]):
            return comp
    return None


def _demo_types() -> Counter[str]:
    return Counter(r["resourceType"] for r in demo_resources())


# -- loading --------------------------------------------------------------------------------------
def test_seed_loads_every_demo_resource(client: TestClient, first_load: dict[str, int]) -> None:
    expected = {(r["resourceType"], r["id"]) for r in demo_resources()}
    assert sum(first_load.values()) == len(expected) > 150
    found = set()
    for rtype in _demo_types():
        found |= {(rtype, r["id"]) for r in _search(client, rtype, _tag=DEMO)}
    assert found == expected


def test_stored_content_is_the_data_file(client: TestClient, first_load: dict[str, int]) -> None:
    for resource in demo_resources():
        stored = client.get(f"/fhir/{resource['resourceType']}/{resource['id']}").json()
        body = {k: v for k, v in stored.items() if k != "meta"}
        assert body == {k: v for k, v in resource.items() if k != "meta"}, resource["id"]
        assert DEMO_TAG["code"] in {t["code"] for t in stored["meta"]["tag"]}
        assert stored["meta"].get("profile") == resource["meta"].get("profile")


def test_seed_twice_changes_nothing(client: TestClient, settings: Settings,
                                    first_load: dict[str, int]) -> None:
    types = sorted(_demo_types())

    def snapshot() -> tuple[dict[str, int], dict[str, str]]:
        totals = {t: client.get(f"/fhir/{t}/_history", params={"_count": "1"}).json()["total"]
                  for t in types}
        versions = {f"{t}/{r['id']}": r["meta"]["versionId"]
                    for t in types for r in _search(client, t, _tag=DEMO)}
        return totals, versions

    before = snapshot()
    counts = _seed(settings)
    assert counts == {"created": 0, "updated": 0, "unchanged": len(demo_resources())}
    assert snapshot() == before


def test_every_demo_resource_validates(client: TestClient, first_load: dict[str, int]) -> None:
    """Every demo resource passes `$validate`: against the profiles it claims (more than a
    hundred do), and a QuestionnaireResponse against its Questionnaire.

    Skipped while the server has no `$validate`."""
    assert len([r for r in demo_resources() if r.get("meta", {}).get("profile")]) > 100
    for resource in demo_resources():
        resp = client.post(f"/fhir/{resource['resourceType']}/$validate", content=orjson.dumps(resource),
                           headers={"Content-Type": "application/fhir+json"})
        if resp.status_code == 404 and resp.json()["issue"][0]["code"] == "not-supported":
            pytest.skip("the server has no $validate yet")
        assert resp.status_code == 200, resp.text
        errors = [i for i in resp.json().get("issue", []) if i["severity"] in ("error", "fatal")]
        assert errors == [], (resource["id"], errors)


# -- the six situations -----------------------------------------------------------------------------
def test_anna_builds_hours_back_up_phase_by_phase(client: TestClient, first_load: dict[str, int]) -> None:
    contract = _obs(client, "pat-anna", f"{PW}|contract-hours-per-week")
    assert _hours(contract) == [32]
    worked = _hours(_obs(client, "pat-anna", f"{PW}|worked-hours-per-week", _sort="date"))
    assert len(worked) >= 4 and worked == sorted(worked) and worked[0] < worked[-1] <= 32
    [status] = _obs(client, "pat-anna", f"{PW}|work-status")
    assert status["valueCodeableConcept"]["coding"][0]["code"] == "partially-working"
    [goal] = _search(client, "Goal", patient="pat-anna")
    assert goal["category"][0]["coding"][0]["code"] == "work"
    [plan] = _search(client, "CarePlan", patient="pat-anna")
    assert plan["goal"] == [{"reference": "Goal/goal-anna-werk"}]
    phases = [a["detail"] for a in plan["activity"] if a["detail"]["code"].get("text", "").startswith("Fase")]
    targets = [p["quantity"]["value"] for p in phases]
    assert targets == sorted(targets) and targets[-1] == 32
    assert any("statusReason" in p for p in phases)  # a phase extended on complaints
    [panel] = _obs(client, "pat-anna", f"{PW}|load-capacity-profile")
    assert panel["performer"][0]["reference"] == "PractitionerRole/role-bedrijfsarts"
    assert len(panel["hasMember"]) >= 5
    [intake] = _search(client, "QuestionnaireResponse", patient="pat-anna")
    assert intake["questionnaire"].endswith("/Questionnaire/work-situation-intake")


def test_kees_is_self_employed_without_employer(client: TestClient, first_load: dict[str, int]) -> None:
    [employment] = _obs(client, "pat-kees", "http://loinc.org|74165-2")
    assert employment["valueCodeableConcept"]["coding"][0]["code"] == "zzp"
    [situation] = _obs(client, "pat-kees", "http://snomed.info/sct|364703007")
    assert _component(situation, PW, "employer") is None
    assert _obs(client, "pat-kees", f"{PW}|contract-hours-per-week") == []
    assert len(_obs(client, "pat-kees", f"{PW}|worked-hours-per-week")) >= 4


def test_ingrid_works_part_time_with_incurable_cancer(client: TestClient,
                                                      first_load: dict[str, int]) -> None:
    # Issue 11: the incurable-cancer answer is a medical resource of its own, apart from the rest
    # of the vulnerable-group screening.
    [screening] = _obs(client, "pat-ingrid", f"{PW}|vulnerable-group-screening")
    assert _component(screening, "https://pgo-work.nl/fhir/CodeSystem/vulnerable-group",
                      "incurable-cancer") is None
    [incurable] = _obs(client, "pat-ingrid", f"{PW}|incurable-cancer-screening")
    assert incurable["valueBoolean"] is True
    assert "medical" in {s["code"] for s in incurable["meta"]["security"]}
    [status] = _obs(client, "pat-ingrid", f"{PW}|work-status")
    assert status["valueCodeableConcept"]["coding"][0]["code"] == "partially-working"


def test_marieke_contract_hours_fell_over_three_years(client: TestClient,
                                                      first_load: dict[str, int]) -> None:
    series = _obs(client, "pat-marieke", f"{PW}|contract-hours-per-week", _sort="date")
    assert _hours(series) == [36, 32, 28, 24]
    assert series[1]["effectivePeriod"]["start"] >= "2023"
    reports = {o["code"]["coding"][0]["code"]: o["valueCodeableConcept"]["coding"][0]["code"]
               for o in _search(client, "Observation", patient="pat-marieke",
                                category="http://terminology.hl7.org/CodeSystem/observation-category|survey")}
    assert reports["fatigue"] == "severe" and reports["concentration"] == "severe"


def test_daan_is_a_young_adult(client: TestClient, first_load: dict[str, int]) -> None:
    born = date.fromisoformat(client.get("/fhir/Patient/pat-daan").json()["birthDate"])
    age = (date(2026, 11, 1) - born).days // 365
    assert 18 <= age <= 39
    [screening] = _obs(client, "pat-daan", f"{PW}|vulnerable-group-screening")
    young = _component(screening, "https://pgo-work.nl/fhir/CodeSystem/vulnerable-group", "young-adult")
    assert young is not None and young["valueBoolean"] is True


def test_peter_has_a_partial_wia_benefit_after_long_absence(client: TestClient,
                                                            first_load: dict[str, int]) -> None:
    [benefit] = _obs(client, "pat-peter", f"{PW}|wia-status")
    assert benefit["valueCodeableConcept"]["coding"][0]["code"] == "partial"
    current = _component(benefit, PW, "benefit-current")
    assert current is not None and current["valueBoolean"] is True
    [absence] = _obs(client, "pat-peter", f"{PW}|sick-leave-episode")
    assert _days(absence["effectivePeriod"]) > 365


def test_professionals_are_findable(client: TestClient, first_load: dict[str, int]) -> None:
    role_system = "https://pgo-work.nl/fhir/CodeSystem/professional-role"
    wanted = ["oncologist", "nurse-specialist", "occupational-physician", "baco", "kag-oncology",
              "labour-expert", "insurance-physician", "reintegration-consultant", "employer-hr"]
    for role in wanted:
        found = _search(client, "PractitionerRole", role=f"{role_system}|{role}", _tag=DEMO)
        assert found, role
        assert all(r["organization"]["reference"].startswith("Organization/org-") for r in found)
        assert all(r["location"] for r in found)
    uwv = _search(client, "PractitionerRole", organization="Organization/org-uwv")
    assert {r["id"] for r in uwv} == {"role-verzekeringsarts", "role-arbeidsdeskundige-uwv"}


# -- the red flags the data was designed to raise ----------------------------------------------------
def _days(period: dict[str, str]) -> int:
    end = date.fromisoformat(period["end"][:10])
    return (end - date.fromisoformat(period["start"][:10])).days + 1


def _evidence(client: TestClient, patient: str) -> set[str]:
    """The flags the stored data supports, with the thresholds the demo was designed to:
    self-reported flags at severity moderate or severe; contract hours lower than an earlier
    period; three or more sick-leave episodes starting within 365 days, or an ended episode of
    at least 6 weeks; a partial or full WIA benefit, now or in the past."""
    flags = set()
    for report in _search(client, "Observation", patient=patient,
                          category="http://terminology.hl7.org/CodeSystem/observation-category|survey"):
        if "valueCodeableConcept" not in report:
            continue  # a survey that is not a late-effect report (the Work Ability Score)
        severity = report["valueCodeableConcept"]["coding"][0]["code"]
        for coding in report["code"]["coding"]:
            if coding["system"] == RED_FLAG_SYSTEM and severity in ("moderate", "severe"):
                flags.add(coding["code"])
    hours = _hours(_obs(client, patient, f"{PW}|contract-hours-per-week", _sort="date"))
    if any(later < earlier for i, earlier in enumerate(hours) for later in hours[i + 1:]):
        flags.add("reduced-contract-hours")
    episodes = _obs(client, patient, f"{PW}|sick-leave-episode")
    starts = sorted(date.fromisoformat(e["effectivePeriod"]["start"][:10]) for e in episodes)
    frequent = any((starts[i + 2] - starts[i]).days <= 365 for i in range(len(starts) - 2))
    long_past = any("end" in e["effectivePeriod"] and _days(e["effectivePeriod"]) >= 42 for e in episodes)
    if frequent or long_past:
        flags.add("sick-leave-history")
    for benefit in _obs(client, patient, f"{PW}|wia-status"):
        if benefit["valueCodeableConcept"]["coding"][0]["code"] in ("partial", "full"):
            flags.add("wia-benefit")
    return flags


def test_expected_red_flags_match_the_data(client: TestClient, first_load: dict[str, int]) -> None:
    expected: dict[str, list[str]] = orjson.loads((DATA / "expected-red-flags.json").read_bytes())
    assert sorted(expected) == sorted(PATIENTS)
    red_flag_file = PROJECT_ROOT / "profiles/work/CodeSystem-late-effect-red-flag.json"
    red_flags = orjson.loads(red_flag_file.read_bytes())
    assert red_flags["url"] == RED_FLAG_SYSTEM
    codes = {c["code"] for c in red_flags["concept"]}
    assert len(codes) == 6
    raised = {flag for flags in expected.values() for flag in flags}
    assert raised == codes  # each of the six flags is raised by at least one demo patient
    for patient, flags in expected.items():
        assert _evidence(client, patient) == set(flags), patient
