"""EpisodeOfCare/[id]/$poortwachter: where a person is in the first two years of sickness (week
N), which Wet verbetering poortwachter steps are done (and which resource shows it), which are
due and which overdue, in Dutch or English, under the caller's access.

The case is an EpisodeOfCare of profile sickness-case (first sick day, employment type, the
steps recorded so far, postponement and loonsanctie); the sick days are counted from the
patient's sick-leave-episode Observations (`poortwachter_timeline.count_case`). Every week and
its legal source is data in `profiles/rules/poortwachter.json`, and which steps apply is data
too: a regime per employment type (employee, benefit via UWV, self-employed).

Access: the case is read through the caller's store (404 when they may not see it); the
sick-leave periods only when the caller's access covers absence data, else the case's own
period is counted and the answer says so; an evidence resource the caller may not read is
reported as "not visible with your access", without its reference.
"""

from __future__ import annotations

from typing import Any

from ..fhir.outcome import FhirError, bad_request
from .poortwachter_timeline import Assessed, Case, Event, Record, assess, count_case
from .registry import Operation, OperationCall, OperationResult
from .workdata import (
    PW,
    as_of,
    codes,
    concept_texts,
    day,
    effective,
    may_read,
    rules_file,
    search_all,
    span_of,
)

RULES = "poortwachter.json"
DEFINITION = "https://pgo-work.nl/fhir/OperationDefinition/EpisodeOfCare-poortwachter"
SD = "https://pgo-work.nl/fhir/StructureDefinition/"
EMPLOYMENT = "https://pgo-work.nl/fhir/CodeSystem/employment-type"
COUNTED = "final,amended,corrected"
LANGUAGES = ("nl", "en")


def language(call: OperationCall) -> str:
    """`_language` (nl | en, else 400), else the first nl/en tag of Accept-Language, else nl."""
    asked = call.value("_language")
    if asked is not None:
        if not isinstance(asked, str) or asked.split("-")[0].lower() not in LANGUAGES:
            raise bad_request("Parameter '_language' must be nl or en", "_language")
        return asked.split("-")[0].lower()
    for tag in call.headers.get("accept-language", "").split(","):
        lang = tag.split(";")[0].strip().split("-")[0].lower()
        if lang in LANGUAGES:
            return lang
    return "nl"


def _sub(ext: dict[str, Any], url: str) -> Any:
    for sub in ext.get("extension") or []:
        if isinstance(sub, dict) and sub.get("url") == url:
            return next((v for k, v in sub.items() if k.startswith("value")), None)
    return None


def _ref(value: Any) -> str | None:
    return value.get("reference") if isinstance(value, dict) else None


def _recorded(case: dict[str, Any]) -> tuple[list[Record], list[Event]]:
    records, events = [], []
    for ext in case.get("extension") or []:
        url = ext.get("url") if isinstance(ext, dict) else None
        when = day(_sub(ext, "date")) if url else None
        if url == SD + "poortwachter-milestone" and when and isinstance(_sub(ext, "code"), str):
            records.append(Record(_sub(ext, "code"), when, _ref(_sub(ext, "evidence")),
                                  _sub(ext, "decision")))
        elif url == SD + "poortwachter-event" and when and isinstance(_sub(ext, "weeks"), int):
            events.append(Event(_sub(ext, "code"), _sub(ext, "weeks"), when, _ref(_sub(ext, "evidence"))))
    return records, events


def _employment(case: dict[str, Any]) -> dict[str, Any] | None:
    for ext in case.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == SD + "sickness-case-employment-type":
            coding = ext.get("valueCoding")
            return coding if isinstance(coding, dict) else None
    return None


def _regime(rules: dict[str, Any], employment: dict[str, Any] | None) -> dict[str, Any] | None:
    code = (employment or {}).get("code")
    return next((r for r in rules["regimes"] if code in r["employmentTypes"]), None)


async def _periods(call: OperationCall, patient: str, case: dict[str, Any]) -> tuple[list[Any], bool]:
    """The sick periods to count, and whether they are the patient's sick-leave episodes (True)
    or only the case's own period (False: the caller may not see the episodes, or none exist)."""
    own = span_of(case.get("period"))
    if may_read(call, patient, "Observation", "absence-benefits"):
        found = await search_all(call, "Observation", [
            ("patient", patient), ("code", f"{PW}|sick-leave-episode"), ("status", COUNTED)])
        spans = [s for s in (effective(f.resource) for f in found) if s is not None]
        if own is not None:
            spans = [s for s in spans if s.end is None or s.end >= own.start]
        if spans:
            return spans, True
    return ([own] if own else []), False


async def _visible(call: OperationCall, reference: str | None) -> bool | None:
    if not reference or "/" not in reference:
        return None
    rtype, rid = reference.split("/", 1)
    try:
        await call.store.read(rtype, rid)
    except FhirError:
        return False
    return True


def _text(texts: dict[str, Any], lang: str) -> str:
    return str(texts.get(lang) or texts.get("en") or "")


async def _milestone(call: OperationCall, item: Assessed, rules: dict[str, Any], lang: str,
                     names: dict[str, tuple[str, str]]) -> dict[str, Any]:
    en, nl = names.get(item.code, (item.code, item.code))
    parts: list[dict[str, Any]] = [
        {"name": "code", "valueCoding": {"system": rules["codeSystem"], "code": item.code, "display": en}},
        {"name": "title", "valueString": nl if lang == "nl" else en},
        {"name": "status", "valueCode": item.status},
        {"name": "statusText", "valueString": _text(rules["statusTexts"].get(item.status, {}), lang)},
        {"name": "actor", "valueCode": item.rule.get("actor", "")},
    ]
    if item.deadline_week is not None:
        parts.append({"name": "deadlineWeek", "valueInteger": item.deadline_week})
    if item.moved_weeks:
        parts.append({"name": "movedWeeks", "valueInteger": item.moved_weeks})
    if item.due_from is not None:
        parts.append({"name": "dueFrom", "valueDate": item.due_from.isoformat()})
    if item.deadline is not None:
        parts.append({"name": "deadline", "valueDate": item.deadline.isoformat()})
    if item.rule.get("kind") == "recurring":
        parts.append({"name": "count", "valueInteger": item.count})
    if item.done is not None:
        parts.append({"name": "done", "valueDate": item.done.when.isoformat()})
        visible = await _visible(call, item.done.evidence)
        if visible:
            parts.append({"name": "evidence", "valueReference": {"reference": item.done.evidence}})
        elif visible is False:
            parts.append({"name": "evidenceNote", "valueString": "niet zichtbaar met uw toegang"
                          if lang == "nl" else "not visible with your access"})
    parts.append({"name": "source", "valueString": item.rule["source"]})
    parts.append({"name": "verified", "valueBoolean": bool(item.rule.get("verified", False))})
    return {"name": "milestone", "part": parts}


def _summary(case: Case, items: list[Assessed], lang: str, names: dict[str, tuple[str, str]],
             regime_text: str) -> str:
    def titles(status: str) -> str:
        chosen = [names.get(i.code, (i.code, i.code))[1 if lang == "nl" else 0]
                  for i in items if i.status == status]
        return ", ".join(chosen) or ("geen" if lang == "nl" else "none")

    if lang == "nl":
        where = f"Week {case.week} van het verzuim (ziektedag {case.sick_days})."
        return f"{where} {regime_text} Gedaan: {titles('done')}. Nu aan de beurt: {titles('due')}. " \
               f"Te laat: {titles('overdue')}."
    where = f"Week {case.week} of the absence (sick day {case.sick_days})."
    return f"{where} {regime_text} Done: {titles('done')}. Due: {titles('due')}. " \
           f"Overdue: {titles('overdue')}."


def _state(case: Case) -> str:
    if case.ended:
        return "ended"
    return "recovered" if case.recovered_since is not None else "sick"


async def poortwachter(call: OperationCall) -> OperationResult:
    assert call.id is not None
    resource = (await call.store.read("EpisodeOfCare", call.id)).json()
    rules = rules_file(call, RULES)
    if "sickness-case" not in codes(resource.get("type"), rules["codeSystem"]):
        raise FhirError(422, "business-rule", "$poortwachter needs an EpisodeOfCare of type "
                        f"{rules['codeSystem']}#sickness-case", "EpisodeOfCare.type")
    patient = _ref(resource.get("patient")) or ""
    if not patient.startswith("Patient/"):
        raise FhirError(422, "business-rule", "$poortwachter needs a patient", "EpisodeOfCare.patient")
    patient = patient.split("/", 1)[1]
    when, lang = as_of(call), language(call)
    employment = _employment(resource)
    regime = _regime(rules, employment)
    out: list[dict[str, Any]] = [
        {"name": "sicknessCase", "valueReference": {"reference": f"EpisodeOfCare/{call.id}"}},
        {"name": "patient", "valueReference": {"reference": f"Patient/{patient}"}},
        {"name": "date", "valueDate": when.isoformat()},
        {"name": "language", "valueCode": lang},
        {"name": "rules", "valueString": f"profiles/rules/poortwachter.json {rules['version']}"},
    ]
    if employment is not None:
        out.append({"name": "employmentType", "valueCoding": employment})
    names = concept_texts(call, rules["codeSystem"])
    if regime is None:
        text = _text(rules["noRegime"], lang)
        out += [{"name": "regime", "valueCode": "none"}, {"name": "summary", "valueString": text}]
        return OperationResult({"resourceType": "Parameters", "parameter": out})
    spans, from_episodes = await _periods(call, patient, resource)
    case = count_case(spans, when, int(rules["samentelling"]["breakDays"]))
    records, events = _recorded(resource)
    caps = {k: int(v["maxWeeks"]) for k, v in rules["events"].items()}
    by_code = {m["code"]: m for m in rules["milestones"]}
    items = [assess(by_code[c], case, records, events, regime["events"], caps) for c in regime["milestones"]]
    out += [{"name": "regime", "valueCode": regime["code"]},
            {"name": "regimeText", "valueString": _text(regime, lang)},
            {"name": "state", "valueCode": _state(case)}]
    if case.periods:
        out.append({"name": "firstSickDay", "valueDate": case.periods[0].start.isoformat()})
    out += [{"name": "sickDays", "valueInteger": case.sick_days}, {"name": "week", "valueInteger": case.week},
            {"name": "countedFrom", "valueCode": "sick-leave-episodes" if from_episodes else "case-period"}]
    if not from_episodes:
        out.append({"name": "note", "valueString": "Geteld vanaf de periode van het ziektegeval zelf: "
                    "verzuimperiodes zijn niet zichtbaar met uw toegang of niet vastgelegd." if lang == "nl"
                    else "Counted from the case's own period: sick-leave periods are not visible "
                    "with your access or not recorded."})
    for span in case.periods:
        parts: list[dict[str, Any]] = [{"name": "start", "valueDate": span.start.isoformat()}]
        if span.end is not None:
            parts.append({"name": "end", "valueDate": span.end.isoformat()})
        out.append({"name": "sickPeriod", "part": parts})
    if case.later_case is not None:
        out.append({"name": "newCaseFrom", "valueDate": case.later_case.start.isoformat()})
    for event in events:
        if event.code in regime["events"] and event.when <= when:
            out.append({"name": "event", "part": [
                {"name": "code", "valueCoding": {"system": rules["codeSystem"], "code": event.code,
                                                 "display": names.get(event.code, (event.code,))[0]}},
                {"name": "weeks", "valueInteger": event.weeks},
                {"name": "date", "valueDate": event.when.isoformat()},
                {"name": "source", "valueString": rules["events"][event.code]["source"]}]})
    out.append({"name": "summary", "valueString": _summary(case, items, lang, names, _text(regime, lang))})
    out += [await _milestone(call, item, rules, lang, names) for item in items]
    skipped = [m for m in rules["milestones"] if m["code"] not in regime["milestones"]]
    out += [_not_applicable(m, rules, lang, names) for m in skipped]
    return OperationResult({"resourceType": "Parameters", "parameter": out})


def _not_applicable(rule: dict[str, Any], rules: dict[str, Any], lang: str,
                    names: dict[str, tuple[str, str]]) -> dict[str, Any]:
    en, nl = names.get(rule["code"], (rule["code"], rule["code"]))
    return {"name": "milestone", "part": [
        {"name": "code", "valueCoding": {"system": rules["codeSystem"], "code": rule["code"], "display": en}},
        {"name": "title", "valueString": nl if lang == "nl" else en},
        {"name": "status", "valueCode": "not-applicable"},
        {"name": "statusText", "valueString": _text(rules["statusTexts"]["not-applicable"], lang)}]}


OPERATIONS = [
    Operation("poortwachter", frozenset({"instance"}), poortwachter, frozenset({"EpisodeOfCare"}),
              definition=DEFINITION),
]
