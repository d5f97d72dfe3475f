"""Patient/[id]/$work-summary: an employer-safe document the patient hands to their employer.

Only functional possibilities and limitations, agreed workplace adjustments, the work goal and
the return-to-work plan; no diagnosis, treatment or medical wording. Why it is safe by
construction and not by the caller's good judgement:
- every search carries `data-category:not=medical` (MEDICAL below is a constant, not a rule a
  file could loosen), so a resource labelled medical never reaches the summary, even when the
  caller (the patient, their occupational physician) may see it; a resource that slipped
  through would still be dropped by `_not_medical`;
- only coded content and a few descriptive fields are copied, never notes, and free text with
  medical wording (profiles/rules/work-summary.json) is left out;
- sick leave, benefits and self-reported complaints are never read.
The answer is a Bundle of type document: a Composition with the narrative, the Patient reduced
to their name (tagged SUBSETTED), and the same content as a PDF in a Binary. Nothing is stored.
"""

from __future__ import annotations

import base64
import uuid
from datetime import date
from typing import Any

from ..fhir import dates
from ..fhir.digits import is_digits
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
QUALIFIER_TYPE = f"{BASE}/icf-qualifier-type"
ADJUSTMENT = f"{BASE}/workplace-adjustment"
SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED",
             "display": "subsetted"}
ACTIVE_GOALS = {"proposed", "planned", "accepted", "active", "on-hold"}
ACTIVE_PLANS = {"draft", "active", "on-hold"}
STATUS_NL = {"completed": "afgerond", "in-progress": "bezig", "not-started": "nog niet gestart",
             "scheduled": "gepland", "on-hold": "gepauzeerd", "stopped": "gestopt",
             "cancelled": "vervallen", "unknown": "onbekend"}
DROPPED_ACTIVITIES = {"cancelled", "entered-in-error", "stopped"}
TITLE = "Werkoverzicht voor de werkgever"


class Wording:
    """Free text goes through here: None when it carries medical wording (and it is counted)."""

    def __init__(self, terms: list[str]) -> None:
        self.terms = [t.lower() for t in terms]
        self.left_out = 0

    def clean(self, text: Any) -> str | None:
        if not isinstance(text, str) or not text.strip():
            return None
        lowered = text.lower()
        if any(term in lowered for term in self.terms):
            self.left_out += 1
            return None
        return text.strip()


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


def _goal_section(call: OperationCall, goals: list[Found], words: Wording) -> Section | None:
    measures = concept_texts(call, PW)
    statuses = concept_texts(call, f"{BASE}/work-status")
    section = Section("Werkdoel")
    for goal in goals:
        g = goal.resource
        text = words.clean((g.get("description") or {}).get("text"))
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


def _capacity_sections(call: OperationCall, items: list[Found], limit_from: int,
                       words: Wording) -> list[Section]:
    """Latest finding per ICF category, as a possibility or a limitation; never the notes."""
    latest: dict[str, Found] = {}
    for item in items:
        code = next(iter(codes(item.resource.get("code"), ICF)), None)
        if code is None or not codes(item.resource.get("valueCodeableConcept"), QUALIFIER):
            continue
        when = item.resource.get("effectiveDateTime") or ""
        if code not in latest or when >= (latest[code].resource.get("effectiveDateTime") or ""):
            latest[code] = item
    qualifiers, types = concept_texts(call, QUALIFIER), concept_texts(call, QUALIFIER_TYPE)
    possible, limited = Section("Mogelijkheden"), Section("Beperkingen")
    for code, item in sorted(latest.items()):
        r = item.resource
        qualifier = codes(r.get("valueCodeableConcept"), QUALIFIER)[0]
        if not is_digits(qualifier) or int(qualifier) > 4:
            continue  # 8 not specified, 9 not applicable
        coding = next(c for c in r["code"]["coding"] if c.get("system") == ICF)
        name = words.clean(coding.get("display") or r["code"].get("text") or code)
        if name is None:
            continue
        kind = next(iter(codes((component(r, PW, "icf-qualifier-type") or {}).get(
            "valueCodeableConcept"), QUALIFIER_TYPE)), None)
        grade = qualifiers.get(qualifier, (qualifier, qualifier))[1].lower()
        if kind in ("facilitator", "barrier"):
            line = f"{name}: {types[kind][1].lower()} ({grade})"
            (possible if kind == "facilitator" else limited).items.append(line)
        else:
            (limited if int(qualifier) >= limit_from else possible).items.append(f"{name}: {grade}")
    return [s for s in (possible, limited) if s.items]


def _plan_sections(call: OperationCall, plans: list[Found], words: Wording) -> list[Section]:
    names = concept_texts(call, ADJUSTMENT)
    adjustments, plan_section = Section("Afgesproken aanpassingen"), Section("Re-integratieplan")
    for found in plans:
        plan = found.resource
        title = words.clean(plan.get("title"))
        period = _period_text(plan.get("period"))
        if title or period:
            plan_section.paragraphs.append(", ".join(x for x in (title, period) if x))
        description = words.clean(plan.get("description"))
        if description:
            plan_section.paragraphs.append(description)
        current = None
        for activity in plan.get("activity") or []:
            detail = activity.get("detail") or {}
            status = detail.get("status")
            if status in DROPPED_ACTIVITIES:
                continue
            when = _period_text(detail.get("scheduledPeriod"))
            text = words.clean(detail.get("description"))
            state = STATUS_NL.get(status or "", status or "")
            adjustment = next(iter(codes(detail.get("code"), ADJUSTMENT)), None)
            if adjustment is not None:
                label = names.get(adjustment, (adjustment, adjustment))[1]
                line = f"{label} ({when}; {state})" if when else f"{label} ({state})"
                adjustments.items.append(line + (f": {text}" if text else ""))
            elif "worked-hours-per-week" in codes(detail.get("code"), PW):
                phase = words.clean((detail.get("code") or {}).get("text")) or "Fase"
                hours = hours_per_week(detail.get("quantity"))
                target = f"{format_hours(hours)} uur per week" if hours is not None else ""
                line = ", ".join(x for x in (f"{phase} ({when})" if when else phase, target, state) if x)
                plan_section.items.append(line + (f". {text}" if text else ""))
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
        ("patient", pid), ("data-category", "functional-capacity"), ("status", "final,amended,corrected")])
    sections = [s for s in [_goal_section(call, goals, words)] if s]
    sections += _capacity_sections(call, items, int(rules["limitationFromQualifier"]["value"]), words)
    sections += _plan_sections(call, plans, words)
    about = Section("Over dit overzicht", [
        "Dit overzicht is door de werknemer zelf aan u gegeven. Het bevat alleen functionele "
        "mogelijkheden en beperkingen, afgesproken aanpassingen en het plan voor de opbouw van het "
        "werk. Medische gegevens staan er bewust niet in: die zijn privé."])
    if not sections:
        about.paragraphs.append("Er zijn (nog) geen mogelijkheden, aanpassingen of plannen vastgelegd.")
    if words.left_out:
        about.paragraphs.append(f"{words.left_out} vrije tekst(en) zijn weggelaten omdat ze medische "
                                "termen kunnen bevatten.")
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
