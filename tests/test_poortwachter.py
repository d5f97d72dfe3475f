"""EpisodeOfCare/$poortwachter: the week of a sickness case and the Wet verbetering poortwachter
steps done, due and overdue, over HTTP with the demo data and with cases built at the edges.

Edges: the problem analysis (week 6, the last day is sick day 42) on day 41 and day 43; two
sick periods three weeks apart count as one case (samentelling) and five weeks apart do not;
a postponement moves the WIA application and the end of wage continuation; a self-employed
person gets no employee timeline; the case and its evidence are read under the caller's
access.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from service.config import PROJECT_ROOT, Settings

from .consent_helpers import grant, permit
from .helpers import FHIR_JSON, create, patient, tagged
from .work_helpers import as_patient, as_professional, named, parts, professional, seed_demo, sick_leave

SD = "https://pgo-work.nl/fhir/StructureDefinition/"
PWT = "https://pgo-work.nl/fhir/CodeSystem/poortwachter"
RULES = orjson.loads((PROJECT_ROOT / "profiles/rules/poortwachter.json").read_bytes())


@pytest.fixture(scope="module")
def demo(settings: Settings, client: TestClient) -> None:
    seed_demo(settings)


def step(code: str, when: str, evidence: str | None = None) -> dict[str, Any]:
    ext: list[dict[str, Any]] = [{"url": "code", "valueCode": code}, {"url": "date", "valueDate": when}]
    if evidence:
        ext.append({"url": "evidence", "valueReference": {"reference": evidence}})
    return {"url": SD + "poortwachter-milestone", "extension": ext}


def event(code: str, weeks: int, when: str) -> dict[str, Any]:
    return {"url": SD + "poortwachter-event", "extension": [
        {"url": "code", "valueCode": code}, {"url": "weeks", "valueInteger": weeks},
        {"url": "date", "valueDate": when}]}


def sickness_case(tag: str, pid: str, start: str, employment: str = "employee-permanent",
                  extensions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return tagged({
        "resourceType": "EpisodeOfCare", "meta": {"profile": [SD + "sickness-case"]},
        "extension": [{"url": SD + "sickness-case-employment-type", "valueCoding": {
            "system": "https://pgo-work.nl/fhir/CodeSystem/employment-type", "code": employment}},
            *(extensions or [])],
        "status": "active", "type": [{"coding": [{"system": PWT, "code": "sickness-case"}]}],
        "patient": {"reference": f"Patient/{pid}"}, "period": {"start": start}}, tag)


def timeline(client: TestClient, case_id: str, when: str, headers: dict[str, str] | None = None,
             **params: str) -> dict[str, Any]:
    resp = client.get(f"/fhir/EpisodeOfCare/{case_id}/$poortwachter", params={"date": when, **params},
                      headers=headers or {})
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def value(body: dict[str, Any], name: str) -> Any:
    [param] = named(body, name)
    return next(v for k, v in param.items() if k.startswith("value"))


def milestones(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {parts(p)["code"]["code"]: parts(p) for p in named(body, "milestone")}


def status(body: dict[str, Any], code: str) -> str:
    return str(milestones(body)[code]["status"])


def new_case(client: TestClient, tag: str, periods: list[tuple[str, str | None]],
             extensions: list[dict[str, Any]] | None = None, employment: str = "employee-permanent") -> str:
    pid = str(create(client, patient(tag))["id"])
    for start, end in periods:
        create(client, sick_leave(tag, pid, start, end))
    return str(create(client, sickness_case(tag, pid, periods[0][0], employment, extensions))["id"])


def day(start: str, n: int) -> str:
    """The calendar date of day n (day 1 = start)."""
    return (date.fromisoformat(start) + timedelta(days=n - 1)).isoformat()


# -- the edges of the timeline ----------------------------------------------------------------------
@pytest.mark.parametrize(("n", "week", "expected"), [(41, 6, "due"), (42, 6, "due"), (43, 7, "overdue")])
def test_problem_analysis_on_day_41_and_43(client: TestClient, tag: str, n: int, week: int,
                                          expected: str) -> None:
    case_id = new_case(client, tag, [("2026-01-05", None)])
    body = timeline(client, case_id, day("2026-01-05", n))
    assert value(body, "sickDays") == n and value(body, "week") == week
    pa = milestones(body)["probleemanalyse"]
    assert pa["status"] == expected and pa["deadline"] == day("2026-01-05", 42)
    assert status(body, "plan-van-aanpak") == "due"  # from week 6, deadline week 8
    assert status(body, "ziekmelding-uwv") == "upcoming"


def test_a_step_done_before_the_deadline_is_done_with_its_evidence(client: TestClient, tag: str) -> None:
    pid = str(create(client, patient(tag))["id"])
    create(client, sick_leave(tag, pid, "2026-01-05"))
    evidence = create(client, sick_leave(tag, pid, "2025-01-05", "2025-01-06"))  # any visible resource
    case_id = create(client, sickness_case(tag, pid, "2026-01-05", extensions=[
        step("probleemanalyse", "2026-02-20", f"Observation/{evidence['id']}")]))["id"]
    pa = milestones(timeline(client, case_id, day("2026-01-05", 60)))["probleemanalyse"]
    assert pa["status"] == "done-late"  # 2026-02-20 is day 47
    assert pa["evidence"] == {"reference": f"Observation/{evidence['id']}"}
    early = create(client, sickness_case(tag, pid, "2026-01-05",
                                         extensions=[step("probleemanalyse", "2026-02-10")]))
    assert status(timeline(client, early["id"], day("2026-01-05", 60)), "probleemanalyse") == "done"


@pytest.mark.parametrize(("gap_weeks", "one_case"), [(3, True), (5, False)])
def test_samentelling_three_weeks_apart_is_one_case(client: TestClient, tag: str, gap_weeks: int,
                                                    one_case: bool) -> None:
    """First period 21 days (2026-01-05 to 01-25), then a break of three or five weeks."""
    second = (date(2026, 1, 26) + timedelta(weeks=gap_weeks)).isoformat()
    case_id = new_case(client, tag, [("2026-01-05", "2026-01-25"), (second, None)])
    when = day(second, 25)  # 21 + 25 = 46 sick days if the periods count as one
    body = timeline(client, case_id, when)
    if one_case:
        assert value(body, "sickDays") == 46 and value(body, "week") == 7
        assert value(body, "state") == "sick"
        assert len(named(body, "sickPeriod")) == 2
        pa = milestones(body)["probleemanalyse"]
        assert pa["status"] == "overdue" and pa["deadline"] == day(second, 21)  # sick day 42
    else:
        assert value(body, "sickDays") == 21 and value(body, "state") == "ended"
        assert value(body, "newCaseFrom") == second
        assert status(body, "probleemanalyse") == "ended"


def test_partial_recovery_is_not_recovery(client: TestClient, tag: str) -> None:
    pid = str(create(client, patient(tag))["id"])
    create(client, sick_leave(tag, pid, "2026-01-05", "2026-02-01", pct=100))
    create(client, sick_leave(tag, pid, "2026-02-02", None, pct=50))
    case_id = create(client, sickness_case(tag, pid, "2026-01-05"))["id"]
    body = timeline(client, case_id, "2026-03-01")
    assert value(body, "sickDays") == 56 and len(named(body, "sickPeriod")) == 1


def test_postponement_moves_the_wia_application_and_the_end(client: TestClient, tag: str) -> None:
    start, when = "2024-09-02", "2026-12-20"  # day 840, week 120
    plain = new_case(client, tag, [(start, None)])
    body = timeline(client, plain, when)
    assert status(body, "wia-aanvraag") == "overdue"
    assert milestones(body)["einde-loondoorbetaling"]["status"] == "reached"
    postponed = new_case(client, tag, [(start, None)], [event("postponement", 26, "2026-05-18")])
    body = timeline(client, postponed, when)
    wia = milestones(body)["wia-aanvraag"]
    assert wia["status"] == "overdue" and wia["deadlineWeek"] == 119 and wia["movedWeeks"] == 26
    end = milestones(body)["einde-loondoorbetaling"]
    assert end["status"] == "upcoming" and end["deadline"] == day(start, 7 * 130)
    assert status(timeline(client, postponed, "2026-12-13"), "wia-aanvraag") == "due"


def test_a_loonsanctie_moves_only_the_end(client: TestClient, tag: str) -> None:
    case_id = new_case(client, tag, [("2024-09-02", None)], [event("loonsanctie", 52, "2026-07-20")])
    body = timeline(client, case_id, "2026-12-20")
    assert milestones(body)["einde-loondoorbetaling"]["deadlineWeek"] == 156
    assert milestones(body)["wia-aanvraag"]["deadlineWeek"] == 93


def test_an_event_over_52_weeks_is_refused(client: TestClient, tag: str) -> None:
    pid = str(create(client, patient(tag))["id"])
    resp = client.post("/fhir/EpisodeOfCare", headers=FHIR_JSON, json=sickness_case(
        tag, pid, "2024-09-02", extensions=[event("postponement", 60, "2026-05-18")]))
    assert resp.status_code in (400, 422), resp.text
    assert resp.json()["resourceType"] == "OperationOutcome"
    assert "scase-4" in resp.text


# -- the demo ------------------------------------------------------------------------------------------
def test_sanne_is_in_week_39_with_a_plan_van_aanpak(client: TestClient, demo: None) -> None:
    body = timeline(client, "case-sanne-2026", "2026-11-30")
    assert value(body, "week") == 39 and value(body, "sickDays") == 267  # 21 + 246: samentelling
    assert value(body, "regime") == "employee"
    steps = milestones(body)
    assert steps["plan-van-aanpak"]["status"] == "done"
    assert steps["plan-van-aanpak"]["evidence"] == {"reference": "CarePlan/careplan-sanne-pva"}
    assert steps["probleemanalyse"]["status"] == "done"
    assert steps["evaluatie"]["status"] == "due" and steps["evaluatie"]["deadline"] == "2026-12-29"
    assert steps["ziekmelding-uwv"]["status"] == "upcoming"
    assert steps["ziekmelding-uwv"]["deadline"] == "2026-12-27"  # sick day 294
    assert status(timeline(client, "case-sanne-2026", "2026-12-30"), "evaluatie") == "overdue"


def test_johan_has_a_postponed_wia_application(client: TestClient, demo: None) -> None:
    body = timeline(client, "case-johan-2024", "2026-11-30")
    assert value(body, "week") == 118
    [ev] = named(body, "event")
    assert parts(ev)["code"]["code"] == "postponement" and parts(ev)["weeks"] == 26
    steps = milestones(body)
    assert steps["wia-aanvraag"]["status"] == "due" and steps["wia-aanvraag"]["deadline"] == "2026-12-13"
    assert steps["einde-loondoorbetaling"]["deadline"] == "2027-02-28"
    assert steps["spoor-2"]["status"] == "not-needed"
    assert steps["eerstejaarsevaluatie"]["status"] == "done"


def test_a_self_employed_person_gets_no_employee_timeline(client: TestClient, demo: None) -> None:
    body = timeline(client, "case-kees-2024", "2024-02-20")
    assert value(body, "regime") == "self-employed"
    steps = milestones(body)
    for code in ("probleemanalyse", "plan-van-aanpak", "ziekmelding-uwv", "wia-aanvraag",
                 "einde-loondoorbetaling"):
        assert steps[code]["status"] == "not-applicable", code
    assert steps["aov-melding"]["status"] == "information"
    assert "geen werkgever" in value(body, "regimeText")


def test_a_benefit_recipient_gets_the_ziektewet_steps(client: TestClient, tag: str) -> None:
    case_id = new_case(client, tag, [("2025-01-06", None)], employment="benefit-ww")
    body = timeline(client, case_id, "2026-10-01")
    assert value(body, "regime") == "benefit"
    steps = milestones(body)
    assert steps["plan-van-aanpak"]["status"] == "not-applicable"
    assert steps["re-integratie-uwv"]["status"] == "information"
    assert steps["wia-aanvraag"]["status"] == "due" and "einde-ziektewet" in steps


def test_english_and_dutch(client: TestClient, demo: None) -> None:
    nl = timeline(client, "case-sanne-2026", "2026-11-30")
    en = timeline(client, "case-sanne-2026", "2026-11-30", _language="en")
    assert milestones(nl)["plan-van-aanpak"]["title"] == "Plan van aanpak"
    assert milestones(en)["plan-van-aanpak"]["title"] == "Action plan"
    assert value(nl, "summary").startswith("Week 39 van het verzuim")
    assert value(en, "summary").startswith("Week 39 of the absence")
    header = timeline(client, "case-sanne-2026", "2026-11-30", headers={"Accept-Language": "en-GB,nl;q=0.5"})
    assert value(header, "language") == "en"


@pytest.mark.parametrize(("params", "where"), [({"_language": "fr"}, "_language"),
                                               ({"date": "30-11-2026"}, "date")])
def test_bad_parameters(client: TestClient, demo: None, params: dict[str, str], where: str) -> None:
    resp = client.get("/fhir/EpisodeOfCare/case-sanne-2026/$poortwachter", params=params)
    assert resp.status_code == 400
    assert resp.json()["issue"][0]["expression"] == [where]


def test_not_a_sickness_case(client: TestClient, tag: str) -> None:
    pid = str(create(client, patient(tag))["id"])
    other = create(client, tagged({"resourceType": "EpisodeOfCare", "status": "active",
                                   "patient": {"reference": f"Patient/{pid}"}}, tag))
    resp = client.get(f"/fhir/EpisodeOfCare/{other['id']}/$poortwachter")
    assert resp.status_code == 422 and resp.json()["issue"][0]["expression"] == ["EpisodeOfCare.type"]


# -- under the caller's access -----------------------------------------------------------------------
def test_the_case_is_in_the_patient_compartment_and_absence_data(client: TestClient, settings: Settings,
                                                                 demo: None) -> None:
    stored = client.get("/fhir/EpisodeOfCare/case-sanne-2026").json()
    assert {s["code"] for s in stored["meta"]["security"]} == {"absence-benefits"}
    own = client.get("/fhir/EpisodeOfCare", params={"patient": "pat-sanne"},
                     headers=as_patient(settings, "pat-sanne")).json()
    assert [e["resource"]["id"] for e in own["entry"]] == ["case-sanne-2026"]
    everything = client.get("/fhir/Patient/pat-sanne/$everything").json()
    assert "case-sanne-2026" in {e["resource"]["id"] for e in everything["entry"]}


def test_a_labour_expert_needs_absence_consent(client: TestClient, settings: Settings, tag: str,
                                              demo: None) -> None:
    expert = professional(client, tag, "labour-expert")
    headers = as_professional(settings, expert, "labour-expert")
    grant(client, "pat-sanne", [permit(f"PractitionerRole/{expert}", labels=["work-context"])], tag)
    resp = client.get("/fhir/EpisodeOfCare/case-sanne-2026/$poortwachter", headers=headers)
    assert resp.status_code == 404


def test_evidence_the_caller_may_not_read_is_not_shown(client: TestClient, settings: Settings, tag: str,
                                                      demo: None) -> None:
    expert = professional(client, tag, "labour-expert")
    headers = as_professional(settings, expert, "labour-expert")
    grant(client, "pat-sanne", [permit(f"PractitionerRole/{expert}", labels=["absence-benefits"])], tag)
    body = timeline(client, "case-sanne-2026", "2026-11-30", headers=headers, _language="en")
    pva = milestones(body)["plan-van-aanpak"]
    assert pva["status"] == "done" and "evidence" not in pva
    assert pva["evidenceNote"] == "not visible with your access"
    assert "careplan-sanne-pva" not in orjson.dumps(body).decode()
    assert value(body, "week") == 39


def test_every_rule_has_a_source(client: TestClient) -> None:
    assert RULES["samentelling"]["source"] and RULES["samentelling"]["breakDays"] == 28
    for rule in [*RULES["milestones"], *RULES["events"].values(), *RULES["regimes"]]:
        assert rule["source"], rule
    for rule in RULES["milestones"]:
        assert isinstance(rule["verified"], bool) and (rule["verified"] or rule["verification"]), rule["code"]
