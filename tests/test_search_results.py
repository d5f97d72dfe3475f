"""What a searchset carries: _total, _summary, _elements, _include/_revinclude (:iterate), errors,
lenient handling, POST _search and system-level search (R4 3.1.1.5-3.1.1.6)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from .helpers import TAG_SYSTEM
from .search_helpers import (
    LOINC,
    error,
    expressions,
    found,
    ids,
    link,
    make,
    observation,
    query_of,
    scope,
    search,
)

SUBSETTED = "SUBSETTED"


def _subsetted(resource: dict[str, Any]) -> bool:
    return any(t.get("code") == SUBSETTED for t in resource.get("meta", {}).get("tag", []))


def _resources(bundle: dict[str, Any], mode: str = "match") -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


def _rich_patient(client: TestClient, tag: str) -> str:
    return make(client, tag, {
        "resourceType": "Patient",
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Anna</div>"},
        "identifier": [{"system": "http://fhir.nl/fhir/NamingSystem/bsn", "value": "123456782"}],
        "name": [{"family": "de Vries", "given": ["Anna"]}],
        "gender": "female",
        "birthDate": "1978-04-12",
        "maritalStatus": {"text": "getrouwd"},
        "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "nl"}]}}],
        "contact": [{"name": {"family": "de Vries", "given": ["Piet"]}}],
    })


# -- _total ---------------------------------------------------------------------------------
def test_total_none_and_accurate(client: TestClient, tag: str) -> None:
    for _ in range(3):
        make(client, tag, {"resourceType": "Patient"})
    assert search(client, "Patient", tag, [("_count", "1")])["total"] == 3
    assert search(client, "Patient", tag, [("_total", "accurate"), ("_count", "1")])["total"] == 3
    none = search(client, "Patient", tag, [("_total", "none")])
    assert "total" not in none and len(ids(none)) == 3
    assert search(client, "Patient", tag, [("_total", "estimate")]).get("total", 3) == 3
    assert expressions(error(client, "Patient", [("_total", "some")])) == ["_total"]


# -- _summary and _elements -----------------------------------------------------------------
def test_summary_true_keeps_summary_elements_only(client: TestClient, tag: str) -> None:
    _rich_patient(client, tag)
    [patient] = _resources(search(client, "Patient", tag, [("_summary", "true")]))
    assert _subsetted(patient)
    assert {"identifier", "name", "gender", "birthDate"} <= set(patient)
    for absent in ("text", "maritalStatus", "communication", "contact"):
        assert absent not in patient, absent


def test_summary_count_data_and_false(client: TestClient, tag: str) -> None:
    _rich_patient(client, tag)
    _rich_patient(client, tag)
    count = search(client, "Patient", tag, [("_summary", "count")])
    assert count["total"] == 2 and "entry" not in count
    data = _resources(search(client, "Patient", tag, [("_summary", "data")]))
    assert len(data) == 2
    for patient in data:
        assert "text" not in patient and _subsetted(patient)
        assert {"contact", "communication", "maritalStatus"} <= set(patient)
    for patient in _resources(search(client, "Patient", tag, [("_summary", "false")])):
        assert "text" in patient and not _subsetted(patient)
    assert expressions(error(client, "Patient", [("_summary", "short")])) == ["_summary"]


def test_elements_keeps_listed_elements(client: TestClient, tag: str) -> None:
    _rich_patient(client, tag)
    [patient] = _resources(search(client, "Patient", tag, [("_elements", "name,gender")]))
    assert set(patient) == {"resourceType", "id", "meta", "name", "gender"}
    assert _subsetted(patient)
    # Tags the resource carried are still there next to SUBSETTED.
    assert {"system": TAG_SYSTEM, "code": tag} in patient["meta"]["tag"]

    pid = make(client, tag, {"resourceType": "Patient"})
    make(client, tag, observation(f"Patient/{pid}", valueQuantity={"value": 32, "unit": "h/wk"},
                                  note=[{"text": "ingevuld door werkgever"}]))
    bundle = search(client, "Observation", tag, [("_elements", "subject,value"),
                                                  ("_include", "Observation:subject")])
    [obs] = _resources(bundle)
    # `value` selects valueQuantity; mandatory status and code come along (R4 3.1.1.5.9).
    assert set(obs) == {"resourceType", "id", "meta", "subject", "valueQuantity", "status", "code"}
    assert _subsetted(obs)
    [included] = _resources(bundle, "include")
    assert included["id"] == pid and not _subsetted(included)  # _elements shapes matches only


def test_summary_text_keeps_text_and_mandatory_elements(client: TestClient, tag: str) -> None:
    pid = make(client, tag, {"resourceType": "Patient"})
    make(client, tag, observation(f"Patient/{pid}", valueQuantity={"value": 32, "unit": "h/wk"},
                                  text={"status": "generated",
                                        "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">32 uur</div>"}))
    [obs] = _resources(search(client, "Observation", tag, [("_summary", "text")]))
    assert set(obs) == {"resourceType", "id", "meta", "text", "status", "code"}
    assert _subsetted(obs)


# -- _include and _revinclude -----------------------------------------------------------------
def _graph(client: TestClient, tag: str) -> dict[str, str]:
    org = make(client, tag, {"resourceType": "Organization", "name": "Werkgever BV"})
    gp = make(client, tag, {"resourceType": "Practitioner", "name": [{"family": "Huisman"}]})
    pat = make(client, tag, {"resourceType": "Patient", "name": [{"family": "Smit"}],
                             "managingOrganization": {"reference": f"Organization/{org}"},
                             "generalPractitioner": [{"reference": f"Practitioner/{gp}"}]})
    obs1 = make(client, tag, observation(f"Patient/{pat}", performer=[{"reference": f"Practitioner/{gp}"}]))
    obs2 = make(client, tag, observation(f"Patient/{pat}", code="29463-7", system=LOINC))
    prov = make(client, tag, {"resourceType": "Provenance", "recorded": "2024-05-01T10:00:00Z",
                              "target": [{"reference": f"Patient/{pat}"}],
                              "agent": [{"who": {"reference": f"Practitioner/{gp}"}}]})
    return {"org": org, "gp": gp, "pat": pat, "obs1": obs1, "obs2": obs2, "prov": prov}


def test_include_subject(client: TestClient, tag: str) -> None:
    g = _graph(client, tag)
    bundle = search(client, "Observation", tag, [("_include", "Observation:subject")])
    assert bundle["total"] == 2
    assert set(ids(bundle)) == {g["obs1"], g["obs2"]}
    assert ids(bundle, "include") == [g["pat"]]  # once, though both point at it
    modes = [e["search"]["mode"] for e in bundle["entry"]]
    assert modes == ["match", "match", "include"]

    typed = search(client, "Observation", tag, [("_include", "Observation:subject:Patient")])
    assert ids(typed, "include") == [g["pat"]]
    wrong_type = search(client, "Observation", tag, [("_include", "Observation:performer:Organization")])
    assert ids(wrong_type, "include") == []
    every = search(client, "Observation", tag, [("_include", "Observation:*")])
    assert set(ids(every, "include")) == {g["pat"], g["gp"]}
    star = search(client, "Observation", tag, [("_include", "*")])
    assert set(ids(star, "include")) == {g["pat"], g["gp"]}
    assert star["total"] == 2


def test_revinclude(client: TestClient, tag: str) -> None:
    g = _graph(client, tag)
    bundle = search(client, "Patient", tag, [("_revinclude", "Provenance:target"),
                                             ("_revinclude", "Observation:subject")])
    assert bundle["total"] == 1 and ids(bundle) == [g["pat"]]
    assert set(ids(bundle, "include")) == {g["prov"], g["obs1"], g["obs2"]}
    only_prov = search(client, "Patient", tag, [("_revinclude", "Provenance:target")])
    assert ids(only_prov, "include") == [g["prov"]]


def test_include_iterate(client: TestClient, tag: str) -> None:
    g = _graph(client, tag)
    params = [("_include", "Observation:subject"),
              ("_include:iterate", "Patient:organization"),
              ("_include:iterate", "Patient:general-practitioner")]
    bundle = search(client, "Observation", tag, params)
    assert bundle["total"] == 2
    assert set(ids(bundle, "include")) == {g["pat"], g["org"], g["gp"]}
    # Without :iterate the second hop is not taken.
    flat = search(client, "Observation", tag, [("_include", "Observation:subject"),
                                               ("_include", "Patient:organization")])
    assert ids(flat, "include") == [g["pat"]]
    # _revinclude:iterate hops from the included resources back.
    back = search(client, "Organization", tag, [("_revinclude", "Patient:organization"),
                                                ("_revinclude:iterate", "Observation:subject")])
    assert ids(back) == [g["org"]]
    assert set(ids(back, "include")) == {g["pat"], g["obs1"], g["obs2"]}


def test_include_errors(client: TestClient) -> None:
    for name, value in (("_include", "Observation"), ("_include", "Observation:code"),
                        ("_include", "Observation:unknown"), ("_include:deep", "Observation:subject"),
                        ("_include", "Observation:subject:Organization"), ("_revinclude", "*")):
        assert expressions(error(client, "Observation", [(name, value)])) == [name], (name, value)


# -- errors and lenient handling --------------------------------------------------------------
def test_unknown_and_malformed_parameters_are_400(client: TestClient) -> None:
    cases = [
        ("Patient", "birthdate", "2024-13-45"),
        ("Patient", "birthdate", "yesterday"),
        ("Patient", "birthdate", "xx2024"),
        ("Observation", "value-quantity", "lots"),
        ("Observation", "value-quantity", "nan"),
        ("Observation", "value-quantity", "-inf||h/wk"),
        ("RiskAssessment", "probability", "1e400"),
        ("RiskAssessment", "probability", "1_000"),
        ("RiskAssessment", "probability", "ge0.5.1"),
        ("Observation", "value-quantity", "ge|http://unitsofmeasure.org|h"),
        ("Observation", "date", "ge"),
        ("Patient", "name:unknownmodifier", "x"),
        ("Patient", "_id:below", "x"),
        ("Patient", "_lastUpdated", "soon"),
        ("Patient", "gender", ""),
    ]
    for rtype, name, value in cases:
        outcome = error(client, rtype, [(name, value)])
        assert outcome["issue"][0]["severity"] == "error"
        assert expressions(outcome) == [name], (name, value)


def test_lenient_handling_ignores_unknown_parameters(client: TestClient, tag: str) -> None:
    female = make(client, tag, {"resourceType": "Patient", "gender": "female"})
    make(client, tag, {"resourceType": "Patient", "gender": "male"})
    lenient = {"Prefer": "handling=lenient"}
    bundle = search(client, "Patient", tag, [("gender", "female"), ("unknown-param", "x"),
                                             ("birthdate", "not-a-date")], headers=lenient)
    assert ids(bundle) == [female]
    self_link = link(bundle, "self")
    assert self_link is not None
    names = [k for k, _ in query_of(self_link)]
    assert "unknown-param" not in names and "birthdate" not in names
    assert ("gender", "female") in query_of(self_link)
    # The bundle says what it ignored, in an OperationOutcome entry with search mode outcome.
    [outcome] = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome["resourceType"] == "OperationOutcome"
    assert sorted(x for i in outcome["issue"] for x in i["expression"]) == ["birthdate", "unknown-param"]
    assert {i["severity"] for i in outcome["issue"]} == {"warning"}
    strict = error(client, "Patient", [("gender", "female"), ("unknown-param", "x")],
                   headers={"Prefer": "handling=strict"})
    assert expressions(strict) == ["unknown-param"]


# -- POST _search and system-level search -----------------------------------------------------
def test_post_search_equals_get(client: TestClient, tag: str) -> None:
    g = _graph(client, tag)
    params = [("code", f"{LOINC}|29463-7,contract-hours-per-week"), ("_sort", "-_lastUpdated"),
              ("_include", "Observation:subject"), scope(tag)]
    get = client.get("/fhir/Observation", params=params).json()
    post = client.post("/fhir/Observation/_search", data=dict(params),
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert post.status_code == 200, post.text
    body = post.json()
    assert body["total"] == get["total"] == 2
    assert ids(body) == ids(get) == [g["obs2"], g["obs1"]]
    assert ids(body, "include") == ids(get, "include") == [g["pat"]]
    assert link(body, "self") == link(get, "self")
    bad = client.post("/fhir/Observation/_search", data={"nonsense": "1"},
                      headers={"Content-Type": "application/x-www-form-urlencoded",
                               "Prefer": "handling=strict"})
    assert bad.status_code == 400 and expressions(bad.json()) == ["nonsense"]


def test_system_level_search(client: TestClient, tag: str) -> None:
    pat = make(client, tag, {"resourceType": "Patient"})
    org = make(client, tag, {"resourceType": "Organization", "name": "Systeem BV"})
    stamp = client.get(f"/fhir/Organization/{org}").json()["meta"]["lastUpdated"]
    by_id = search(client, "", None, [("_id", f"{pat},{org}")])
    assert {(e["resource"]["resourceType"], e["resource"]["id"]) for e in by_id["entry"]} == {
        ("Patient", pat), ("Organization", org)}
    assert by_id["entry"][0]["fullUrl"].startswith("http://testserver/fhir/")
    mine = search(client, "", tag)
    assert {e["resource"]["id"] for e in mine["entry"]} == {pat, org}
    assert found(client, "", tag, [("_lastUpdated", f"ge{stamp}")]) == {org}
    assert found(client, "", tag, [("_lastUpdated", f"lt{stamp}")]) == {pat}
    strict = {"Prefer": "handling=strict"}
    assert expressions(error(client, "", [("name", "x")], headers=strict)) == ["name"]
