"""Builders and readers for the tests of the derived operations ($late-effects-signals,
$progress, $work-summary) and of finding professionals: work observations as the profiles
want them, professionals of our own (so consents naming them touch no other test), the demo
data, and the shape of a Parameters answer."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi.testclient import TestClient

from service.config import Settings
from service.demo.loader import DEMO_TAG, seed
from service.runtime import build_runtime

from .auth_helpers import auth, token
from .helpers import create, tagged

BASE = "https://pgo-work.nl/fhir"
PW = f"{BASE}/CodeSystem/pgo-work-observation"
RED_FLAG = f"{BASE}/CodeSystem/late-effect-red-flag"
LATE_EFFECT = f"{BASE}/CodeSystem/late-effect"
ROLE = f"{BASE}/CodeSystem/professional-role"
UCUM = "http://unitsofmeasure.org"
DEMO = f"{DEMO_TAG['system']}|{DEMO_TAG['code']}"
SELF_REPORTED = {"work-private-balance": "work-private-balance",
                 "burnout-like-complaints": "burnout-like-exhaustion",
                 "work-problems-no-clear-cause": "work-problems-no-clear-cause"}
"""Red flag -> the late-effect code the questionnaire reports it with."""


def seed_demo(settings: Settings) -> None:
    """Load the demo data into the test database (idempotent: unchanged resources stay)."""
    async def run() -> None:
        rt = build_runtime(settings)
        try:
            await seed(rt)
        finally:
            await rt.close()

    asyncio.run(run())


def _observation(tag: str, pid: str, profile: str, code: str, **fields: Any) -> dict[str, Any]:
    return tagged({
        "resourceType": "Observation", "meta": {"profile": [f"{BASE}/StructureDefinition/{profile}"]},
        "status": "final", "code": {"coding": [{"system": PW, "code": code}]},
        "subject": {"reference": f"Patient/{pid}"}, **fields}, tag)


def _pct(code: str, value: float) -> dict[str, Any]:
    return {"code": {"coding": [{"system": PW, "code": code}]},
            "valueQuantity": {"value": value, "unit": "%", "system": UCUM, "code": "%"}}


def sick_leave(tag: str, pid: str, start: str, end: str | None = None, pct: float = 100) -> dict[str, Any]:
    period = {"start": start, **({"end": end} if end else {})}
    return _observation(tag, pid, "sick-leave-episode", "sick-leave-episode", effectivePeriod=period,
                        component=[_pct("sick-leave-percentage", pct)])


def wia(tag: str, pid: str, status: str, start: str, end: str | None = None) -> dict[str, Any]:
    """A WIA status; current while the period has no end."""
    current = end is None
    period = {"start": start, **({"end": end} if end else {})}
    return _observation(
        tag, pid, "wia-benefit", "wia-status", effectivePeriod=period,
        valueCodeableConcept={"coding": [{"system": f"{BASE}/CodeSystem/wia-status", "code": status}]},
        component=[{"code": {"coding": [{"system": PW, "code": "benefit-current"}]},
                    "valueBoolean": current},
                   *([_pct("wia-degree", {"partial": 50, "full": 100}[status])]
                     if status in ("partial", "full") else [])])


def worked_hours(tag: str, pid: str, hours: float, start: str, end: str) -> dict[str, Any]:
    return _observation(tag, pid, "worked-hours", "worked-hours-per-week",
                        effectivePeriod={"start": start, "end": end},
                        valueQuantity={"value": hours, "unit": "h/wk", "system": UCUM, "code": "h/wk"})


def late_effect(tag: str, pid: str, flag: str, severity: str, when: str) -> dict[str, Any]:
    """A self-report of the complaint behind a self-reportable red flag."""
    return tagged({
        "resourceType": "Observation",
        "meta": {"profile": [f"{BASE}/StructureDefinition/late-effect-report"]},
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "survey"}]}],
        "code": {"coding": [{"system": LATE_EFFECT, "code": SELF_REPORTED[flag]},
                            {"system": RED_FLAG, "code": flag}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        "valueCodeableConcept": {"coding": [{"system": f"{BASE}/CodeSystem/symptom-severity",
                                             "code": severity}]},
    }, tag)


def work_goal(tag: str, pid: str, hours: float = 24, due: str = "2027-06-01") -> dict[str, Any]:
    return tagged({
        "resourceType": "Goal", "meta": {"profile": [f"{BASE}/StructureDefinition/work-goal"]},
        "lifecycleStatus": "active",
        "category": [{"coding": [{"system": f"{BASE}/CodeSystem/goal-category", "code": "work"}]}],
        "description": {"text": f"Weer {hours} uur per week werken"},
        "subject": {"reference": f"Patient/{pid}"},
        "target": [{"measure": {"coding": [{"system": PW, "code": "worked-hours-per-week"}]},
                    "detailQuantity": {"value": hours, "unit": "h/wk", "system": UCUM, "code": "h/wk"},
                    "dueDate": due}]}, tag)


def phase(n: int, start: str, end: str, hours: float, status: str,
          reason: str | None = None) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "kind": "Task", "status": status,
        "code": {"coding": [{"system": PW, "code": "worked-hours-per-week"}], "text": f"Fase {n}"},
        "scheduledPeriod": {"start": start, "end": end},
        "quantity": {"value": hours, "unit": "h/wk", "system": UCUM, "code": "h/wk"},
        "description": f"Fase {n}: {hours} uur per week."}
    if reason:
        detail["statusReason"] = {"text": reason}
    return {"detail": detail}


def adjustment(code: str, start: str, text: str, status: str = "in-progress") -> dict[str, Any]:
    coding = {"system": f"{BASE}/CodeSystem/workplace-adjustment", "code": code}
    return {"detail": {"kind": "Task", "status": status, "description": text,
                       "code": {"coding": [coding]}, "scheduledPeriod": {"start": start}}}


def rtw_plan(tag: str, pid: str, goal: str | None, activities: list[dict[str, Any]]) -> dict[str, Any]:
    plan = {
        "resourceType": "CarePlan", "meta": {"profile": [f"{BASE}/StructureDefinition/rtw-careplan"]},
        "status": "active", "intent": "plan",
        "category": [{"coding": [{"system": f"{BASE}/CodeSystem/careplan-category",
                                  "code": "return-to-work"}]}],
        "title": "Opbouwplan", "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": "2026-01-05", "end": "2026-06-30"}, "activity": activities}
    if goal:
        plan["goal"] = [{"reference": f"Goal/{goal}"}]
    return tagged(plan, tag)


def professional(client: TestClient, tag: str, role: str, family: str = "Test") -> str:
    """A Practitioner and a PractitionerRole with a professional-role code; the role's id."""
    prac = create(client, tagged({"resourceType": "Practitioner",
                                  "name": [{"family": family, "given": [role]}]}, tag))
    return str(create(client, tagged({
        "resourceType": "PractitionerRole", "active": True,
        "practitioner": {"reference": f"Practitioner/{prac['id']}"},
        "code": [{"coding": [{"system": ROLE, "code": role}]}]}, tag))["id"])


def as_professional(settings: Settings, role_id: str, role: str,
                    scope: str = "user/*.cruds") -> dict[str, str]:
    """Headers of a professional's token (fhirUser PractitionerRole/<id>)."""
    return auth(token(settings, scope, fhir_user=f"PractitionerRole/{role_id}", role=role))


def as_patient(settings: Settings, pid: str) -> dict[str, str]:
    return auth(token(settings, "patient/*.rs", fhir_user=f"Patient/{pid}", patient=pid, role="patient"))


def parts(parameter: dict[str, Any]) -> dict[str, Any]:
    """name -> value of the single-valued parts of a Parameters parameter."""
    out: dict[str, Any] = {}
    for p in parameter.get("part", []):
        value = next((v for k, v in p.items() if k.startswith("value")), p.get("part"))
        out.setdefault(p["name"], value)
    return out


def named(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [p for p in body["parameter"] if p["name"] == name]


def flags(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Red-flag code -> the flag parameter of a $late-effects-signals answer."""
    return {parts(p)["code"]["code"]: p for p in named(body, "flag")}
