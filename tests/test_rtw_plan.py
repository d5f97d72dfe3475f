"""The phase-based return-to-work plan and CarePlan/$progress.

A plan (profile rtw-careplan) serves a work Goal; its phases set target hours per week and
its other activities are the agreed workplace adjustments. $progress compares the target with
the hours actually worked, period by period, says which phase the person is in (by the phase's
status: phases change on complaints and capacity, not on the calendar), whether they are ahead
or behind and since when, and why a phase was extended.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.config import Settings

from .consent_helpers import grant, permit
from .helpers import FHIR_JSON, create, patient
from .work_helpers import (
    adjustment,
    as_professional,
    named,
    parts,
    phase,
    professional,
    rtw_plan,
    seed_demo,
    work_goal,
    worked_hours,
)


@pytest.fixture(scope="module")
def demo(settings: Settings, client: TestClient) -> None:
    seed_demo(settings)


def progress(client: TestClient, plan: str, headers: dict[str, str] | None = None,
             **params: str) -> dict[str, Any]:
    resp = client.get(f"/fhir/CarePlan/{plan}/$progress", params=params, headers=headers or {})
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def value(body: dict[str, Any], name: str) -> Any:
    [param] = named(body, name)
    return next(v for k, v in param.items() if k.startswith("value"))


@pytest.fixture
def plan(client: TestClient, tag: str) -> dict[str, str]:
    """Three phases of four weeks (8, 16, 24 h/wk); phase 2 was extended on complaints and is
    still in progress; hours worked: 8, then 14, then 17."""
    pid = create(client, patient(tag))["id"]
    goal = create(client, work_goal(tag, pid))["id"]
    care_plan = create(client, rtw_plan(tag, pid, goal, [
        phase(1, "2026-01-05", "2026-02-01", 8, "completed"),
        phase(2, "2026-02-02", "2026-03-15", 16, "in-progress",
              reason="Twee weken verlengd: meer vermoeidheid na uitbreiding (overleg 2026-02-25)."),
        phase(3, "2026-03-16", "2026-04-12", 24, "not-started"),
        adjustment("flexible-hours", "2026-01-05", "Zelf begin- en eindtijd kiezen."),
        adjustment("adjusted-tasks", "2026-01-05", "Geen avonddiensten.", status="completed"),
    ]))["id"]
    for hours, start, end in [(8, "2026-01-05", "2026-02-01"), (14, "2026-02-02", "2026-02-15"),
                              (17, "2026-02-16", "2026-03-01")]:
        create(client, worked_hours(tag, pid, hours, start, end))
    return {"patient": pid, "goal": goal, "plan": care_plan}


# -- the demo plan -------------------------------------------------------------------------------------
def test_anna_is_in_phase_4_and_half_an_hour_behind(client: TestClient, demo: None) -> None:
    body = progress(client, "careplan-anna-rtw", date="2026-11-22")
    assert value(body, "goal") == {"reference": "Goal/goal-anna-werk"}
    assert value(body, "status") == "behind" and value(body, "since") == "2026-10-12"
    assert value(body, "difference")["value"] == -0.5
    current = parts(named(body, "currentPhase")[0])
    assert (current["name"], current["status"], current["basis"]) == ("Fase 4", "in-progress", "status")
    assert current["target"]["value"] == 20 and current["pastPlannedEnd"] is False
    periods = [parts(p) for p in named(body, "period")]
    assert [(p["start"], p["worked"]["value"], p["planned"]["value"], p["status"]) for p in periods] == [
        ("2026-07-06", 8, 8, "on-track"), ("2026-08-03", 11, 12, "behind"),
        ("2026-08-31", 12, 12, "on-track"), ("2026-09-14", 16, 16, "on-track"),
        ("2026-10-12", 19.5, 20, "behind")]
    extended = [parts(p) for p in named(body, "phase") if parts(p)["extended"]]
    assert [p["name"] for p in extended] == ["Fase 2"]
    assert "vermoeidheid" in extended[0]["extendedReason"]
    assert {parts(p)["code"]["code"] for p in named(body, "adjustment")} == {
        "later-start", "short-breaks", "quiet-room", "remote-work"}


def test_an_earlier_date_counts_only_the_hours_worked_by_then(client: TestClient, demo: None) -> None:
    body = progress(client, "careplan-anna-rtw", date="2026-09-20")
    assert [parts(p)["start"] for p in named(body, "period")] == [
        "2026-07-06", "2026-08-03", "2026-08-31", "2026-09-14"]
    assert value(body, "status") == "on-track" and value(body, "since") == "2026-08-31"


# -- a plan of our own -----------------------------------------------------------------------------------
def test_ahead_of_an_extended_phase(client: TestClient, plan: dict[str, str]) -> None:
    body = progress(client, plan["plan"], date="2026-03-05")
    periods = [(parts(p)["worked"]["value"], parts(p)["planned"]["value"], parts(p)["status"])
               for p in named(body, "period")]
    assert periods == [(8, 8, "on-track"), (14, 16, "behind"), (17, 16, "ahead")]
    assert value(body, "status") == "ahead" and value(body, "since") == "2026-02-16"
    assert value(body, "summary").startswith("Worked 17 h/wk against 16 h/wk planned: ahead of plan")
    current = parts(named(body, "currentPhase")[0])
    assert current["name"] == "Fase 2" and current["extended"] is True
    assert current["extendedReason"].startswith("Twee weken verlengd")
    adjustments = {parts(p)["code"]["code"]: parts(p)["status"] for p in named(body, "adjustment")}
    assert adjustments == {"flexible-hours": "in-progress", "adjusted-tasks": "completed"}


def test_the_phase_follows_its_status_not_the_calendar(client: TestClient, plan: dict[str, str]) -> None:
    """On 20 March phase 3 is scheduled, but phase 2 has not been closed: the person is in
    phase 2, past its planned end."""
    current = parts(named(progress(client, plan["plan"], date="2026-03-20"), "currentPhase")[0])
    assert (current["name"], current["basis"], current["pastPlannedEnd"]) == ("Fase 2", "status", True)


def test_without_a_phase_in_progress_the_schedule_says_where(client: TestClient, tag: str) -> None:
    pid = create(client, patient(tag))["id"]
    goal = create(client, work_goal(tag, pid))["id"]
    plan = create(client, rtw_plan(tag, pid, goal, [
        phase(1, "2026-01-05", "2026-02-01", 8, "not-started"),
        phase(2, "2026-02-02", "2026-03-01", 12, "not-started")]))["id"]
    body = progress(client, plan, date="2026-02-10")
    current = parts(named(body, "currentPhase")[0])
    assert (current["name"], current["basis"]) == ("Fase 2", "schedule")
    assert value(body, "status") == "no-data" and not named(body, "period")


def test_a_plan_serves_a_work_goal(client: TestClient, tag: str) -> None:
    pid = create(client, patient(tag))["id"]
    resp = client.post("/fhir/CarePlan", json=rtw_plan(tag, pid, None, [
        phase(1, "2026-01-05", "2026-02-01", 8, "in-progress")]), headers=FHIR_JSON)
    assert resp.status_code == 422, resp.text
    assert "CarePlan.goal" in resp.text


def test_a_care_plan_without_phases_is_a_business_rule_error(client: TestClient, tag: str) -> None:
    pid = create(client, patient(tag))["id"]
    goal = create(client, work_goal(tag, pid))["id"]
    plan = create(client, rtw_plan(tag, pid, goal, [adjustment("remote-work", "2026-01-05", "Thuiswerken.")]))
    resp = client.get(f"/fhir/CarePlan/{plan['id']}/$progress")
    assert resp.status_code == 422
    assert resp.json()["issue"][0]["expression"] == ["CarePlan.activity"]


def test_a_bad_date_is_a_bad_request(client: TestClient, plan: dict[str, str]) -> None:
    resp = client.get(f"/fhir/CarePlan/{plan['plan']}/$progress", params={"date": "maart"})
    assert resp.status_code == 400
    assert resp.json()["issue"][0]["expression"] == ["date"]
    assert client.get("/fhir/CarePlan/no-such-plan/$progress").status_code == 404


def test_progress_runs_under_the_callers_access(client: TestClient, settings: Settings, tag: str,
                                               plan: dict[str, str]) -> None:
    coach = professional(client, tag, "reintegration-consultant")
    headers = as_professional(settings, coach, "reintegration-consultant")
    resp = client.get(f"/fhir/CarePlan/{plan['plan']}/$progress", headers=headers)
    assert resp.status_code == 404  # no consent: the plan is not there for them
    grant(client, plan["patient"], [permit(f"PractitionerRole/{coach}", labels=["work-context"])], tag)
    body = progress(client, plan["plan"], headers, date="2026-03-05")
    assert value(body, "status") == "ahead"
    # a consent for the plan alone: the hours worked stay hidden, so progress cannot be judged
    other = professional(client, tag, "reintegration-consultant")
    grant(client, plan["patient"], [permit(f"PractitionerRole/{other}", labels=["work-context"],
                                           types=["CarePlan"])], tag)
    narrow = progress(client, plan["plan"], as_professional(settings, other, "reintegration-consultant"),
                      date="2026-03-05")
    assert value(narrow, "status") == "not-assessable" and not named(narrow, "period")
    assert parts(named(narrow, "currentPhase")[0])["name"] == "Fase 2"
