"""The red flags of `$late-effects-signals` that read the work and absence history: fewer hours
over time (3), frequent or long absence (5) and a disability benefit (6), each also raised by
the patient's own answer in the late-effects questionnaire.

Why these rules look the way they do (the guide for labour experts, chapter 3, and
`profiles/rules/red-flags.json`, where every number has its source):
- a fall in hours counts only after the cancer (the guide: "na kanker"), and not when it was for
  care duties or a new job: the signal is "medisch afzakken", fewer hours at one's own request
  for health reasons instead of reporting sick;
- the self-employed and flex workers have no (meaningful) contract hours and no WIA: the hours
  they actually work and a private disability insurance (AOV) stand in;
- the steps of one partial return are one absence, not several reports; frequent absence is a
  recent pattern (the window up to the evaluation date), long absence in the past is any ended
  absence longer than six weeks, and the two are reported as separate criteria.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from .red_flags_context import Context, Evidence, Outcome, threshold
from .workdata import (
    PW,
    Found,
    Span,
    codes,
    component,
    day,
    effective,
    format_hours,
    hours_per_week,
    search_all,
)

EMPLOYMENT = "https://pgo-work.nl/fhir/CodeSystem/employment-type"
LOINC_EMPLOYMENT = "http://loinc.org|74165-2"


def with_own_answer(outcome: Outcome, own: Found | None, question: str) -> Outcome:
    """Adds the patient's own yes-answer as a criterion (and raises the flag)."""
    if own is None:
        return outcome
    when = str(own.resource.get("authored", ""))[:10]
    text = f"In the late-effects questionnaire of {when} the patient answered yes to: {question}."
    reason = text if not outcome.raised else f"{outcome.reason} {text}"
    return Outcome(True, reason, [*outcome.evidence, Evidence(own, "yes")],
                   [*outcome.criteria, "self-reported"])


async def _employment_type(ctx: Context) -> str | None:
    """The employment type current on the evaluation date (the latest that started by then)."""
    found = await search_all(ctx.call, "Observation", [
        ("patient", ctx.patient), ("code", LOINC_EMPLOYMENT), ("status", ctx.statuses)])
    dated = [(span, f) for f in found if (span := effective(f.resource)) is not None
             and span.start <= ctx.as_of]
    if not dated:
        return None
    _, latest = max(dated, key=lambda pair: pair[0].start)
    return next(iter(codes(latest.resource.get("valueCodeableConcept"), EMPLOYMENT)), None)


async def _reference_date(ctx: Context) -> date | None:
    """The earliest diagnosis the caller may see (Condition onset, else its recorded date)."""
    if not ctx.may("Condition", "medical"):
        return None
    found = await search_all(ctx.call, "Condition", [("patient", ctx.patient)])
    days = []
    for f in found:
        r = f.resource
        onset = r.get("onsetDateTime") or (r.get("onsetPeriod") or {}).get("start") or r.get("recordedDate")
        if (when := day(onset)) is not None:
            days.append(when)
    return min(days) if days else None


def _reason_of(found: Found, rules: dict[str, Any]) -> str | None:
    system = rules["thresholds"]["excludedReasons"]["system"]
    comp = component(found.resource, PW, "contract-change-reason")
    return next(iter(codes((comp or {}).get("valueCodeableConcept"), system)), None)


async def contract_hours_decrease(ctx: Context, flag: dict[str, Any]) -> Outcome:
    """Total hours at each moment a period starts; a later total lower by at least the minimum
    than an earlier one, starting after the reference date and not for an excluded reason,
    raises the flag (the largest fall is reported). Contract hours, or the hours worked for
    the employment types that have no meaningful contract hours."""
    kind = await _employment_type(ctx)
    worked = flag["thresholds"]["workedHours"]
    use_worked = kind in worked["employmentTypes"]
    code = "worked-hours-per-week" if use_worked else "contract-hours-per-week"
    label = "worked hours" if use_worked else "contract hours"
    minimum = float(worked["minimumDecrease"] if use_worked else threshold(flag, "minimumDecrease"))
    outcome = await _fall(ctx, flag, code, label, minimum)
    if outcome.raised:
        outcome.criteria.append("worked-hours" if use_worked else "contract-hours")
    own = await ctx.own_answer(flag)
    return with_own_answer(outcome, own, "Have you come to work fewer contract hours over time?")


async def _fall(ctx: Context, flag: dict[str, Any], code: str, label: str, minimum: float) -> Outcome:
    series = []
    for found in await ctx.observations(PW, code):
        span, hours = effective(found.resource), hours_per_week(found.resource.get("valueQuantity"))
        if span is not None and hours is not None:
            series.append((span, hours, found))
    if not series:
        return Outcome(False, f"No {label} are recorded.")
    reference = await _reference_date(ctx)
    excluded = set(threshold(flag, "excludedReasons"))
    totals = []
    for start in sorted({span.start for span, _, _ in series}):
        current = [(hours, found) for span, hours, found in series if span.covers(start)]
        starting = [f for span, _, f in series if span.start == start]
        reasons = {_reason_of(f, flag) for f in starting}
        totals.append((start, sum(h for h, _ in current), [f for _, f in current], reasons))
    best: tuple[float, int, int] | None = None
    for i, (_, earlier, _, _) in enumerate(totals):
        for j in range(i + 1, len(totals)):
            start_j, total_j, _, reasons_j = totals[j]
            drop = earlier - total_j
            if drop < minimum or (reference is not None and start_j <= reference):
                continue
            if reasons_j and reasons_j <= excluded:
                continue
            if best is None or drop > best[0]:
                best = (drop, i, j)

    def evidence(founds: list[Found]) -> list[Evidence]:
        seen: dict[str, Evidence] = {}
        for f in founds:
            hours = hours_per_week(f.resource.get("valueQuantity"))
            why = _reason_of(f, flag)
            text = f"{format_hours(hours or 0)} h/wk" + (f", {why}" if why else "")
            seen.setdefault(f.ref, Evidence(f, text))
        return list(seen.values())

    after = f" after the diagnosis of {reference.isoformat()}" if reference else \
        " (no date of diagnosis is visible with your access: every fall counts)"
    if best is None:
        return Outcome(False, f"No fall of {format_hours(minimum)} h/wk or more in {label}{after}, "
                       f"other than for {' or '.join(sorted(excluded))}, over {len(series)} period(s).",
                       evidence([f for _, _, f in series]))
    _, i, j = best
    (si, ti, fi, _), (sj, tj, fj, reasons) = totals[i], totals[j]
    why = ", ".join(sorted(r for r in reasons if r)) or "no reason recorded"
    return Outcome(True, f"{label.capitalize()} fell from {format_hours(ti)} h/wk ({si.isoformat()}) to "
                   f"{format_hours(tj)} h/wk ({sj.isoformat()}; reason: {why}){after}.", evidence(fi + fj))


def merge(spans: list[tuple[Span, Found]], adjoining: int) -> list[tuple[Span, list[Found]]]:
    """Episodes that overlap or start within `adjoining` days after the previous one ended are
    one absence (the steps of a partial return)."""
    out: list[tuple[Span, list[Found]]] = []
    for span, found in sorted(spans, key=lambda e: e[0].start):
        if out:
            last, founds = out[-1]
            if last.end is None or span.start <= last.end + timedelta(days=adjoining):
                end = None if last.end is None or span.end is None else max(last.end, span.end)
                out[-1] = (Span(last.start, end), [*founds, found])
                continue
        out.append((span, [found]))
    return out


async def sick_leave(ctx: Context, flag: dict[str, Any]) -> Outcome:
    """Frequent absence (n absences starting in the window up to the evaluation date) and long
    absence in the past (an ended absence longer than the limit), separately."""
    episodes = [(s, f) for f in await ctx.observations(PW, "sick-leave-episode")
                if (s := effective(f.resource)) is not None]
    own = await ctx.own_answer(flag)
    question = "Are you often (briefly) absent, or were you absent for long in the past?"
    if not episodes:
        return with_own_answer(Outcome(False, "No sick-leave episodes are recorded."), own, question)
    absences = merge(episodes, int(threshold(flag, "adjoiningDays")))
    n, window = int(threshold(flag, "frequentEpisodes")), int(threshold(flag, "frequentWindowDays"))
    long_days = int(threshold(flag, "longEpisodeDays"))
    since = ctx.as_of - timedelta(days=window - 1)
    recent = [(s, fs) for s, fs in absences if since <= s.start <= ctx.as_of]
    long = [(s, fs) for s, fs in absences if s.end is not None and s.end < ctx.as_of
            and (s.days() or 0) > long_days]

    def value(span: Span, founds: list[Found]) -> str:
        length = f"{span.days()} days" if span.end else "ongoing"
        steps = f", {len(founds)} episodes" if len(founds) > 1 else ""
        pct = (component(founds[-1].resource, PW, "sick-leave-percentage") or {}).get("valueQuantity", {})
        share = pct.get("value")
        return length + (f", {format_hours(share)} %" if isinstance(share, int | float) else "") + steps

    reasons, used, criteria = [], [], []
    if len(recent) >= n:
        reasons.append(f"{len(recent)} absences started in the {window} days up to {ctx.as_of.isoformat()} "
                       f"(from {since.isoformat()}; threshold {n})")
        used += recent
        criteria.append("frequent")
    if long:
        span, _ = max(long, key=lambda e: e[0].days() or 0)
        reasons.append(f"an ended absence lasted {span.days()} days ({span.start.isoformat()} to "
                       f"{span.end.isoformat() if span.end else ''}; longer than {long_days} days)")
        used += long
        criteria.append("long-past")
    if reasons:
        text = "; ".join(reasons)
        outcome = Outcome(True, text[0].upper() + text[1:] + ".",
                          [Evidence(f, value(s, fs)) for s, fs in _unique(used) for f in fs], criteria)
    else:
        outcome = Outcome(False, f"{len(absences)} absence(s) from {len(episodes)} sick-leave episode(s): "
                          f"fewer than {n} started in the {window} days up to {ctx.as_of.isoformat()}, and "
                          f"none that ended lasted longer than {long_days} days.",
                          [Evidence(f, value(s, fs)) for s, fs in absences for f in fs])
    return with_own_answer(outcome, own, question)


def _unique(items: list[tuple[Span, list[Found]]]) -> list[tuple[Span, list[Found]]]:
    seen: dict[tuple[date, date | None], tuple[Span, list[Found]]] = {}
    for span, founds in items:
        seen.setdefault((span.start, span.end), (span, founds))
    return list(seen.values())


async def wia(ctx: Context, flag: dict[str, Any]) -> Outcome:
    """A WIA benefit with one of the statuses, current or past; or a private AOV benefit."""
    wanted = threshold(flag, "statuses")
    system = flag["thresholds"]["statuses"]["system"]
    found = await ctx.observations(PW, "wia-status")
    aov = [f for f in await ctx.observations(PW, threshold(flag, "aov"))
           if f.resource.get("valueBoolean") is True]
    own = await ctx.own_answer(flag)
    question = "Do you have, now or in the past, a (partial) WIA benefit?"

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
    hits = [Evidence(f, text) for f, status, text in described if status in wanted]
    texts = [e.value or "" for e in hits]
    criteria = ["wia"] if hits else []
    if aov:
        hits += [Evidence(f, "AOV benefit") for f in aov]
        texts.append("a private disability insurance (AOV) benefit")
        criteria.append("aov")
    if hits:
        outcome = Outcome(True, "A disability benefit is recorded: " + "; ".join(texts) + ".", hits, criteria)
    elif not found:
        outcome = Outcome(False, "No WIA status and no AOV benefit is recorded.")
    else:
        outcome = Outcome(False, f"No {' or '.join(wanted)} WIA benefit and no AOV benefit is recorded.",
                          [Evidence(f, text) for f, _, text in described])
    return with_own_answer(outcome, own, question)
