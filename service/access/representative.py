"""A representative: someone the patient's own record names as acting for them.

A legal guardian or a person the patient authorised acts as the patient for that one record
(reads it, gives and withdraws consents). The authority comes from the record, not from the
token: the token names a RelatedPerson as fhirUser and the patient as launch context, and that
RelatedPerson, as stored now, must belong to that patient, be active, be within its period and
have one of the relationships in `profiles/rules/access-rules.json`. Ending the relationship
(inactive, period ended, or deleted) ends the access on the next request.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..fhir import dates
from .principal import Principal
from .provisions import rules


def _within(period: Any, now: datetime) -> bool:
    if period is None:
        return True
    start, end = dates.period_bounds(period)
    return start <= now <= end


def represented_patient(principal: Principal, related: dict[str, Any] | None,
                        now: datetime) -> str | None:
    """The patient this caller represents, or None."""
    fhir_user = principal.fhir_user or ""
    if related is None or not fhir_user.startswith("RelatedPerson/") or not principal.patient:
        return None
    if related.get("id") != fhir_user.split("/", 1)[1] or related.get("active") is False:
        return None
    if (related.get("patient") or {}).get("reference") != f"Patient/{principal.patient}":
        return None
    if not _within(related.get("period"), now):
        return None
    allowed = {(r["system"], r["code"]) for r in rules()["representative"]["relationships"]}
    codings = [c for concept in related.get("relationship") or [] if isinstance(concept, dict)
               for c in concept.get("coding") or [] if isinstance(c, dict)]
    if not any((c.get("system"), c.get("code")) in allowed for c in codings):
        return None
    return principal.patient
