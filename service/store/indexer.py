"""Turn a resource into typed search index rows, compartment memberships and labels.

Runs at write time, once per version. Each SearchParameter expression yields FHIR values; this
module knows how each FHIR datatype becomes rows of the parameter's type (R4 3.1.1.4).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Any

from ..fhir import dates, ucum
from ..fhir.digits import is_digits
from .searchparams import SearchParam, SearchParamRegistry, element_names


@dataclass
class IndexRows:
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    patients: set[str] = field(default_factory=set)
    labels: set[tuple[str, str]] = field(default_factory=set)
    ongoing: set[str] = field(default_factory=set)
    """Keys of the date parameters whose `ongoing` rule holds: the dates run on, open-ended."""

    def add(self, kind: str, row: dict[str, Any]) -> None:
        self.rows.setdefault(kind, []).append(row)


CODE_PARAM = "code"
CLINICAL_DATE_PARAM = "clinical-date"
"""The search parameters whose values consent judges per version (`version_facts`)."""


def version_facts(rows: IndexRows) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What consent needs to know about one version's content, from its index rows: its codes
    (`<Type>.code`, for a provision's `code`) and its clinical dates (`<Type>.clinical-date`,
    for `dataPeriod`). Kept per version (`tables.VersionCode`, `VersionPeriod`), so an old
    version is never judged by a later one's codes and dates."""
    codes = sorted({(r["system"], r["code"]) for r in rows.rows.get("token", [])
                    if r["param"].endswith("." + CODE_PARAM) and r["code"]},
                   key=lambda c: (c[0] or "", c[1]))
    dated = [r for r in rows.rows.get("date", []) if r["param"].endswith("." + CLINICAL_DATE_PARAM)]
    spans = {(r["low"], r["high"]) for r in dated}
    if any(r["param"] in rows.ongoing for r in dated):
        # Ongoing (an active Condition without abatement, a Goal not yet completed): it is
        # the patient's data from its earliest date on, up to now and beyond, so its span has
        # no end. Undated data stays undated (a deny already covers it, a permit never).
        spans.add((min(low for low, _ in spans), dates.MAX_DT))
    periods = sorted(spans)
    return ([{"system": s, "code": c} for s, c in codes],
            [{"low": low, "high": high} for low, high in periods])


def normalize(text: str) -> str:
    """Case- and accent-insensitive form used by string search (R4 3.1.1.4.9)."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return stripped.casefold()[:512]


def parse_reference(ref: str, base_url: str = "") -> tuple[str | None, str | None, str | None]:
    """(type, id, url) of a reference string; local references lose the base URL.

    Only a local reference has an id: `http://elsewhere/fhir/Patient/1` is another server's
    Patient 1, so it is indexed and searched by its URL and never matches (or puts a resource
    in the compartment of) our own Patient/1.
    """
    if base_url and ref.startswith(base_url.rstrip("/") + "/"):
        ref = ref[len(base_url.rstrip("/")) + 1 :]
    if ref.startswith(("urn:", "#")):
        return None, None, ref
    parts = ref.split("/")
    if "://" not in ref and len(parts) >= 2:
        if len(parts) >= 4 and parts[-2] == "_history":
            parts = parts[:-2]
        return parts[-2], parts[-1], None
    if len(parts) >= 2 and parts[-2][:1].isupper():
        return parts[-2], None, ref
    return None, None, ref


def references_in(resource: dict[str, Any], base_url: str = "") -> list[tuple[str | None, str | None]]:
    """(type, local id) of every `reference` anywhere in a resource, contained ones included."""
    found: list[tuple[str | None, str | None]] = []
    stack: list[Any] = [resource]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("reference")
            if isinstance(ref, str) and ref:
                rtype, rid, _url = parse_reference(ref, base_url)
                found.append((rtype, rid))
            stack.extend(v for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, dict | list))
    return found


class Indexer:
    def __init__(self, registry: SearchParamRegistry, base_url: str = "") -> None:
        self.registry = registry
        self.base_url = base_url

    def index(self, resource: dict[str, Any]) -> IndexRows:
        rtype = resource["resourceType"]
        out = IndexRows()
        names = element_names(resource)
        for param in self.registry.indexed(rtype):
            assert param.evaluate is not None
            if param.roots is not None and param.roots.isdisjoint(names):
                continue  # nothing the parameter reads is there (`searchparams.present`)
            try:
                values = param.evaluate(resource)
            except Exception:  # noqa: BLE001 - an unevaluable path indexes nothing
                values = []
            for value in values:
                self._rows(param, value, out)
            if param.ongoing is not None and param.ongoing(resource):
                out.ongoing.add(param.key)
        for sec in resource.get("meta", {}).get("security", []) or []:
            if sec.get("code"):
                out.labels.add((sec.get("system") or "", sec["code"]))
        if rtype == "Patient":
            out.patients.add(resource["id"])
        for code in self.registry.compartment_params.get(rtype, ()):
            key = f"{rtype}.{code}"
            for row in out.rows.get("reference", []):
                if row["param"] == key and row["target_type"] == "Patient" and row["target_id"]:
                    out.patients.add(row["target_id"])
        if rtype not in self.registry.compartment_listed:
            # A type the compartment definition does not list (Communication, Appointment,
            # Coverage, ...): whichever Patient it references anywhere, it is part of that
            # patient's record. Failing closed: unknown patient data is never everyone's.
            out.patients.update(rid for t, rid in references_in(resource, self.base_url)
                                if t == "Patient" and rid)
        return out

    def _rows(self, p: SearchParam, value: Any, out: IndexRows) -> None:
        kind = p.type
        if kind == "token":
            for system, code, text in _tokens(value):
                out.add("token", {"param": p.key, "system": system, "code": code, "text": text})
        elif kind == "string":
            for s in _strings(value):
                out.add("string", {"param": p.key, "value_norm": normalize(s), "value_exact": s})
        elif kind == "date":
            rng = _date_range(value)
            if rng:
                out.add("date", {"param": p.key, "low": rng[0], "high": rng[1]})
        elif kind == "number":
            num = _number(value)
            if num is not None:
                out.add("number", {"param": p.key, "value": num})
        elif kind == "quantity":
            row = _quantity(value)
            if row:
                out.add("quantity", {"param": p.key, **row})
        elif kind == "reference":
            row = self._reference(p, value)
            if row:
                out.add("reference", {"param": p.key, **row})
        elif kind == "uri" and isinstance(value, str):
            out.add("uri", {"param": p.key, "value": value[:1024]})

    def _reference(self, p: SearchParam, value: Any) -> dict[str, Any] | None:
        if isinstance(value, str):  # a canonical or uri used as a reference; `|version` dropped
            canonical = value.split("|")[0]
            rtype, rid, url = parse_reference(canonical, self.base_url)
            if "://" in canonical or canonical.startswith("urn:"):
                url = canonical
            return {"target_type": rtype, "target_id": rid, "url": url[:1024] if url else None,
                    "identifier_system": None, "identifier_value": None}
        if not isinstance(value, dict):
            return None
        ref = value.get("reference")
        ident = value.get("identifier") or {}
        rtype = rid = url = None
        if ref:
            rtype, rid, url = parse_reference(ref, self.base_url)
        rtype = rtype or value.get("type")
        if p.targets and rtype and rtype not in p.targets:
            return None
        if not ref and not ident:
            return None
        return {
            "target_type": rtype,
            "target_id": rid,
            "url": url[:1024] if url else None,
            "identifier_system": ident.get("system"),
            "identifier_value": ident.get("value"),
        }


def _tokens(value: Any) -> list[tuple[str | None, str | None, str | None]]:
    if isinstance(value, bool):
        return [(None, "true" if value else "false", None)]
    if isinstance(value, str | int | float):
        return [(None, str(value), None)]
    if not isinstance(value, dict):
        return []
    if "coding" in value or ("text" in value and "value" not in value):
        # :text searches both Coding.display and CodeableConcept.text (R4 3.1.1.5.5), so the
        # concept's text gets a row of its own instead of standing in for a missing display.
        rows = [
            (c.get("system"), c.get("code"), _lower(c.get("display")))
            for c in value.get("coding", [])
        ]
        if value.get("text"):
            rows.append((None, None, _lower(value["text"])))
        return rows
    if "code" in value or "system" in value and "value" not in value:
        return [(value.get("system"), value.get("code"), _lower(value.get("display")))]
    if "value" in value:  # Identifier, ContactPoint
        text = (value.get("type") or {}).get("text") if isinstance(value.get("type"), dict) else None
        return [(value.get("system"), str(value["value"]), _lower(text))]
    return []


def _lower(text: str | None) -> str | None:
    return normalize(text)[:512] if text else None


_NAME_PARTS = ("text", "family", "given", "prefix", "suffix")
_ADDRESS_PARTS = ("text", "line", "city", "district", "state", "postalCode", "country")


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, dict):
        return []
    out: list[str] = []
    for key in (*_NAME_PARTS, *_ADDRESS_PARTS):
        part = value.get(key)
        if isinstance(part, str):
            out.append(part)
        elif isinstance(part, list):
            out.extend(x for x in part if isinstance(x, str))
    if not out and isinstance(value.get("display"), str):
        out.append(value["display"])
    return list(dict.fromkeys(out))


def _date_range(value: Any) -> tuple[Any, Any] | None:
    try:
        if isinstance(value, str):
            return dates.parse_range(value)
        if isinstance(value, dict):
            if "start" in value or "end" in value:
                low = dates.parse_range(value["start"])[0] if value.get("start") else dates.MIN_DT
                high = dates.parse_range(value["end"])[1] if value.get("end") else dates.MAX_DT
                return low, high
            events = value.get("event") or []
            if events:
                ranges = [dates.parse_range(e) for e in events]
                return min(r[0] for r in ranges), max(r[1] for r in ranges)
        text = str(value)
        if is_digits(text[:4]):
            return dates.parse_range(text.replace("@", ""))
    except (dates.DateFormatError, OverflowError):  # unparseable, or beyond year 1..9999 in UTC
        return None
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _quantity(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict) or value.get("value") is None:
        return None
    number = _number(value["value"])
    if number is None:
        return None
    system, code, unit = value.get("system"), value.get("code"), value.get("unit")
    canonical = None
    if system == ucum.UCUM_SYSTEM and code:
        canonical = ucum.to_canonical(number, code)
    return {
        "value": number,
        "system": system,
        "code": code or unit,
        "unit": unit,
        "canonical_value": canonical[0] if canonical else None,
        "canonical_unit": canonical[1] if canonical else None,
    }
