"""Patient/[id]/$work-summary: an employer-safe document the patient hands to their employer.

Safe by construction, not by the caller's good judgement: the summary is an ALLOWLIST of what an
employer may know (Dutch DPA policy rules on sick employees, 2016), and everything else is never
read or never copied:
- activities-and-participation limitations in work terms (ICF d-categories listed in
  profiles/rules/work-summary.json, with the FML norm where one is recorded) and the hours
  limitation (hours per day and per week, never its reason); never an ICF body function or
  structure (b, s), an environmental factor (e: e3xx is family) or a complaint;
- statements written for the employer (profile employer-statement), agreed adjustments (coded),
  the work goal, the plan and its phases (coded hours, dates, status) and the expected duration;
- free text only where it was written for the employer (the employer-text extension, an
  employer statement), never a description, title or note; a silent second check drops such
  text when it carries medical wording, and nothing says how many texts were left out, so the
  document never tells that medical text existed;
- every search carries `data-category:not=medical` (a constant, not a rule a file could loosen)
  and `_not_medical` drops whatever slipped through; sick leave, benefits, self-reported health
  and BAR answers are never searched.
It runs under the caller's access: an employer (who may only ever see work context and the
employer summary) gets the goal, plan, adjustments and statements; the patient or their
occupational physician also the translated capacity. The answer is a Bundle of type document: a
Composition with the narrative, the Patient reduced to their name (tagged SUBSETTED), and the
same content as a PDF in a Binary. Nothing is stored.
"""

from __future__ import annotations

import base64
import uuid
from datetime import date
from typing import Any

from ..fhir import dates
from .registry import Operation, OperationCall, OperationResult
from .summary_render import Section, Summary, document_div, pdf, section_div
from .workdata import (
    DATA_CATEGORY,
    PW,
    Found,
    codes,
    component,
    concept_texts,
    day,
    format_hours,
    hours_per_week,
    patient_id,
    rules_file,
    search_all,
    span_of,
)

MEDICAL = "medical"
NOT_MEDICAL = ("data-category:not", MEDICAL)
RULES = "work-summary.json"
DEFINITION = "https://pgo-work.nl/fhir/OperationDefinition/Patient-work-summary"
BASE = "https://pgo-work.nl/fhir/CodeSystem"
ICF = "http://hl7.org/fhir/sid/icf"
QUALIFIER = f"{BASE}/icf-qualifier"
ADJUSTMENT = f"{BASE}/workplace-adjustment"
EMPLOYER_TEXT = "https://pgo-work.nl/fhir/StructureDefinition/employer-text"
SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED",
             "display": "subsetted"}
ACTIVE_GOALS = {"proposed", "planned", "accepted", "active", "on-hold"}
ACTIVE_PLANS = {"draft", "active", "on-hold"}
FINAL = ("status", "final,amended,corrected")
STATUS_NL = {"completed": "afgerond", "in-progress": "bezig", "not-started": "nog niet gestart",
             "scheduled": "gepland", "on-hold": "gepauzeerd", "stopped": "gestopt",
             "cancelled": "vervallen", "unknown": "onbekend"}
DROPPED_ACTIVITIES = {"cancelled", "entered-in-error", "stopped"}
TITLE = "Werkoverzicht voor de werkgever"
ABOUT = ("Dit overzicht is door de werknemer zelf aan u gegeven. Het bevat alleen wat de werknemer "
         "in het werk wel en (nog) niet kan, afgesproken aanpassingen, het plan voor de opbouw van "
         "het werk en hoe lang dat naar verwachting duurt. Medische gegevens staan er bewust niet in: "
         "die zijn privé. Tekst staat er alleen in als die voor u, de werkgever, is geschreven.")


class Wording:
    """Text written for the employer goes through here: None when it carries medical wording.
    Deliberately silent: how many texts were dropped is not counted anywhere."""

    def __init__(self, terms: list[str]) -> None:
        self.terms = [t.lower() for t in terms]

    def clean(self, text: Any) -> str | None:
        if not isinstance(text, str) or not text.strip():
            return None
        lowered = text.lower()
        if any(term in lowered for term in self.terms):
            return None
        return text.strip()


def employer_text(element: Any, words: Wording) -> str | None:
    """The text written for the employer on a Goal, CarePlan or activity (extension
    employer-text), never the element's own description or title."""
    if not isinstance(element, dict):
        return None
    for ext in element.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == EMPLOYER_TEXT:
            return words.clean(ext.get("valueString"))
    return None


def _not_medical(found: list[Found]) -> list[Found]:
    """Second line of defence: drop anything that carries the medical label after all."""
    return [f for f in found if not any(
        s.get("system") == DATA_CATEGORY and s.get("code") == MEDICAL
        for s in (f.resource.get("meta") or {}).get("security") or [])]


async def _search(call: OperationCall, rtype: str, params: list[tuple[str, str]]) -> list[Found]:
    return _not_medical(await search_all(call, rtype, [*params, NOT_MEDICAL]))


def _nl_date(value: date | None) -> str:
    return value.strftime("%d-%m-%Y") if value else ""


def _period_text(period: Any) -> str:
    span = span_of(period)
    if span is None:
        return ""
    return f"{_nl_date(span.start)} t/m {_nl_date(span.end)}" if span.end else f"vanaf {_nl_date(span.start)}"


def _until(period: Any) -> str:
    """' (naar verwachting t/m <end>)' for a period with an end: the expected duration."""
    span = span_of(period)
    return f" (naar verwachting t/m {_nl_date(span.end)})" if span is not None and span.end else ""


def _goal_section(call: OperationCall, goals: list[Found], words: Wording) -> Section | None:
    measures = concept_texts(call, PW)
    statuses = concept_texts(call, f"{BASE}/work-status")
    section = Section("Werkdoel")
    for goal in goals:
        g = goal.resource
        text = employer_text(g, words)
        if text:
            section.paragraphs.append(text)
        for target in g.get("target") or []:
            measure = next(iter(codes(target.get("measure"), PW)), None)
            if measure is None:
                continue
            what = measures.get(measure, (measure, measure))[1]
            hours = hours_per_week(target.get("detailQuantity"))
            status = next(iter(codes(target.get("detailCodeableConcept"), f"{BASE}/work-status")), None)
            value = (f"{format_hours(hours)} uur per week" if hours is not None
                     else statuses.get(status, (status, status))[1] if status else None)
            if value is None:
                continue
            due = day(target.get("dueDate"))
            section.items.append(f"{what}: {value}" + (f" (uiterlijk {_nl_date(due)})" if due else ""))
    return section if section.paragraphs or section.items else None


def _norm_line(item: dict[str, Any], name: str, norms: dict[str, str]) -> str | None:
    """The finding in the FML's own norm ('Tillen en dragen: niet meer dan 10 kg'), if recorded."""
    quantity = (component(item, PW, "fml-norm") or {}).get("valueQuantity") or {}
    value, unit = quantity.get("value"), quantity.get("code")
    if not isinstance(value, int | float) or unit not in norms:
        return None
    return norms[unit].format(name=name, value=format_hours(float(value)))


def _capacity_sections(items: list[Found], rules: dict[str, Any]) -> list[Section]:
    """Latest finding per listed ICF d-category, in work terms; everything else is left out."""
    terms: dict[str, str] = rules["workTerms"]["terms"]
    grades: dict[str, str] = rules["grades"]["wording"]
    norms: dict[str, str] = rules["norms"]["wording"]
    limit_from = int(rules["limitationFromQualifier"]["value"])
    latest: dict[str, dict[str, Any]] = {}
    for item in items:
        r = item.resource
        code = next(iter(codes(r.get("code"), ICF)), None)
        if code not in terms or not codes(r.get("valueCodeableConcept"), QUALIFIER):
            continue  # the allowlist: only the d-categories named for employers
        when = r.get("effectiveDateTime") or ""
        if code not in latest or when >= (latest[code].get("effectiveDateTime") or ""):
            latest[code] = r
    possible, limited = Section("Mogelijkheden"), Section("Beperkingen")
    for code, r in sorted(latest.items()):
        qualifier = codes(r.get("valueCodeableConcept"), QUALIFIER)[0]
        if qualifier not in grades:
            continue  # 8 not specified, 9 not applicable
        name = terms[code]
        line = _norm_line(r, name, norms) or f"{name}: {grades[qualifier]}"
        (limited if int(qualifier) >= limit_from else possible).items.append(line)
    return [s for s in (possible, limited) if s.items]


def _hours_lines(limits: list[Found]) -> list[str]:
    """The latest hours limitation as the employer may know it: hours and expected duration."""
    if not limits:
        return []
    latest = max(limits, key=lambda f: str((f.resource.get("effectivePeriod") or {}).get("start") or ""))
    r = latest.resource
    parts = []
    for code, unit in (("hours-per-day", "per dag"), ("hours-per-week", "per week")):
        value = ((component(r, PW, code) or {}).get("valueQuantity") or {}).get("value")
        if isinstance(value, int | float):
            parts.append(f"{format_hours(float(value))} uur {unit}")
    if not parts:
        return []
    return [f"Kan maximaal {' en '.join(parts)} werken" + _until(r.get("effectivePeriod"))]


def _statement_section(statements: list[Found], words: Wording) -> Section | None:
    section = Section("Toelichting voor de werkgever")
    ordered = sorted(statements, key=lambda f: (
        next(iter(codes((component(f.resource, PW, "fml-item") or {}).get("valueCodeableConcept"),
                        f"{BASE}/fml-rubriek")), "9"), f.resource.get("id", "")))
    for found in ordered:
        text = words.clean(found.resource.get("valueString"))
        if text:
            section.items.append(text + _until(found.resource.get("effectivePeriod")))
    return section if section.items else None


def _plan_sections(call: OperationCall, plans: list[Found], words: Wording) -> list[Section]:
    names = concept_texts(call, ADJUSTMENT)
    adjustments, plan_section = Section("Afgesproken aanpassingen"), Section("Re-integratieplan")
    for found in plans:
        plan = found.resource
        period = _period_text(plan.get("period"))
        if period:
            plan_section.paragraphs.append(f"Looptijd: {period}")
        text = employer_text(plan, words)
        if text:
            plan_section.paragraphs.append(text)
        current, number = None, 0
        for activity in plan.get("activity") or []:
            detail = activity.get("detail") or {}
            status = detail.get("status")
            if status in DROPPED_ACTIVITIES:
                continue
            when = _period_text(detail.get("scheduledPeriod"))
            note = employer_text(activity, words)
            state = STATUS_NL.get(status or "", status or "")
            adjustment = next(iter(codes(detail.get("code"), ADJUSTMENT)), None)
            if adjustment is not None:
                label = names.get(adjustment, (adjustment, adjustment))[1]
                line = f"{label} ({when}; {state})" if when else f"{label} ({state})"
                adjustments.items.append(line + (f": {note}" if note else ""))
            elif "worked-hours-per-week" in codes(detail.get("code"), PW):
                number += 1
                phase = f"Fase {number}"
                hours = hours_per_week(detail.get("quantity"))
                target = f"{format_hours(hours)} uur per week" if hours is not None else ""
                line = ", ".join(x for x in (f"{phase} ({when})" if when else phase, target, state) if x)
                plan_section.items.append(line + (f". {note}" if note else ""))
                if status == "in-progress":
                    current = f"Huidige fase: {phase}" + (f", {target}" if target else "") + "."
        if current:
            plan_section.paragraphs.append(current)
    return [s for s in (adjustments, plan_section) if s.items or s.paragraphs]


def _person(patient: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    names = patient.get("name") or []
    name = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    text = name.get("text") or " ".join([*name.get("given", []), name.get("family", "")]).strip()
    return text or "Werknemer", [name] if name else []


async def work_summary(call: OperationCall) -> OperationResult:
    pid = await patient_id(call)
    rules = rules_file(call, RULES)
    words = Wording(rules["medicalWording"]["terms"])
    patient = (await call.store.read("Patient", pid)).json()
    person, names = _person(patient)
    goals = [g for g in await _search(call, "Goal", [
        ("patient", pid), ("category", f"{BASE}/goal-category|work")])
        if g.resource.get("lifecycleStatus") in ACTIVE_GOALS]
    plans = [p for p in await _search(call, "CarePlan", [
        ("patient", pid), ("category", f"{BASE}/careplan-category|return-to-work")])
        if p.resource.get("status") in ACTIVE_PLANS]
    items = await _search(call, "Observation", [
        ("patient", pid), ("data-category", "functional-capacity"), ("code", f"{ICF}|"), FINAL])
    limits = await _search(call, "Observation", [
        ("patient", pid), ("code", f"{PW}|hours-limitation"), FINAL])
    statements = await _search(call, "Observation", [
        ("patient", pid), ("data-category", "employer-summary"), ("code", f"{PW}|employer-statement"),
        FINAL])
    sections = [s for s in [_goal_section(call, goals, words)] if s]
    capacity = _capacity_sections(items, rules)
    hours = _hours_lines(limits)
    if hours:
        limited = next((s for s in capacity if s.title == "Beperkingen"), None)
        if limited is None:
            limited = Section("Beperkingen")
            capacity.append(limited)
        limited.items[:0] = hours
    sections += capacity
    sections += [s for s in [_statement_section(statements, words)] if s]
    sections += _plan_sections(call, plans, words)
    about = Section("Over dit overzicht", [ABOUT])
    if not sections:
        about.paragraphs.append("Er zijn (nog) geen mogelijkheden, aanpassingen of plannen vastgelegd.")
    now = dates.utcnow()
    summary = Summary(TITLE, person, _nl_date(now.date()), [*sections, about])
    return OperationResult(_bundle(call, pid, names, summary, pdf(summary, now)))


def _bundle(call: OperationCall, pid: str, names: list[dict[str, Any]], summary: Summary,
            document: bytes) -> dict[str, Any]:
    base = call.runtime.base_url
    stamp = dates.to_instant(dates.utcnow())
    composition_id, binary_id = str(uuid.uuid4()), str(uuid.uuid4())
    sections: list[dict[str, Any]] = [
        {"title": s.title, "text": {"status": "generated", "div": section_div(s)}} for s in summary.sections]
    sections.append({"title": "PDF", "text": {"status": "generated", "div": section_div(Section(
        "PDF", ["Hetzelfde overzicht als PDF is bijgevoegd."]))},
        "entry": [{"reference": f"urn:uuid:{binary_id}"}]})
    composition = {
        "resourceType": "Composition", "id": composition_id, "language": "nl",
        "text": {"status": "generated", "div": document_div(summary)},
        "status": "final", "type": {"text": TITLE},
        "subject": {"reference": f"Patient/{pid}"}, "date": stamp,
        "author": [{"reference": f"Patient/{pid}"}], "title": TITLE,
        "section": sections,
    }
    patient = {"resourceType": "Patient", "id": pid, "meta": {"tag": [SUBSETTED]}, "name": names}
    binary = {"resourceType": "Binary", "id": binary_id, "contentType": "application/pdf",
              "data": base64.b64encode(document).decode("ascii")}
    return {
        "resourceType": "Bundle", "id": str(uuid.uuid4()), "meta": {"lastUpdated": stamp},
        "language": "nl",
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "type": "document", "timestamp": stamp,
        "entry": [{"fullUrl": f"urn:uuid:{composition_id}", "resource": composition},
                  {"fullUrl": f"{base}/Patient/{pid}", "resource": patient},
                  {"fullUrl": f"urn:uuid:{binary_id}", "resource": binary}],
    }


OPERATIONS = [
    Operation("work-summary", frozenset({"instance"}), work_summary, frozenset({"Patient"}),
              definition=DEFINITION),
]
