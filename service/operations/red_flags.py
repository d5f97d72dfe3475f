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
from dataclasses import dataclass, field
from typing import Any

from ..fhir import dates
from .registry import Operation, OperationCall, OperationResult
from .workdata import (
    PW,
    Found,
    codes,
    component,
    concept_texts,
    effective,
    format_hours,
    hours_per_week,
    may_read,
    patient_id,
    rules_file,
    search_all,
)

RULES = "red-flags.json"
DEFINITION = "https://pgo-work.nl/fhir/OperationDefinition/Patient-late-effects-signals"


@dataclass
class Evidence:
    """One resource a flag's evaluation used, with the dates and value it used."""

    found: Found
    value: str | None = None

    def to_part(self) -> dict[str, Any]:
        parts: list[dict[str, Any]] = [{"name": "reference", "valueReference": {"reference": self.found.ref}}]
        resource = self.found.resource
        period = resource.get("effectivePeriod")
        if isinstance(period, dict):
            parts += [{"name": k, "valueDateTime": period[k]} for k in ("start", "end") if period.get(k)]
        elif resource.get("effectiveDateTime"):
            parts.append({"name": "start", "valueDateTime": resource["effectiveDateTime"]})
        if self.value is not None:
            parts.append({"name": "value", "valueString": self.value})
        return {"name": "evidence", "part": parts}


@dataclass
class Outcome:
    raised: bool
    reason: str
    evidence: list[Evidence] = field(default_factory=list)


@dataclass
class Context:
    """What every rule needs: the caller, the patient, the rules file."""

    call: OperationCall
    patient: str
    rules: dict[str, Any]

    @property
    def statuses(self) -> str:
        return ",".join(self.rules["observationStatuses"]["value"])

    async def observations(self, system: str, code: str) -> list[Found]:
        return await search_all(self.call, "Observation", [
            ("patient", self.patient), ("code", f"{system}|{code}"), ("status", self.statuses)])


def _threshold(flag: dict[str, Any], name: str) -> Any:
    return flag["thresholds"][name]["value"]


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
    minimum = _threshold(flag, "minimumSeverity")
    raised = severity in scores and minimum in scores and scores[severity] >= scores[minimum]
    span = effective(latest.resource)
    when = f" of {span.start.isoformat()}" if span else ""
    verdict = "at or above" if raised else "below"
    return Outcome(raised, f"The latest self-report{when} gives severity '{severity}', {verdict} "
                   f"the threshold '{minimum}'.", [Evidence(latest, severity)])


async def contract_hours_decrease(ctx: Context, flag: dict[str, Any]) -> Outcome:
    """Total contract hours at each moment a contract period starts; a later total lower by
    at least the minimum than an earlier one raises the flag (the largest fall is reported)."""
    series = []
    for found in await ctx.observations(PW, "contract-hours-per-week"):
        span, hours = effective(found.resource), hours_per_week(found.resource.get("valueQuantity"))
        if span is not None and hours is not None:
            series.append((span, hours, found))
    if not series:
        return Outcome(False, "No contract hours are recorded.")
    totals = []
    for start in sorted({span.start for span, _, _ in series}):
        current = [(hours, found) for span, hours, found in series if span.covers(start)]
        totals.append((start, sum(h for h, _ in current), [f for _, f in current]))
    minimum = float(_threshold(flag, "minimumDecrease"))
    best: tuple[float, int, int] | None = None
    for i, (_, earlier, _) in enumerate(totals):
        for j in range(i + 1, len(totals)):
            drop = earlier - totals[j][1]
            if drop >= minimum and (best is None or drop > best[0]):
                best = (drop, i, j)

    def evidence(founds: list[Found]) -> list[Evidence]:
        seen: dict[str, Evidence] = {}
        for f in founds:
            hours = hours_per_week(f.resource.get("valueQuantity"))
            seen.setdefault(f.ref, Evidence(f, f"{format_hours(hours or 0)} h/wk"))
        return list(seen.values())

    if best is None:
        return Outcome(False, f"No fall of {format_hours(minimum)} h/wk or more over "
                       f"{len(series)} contract-hours period(s).", evidence([f for _, _, f in series]))
    _, i, j = best
    (si, ti, fi), (sj, tj, fj) = totals[i], totals[j]
    return Outcome(True, f"Contract hours fell from {format_hours(ti)} h/wk ({si.isoformat()}) to "
                   f"{format_hours(tj)} h/wk ({sj.isoformat()}).", evidence(fi + fj))


async def sick_leave(ctx: Context, flag: dict[str, Any]) -> Outcome:
    """Frequent absence (n episodes starting within a window of days) or a long ended one."""
    episodes = []
    for found in await ctx.observations(PW, "sick-leave-episode"):
        span = effective(found.resource)
        if span is not None:
            episodes.append((span, found))
    if not episodes:
        return Outcome(False, "No sick-leave episodes are recorded.")
    episodes.sort(key=lambda e: e[0].start)
    n, window = int(_threshold(flag, "frequentEpisodes")), int(_threshold(flag, "frequentWindowDays"))
    long_days = int(_threshold(flag, "longEpisodeDays"))
    frequent = next((episodes[i:i + n] for i in range(len(episodes) - n + 1)
                     if (episodes[i + n - 1][0].start - episodes[i][0].start).days <= window), None)
    long = [(s, f) for s, f in episodes if s.end is not None and (s.days() or 0) >= long_days]

    def value(found: Found) -> str:
        pct = component(found.resource, PW, "sick-leave-percentage")
        span = effective(found.resource)
        length = f"{span.days()} days" if span and span.end else "ongoing"
        share = (pct or {}).get("valueQuantity", {}).get("value")
        return f"{length}, {format_hours(share)} %" if isinstance(share, int | float) else length

    reasons, used = [], []
    if frequent:
        first, last = frequent[0][0].start, frequent[-1][0].start
        reasons.append(f"{len(frequent)} sick-leave episodes started within {(last - first).days} days "
                       f"({first.isoformat()} to {last.isoformat()}; threshold {n} within {window} days)")
        used += [f for _, f in frequent]
    if long:
        span, _ = max(long, key=lambda e: e[0].days() or 0)
        reasons.append(f"an ended sick-leave episode lasted {span.days()} days "
                       f"({span.start.isoformat()} to {span.end.isoformat() if span.end else ''}; "
                       f"threshold {long_days} days)")
        used += [f for _, f in long]
    if reasons:
        unique = {f.ref: f for f in used}
        text = "; ".join(reasons)
        return Outcome(True, text[0].upper() + text[1:] + ".",
                       [Evidence(f, value(f)) for f in unique.values()])
    return Outcome(False, f"{len(episodes)} sick-leave episode(s): fewer than {n} starting within "
                   f"{window} days, and none that ended lasted {long_days} days or more.",
                   [Evidence(f, value(f)) for _, f in episodes])


async def wia(ctx: Context, flag: dict[str, Any]) -> Outcome:
    """A WIA benefit with one of the statuses, current or past."""
    wanted = _threshold(flag, "statuses")
    system = flag["thresholds"]["statuses"]["system"]
    found = await ctx.observations(PW, "wia-status")
    if not found:
        return Outcome(False, "No WIA status is recorded.")

    def describe(f: Found) -> tuple[str | None, str]:
        status = next(iter(codes(f.resource.get("valueCodeableConcept"), system)), None)
        current = (component(f.resource, PW, "benefit-current") or {}).get("valueBoolean")
        degree = (component(f.resource, PW, "wia-degree") or {}).get("valueQuantity", {}).get("value")
        words = [status or "unknown"]
        if isinstance(degree, int | float):
            words.append(f"{format_hours(degree)} %")
        if isinstance(current, bool):
            words.append("current" if current else "past")
        return status, ", ".join(words)

    described = [(f, *describe(f)) for f in found]
    hits = [(f, text) for f, status, text in described if status in wanted]
    if hits:
        return Outcome(True, "A WIA benefit is recorded: " + "; ".join(t for _, t in hits) + ".",
                       [Evidence(f, text) for f, text in hits])
    return Outcome(False, f"No {' or '.join(wanted)} WIA benefit is recorded.",
                   [Evidence(f, text) for f, _, text in described])


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
        parts += [e.to_part() for e in outcome.evidence]
    parts += _texts("advice", flag["advice"])
    if outcome is not None and outcome.raised:
        parts += [_next_step(ctx, code) for code in flag["nextSteps"]]
    return {"name": "flag", "part": parts}


async def late_effects_signals(call: OperationCall) -> OperationResult:
    patient = await patient_id(call)
    ctx = Context(call, patient, rules_file(call, RULES))
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
