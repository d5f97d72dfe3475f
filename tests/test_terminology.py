"""Terminology operations over what we ship: ValueSet/$expand, ValueSet/$validate-code,
CodeSystem/$validate-code and CodeSystem/$lookup, Parameters in and out."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from .conformance_helpers import BASE, expressions
from .helpers import FHIR_JSON, TAG_SYSTEM

VS = f"{BASE}/ValueSet"
CS = f"{BASE}/CodeSystem"
ICF = "http://hl7.org/fhir/sid/icf"


def _get(client: TestClient, path: str, status: int = 200, /, **params: str) -> dict[str, Any]:
    resp = client.get(path, params=params)
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _param(parameters: dict[str, Any], name: str) -> Any:
    for p in parameters["parameter"]:
        if p["name"] == name:
            return next(v for k, v in p.items() if k.startswith("value"))
    return None


def _properties(parameters: dict[str, Any]) -> list[tuple[str, Any]]:
    out = []
    for p in parameters["parameter"]:
        if p["name"] == "property":
            parts = {q["name"]: next(v for k, v in q.items() if k.startswith("value")) for q in p["part"]}
            out.append((parts["code"], parts["value"]))
    return out


def test_expand_by_url_in_english_and_dutch(client: TestClient) -> None:
    en = _get(client, "/fhir/ValueSet/$expand", url=f"{VS}/work-status")
    assert en["resourceType"] == "ValueSet" and en["expansion"]["total"] == 4
    displays = {c["code"]: c["display"] for c in en["expansion"]["contains"]}
    assert displays["sick-leave"] == "On sick leave"
    nl = _get(client, "/fhir/ValueSet/$expand", url=f"{VS}/work-status", displayLanguage="nl")
    dutch = {c["code"]: c["display"] for c in nl["expansion"]["contains"]}
    assert dutch["partially-working"] != displays["partially-working"]
    assert dutch["working"] == "Aan het werk"


def test_expand_filter_count_and_offset(client: TestClient) -> None:
    full = _get(client, "/fhir/ValueSet/$expand", url=f"{VS}/icf-cancer-work")
    assert full["expansion"]["total"] == 42  # issue 11 added 11 categories
    codes = [c["code"] for c in full["expansion"]["contains"]]
    page = _get(client, "/fhir/ValueSet/$expand", url=f"{VS}/icf-cancer-work", count="5", offset="5")
    assert page["expansion"]["total"] == 42 and page["expansion"]["offset"] == 5
    assert [c["code"] for c in page["expansion"]["contains"]] == codes[5:10]
    found = _get(client, "/fhir/ValueSet/$expand", url=f"{VS}/icf-cancer-work", filter="employment")
    assert {c["code"] for c in found["expansion"]["contains"]} == {"d850", "d855", "e135", "e590"}
    dutch = _get(client, "/fhir/ValueSet/$expand", url=f"{VS}/employment-type", filter="vast contract",
                 displayLanguage="nl")
    assert [c["code"] for c in dutch["expansion"]["contains"]] == ["employee-permanent"]


def test_expand_with_designations_and_on_an_instance(client: TestClient) -> None:
    out = _get(client, "/fhir/ValueSet/icf-qualifier/$expand", includeDesignations="true")
    first = out["expansion"]["contains"][0]
    assert first["code"] == "0" and {"language": "nl", "value": "Geen probleem"} in first["designation"]


def test_expand_posted_parameters_and_a_stored_value_set(client: TestClient, tag: str) -> None:
    url = f"https://example.org/vs/{tag}"
    mine = {"resourceType": "ValueSet", "status": "active", "url": url,
            "meta": {"tag": [{"system": TAG_SYSTEM, "code": tag}]},
            "compose": {"include": [{"system": f"{CS}/work-status", "filter": []},
                                    {"system": f"{CS}/employment-type",
                                     "filter": [{"property": "concept", "op": "is-a", "value": "employee"}]}],
                        "exclude": [{"system": f"{CS}/work-status", "concept": [{"code": "not-working"}]}]}}
    assert client.post("/fhir/ValueSet", json=mine, headers=FHIR_JSON).status_code == 201
    out = _get(client, "/fhir/ValueSet/$expand", url=url)
    codes = {c["code"] for c in out["expansion"]["contains"]}
    assert codes == {"working", "partially-working", "sick-leave", "employee", "employee-permanent",
                     "employee-temporary"}
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "valueSet", "resource": mine}, {"name": "count", "valueInteger": 2}]}
    resp = client.post("/fhir/ValueSet/$expand", json=params, headers=FHIR_JSON)
    assert resp.status_code == 200 and len(resp.json()["expansion"]["contains"]) == 2


def test_expand_of_a_system_we_do_not_ship_is_refused(client: TestClient) -> None:
    out = _get(client, "/fhir/ValueSet/$expand", 422, url=f"{VS}/isco-08")
    assert out["issue"][0]["code"] == "too-costly"
    assert _get(client, "/fhir/ValueSet/$expand", 404, url=f"{VS}/nothing")["issue"][0]["code"] == "not-found"
    assert expressions(_get(client, "/fhir/ValueSet/$expand", 400)) == ["url"]
    assert expressions(_get(client, "/fhir/ValueSet/$expand", 400, url=f"{VS}/work-status",
                            count="-1")) == ["count"]


def test_validate_code_in_value_set(client: TestClient) -> None:
    ok = _get(client, "/fhir/ValueSet/$validate-code", url=f"{VS}/employment-type",
              system=f"{CS}/employment-type", code="zzp")
    assert _param(ok, "result") is True and _param(ok, "display")
    wrong = _get(client, "/fhir/ValueSet/$validate-code", url=f"{VS}/employment-type",
                 system=f"{CS}/employment-type", code="freelancer")
    assert _param(wrong, "result") is False and "freelancer" in _param(wrong, "message")
    isco = _get(client, "/fhir/ValueSet/$validate-code", url=f"{VS}/isco-08",
                system="urn:oid:2.16.840.1.113883.2.9.6.2.7", code="2512")
    assert _param(isco, "result") is True
    concept = {"resourceType": "Parameters", "parameter": [
        {"name": "url", "valueUri": f"{VS}/icf-qualifier"},
        {"name": "codeableConcept", "valueCodeableConcept": {"coding": [
            {"system": "http://example.org/other", "code": "x"},
            {"system": f"{CS}/icf-qualifier", "code": "3", "display": "Ernstig probleem"}]}}]}
    resp = client.post("/fhir/ValueSet/$validate-code", json=concept, headers=FHIR_JSON)
    assert resp.status_code == 200 and _param(resp.json(), "result") is True
    odd_display = _get(client, "/fhir/ValueSet/$validate-code", url=f"{VS}/icf-qualifier",
                       system=f"{CS}/icf-qualifier", code="3", display="Heel erg")
    assert _param(odd_display, "result") is True and "Heel erg" in _param(odd_display, "message")


def test_validate_code_in_code_system(client: TestClient) -> None:
    ok = _get(client, "/fhir/CodeSystem/$validate-code", url=f"{CS}/late-effect", code="fatigue")
    assert _param(ok, "result") is True and _param(ok, "display") == "Fatigue"
    bad = _get(client, "/fhir/CodeSystem/$validate-code", url=f"{CS}/late-effect", code="nausea")
    assert _param(bad, "result") is False
    icf = _get(client, "/fhir/CodeSystem/$validate-code", url=ICF, code="d220")
    assert _param(icf, "result") is True
    unverifiable = _get(client, "/fhir/CodeSystem/$validate-code", url=ICF, code="d450")
    assert _param(unverifiable, "result") is False and "cannot be verified" in _param(unverifiable, "message")
    _get(client, "/fhir/CodeSystem/$validate-code", 404, url="http://loinc.org", code="74165-2")
    instance = _get(client, "/fhir/CodeSystem/late-effect/$validate-code", code="memory")
    assert _param(instance, "result") is True


def test_lookup_returns_display_designations_and_hierarchy(client: TestClient) -> None:
    out = _get(client, "/fhir/CodeSystem/$lookup", system=f"{CS}/employment-type", code="employee-permanent")
    assert _param(out, "name") == "EmploymentType" and _param(out, "version") == "0.1.0"
    assert _param(out, "display") == "Employee, permanent contract"
    designations = [p for p in out["parameter"] if p["name"] == "designation"]
    assert any({"name": "language", "valueCode": "nl"} in d["part"] for d in designations)
    assert ("parent", "employee") in _properties(out)
    parent = _get(client, "/fhir/CodeSystem/$lookup", system=f"{CS}/employment-type", code="employee")
    assert {("child", "employee-permanent"), ("child", "employee-temporary")} <= set(_properties(parent))
    nl = _get(client, "/fhir/CodeSystem/$lookup", system=f"{CS}/employment-type", code="employee-permanent",
              displayLanguage="nl")
    assert _param(nl, "display") == "Werknemer met vast contract"


def test_lookup_of_qualifier_properties_and_icf(client: TestClient) -> None:
    severe = _get(client, "/fhir/CodeSystem/$lookup", system=f"{CS}/icf-qualifier", code="3")
    assert {("lowerPercentage", 50), ("upperPercentage", 95)} <= set(_properties(severe))
    icf = _get(client, "/fhir/CodeSystem/$lookup", system=ICF, code="b4552")
    assert _param(icf, "display") == "Fatiguability"
    assert ("parent", "b455") in _properties(icf)
    coding = {"resourceType": "Parameters", "parameter": [
        {"name": "coding", "valueCoding": {"system": ICF, "code": "d240"}}]}
    resp = client.post("/fhir/CodeSystem/$lookup", json=coding, headers=FHIR_JSON)
    assert _param(resp.json(), "display") == "Handling stress and other psychological demands"


def test_lookup_unknown_is_404(client: TestClient) -> None:
    _get(client, "/fhir/CodeSystem/$lookup", 404, system=f"{CS}/late-effect", code="nausea")
    _get(client, "/fhir/CodeSystem/$lookup", 404, system="http://loinc.org", code="74165-2")
    assert expressions(_get(client, "/fhir/CodeSystem/$lookup", 400, system=f"{CS}/late-effect")) == ["code"]
