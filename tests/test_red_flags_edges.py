"""The red flags that read the work and absence history, at the edges the guide implies (issue
11, item 4): the steps of one partial return are one absence; frequent absence is judged over
the year up to the evaluation date and long absence in the past separately, a long absence
being longer than six weeks; a fall in contract hours counts only after the diagnosis and not
for care duties or a new job; the patient's own answers count for flags 3, 5 and 6; the
self-employed and flex workers are judged on hours worked and a private disability insurance.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from service.config import Settings
from service.demo.loader import DATA

from .helpers import contract_hours, create, patient, tagged
from .work_helpers import BASE, PW, flags, parts, seed_demo, sick_leave, worked_hours

EXPECTED: dict[str, list[str]] = orjson.loads((DATA / "expected-red-flags.json").read_bytes())
QUESTIONNAIRE = f"{BASE}/Questionnaire/late-effects-signals"


def flag(client: TestClient, pid: str, code: str, when: str = "2026-11-30") -> dict[str, Any]:
    resp = client.get(f"/fhir/Patient/{pid}/$late-effects-signals", params={"date": when})
    assert resp.status_code == 200, resp.text
    found = flags(resp.json())[code]
    out = parts(found)
    out["criteria"] = [p["valueCode"] for p in found["part"] if p["name"] == "criterion"]
    return out


def new_patient(client: TestClient, tag: str) -> str:
    return str(create(client, patient(tag))["id"])


def employment(tag: str, pid: str, code: str, start: str = "2010-01-01") -> dict[str, Any]:
    return tagged({"resourceType": "Observation", "status": "final",
                   "meta": {"profile": [f"{BASE}/StructureDefinition/employment-status"]},
                   "code": {"coding": [{"system": "http://loinc.org", "code": "74165-2"}]},
                   "subject": {"reference": f"Patient/{pid}"}, "effectivePeriod": {"start": start},
                   "valueCodeableConcept": {"coding": [{"system": f"{BASE}/CodeSystem/employment-type",
                                                        "code": code}]}}, tag)


def diagnosis(tag: str, pid: str, onset: str) -> dict[str, Any]:
    return tagged({"resourceType": "Condition", "subject": {"reference": f"Patient/{pid}"},
                   "code": {"coding": [{"system": "http://snomed.info/sct", "code": "254837009"}]},
                   "onsetDateTime": onset}, tag)


def with_reason(resource: dict[str, Any], reason: str) -> dict[str, Any]:
    return {**resource, "component": [{
        "code": {"coding": [{"system": PW, "code": "contract-change-reason"}]},
        "valueCodeableConcept": {"coding": [{"system": f"{BASE}/CodeSystem/contract-change-reason",
                                             "code": reason}]}}]}


def _demo_answers() -> list[dict[str, Any]]:
    bundle = orjson.loads((DATA / "11-pat-kees.json").read_bytes())
    [qr] = [e["resource"] for e in bundle["entry"] if e["resource"]["id"] == "qr-kees-late-effects"]
    items: list[dict[str, Any]] = qr["item"]
    return items


def answers(tag: str, pid: str, authored: str, **yes: bool) -> dict[str, Any]:
    """A completed late-effects questionnaire (the complaints as Kees answered them, all work and
    absence items no) with the given work and absence items answered."""
    items = orjson.loads(orjson.dumps(_demo_answers()))
    for group in items:
        for item in group.get("item", []):
            if item["linkId"].startswith("rf-") and item["linkId"] != "rf-remarks":
                item["answer"] = [{"valueBoolean": yes.get(item["linkId"], False)}]
        group["item"] = [i for i in group.get("item", []) if i["linkId"] != "rf-remarks"]
    return tagged({"resourceType": "QuestionnaireResponse", "questionnaire": QUESTIONNAIRE,
                   "status": "completed", "subject": {"reference": f"Patient/{pid}"},
                   "authored": authored, "item": items}, tag)


# -- flag 5: absence ----------------------------------------------------------------------------------
def test_the_steps_of_one_partial_return_are_one_absence(client: TestClient, tag: str) -> None:
    """100 %, then 50 %, then 25 %: three episodes, one absence of 30 days (not frequent, not long)."""
    pid = new_patient(client, tag)
    create(client, sick_leave(tag, pid, "2026-03-02", "2026-03-11", pct=100))
    create(client, sick_leave(tag, pid, "2026-03-12", "2026-03-21", pct=50))
    create(client, sick_leave(tag, pid, "2026-03-22", "2026-03-31", pct=25))
    result = flag(client, pid, "sick-leave-history")
    assert result["status"] == "not-raised", result["reason"]
    assert "1 absence(s) from 3 sick-leave episode(s)" in result["reason"]


def test_steps_of_a_partial_return_add_up_to_a_long_absence(client: TestClient, tag: str) -> None:
    pid = new_patient(client, tag)
    create(client, sick_leave(tag, pid, "2025-01-06", "2025-02-02", pct=100))
    create(client, sick_leave(tag, pid, "2025-02-03", "2025-03-02", pct=50))
    result = flag(client, pid, "sick-leave-history")
    assert result["status"] == "raised" and result["criteria"] == ["long-past"]
    assert "56 days" in result["reason"]


@pytest.mark.parametrize(("when", "expected"), [("2024-12-31", "raised"), ("2026-11-30", "not-raised")])
def test_frequent_absence_is_judged_over_the_year_up_to_the_date(client: TestClient, tag: str, when: str,
                                                                  expected: str) -> None:
    pid = new_patient(client, tag)
    for start, end in (("2024-02-05", "2024-02-07"), ("2024-06-03", "2024-06-05"),
                       ("2024-10-07", "2024-10-09")):
        create(client, sick_leave(tag, pid, start, end))
    result = flag(client, pid, "sick-leave-history", when)
    assert result["status"] == expected
    assert result["criteria"] == (["frequent"] if expected == "raised" else [])


@pytest.mark.parametrize(("third", "expected"), [("2025-12-31", "raised"), ("2026-01-01", "not-raised")])
def test_the_window_is_365_days_including_the_date(client: TestClient, tag: str, third: str,
                                                   expected: str) -> None:
    """As of 2025-12-31 the window runs from 2025-01-01; as of 2026-01-01 from 2025-01-02."""
    pid = new_patient(client, tag)
    for start in ("2025-01-01", "2025-06-02", third):  # one-day episodes: none is long
        create(client, sick_leave(tag, pid, start, start))
    assert flag(client, pid, "sick-leave-history", third)["status"] == expected


@pytest.mark.parametrize(("end", "expected"), [("2025-02-11", "not-raised"), ("2025-02-12", "raised")])
def test_a_long_absence_is_longer_than_six_weeks(client: TestClient, tag: str, end: str,
                                                 expected: str) -> None:
    """2025-01-01 to 2025-02-11 is 42 days (exactly six weeks), to 2025-02-12 is 43."""
    pid = new_patient(client, tag)
    create(client, sick_leave(tag, pid, "2025-01-01", end))
    result = flag(client, pid, "sick-leave-history")
    assert result["status"] == expected
    assert result["criteria"] == (["long-past"] if expected == "raised" else [])


def test_frequent_and_long_are_reported_separately(client: TestClient, tag: str) -> None:
    pid = new_patient(client, tag)
    create(client, sick_leave(tag, pid, "2019-03-04", "2019-09-30"))
    for start in ("2026-01-12", "2026-05-11", "2026-09-14"):
        create(client, sick_leave(tag, pid, start, start))
    result = flag(client, pid, "sick-leave-history")
    assert result["criteria"] == ["frequent", "long-past"]


def test_the_patients_own_answer_counts_for_absence(client: TestClient, tag: str) -> None:
    pid = new_patient(client, tag)
    assert flag(client, pid, "sick-leave-history")["status"] == "not-raised"
    create(client, answers(tag, pid, "2026-11-01", **{"rf-sick-leave-history": True}))
    result = flag(client, pid, "sick-leave-history")
    assert result["status"] == "raised" and result["criteria"] == ["self-reported"]
    assert flag(client, pid, "sick-leave-history", "2026-10-31")["status"] == "not-raised"


# -- flag 3: fewer hours ------------------------------------------------------------------------------
@pytest.mark.parametrize(("onset", "expected"), [("2024-06-01", "not-raised"), ("2022-06-01", "raised")])
def test_a_fall_in_contract_hours_counts_only_after_the_diagnosis(client: TestClient, tag: str, onset: str,
                                                                  expected: str) -> None:
    pid = new_patient(client, tag)
    create(client, diagnosis(tag, pid, onset))
    create(client, contract_hours(tag, pid, 36, "2015-01-01", "2022-12-31"))
    create(client, contract_hours(tag, pid, 32, "2023-01-01"))
    assert flag(client, pid, "reduced-contract-hours")["status"] == expected


@pytest.mark.parametrize(("reason", "expected"), [
    ("care-duties", "not-raised"), ("new-job", "not-raised"), ("health-own-request", "raised"),
    ("other", "raised")])
def test_the_reason_of_a_fall_is_recorded_and_decides(client: TestClient, tag: str, reason: str,
                                                      expected: str) -> None:
    pid = new_patient(client, tag)
    create(client, contract_hours(tag, pid, 36, "2015-01-01", "2022-12-31"))
    create(client, with_reason(contract_hours(tag, pid, 28, "2023-01-01"), reason))
    result = flag(client, pid, "reduced-contract-hours")
    assert result["status"] == expected
    if expected == "raised":
        assert f"reason: {reason}" in result["reason"]


def test_the_patients_own_answer_counts_for_fewer_hours(client: TestClient, tag: str) -> None:
    pid = new_patient(client, tag)
    create(client, contract_hours(tag, pid, 32, "2015-01-01"))
    create(client, answers(tag, pid, "2026-10-01", **{"rf-reduced-contract-hours": True}))
    result = flag(client, pid, "reduced-contract-hours")
    assert result["status"] == "raised" and result["criteria"] == ["self-reported"]


@pytest.mark.parametrize(("later", "expected"), [(37, "not-raised"), (36, "raised")])
def test_the_self_employed_are_judged_on_hours_worked(client: TestClient, tag: str, later: float,
                                                      expected: str) -> None:
    pid = new_patient(client, tag)
    create(client, employment(tag, pid, "zzp"))
    create(client, worked_hours(tag, pid, 40, "2025-01-01", "2025-12-31"))
    create(client, worked_hours(tag, pid, later, "2026-01-01", "2026-06-30"))
    result = flag(client, pid, "reduced-contract-hours")
    assert result["status"] == expected
    assert result["criteria"] == (["worked-hours"] if expected == "raised" else [])


def test_an_employee_is_not_judged_on_hours_worked(client: TestClient, tag: str) -> None:
    pid = new_patient(client, tag)
    create(client, employment(tag, pid, "employee-permanent"))
    create(client, contract_hours(tag, pid, 32, "2015-01-01"))
    create(client, worked_hours(tag, pid, 32, "2025-01-01", "2025-12-31"))
    create(client, worked_hours(tag, pid, 16, "2026-01-01", "2026-06-30"))  # a reintegration phase
    assert flag(client, pid, "reduced-contract-hours")["status"] == "not-raised"


# -- flag 6: a disability benefit ------------------------------------------------------------------------
def test_a_private_disability_insurance_counts(client: TestClient, tag: str) -> None:
    pid = new_patient(client, tag)
    create(client, employment(tag, pid, "zzp"))
    create(client, tagged({"resourceType": "Observation", "status": "final",
                           "code": {"coding": [{"system": PW, "code": "disability-insurance-benefit"}]},
                           "subject": {"reference": f"Patient/{pid}"},
                           "effectivePeriod": {"start": "2024-04-01", "end": "2024-12-31"},
                           "valueBoolean": True}, tag))
    result = flag(client, pid, "wia-benefit")
    assert result["status"] == "raised" and result["criteria"] == ["aov"]
    stored = client.get("/fhir/Observation",
                        params={"patient": pid, "code": f"{PW}|disability-insurance-benefit"})
    labels = {s["code"] for s in stored.json()["entry"][0]["resource"]["meta"]["security"]}
    assert labels == {"absence-benefits"}


def test_the_patients_own_answer_counts_for_a_benefit(client: TestClient, tag: str) -> None:
    pid = new_patient(client, tag)
    create(client, answers(tag, pid, "2026-10-01",
                           **{"rf-wia-benefit": True, "rf-sick-leave-history": False}))
    assert flag(client, pid, "wia-benefit")["criteria"] == ["self-reported"]
    assert flag(client, pid, "sick-leave-history")["status"] == "not-raised"


# -- the demo, as of its own date ------------------------------------------------------------------------
@pytest.mark.parametrize("pid", sorted(EXPECTED))
def test_the_demo_patients_raise_exactly_their_flags_as_of_november_2026(
        client: TestClient, settings: Settings, pid: str) -> None:
    seed_demo(settings)
    resp = client.get(f"/fhir/Patient/{pid}/$late-effects-signals", params={"date": "2026-11-30"})
    raised = {code for code, p in flags(resp.json()).items() if parts(p)["status"] == "raised"}
    assert raised == set(EXPECTED[pid])
