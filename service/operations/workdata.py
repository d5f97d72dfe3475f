"""Reading work data for the derived operations ($late-effects-signals, $progress,
$work-summary): every search goes through the caller's store, so these operations see exactly
what the caller may see, and small typed views on the values they compare (periods, hours).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

from ..fhir import ucum
from ..fhir.outcome import FhirError, bad_request
from .registry import OperationCall

PW = "https://pgo-work.nl/fhir/CodeSystem/pgo-work-observation"
DATA_CATEGORY = "https://pgo-work.nl/fhir/CodeSystem/data-category"
PROFESSIONAL_ROLE = "https://pgo-work.nl/fhir/CodeSystem/professional-role"
HOURS_PER_WEEK = "h/wk"


@dataclass(frozen=True)
class Found:
    """A resource the caller's store returned, with the reference evidence points at."""

    resource: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.resource['resourceType']}/{self.resource['id']}"


async def search_all(call: OperationCall, resource_type: str,
                     params: list[tuple[str, str]]) -> list[Found]:
    """Every match of a search the caller may see, page by page (the store's keyset paging)."""
    size = str(call.runtime.parser.max_count)
    cursor: str | None = None
    out: list[Found] = []
    while True:
        pairs = [*params, ("_count", size), ("_total", "none")]
        if cursor is not None:
            pairs.append(("_cursor", cursor))
        page = await call.store.search(call.runtime.parser.parse(resource_type, pairs))
        out += [Found(m.json()) for m in page.matches]
        if page.next_cursor is None:
            return out
        cursor = page.next_cursor


async def patient_id(call: OperationCall) -> str:
    """The instance's Patient, read through the caller's store (404 when they may not see it)."""
    assert call.id is not None
    await call.store.read("Patient", call.id)
    return call.id


def may_read(call: OperationCall, patient: str, resource_type: str, *categories: str) -> bool:
    """Whether the caller's access covers this kind of data of this patient (see
    `AccessPolicy.may_read`): decided from the grants, never from the data."""
    return call.store.access.may_read(patient, resource_type, frozenset(categories))


def day(value: Any) -> date | None:
    """The calendar day of a FHIR date or dateTime (a year or month alone: its first day)."""
    if not isinstance(value, str) or len(value) < 4:
        return None
    text = value[:10]
    try:
        if len(text) == 4:
            return date(int(text), 1, 1)
        if len(text) == 7:
            return date(int(text[:4]), int(text[5:7]), 1)
        return date.fromisoformat(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class Span:
    """A closed day range; `end` None means still going on."""

    start: date
    end: date | None

    def covers(self, when: date) -> bool:
        return self.start <= when and (self.end is None or when <= self.end)

    def days(self) -> int | None:
        return None if self.end is None else (self.end - self.start).days + 1

    def overlap_days(self, other: Span, until: date) -> int:
        end = min(self.end or until, other.end or until)
        start = max(self.start, other.start)
        return max(0, (end - start).days + 1)


def span_of(period: Any, instant: Any = None) -> Span | None:
    """A Period (or a single date) as a Span; None when it has no readable start."""
    if isinstance(period, dict):
        start = day(period.get("start"))
        if start is None:
            return None
        return Span(start, day(period.get("end")))
    single = day(instant)
    return Span(single, single) if single else None


def effective(resource: dict[str, Any]) -> Span | None:
    return span_of(resource.get("effectivePeriod"), resource.get("effectiveDateTime"))


def hours_per_week(quantity: Any) -> float | None:
    """A UCUM quantity in hours per week (converted when it is another time-per-time unit)."""
    if not isinstance(quantity, dict) or not isinstance(quantity.get("value"), int | float):
        return None
    value = float(quantity["value"])
    code = quantity.get("code") or quantity.get("unit")
    if code == HOURS_PER_WEEK:
        return value
    if not isinstance(code, str):
        return None
    mine, reference = ucum.to_canonical(value, code), ucum.to_canonical(1.0, HOURS_PER_WEEK)
    if mine is None or reference is None or mine[1] != reference[1] or not reference[0]:
        return None
    return mine[0] / reference[0]


def codes(concept: Any, system: str) -> list[str]:
    """The codes of one system in a CodeableConcept (or a list of them)."""
    concepts = concept if isinstance(concept, list) else [concept]
    return [c["code"] for cc in concepts if isinstance(cc, dict) for c in cc.get("coding", [])
            if isinstance(c, dict) and c.get("system") == system and isinstance(c.get("code"), str)]


def component(resource: dict[str, Any], system: str, code: str) -> dict[str, Any] | None:
    for comp in resource.get("component") or []:
        if code in codes(comp.get("code"), system):
            found: dict[str, Any] = comp
            return found
    return None


def as_of(call: OperationCall, name: str = "date") -> date:
    """The `date` parameter (default today), for evaluations that must be reproducible."""
    value = call.value(name)
    if value is None:
        return date.today()
    parsed = day(value) if isinstance(value, str) and len(value) == 10 else None
    if parsed is None:
        raise bad_request(f"Parameter '{name}' must be a date (YYYY-MM-DD)", name)
    return parsed


@lru_cache(maxsize=8)
def _load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads(path.read_bytes())
    return loaded


def rules_file(call: OperationCall, name: str) -> dict[str, Any]:
    """A rules file under profiles/rules/ (data a professional body changes without code)."""
    path = call.runtime.settings.profiles_dir / "rules" / name
    if not path.exists():
        raise FhirError(500, "exception", f"The rules file {name} is missing")
    return _load(path)


def concept_texts(call: OperationCall, system: str) -> dict[str, tuple[str, str]]:
    """code -> (English display, Dutch designation) of one of our CodeSystems."""
    cs = call.runtime.package.by_url(system) or {}
    out: dict[str, tuple[str, str]] = {}

    def walk(concepts: list[dict[str, Any]]) -> None:
        for c in concepts:
            nl = next((d.get("value") for d in c.get("designation", [])
                       if d.get("language") == "nl"), None)
            out[c["code"]] = (c.get("display", c["code"]), nl or c.get("display", c["code"]))
            walk(c.get("concept", []))

    walk(cs.get("concept", []))
    return out


def format_hours(value: float) -> str:
    """12 -> '12', 19.5 -> '19.5' (no trailing .0 in text meant for people)."""
    return f"{value:g}"
