"""Patient/[id]/$late-effects-signals: the six red flags of the guide for labour experts on late
effects of cancer treatment, computed from the stored work data under the caller's access.

Why computed and not asked: neither employees nor professionals link work problems to late
effects on their own; the data that shows the pattern (contract hours falling, frequent or long
absence, a WIA benefit, self-reported complaints) is already in the record. The rules and every
threshold live in `profiles/rules/red-flags.json`, each with its source, so a professional body
changes them without code.

Access: each flag names the data category its evidence needs. When the caller's access (scopes,
consents, rules) does not cover it, the flag is "not-assessable" and nothing of that kind is
even searched, so the answer holds no trace of hidden data; when it is covered, the searches
still run through the caller's store. The result is not stored: a stored Flag would be
labelled medical and would outlive the consent it was computed under.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..fhir import dates
from .red_flags_context import Context, Evidence, Outcome, threshold
from .red_flags_history import contract_hours_decrease, sick_leave, wia
from .registry import Operation, OperationCall, OperationResult
from .workdata import (
    Found,
    as_of,
    codes,
    concept_texts,
    effective,
    may_read,
    patient_id,
    rules_file,
)

RULES = "red-flags.json"
DEFINITION = "https://pgo-work.nl/fhir/OperationDefinition/Patient-late-effects-signals"


def _severity_scores(ctx: Context) -> dict[str, float]:
    """code -> score of CodeSystem symptom-severity (the order of severities is data too)."""
    cs = ctx.call.runtime.package.by_url(ctx.rules["severitySystem"]) or {}
    return {c["code"]: float(p["valueInteger"]) for c in cs.get("concept", [])
            for p in c.get("property", []) if p.get("code") == "score" and "valueInteger" in p}


def _when(found: Found) -> tuple[str, str]:
    """Sort key: the effective date (end of a period, else start), then when it was stored."""
    span = effective(found.resource)
    moment = (span.end or span.start).isoformat() if span else ""
    return moment, (found.resource.get("meta") or {}).get("lastUpdated", "")


async def self_report(ctx: Context, flag: dict[str, Any]) -> Outcome:
    """The latest self-report of the signal, at or above the minimum severity."""
    reports = await ctx.observations(ctx.rules["codeSystem"], flag["code"])
    scored: list[tuple[Found, str]] = []
    for report in reports:
        found = codes(report.resource.get("valueCodeableConcept"), ctx.rules["severitySystem"])
        if found:
            scored.append((report, found[0]))
    if not scored:
        return Outcome(False, "No self-report of this signal is recorded.")
    latest, severity = max(scored, key=lambda pair: _when(pair[0]))
    scores = _severity_scores(ctx)
    minimum = threshold(flag, "minimumSeverity")
    raised = severity in scores and minimum in scores and scores[severity] >= scores[minimum]
    span = effective(latest.resource)
    when = f" of {span.start.isoformat()}" if span else ""
    verdict = "at or above" if raised else "below"
    return Outcome(raised, f"The latest self-report{when} gives severity '{severity}', {verdict} "
                   f"the threshold '{minimum}'.", [Evidence(latest, severity)])


EVALUATORS: dict[str, Callable[[Context, dict[str, Any]], Awaitable[Outcome]]] = {
    "self-report": self_report,
    "contract-hours-decrease": contract_hours_decrease,
    "sick-leave": sick_leave,
    "wia": wia,
}


def _texts(name: str, texts: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": name, "part": [{"name": "language", "valueCode": lang},
                                    {"name": "text", "valueString": texts[lang]}]}
            for lang in ("nl", "en")]


def _next_step(ctx: Context, code: str) -> dict[str, Any]:
    display = concept_texts(ctx.call, ctx.rules["nextStepSystem"]).get(code, (code, code))[0]
    return {"name": "nextStep", "part": [
        {"name": "code", "valueCoding": {"system": ctx.rules["nextStepSystem"], "code": code,
                                         "display": display}},
        *_texts("text", ctx.rules["nextSteps"][code])]}


def _flag_parameter(ctx: Context, flag: dict[str, Any], outcome: Outcome | None) -> dict[str, Any]:
    display, nl = concept_texts(ctx.call, ctx.rules["codeSystem"]).get(flag["code"], (flag["code"],) * 2)
    parts: list[dict[str, Any]] = [
        {"name": "code", "valueCoding": {"system": ctx.rules["codeSystem"], "code": flag["code"],
                                         "display": display}},
        {"name": "title", "valueString": nl},
    ]
    if outcome is None:
        category = flag["evidence"]["dataCategory"]
        parts += [{"name": "status", "valueCode": "not-assessable"},
                  {"name": "reason", "valueString": "Not assessable with your access: this signal "
                   f"needs {category} data, which your access to this record does not cover."}]
    else:
        parts += [{"name": "status", "valueCode": "raised" if outcome.raised else "not-raised"},
                  {"name": "raised", "valueBoolean": outcome.raised},
                  {"name": "reason", "valueString": outcome.reason}]
        parts += [{"name": "criterion", "valueCode": c} for c in outcome.criteria]
        parts += [e.to_part() for e in outcome.evidence]
    parts += _texts("advice", flag["advice"])
    if outcome is not None and outcome.raised:
        parts += [_next_step(ctx, code) for code in flag["nextSteps"]]
    return {"name": "flag", "part": parts}


async def late_effects_signals(call: OperationCall) -> OperationResult:
    patient = await patient_id(call)
    ctx = Context(call, patient, rules_file(call, RULES), as_of(call))
    flags: list[dict[str, Any]] = []
    outcomes: list[Outcome | None] = []
    for flag in ctx.rules["flags"]:
        needed = flag["evidence"]
        outcome = None
        if may_read(call, patient, needed["resourceType"], needed["dataCategory"]):
            outcome = await EVALUATORS[flag["rule"]](ctx, flag)
        outcomes.append(outcome)
        flags.append(_flag_parameter(ctx, flag, outcome))
    raised = [f for f, o in zip(ctx.rules["flags"], outcomes, strict=True) if o is not None and o.raised]
    steps = [code for code in ctx.rules["nextSteps"] if any(code in f["nextSteps"] for f in raised)]
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": f"Patient/{patient}"}},
        {"name": "evaluated", "valueDateTime": dates.to_instant(dates.utcnow())},
        {"name": "date", "valueDate": ctx.as_of.isoformat()},
        {"name": "rules", "valueString": f"profiles/rules/red-flags.json {ctx.rules['version']}"},
        {"name": "source", "valueString": ctx.rules["guide"]["title"]},
        {"name": "raisedCount", "valueInteger": len(raised)},
        {"name": "notAssessableCount", "valueInteger": sum(o is None for o in outcomes)},
        *[_next_step(ctx, code) for code in steps],
        *flags,
    ]}
    return OperationResult(body)


OPERATIONS = [
    Operation("late-effects-signals", frozenset({"instance"}), late_effects_signals,
              frozenset({"Patient"}), definition=DEFINITION),
]
