"""CarePlan/[id]/$progress: planned against worked hours in a phase-based return-to-work plan.

The plan is encoded as the demo data does (service/demo/data/README.md): each phase is an
activity whose `detail.code` is pgo-work-observation#worked-hours-per-week, with a
`scheduledPeriod`, the target hours per week in `detail.quantity` and a `detail.status`; an
extended phase says why in `detail.statusReason`; agreed workplace adjustments are activities
coded from CodeSystem workplace-adjustment. Hours actually worked are worked-hours Observations,
one per period.

Why the current phase comes from the phases' status and not from the calendar: return to work
is complaint-contingent (NVAB guideline, guide for labour experts ch. 4.4), so a phase ends when
the professionals and the employee decide it does; the schedule is only the fallback when no
phase is marked in progress, and a phase running past its planned end is reported as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from ..fhir.outcome import FhirError
from .registry import Operation, OperationCall, OperationResult
from .workdata import (
    HOURS_PER_WEEK,
    PW,
    Found,
    Span,
    as_of,
    codes,
    concept_texts,
    effective,
    format_hours,
    hours_per_week,
    may_read,
    search_all,
    span_of,
)

ADJUSTMENT = "https://pgo-work.nl/fhir/CodeSystem/workplace-adjustment"
DEFINITION = "https://pgo-work.nl/fhir/OperationDefinition/CarePlan-progress"
UCUM = "http://unitsofmeasure.org"
COUNTED = "final,amended,corrected"


def quantity(value: float) -> dict[str, Any]:
    return {"value": round(value, 2), "unit": HOURS_PER_WEEK, "system": UCUM, "code": HOURS_PER_WEEK}


@dataclass(frozen=True)
class Phase:
    number: int
    name: str
    span: Span | None
    target: float | None
    status: str | None
    description: str | None
    extended_reason: str | None


@dataclass(frozen=True)
class Period:
    found: Found
    span: Span
    worked: float
    planned: float | None

    @property
    def difference(self) -> float | None:
        return None if self.planned is None else self.worked - self.planned

    @property
    def status(self) -> str:
        diff = self.difference
        if diff is None:
            return "outside-plan"
        return "ahead" if diff > 0 else "behind" if diff < 0 else "on-track"


def _phases(plan: dict[str, Any]) -> list[Phase]:
    out: list[Phase] = []
    for activity in plan.get("activity") or []:
        detail = activity.get("detail") or {}
        if "worked-hours-per-week" not in codes(detail.get("code"), PW):
            continue
        number = len(out) + 1
        out.append(Phase(
            number=number,
            name=(detail.get("code") or {}).get("text") or f"Fase {number}",
            span=span_of(detail.get("scheduledPeriod")),
            target=hours_per_week(detail.get("quantity")),
            status=detail.get("status"),
            description=detail.get("description"),
            extended_reason=(detail.get("statusReason") or {}).get("text"),
        ))
    return out


def _current(phases: list[Phase], when: date) -> tuple[Phase | None, str]:
    """The phase in progress by its status (the latest if several), else by the schedule."""
    running = [p for p in phases if p.status == "in-progress"]
    if running:
        return max(running, key=lambda p: (p.span.start if p.span else date.min, p.number)), "status"
    scheduled = [p for p in phases if p.span and p.span.covers(when)]
    if scheduled:
        return scheduled[-1], "schedule"
    return None, "none"


def _planned(phases: list[Phase], span: Span, until: date) -> float | None:
    """Target hours over a worked period: the phases' targets weighted by overlapping days."""
    weighted, days = 0.0, 0
    for phase in phases:
        if phase.span is None or phase.target is None:
            continue
        overlap = phase.span.overlap_days(span, until)
        weighted += overlap * phase.target
        days += overlap
    return weighted / days if days else None


def _phase_part(name: str, phase: Phase) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"name": "name", "valueString": phase.name},
                                   {"name": "number", "valueInteger": phase.number}]
    if phase.status:
        parts.append({"name": "status", "valueCode": phase.status})
    if phase.span:
        parts.append({"name": "start", "valueDate": phase.span.start.isoformat()})
        if phase.span.end:
            parts.append({"name": "plannedEnd", "valueDate": phase.span.end.isoformat()})
    if phase.target is not None:
        parts.append({"name": "target", "valueQuantity": quantity(phase.target)})
    if phase.description:
        parts.append({"name": "description", "valueString": phase.description})
    parts.append({"name": "extended", "valueBoolean": phase.extended_reason is not None})
    if phase.extended_reason:
        parts.append({"name": "extendedReason", "valueString": phase.extended_reason})
    return {"name": name, "part": parts}


def _period_part(period: Period) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"name": "observation", "valueReference": {"reference": period.found.ref}},
        {"name": "start", "valueDate": period.span.start.isoformat()},
    ]
    if period.span.end:
        parts.append({"name": "end", "valueDate": period.span.end.isoformat()})
    if period.planned is not None:
        parts.append({"name": "planned", "valueQuantity": quantity(period.planned)})
    parts.append({"name": "worked", "valueQuantity": quantity(period.worked)})
    if period.difference is not None:
        parts.append({"name": "difference", "valueQuantity": quantity(period.difference)})
    parts.append({"name": "status", "valueCode": period.status})
    return {"name": "period", "part": parts}


def _adjustments(call: OperationCall, plan: dict[str, Any]) -> list[dict[str, Any]]:
    names = concept_texts(call, ADJUSTMENT)
    out = []
    for activity in plan.get("activity") or []:
        detail = activity.get("detail") or {}
        for code in codes(detail.get("code"), ADJUSTMENT):
            display = names.get(code, (code, code))[0]
            parts: list[dict[str, Any]] = [{"name": "code", "valueCoding": {
                "system": ADJUSTMENT, "code": code, "display": display}}]
            if detail.get("status"):
                parts.append({"name": "status", "valueCode": detail["status"]})
            span = span_of(detail.get("scheduledPeriod"))
            if span:
                parts.append({"name": "start", "valueDate": span.start.isoformat()})
                if span.end:
                    parts.append({"name": "end", "valueDate": span.end.isoformat()})
            if detail.get("description"):
                parts.append({"name": "description", "valueString": detail["description"]})
            out.append({"name": "adjustment", "part": parts})
    return out


def _trend(periods: list[Period]) -> tuple[str, Period | None, date | None]:
    """Status of the latest compared period, and since when it has been so without a break."""
    compared = [p for p in periods if p.planned is not None]
    if not compared:
        return "no-data", None, None
    latest = compared[-1]
    since = latest.span.start
    for p in reversed(compared[:-1]):
        if p.status != latest.status:
            break
        since = p.span.start
    return latest.status, latest, since


async def progress(call: OperationCall) -> OperationResult:
    assert call.id is not None
    plan = (await call.store.read("CarePlan", call.id)).json()
    when = as_of(call)
    subject = (plan.get("subject") or {}).get("reference", "")
    if not subject.startswith("Patient/"):
        raise FhirError(422, "business-rule", "$progress needs a CarePlan whose subject is a Patient",
                        "CarePlan.subject")
    patient = subject.split("/", 1)[1]
    phases = _phases(plan)
    if not phases:
        raise FhirError(422, "business-rule", "This CarePlan has no phases: no activity is coded "
                        f"{PW}#worked-hours-per-week", "CarePlan.activity")
    current, basis = _current(phases, when)
    out: list[dict[str, Any]] = [
        {"name": "carePlan", "valueReference": {"reference": f"CarePlan/{call.id}"}},
        *[{"name": "goal", "valueReference": {"reference": g["reference"]}}
          for g in plan.get("goal") or [] if isinstance(g, dict) and g.get("reference")],
        {"name": "date", "valueDate": when.isoformat()},
    ]
    periods: list[Period] = []
    if may_read(call, patient, "Observation", "work-context"):
        found = await search_all(call, "Observation", [
            ("patient", patient), ("code", f"{PW}|worked-hours-per-week"), ("status", COUNTED)])
        for f in found:
            span, worked = effective(f.resource), hours_per_week(f.resource.get("valueQuantity"))
            if span is None or worked is None or span.start > when:
                continue
            periods.append(Period(f, span, worked, _planned(phases, span, when)))
        periods.sort(key=lambda p: (p.span.start, p.found.ref))
        status, latest, since = _trend(periods)
    else:
        status, latest, since = "not-assessable", None, None
        out.append({"name": "reason", "valueString": "Not assessable with your access: the hours "
                    "worked are work-context data, which your access to this record does not cover."})
    out.append({"name": "status", "valueCode": status})
    if since is not None:
        out.append({"name": "since", "valueDate": since.isoformat()})
    if latest is not None and latest.difference is not None:
        out.append({"name": "difference", "valueQuantity": quantity(latest.difference)})
        out.append({"name": "summary", "valueString": _summary(status, latest, since)})
    if current is not None:
        part = _phase_part("currentPhase", current)
        part["part"].append({"name": "basis", "valueCode": basis})
        overdue = current.span is not None and current.span.end is not None and when > current.span.end
        part["part"].append({"name": "pastPlannedEnd", "valueBoolean": overdue})
        out.append(part)
    out += [_phase_part("phase", p) for p in phases]
    out += [_period_part(p) for p in periods]
    out += _adjustments(call, plan)
    return OperationResult({"resourceType": "Parameters", "parameter": out})


def _summary(status: str, latest: Period, since: date | None) -> str:
    assert latest.planned is not None
    words = {"ahead": "ahead of", "behind": "behind", "on-track": "on"}[status]
    start = since.isoformat() if since else latest.span.start.isoformat()
    return (f"Worked {format_hours(latest.worked)} h/wk against {format_hours(round(latest.planned, 2))} "
            f"h/wk planned: {words} plan since {start}.")


OPERATIONS = [
    Operation("progress", frozenset({"instance"}), progress, frozenset({"CarePlan"}),
              definition=DEFINITION),
]
