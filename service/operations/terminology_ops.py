"""Terminology operations over what we ship (R4 ValueSet-expand, ValueSet-validate-code,
CodeSystem-validate-code, CodeSystem-lookup), Parameters in and out as the spec defines.

A ValueSet is found by `url` among our package first, then among ValueSets stored here; at
instance level the stored one is read through the caller's store. `displayLanguage` picks the
Dutch (`nl`) or English (`en`, the CodeSystems' own language) display from the designations;
any other language falls back to the English display. A ValueSet that includes a whole system
we do not ship (ISCO-08) cannot be enumerated: $expand answers 422 too-costly instead of
pretending the list is complete, while $validate-code accepts any code of such a system.
"""

from __future__ import annotations

import uuid
from typing import Any

from ..conformance.terminology import CodeCheck, Concept, Expansion, Terminology
from ..fhir import dates
from ..fhir.outcome import FhirError, bad_request, not_found
from .params import boolean, conformance, integer, mapping, parameters, text
from .registry import Operation, OperationCall, OperationResult

BASE = "https://pgo-work.nl/fhir/OperationDefinition"


# -- finding the ValueSet ------------------------------------------------------------------
async def _value_set(call: OperationCall) -> tuple[dict[str, Any], Expansion]:
    term = conformance(call).terminology
    if call.level == "instance":
        assert call.id is not None
        stored = (await call.store.read("ValueSet", call.id)).json()
        return stored, _expansion(term, stored)
    posted = mapping(call, "valueSet")
    if posted is not None:
        return posted, term.expand_resource(posted)
    url = text(call, "url")
    if url is None:
        raise bad_request("Give the ValueSet by 'url', as a 'valueSet' resource, or call the "
                          "operation on a ValueSet instance", "url")
    ours = term.valuesets.get(url.split("|")[0])
    if ours is not None:
        return ours, _expansion(term, ours)
    query = [("url", url.split("|")[0])]
    found = await call.store.count_matches(call.runtime.parser.parse("ValueSet", query), limit=1)
    if not found:
        raise FhirError(404, "not-found", f"ValueSet {url} is not known", "url")
    stored = found[0].json()
    return stored, term.expand_resource(stored)


def _expansion(term: Terminology, vs: dict[str, Any]) -> Expansion:
    url = vs.get("url")
    ours = term.expand(url) if isinstance(url, str) and url in term.valuesets else None
    return ours or term.expand_resource(vs)


def _matches(concept: Concept, needle: str) -> bool:
    texts = [concept.code, concept.display or ""] + [str(d.get("value", "")) for d in concept.designations]
    return any(needle in t.casefold() for t in texts)


# -- $expand --------------------------------------------------------------------------------
async def expand(call: OperationCall) -> OperationResult:
    term = conformance(call).terminology
    vs, exp = await _value_set(call)
    if exp.open_systems:
        raise FhirError(422, "too-costly", f"ValueSet {vs.get('url')} includes all codes of "
                        f"{', '.join(sorted(exp.open_systems))}, which this server does not ship; "
                        "it cannot be expanded (use $validate-code)")
    needle = (text(call, "filter") or "").strip().casefold()
    language = text(call, "displayLanguage")
    offset = integer(call, "offset") or 0
    count = integer(call, "count")
    designations = boolean(call, "includeDesignations")
    selected = [c for c in exp.concepts.values() if not needle or _matches(c, needle)]
    page = selected[offset: offset + count if count is not None else None]
    contains = []
    for c in page:
        entry: dict[str, Any] = {"system": c.system, "code": c.code}
        shown = c.display_in(language, term.language_of(c.system))
        if shown:
            entry["display"] = shown
        if designations and c.designations:
            entry["designation"] = [{k: v for k, v in d.items() if k in ("language", "use", "value")}
                                    for d in c.designations]
        contains.append(entry)
    used = [("filter", "valueString", needle or None), ("offset", "valueInteger", offset),
            ("count", "valueInteger", count), ("displayLanguage", "valueCode", language)]
    expansion: dict[str, Any] = {
        "identifier": f"urn:uuid:{uuid.uuid4()}",
        "timestamp": dates.to_instant(dates.utcnow()),
        "total": len(selected),
        "offset": offset,
        "parameter": [{"name": n, k: v} for n, k, v in used if v is not None],
        "contains": contains,
    }
    out = {k: v for k, v in vs.items() if k not in ("compose", "expansion", "meta", "text")}
    out["expansion"] = expansion
    return OperationResult(out)


# -- $validate-code -------------------------------------------------------------------------
Candidate = tuple[str | None, str | None, str | None]


def _candidates(call: OperationCall, default_system: str | None) -> tuple[list[Candidate], str]:
    """(system, code, display) triples to try, and the name of the parameter they came from."""
    code = text(call, "code")
    if code is not None:
        return [(text(call, "system") or default_system, code, text(call, "display"))], "code"
    coding = mapping(call, "coding")
    if coding is not None:
        return [(coding.get("system"), coding.get("code"), coding.get("display"))], "coding"
    concept = mapping(call, "codeableConcept")
    if concept is not None:
        return [(c.get("system"), c.get("code"), c.get("display"))
                for c in concept.get("coding", []) if isinstance(c, dict)], "codeableConcept"
    raise bad_request("Give 'code' (with 'system'), 'coding' or 'codeableConcept'", "code")


def _answer(checks: list[CodeCheck]) -> OperationResult:
    fallback = checks[0] if checks else CodeCheck(False, "No coding was given")
    best = next((c for c in checks if c.result), fallback)
    return OperationResult(parameters(("result", "valueBoolean", best.result),
                                      ("message", "valueString", best.message),
                                      ("display", "valueString", best.display)))


async def validate_code_vs(call: OperationCall) -> OperationResult:
    term = conformance(call).terminology
    _, exp = await _value_set(call)
    candidates, _ = _candidates(call, None)
    return _answer([term.validate_in(exp, s, c, d) for s, c, d in candidates])


async def _code_system_url(call: OperationCall, name: str) -> str:
    if call.level == "instance":
        assert call.id is not None
        url = (await call.store.read("CodeSystem", call.id)).json().get("url")
        if not isinstance(url, str):
            raise FhirError(422, "not-supported", f"CodeSystem/{call.id} has no url")
        return url
    url = text(call, name)
    if url is None:
        coding = mapping(call, "coding")
        url = coding.get("system") if coding else None
    if not url:
        raise bad_request(f"Parameter '{name}' is required", name)
    return url.split("|")[0]


async def validate_code_cs(call: OperationCall) -> OperationResult:
    term = conformance(call).terminology
    url = await _code_system_url(call, "url")
    if not term.knows_system(url):
        raise FhirError(404, "not-found", f"CodeSystem {url} is not known", "url")
    candidates, _ = _candidates(call, url)
    checks = [term.validate_in_codesystem(url, c, d) if (s or url) == url
              else CodeCheck(False, f"The coding's system {s} is not {url}")
              for s, c, d in candidates]
    return _answer(checks)


# -- $lookup --------------------------------------------------------------------------------
def _property(code: str, key: str, value: Any) -> dict[str, Any]:
    return {"name": "property", "part": [{"name": "code", "valueCode": code},
                                         {"name": "value", key: value}]}


async def lookup(call: OperationCall) -> OperationResult:
    term = conformance(call).terminology
    system = await _code_system_url(call, "system")
    coding = mapping(call, "coding")
    code = text(call, "code") or (coding.get("code") if coding else None)
    if not code:
        raise bad_request("Parameter 'code' is required", "code")
    if not term.knows_system(system):
        raise FhirError(404, "not-found", f"CodeSystem {system} is not known", "system")
    concept = term.lookup(system, code)
    if concept is None:
        raise not_found(f"Code '{code}' is not known in {system}")
    cs = term.codesystem_resources.get(system, {})
    language = text(call, "displayLanguage")
    out = parameters(("name", "valueString", cs.get("name") or system),
                     ("version", "valueString", cs.get("version")),
                     ("display", "valueString", concept.display_in(language, term.language_of(system))))
    params: list[dict[str, Any]] = out["parameter"]
    for d in concept.designations:
        parts = [{"name": "language", "valueCode": d["language"]}] if d.get("language") else []
        if d.get("use"):
            parts.append({"name": "use", "valueCoding": d["use"]})
        parts.append({"name": "value", "valueString": d.get("value")})
        params.append({"name": "designation", "part": parts})
    if concept.definition:
        params.append(_property("definition", "valueString", concept.definition))
    if concept.parent:
        params.append(_property("parent", "valueCode", concept.parent))
    for child in term.children(system, code):
        params.append(_property("child", "valueCode", child))
    for prop in concept.properties:
        value = next(((k, v) for k, v in prop.items() if k.startswith("value")), None)
        if value and prop.get("code"):
            params.append(_property(str(prop["code"]), value[0], value[1]))
    return OperationResult(out)


OPERATIONS = [
    Operation("expand", frozenset({"type", "instance"}), expand, frozenset({"ValueSet"}),
              definition=f"{BASE}/ValueSet-expand"),
    Operation("validate-code", frozenset({"type", "instance"}), validate_code_vs,
              frozenset({"ValueSet"}), definition=f"{BASE}/ValueSet-validate-code"),
    Operation("validate-code", frozenset({"type", "instance"}), validate_code_cs,
              frozenset({"CodeSystem"}), definition=f"{BASE}/CodeSystem-validate-code"),
    Operation("lookup", frozenset({"type"}), lookup, frozenset({"CodeSystem"}),
              definition=f"{BASE}/CodeSystem-lookup"),
]
