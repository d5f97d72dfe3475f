"""What every red-flag rule of `$late-effects-signals` shares: the caller, the patient, the rules
file, the evaluation date, and the shape of an outcome with its evidence.

Kept apart from the rules themselves (`red_flags.py` for self-reports, `red_flags_history.py`
for hours, absence and benefits) so each file stays small and the rules import no rendering.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from .registry import OperationCall
from .workdata import Found, effective, may_read, search_all


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
        elif resource.get("authored"):
            parts.append({"name": "start", "valueDateTime": resource["authored"]})
        if self.value is not None:
            parts.append({"name": "value", "valueString": self.value})
        return {"name": "evidence", "part": parts}


@dataclass
class Outcome:
    raised: bool
    reason: str
    evidence: list[Evidence] = field(default_factory=list)
    criteria: list[str] = field(default_factory=list)
    """Which criteria of the flag were met (e.g. frequent, long-past, self-reported)."""


@dataclass
class Context:
    """What every rule needs: the caller, the patient, the rules file, the evaluation date."""

    call: OperationCall
    patient: str
    rules: dict[str, Any]
    as_of: date

    @property
    def statuses(self) -> str:
        return ",".join(self.rules["observationStatuses"]["value"])

    def may(self, resource_type: str, *categories: str) -> bool:
        return may_read(self.call, self.patient, resource_type, *categories)

    async def observations(self, system: str, code: str) -> list[Found]:
        """The patient's Observations of a code that had started by the evaluation date."""
        found = await search_all(self.call, "Observation", [
            ("patient", self.patient), ("code", f"{system}|{code}"), ("status", self.statuses)])
        return [f for f in found if (span := effective(f.resource)) is None or span.start <= self.as_of]

    async def own_answer(self, flag: dict[str, Any]) -> Found | None:
        """The latest completed late-effects QuestionnaireResponse whose answer to the flag's
        item is yes, when the caller may read it (None otherwise, or when the answer is no)."""
        own = flag.get("ownAnswer")
        if not own or not self.may("QuestionnaireResponse", "self-reported-health", "absence-benefits"):
            return None
        found = await search_all(self.call, "QuestionnaireResponse", [
            ("patient", self.patient), ("questionnaire", own["questionnaire"]), ("status", "completed")])
        dated = [f for f in found if str(f.resource.get("authored", ""))[:10] <= self.as_of.isoformat()]
        if not dated:
            return None
        latest = max(dated, key=lambda f: str(f.resource.get("authored", "")))
        return latest if answer(latest.resource.get("item") or [], own["linkId"]) is True else None


def answer(items: list[dict[str, Any]], link_id: str) -> Any:
    """The first answer value of an item, searched through nested items."""
    for item in items:
        if item.get("linkId") == link_id:
            for ans in item.get("answer") or []:
                return next((v for k, v in ans.items() if k.startswith("value")), None)
        nested = answer(item.get("item") or [], link_id)
        if nested is not None:
            return nested
    return None


def threshold(flag: dict[str, Any], name: str) -> Any:
    return flag["thresholds"][name]["value"]
