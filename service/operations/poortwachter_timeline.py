"""Counting the first two years of sickness: which sick periods form one case (samentelling),
which counted sick day and week the person is in, the calendar day of a counted sick day, and
the status of each milestone of `profiles/rules/poortwachter.json`.

Pure functions of dates and the rules: no store, no HTTP, so the counting that the law fixes
reads on its own and `poortwachter.py` only gathers the data under the caller's access.

Why counted sick days and not calendar days: under art. 7:629 lid 10 BW sick periods less than
four weeks apart are added up and the break does not count, so week 6 of a case with a
three-week break falls three weeks later in the calendar. A partial sick-leave percentage is
still a sick day: partial recovery is not recovery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from .workdata import Span

DAY = timedelta(days=1)


@dataclass(frozen=True)
class Record:
    """A step recorded on the case (extension poortwachter-milestone)."""

    code: str
    when: date
    evidence: str | None = None
    decision: str | None = None


@dataclass(frozen=True)
class Event:
    """A postponement or loonsanctie recorded on the case (extension poortwachter-event)."""

    code: str
    weeks: int
    when: date
    evidence: str | None = None


@dataclass
class Case:
    """The counted case as of a date."""

    periods: list[Span]
    """The sick periods that count as one case, merged where they overlap or adjoin."""
    as_of: date
    break_days: int
    later_case: Span | None = None
    """A sick period after a break of `break_days` or more: the start of a new case."""

    @property
    def sick_days(self) -> int:
        total = 0
        for span in self.periods:
            if span.start > self.as_of:
                break
            end = min(span.end or self.as_of, self.as_of)
            total += (end - span.start).days + 1
        return total

    @property
    def week(self) -> int:
        return (self.sick_days - 1) // 7 + 1 if self.sick_days else 0

    @property
    def recovered_since(self) -> date | None:
        """The first day no longer sick, when the person is not sick on the as-of date."""
        last = self.periods[-1] if self.periods else None
        if last is None or last.end is None or last.end >= self.as_of:
            return None
        return last.end + DAY

    @property
    def ended(self) -> bool:
        """Recovered for `break_days` or more: a new sickness starts a new case."""
        since = self.recovered_since
        return since is not None and (self.as_of - since).days + 1 >= self.break_days

    def day_of(self, counted: int) -> date | None:
        """The calendar date of counted sick day `counted` (1-based); None when the recorded
        periods end before it (only a relapse within four weeks would decide it)."""
        left = counted
        for span in self.periods:
            if span.end is None:
                return span.start + (left - 1) * DAY
            length = (span.end - span.start).days + 1
            if left <= length:
                return span.start + (left - 1) * DAY
            left -= length
        return None


def count_case(spans: list[Span], as_of: date, break_days: int) -> Case:
    """The sick periods that form one case with the first one, as of a date.

    Periods that overlap or follow the next day are merged (steps of a partial return are one
    absence); a later period joins the case when the break before it is shorter than
    `break_days`, and the first longer break ends the case."""
    known = sorted((s for s in spans if s.start <= as_of), key=lambda s: s.start)
    merged: list[Span] = []
    for span in known:
        if merged and (merged[-1].end is None or span.start <= merged[-1].end + DAY):
            last = merged[-1]
            end = None if last.end is None or span.end is None else max(last.end, span.end)
            merged[-1] = Span(last.start, end)
        else:
            merged.append(span)
    case: list[Span] = []
    for span in merged:
        if case and case[-1].end is not None and (span.start - case[-1].end).days - 1 >= break_days:
            return Case(case, as_of, break_days, later_case=span)
        case.append(span)
    return Case(case, as_of, break_days)


@dataclass
class Assessed:
    """One milestone as of the date: its status and what it rests on."""

    code: str
    status: str
    rule: dict[str, Any]
    deadline_week: int | None = None
    deadline: date | None = None
    due_from: date | None = None
    done: Record | None = None
    count: int = 0
    moved_weeks: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def moved(rule: dict[str, Any], events: list[Event], allowed: list[str],
          caps: dict[str, int]) -> int:
    """Weeks the events that move this milestone add to it (each kind capped at its maximum)."""
    total = 0
    for kind in rule.get("movedBy", []):
        if kind in allowed:
            total += min(sum(e.weeks for e in events if e.code == kind), caps.get(kind, 52))
    return total


def assess(rule: dict[str, Any], case: Case, records: list[Record], events: list[Event],
           allowed_events: list[str], caps: dict[str, int]) -> Assessed:
    code, kind = rule["code"], rule["kind"]
    mine = sorted((r for r in records if r.code == code and r.when <= case.as_of), key=lambda r: r.when)
    if kind == "information":
        return Assessed(code, "information", rule, done=mine[-1] if mine else None)
    if kind == "recurring":
        return _recurring(rule, case, records, mine)
    shift = moved(rule, events, allowed_events, caps)
    week = int(rule["deadlineWeek"]) + shift
    out = Assessed(code, "upcoming", rule, deadline_week=week, deadline=case.day_of(7 * week),
                   moved_weeks=shift)
    if kind == "end":
        out.status = "reached" if case.sick_days >= 7 * week and not case.ended else \
            "ended" if case.ended else "upcoming"
        return out
    first_due = 7 * (int(rule["dueFromWeek"]) + shift - 1) + 1
    out.due_from = case.day_of(first_due)
    if mine:
        out.done = mine[-1]
        if kind == "conditional" and out.done.decision == "not-needed":
            out.status = "not-needed"
        else:
            late = out.deadline is not None and out.done.when > out.deadline
            out.status = "done-late" if late else "done"
        return out
    if case.sick_days > 7 * week:
        out.status = "overdue"
    elif case.ended:
        out.status = "ended"
    elif case.sick_days >= first_due:
        out.status = "due"
    return out


def _recurring(rule: dict[str, Any], case: Case, records: list[Record], mine: list[Record]) -> Assessed:
    """Due every intervalWeeks calendar weeks after the latest of itself or its anchor."""
    anchors = [r for r in records if r.code == rule["anchor"] and r.when <= case.as_of]
    out = Assessed(rule["code"], "upcoming", rule, count=len(mine))
    if not anchors:
        return out
    last = max([r.when for r in anchors] + [r.when for r in mine])
    out.deadline = last + timedelta(weeks=int(rule["intervalWeeks"]))
    out.done = mine[-1] if mine else None
    if case.ended:
        out.status = "ended"
    else:
        out.status = "overdue" if case.as_of > out.deadline else "due"
    return out
