"""Modifiers (:missing :not :text :exact :contains), ORed values and ANDed parameters (R4 3.1.1.5)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from .search_helpers import OBS_SYSTEM, error, expressions, found, make, observation


def test_missing_on_every_type(client: TestClient, tag: str) -> None:
    gp = make(client, tag, {"resourceType": "Practitioner", "name": [{"family": "Bakker"}]})
    full = make(client, tag, {"resourceType": "Patient", "gender": "female", "birthDate": "1980-01-01",
                              "name": [{"family": "Visser"}],
                              "generalPractitioner": [{"reference": f"Practitioner/{gp}"}]})
    empty = make(client, tag, {"resourceType": "Patient"})

    for name in ("gender", "birthdate", "family", "general-practitioner"):
        assert found(client, "Patient", tag, [(f"{name}:missing", "true")]) == {empty}, name
        assert found(client, "Patient", tag, [(f"{name}:missing", "false")]) == {full}, name

    measured = make(client, tag, observation(valueQuantity={"value": 3, "unit": "h/wk"}))
    unmeasured = make(client, tag, observation())
    assert found(client, "Observation", tag, [("value-quantity:missing", "true")]) == {unmeasured}
    assert found(client, "Observation", tag, [("value-quantity:missing", "false")]) == {measured}

    with_url = make(client, tag, {"resourceType": "Questionnaire", "status": "draft",
                                  "url": f"https://pgo-work.nl/fhir/Questionnaire/{tag}"})
    without_url = make(client, tag, {"resourceType": "Questionnaire", "status": "draft"})
    assert found(client, "Questionnaire", tag, [("url:missing", "true")]) == {without_url}
    assert found(client, "Questionnaire", tag, [("url:missing", "false")]) == {with_url}


def test_missing_takes_only_true_or_false(client: TestClient) -> None:
    outcome = error(client, "Patient", [("gender:missing", "maybe")])
    assert expressions(outcome) == ["gender:missing"]


def test_not_includes_resources_without_a_value(client: TestClient, tag: str) -> None:
    female = make(client, tag, {"resourceType": "Patient", "gender": "female"})
    male = make(client, tag, {"resourceType": "Patient", "gender": "male"})
    unknown = make(client, tag, {"resourceType": "Patient"})
    assert found(client, "Patient", tag, [("gender:not", "male")]) == {female, unknown}
    assert found(client, "Patient", tag, [("gender:not", "male,female")]) == {unknown}
    assert found(client, "Patient", tag, [("gender:not", "other")]) == {female, male, unknown}

    hours = make(client, tag, observation(code="contract-hours-per-week"))
    worked = make(client, tag, observation(code="worked-hours-per-week"))
    assert found(client, "Observation", tag, [("code:not", f"{OBS_SYSTEM}|contract-hours-per-week")]) \
        == {worked}
    assert found(client, "Observation", tag, [("code:not", "worked-hours-per-week")]) == {hours}


def test_text_searches_display_concept_text_and_identifier_type(client: TestClient, tag: str) -> None:
    """:text looks at CodeableConcept.text, Coding.display and Identifier.type.text alike."""
    both = make(client, tag, {"resourceType": "Observation", "status": "final", "code": {
        "coding": [{"system": OBS_SYSTEM, "code": "contract-hours-per-week",
                    "display": "Contract hours per week"}],
        "text": "Arbeidsuren volgens contract"}})
    display_only = make(client, tag, {"resourceType": "Observation", "status": "final", "code": {
        "coding": [{"system": OBS_SYSTEM, "code": "worked-hours-per-week",
                    "display": "Worked hours per week"}]}})
    text_only = make(client, tag, {"resourceType": "Observation", "status": "final", "code": {
        "text": "Ervaren belastbaarheid"}})

    def q(value: str) -> set[str]:
        return found(client, "Observation", tag, [("code:text", value)])

    assert q("contract hours") == {both}
    assert q("arbeidsuren") == {both}
    assert q("HOURS PER WEEK") == {both, display_only}
    assert q("belastbaarheid") == {text_only}
    assert q("contract-hours-per-week") == set()  # the code itself is not its text

    bsn = make(client, tag, {"resourceType": "Patient", "identifier": [{
        "type": {"text": "Burgerservicenummer"}, "system": "http://fhir.nl/fhir/NamingSystem/bsn",
        "value": "123456782"}]})
    assert found(client, "Patient", tag, [("identifier:text", "burgerservice")]) == {bsn}


def test_commas_or_and_repeats_and(client: TestClient, tag: str) -> None:
    anna = make(client, tag, {"resourceType": "Patient", "gender": "female", "birthDate": "1970-03-01",
                              "name": [{"family": "de Vries", "given": ["Anna"]}]})
    bram = make(client, tag, {"resourceType": "Patient", "gender": "male", "birthDate": "1985-07-15",
                              "name": [{"family": "Bakker", "given": ["Bram"]}]})
    cato = make(client, tag, {"resourceType": "Patient", "gender": "female", "birthDate": "1992-11-30",
                              "name": [{"family": "Bakker", "given": ["Cato"]}]})

    def q(*params: tuple[str, str]) -> set[str]:
        return found(client, "Patient", tag, list(params))

    assert q(("name", "anna,bram")) == {anna, bram}
    assert q(("name", "bakker"), ("name", "cato")) == {cato}
    assert q(("name", "anna"), ("name", "bram")) == set()
    assert q(("gender", "female"), ("family", "bakker")) == {cato}
    assert q(("birthdate", "ge1980"), ("birthdate", "le1990")) == {bram}
    assert q(("birthdate", "lt1975,gt1990")) == {anna, cato}
    assert q(("_id", f"{anna},{cato}"), ("gender", "male")) == set()
    assert q(("gender", "male,female"), ("name:exact", "Bakker")) == {bram, cato}


def test_escaped_comma_is_a_literal(client: TestClient, tag: str) -> None:
    comma = make(client, tag, {"resourceType": "Organization", "name": "Arbo, Zorg en Werk"})
    make(client, tag, {"resourceType": "Organization", "name": "Arbo Unie"})
    zorg = make(client, tag, {"resourceType": "Organization", "name": "Zorg BV"})
    assert found(client, "Organization", tag, [("name", "arbo\\, zorg")]) == {comma}
    assert found(client, "Organization", tag, [("name", "arbo,\\, zorg")]) == {comma} | (
        found(client, "Organization", tag, [("name", "arbo")]))
    assert found(client, "Organization", tag, [("name", "zorg")]) == {zorg}


def test_exact_is_case_and_accent_sensitive(client: TestClient, tag: str) -> None:
    anna = make(client, tag, {"resourceType": "Patient", "name": [{"family": "Ångström"}]})
    assert found(client, "Patient", tag, [("family:exact", "Ångström")]) == {anna}
    assert found(client, "Patient", tag, [("family:exact", "Angstrom")]) == set()
    assert found(client, "Patient", tag, [("family:exact", "ångström")]) == set()
    assert found(client, "Patient", tag, [("family", "angs")]) == {anna}
    assert found(client, "Patient", tag, [("family:contains", "STRÖ")]) == {anna}


def test_modifiers_that_do_not_apply_are_rejected(client: TestClient) -> None:
    for name in ("gender:contains", "birthdate:exact", "name:not", "name:below", "family:foo",
                 "subject:Unknown", "value-quantity:text"):
        rtype = "Observation" if name.startswith(("subject", "value")) else "Patient"
        outcome = error(client, rtype, [(name, "x")])
        assert expressions(outcome) == [name], name
