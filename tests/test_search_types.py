"""Search by every parameter type (R4 3.1.1.4): token, string, date, number, quantity,
reference and uri, plus the common parameters _id, _lastUpdated, _profile, _tag, _security."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from .helpers import TAG_SYSTEM
from .search_helpers import LOINC, OBS_SYSTEM, found, make, observation, search

BSN = "http://fhir.nl/fhir/NamingSystem/bsn"
BASE = "http://testserver/fhir"


# -- token ----------------------------------------------------------------------------------
def test_token_on_identifier(client: TestClient, tag: str) -> None:
    with_system = make(client, tag, {"resourceType": "Patient",
                                     "identifier": [{"system": BSN, "value": "111222333"}]})
    without_system = make(client, tag, {"resourceType": "Patient",
                                        "identifier": [{"value": "111222333"}]})
    other = make(client, tag, {"resourceType": "Patient",
                               "identifier": [{"system": "urn:oid:1.2.3", "value": "999"}]})

    def q(value: str) -> set[str]:
        return found(client, "Patient", tag, [("identifier", value)])

    assert q(f"{BSN}|111222333") == {with_system}
    assert q("111222333") == {with_system, without_system}
    assert q("|111222333") == {without_system}
    assert q(f"{BSN}|") == {with_system}
    assert q("urn:oid:1.2.3|999") == {other}
    assert q(f"{BSN}|999") == set()


def test_token_on_codeable_concept(client: TestClient, tag: str) -> None:
    hours = make(client, tag, observation(code="contract-hours-per-week"))
    weight = make(client, tag, observation(code="29463-7", system=LOINC))
    no_system = make(client, tag, {"resourceType": "Observation", "status": "final",
                                   "code": {"coding": [{"code": "29463-7"}]}})

    def q(value: str) -> set[str]:
        return found(client, "Observation", tag, [("code", value)])

    assert q(f"{OBS_SYSTEM}|contract-hours-per-week") == {hours}
    assert q("contract-hours-per-week") == {hours}
    assert q(f"{LOINC}|29463-7") == {weight}
    assert q("29463-7") == {weight, no_system}
    assert q("|29463-7") == {no_system}
    assert q(f"{LOINC}|") == {weight}
    assert q(f"{OBS_SYSTEM}|29463-7") == set()


def test_token_on_coding_code_and_boolean(client: TestClient, tag: str) -> None:
    audit = {"resourceType": "AuditEvent", "recorded": "2024-05-01T10:00:00Z",
             "agent": [{"requestor": True, "who": {"display": "system"}}],
             "source": {"observer": {"display": "pgo-work"}}}
    rest = make(client, tag, {**audit, "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
                                                 "code": "rest"}})
    make(client, tag, {**audit, "type": {"system": "http://dicom.nema.org/resources/ontology/DCM",
                                         "code": "110110"}})
    assert found(client, "AuditEvent", tag, [
        ("type", "http://terminology.hl7.org/CodeSystem/audit-event-type|rest")]) == {rest}
    assert found(client, "AuditEvent", tag, [("type", "rest")]) == {rest}

    active_f = make(client, tag, {"resourceType": "Patient", "active": True, "gender": "female"})
    inactive_m = make(client, tag, {"resourceType": "Patient", "active": False, "gender": "male"})
    assert found(client, "Patient", tag, [("active", "true")]) == {active_f}
    assert found(client, "Patient", tag, [("active", "false")]) == {inactive_m}
    assert found(client, "Patient", tag, [("gender", "female")]) == {active_f}
    assert found(client, "Patient", tag, [("gender", "male,other")]) == {inactive_m}


def test_token_on_contact_point(client: TestClient, tag: str) -> None:
    pid = make(client, tag, {"resourceType": "Patient", "telecom": [
        {"system": "email", "value": "anna@example.nl"}, {"system": "phone", "value": "0612345678"}]})
    assert found(client, "Patient", tag, [("email", "anna@example.nl")]) == {pid}
    assert found(client, "Patient", tag, [("phone", "0612345678")]) == {pid}
    assert found(client, "Patient", tag, [("email", "0612345678")]) == set()
    assert found(client, "Patient", tag, [("telecom", "anna@example.nl")]) == {pid}


# -- string ---------------------------------------------------------------------------------
def test_string_default_is_case_and_accent_insensitive_prefix(client: TestClient, tag: str) -> None:
    jose = make(client, tag, {"resourceType": "Patient",
                              "name": [{"family": "Müller", "given": ["José", "Maria"]}]})
    vries = make(client, tag, {"resourceType": "Patient",
                               "name": [{"family": "de Vries", "given": ["Anna"], "prefix": ["Dr."]}]})

    def q(name: str, value: str) -> set[str]:
        return found(client, "Patient", tag, [(name, value)])

    assert q("name", "jose") == {jose}
    assert q("name", "JOSÉ") == {jose}
    assert q("name", "jos") == {jose}
    assert q("name", "muller") == {jose}
    assert q("name", "maria") == {jose}
    assert q("name", "ose") == set()  # the default is starts-with, not contains
    assert q("name", "de v") == {vries}
    assert q("name", "dr") == {vries}
    assert q("family", "vries") == set()
    assert q("family", "de vries") == {vries}
    assert q("given", "anna") == {vries}
    assert q("given", "muller") == set()


def test_string_exact_and_contains(client: TestClient, tag: str) -> None:
    jose = make(client, tag, {"resourceType": "Patient", "name": [{"family": "García", "given": ["José"]}]})
    josef = make(client, tag, {"resourceType": "Patient", "name": [{"family": "Jansen", "given": ["Josef"]}]})

    def q(name: str, value: str) -> set[str]:
        return found(client, "Patient", tag, [(name, value)])

    assert q("given:exact", "José") == {jose}
    assert q("given:exact", "Jose") == set()
    assert q("given:exact", "josé") == set()
    assert q("given:exact", "Jos") == set()
    assert q("given", "jos") == {jose, josef}
    assert q("name:contains", "arc") == {jose}
    assert q("name:contains", "SEF") == {josef}
    assert q("name:contains", "os") == {jose, josef}
    assert q("name:contains", "xyz") == set()


def test_string_on_address_parts(client: TestClient, tag: str) -> None:
    amsterdam = make(client, tag, {"resourceType": "Patient", "address": [{
        "line": ["Keizersgracht 123"], "city": "Amsterdam", "postalCode": "1015 CJ",
        "country": "NL"}]})
    utrecht = make(client, tag, {"resourceType": "Patient", "address": [{
        "line": ["Oudegracht 1"], "city": "Utrecht", "postalCode": "3511 AA", "state": "Utrecht"}]})

    def q(name: str, value: str) -> set[str]:
        return found(client, "Patient", tag, [(name, value)])

    assert q("address", "keizersgracht") == {amsterdam}
    assert q("address", "amster") == {amsterdam}
    assert q("address", "utrecht") == {utrecht}
    assert q("address-city", "amsterdam") == {amsterdam}
    assert q("address-city", "keizersgracht") == set()
    assert q("address-postalcode", "3511") == {utrecht}
    assert q("address-country", "nl") == {amsterdam}
    assert q("address-state", "utr") == {utrecht}
    assert q("address:contains", "gracht") == {amsterdam, utrecht}


# -- date -----------------------------------------------------------------------------------
def test_date_prefixes_against_a_period(client: TestClient, tag: str) -> None:
    """A Period 2024-01-01..2024-06-30 is a range: each prefix compares ranges (R4 3.1.1.4.2)."""
    first_half = make(client, tag, observation(effectivePeriod={"start": "2024-01-01",
                                                                "end": "2024-06-30"}))

    def hit(value: str) -> bool:
        return found(client, "Observation", tag, [("date", value)]) == {first_half}

    assert hit("2024")
    assert hit("eq2024")
    assert not hit("eq2024-03")  # the period is longer than March
    assert hit("ne2024-03")
    assert not hit("ne2024")
    assert not hit("ge2024-07")  # ends 2024-06-30T23:59:59.999, before July
    assert hit("ge2024-06")
    assert hit("ge2024-06-30")
    assert not hit("gt2024-06-30")
    assert hit("gt2024-06-29")
    assert hit("le2024-01")
    assert hit("le2024-01-01")
    assert not hit("lt2024-01-01")
    assert hit("lt2024-01-02")
    assert not hit("le2023-12-31")
    assert hit("sa2023")
    assert hit("sa2023-12-31")
    assert not hit("sa2024-01-01")
    assert hit("eb2024-07")
    assert not hit("eb2024-06-30")
    assert hit("ap2024-03-15")
    assert not hit("ap2019")
    assert not hit("2025")


def test_date_prefixes_against_a_datetime(client: TestClient, tag: str) -> None:
    """A dateTime with seconds is a one-second range; its time zone moves it in UTC."""
    # 2024-03-01T23:30:00+02:00 is 2024-03-01T21:30:00Z.
    evening = make(client, tag, observation(effectiveDateTime="2024-03-01T23:30:00+02:00"))
    later = make(client, tag, observation(effectiveDateTime="2024-03-02T08:00:00Z"))

    def q(value: str) -> set[str]:
        return found(client, "Observation", tag, [("date", value)])

    assert q("2024-03-01") == {evening}
    assert q("eq2024-03-01T21:30:00Z") == {evening}
    assert q("eq2024-03-01T23:30:00+02:00") == {evening}
    assert q("eq2024-03-01T23:30:00Z") == set()
    assert q("eq2024-03") == {evening, later}
    assert q("gt2024-03-01T21:29:59Z") == {evening, later}
    assert q("gt2024-03-01T21:30:00Z") == {later}
    assert q("ge2024-03-01T21:30:00Z") == {evening, later}
    assert q("lt2024-03-01T22:00:00Z") == {evening}
    assert q("lt2024-03-01T23:00:00+02:00") == set()
    assert q("le2024-03-01T21:30:00Z") == {evening}
    assert q("sa2024-03-01T21:30:00Z") == {later}
    assert q("eb2024-03-02T08:00:00Z") == {evening}
    assert q("ne2024-03-01") == {later}
    assert q("ap2024-03-02") == {evening, later}
    assert q("ap2020-03-01") == set()


def test_date_with_an_unencoded_plus_in_its_time_zone(client: TestClient, tag: str) -> None:
    """`+02:00` sent without percent-encoding arrives as a space; it still means +02:00."""
    evening = make(client, tag, observation(effectiveDateTime="2024-03-01T23:30:00+02:00"))
    resp = client.get(f"/fhir/Observation?date=eq2024-03-01T23:30:00+02:00&_tag={TAG_SYSTEM}|{tag}")
    assert resp.status_code == 200, resp.text
    assert [e["resource"]["id"] for e in resp.json()["entry"]] == [evening]


def test_datetime_beyond_the_utc_range_is_no_error(client: TestClient, tag: str) -> None:
    """0001-01-01T00:00:00+01:00 is valid FHIR but lies before year 1 in UTC: no 500 anywhere."""
    early = make(client, tag, observation(effectiveDateTime="0001-01-01T00:00:00+01:00"))
    assert client.get(f"/fhir/Observation/{early}").status_code == 200
    assert found(client, "Observation", tag, [("date", "ge2000")]) == set()
    assert found(client, "Observation", tag, [("date:missing", "true")]) == {early}
    for value in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
        resp = client.get("/fhir/Observation", params={"date": value})
        assert resp.status_code == 400 and resp.json()["issue"][0]["expression"] == ["date"]
    for value in ("ap9999", "ap0001"):
        assert found(client, "Observation", tag, [("date", value)]) == set()


def test_date_open_period_and_date_precision(client: TestClient, tag: str) -> None:
    ongoing = make(client, tag, observation(effectivePeriod={"start": "2024-01-01"}))
    born = make(client, tag, {"resourceType": "Patient", "birthDate": "1978-04-12"})
    assert found(client, "Observation", tag, [("date", "ge2030")]) == {ongoing}
    assert found(client, "Observation", tag, [("date", "lt2024")]) == set()
    assert found(client, "Observation", tag, [("date", "eq2024")]) == set()  # may run beyond 2024
    for value in ("1978", "1978-04", "1978-04-12", "ge1978-04-12", "le1978-04-12", "gt1978-04-11",
                  "lt1978-04-13", "sa1977", "eb1979", "ne1978-04-13"):
        assert found(client, "Patient", tag, [("birthdate", value)]) == {born}, value
    for value in ("1978-04-13", "gt1978-04-12", "lt1978-04-12", "eq1978-04-12T10:00:00Z",
                  "sa1978-04-12", "eb1978-04-12", "ne1978-04"):
        assert found(client, "Patient", tag, [("birthdate", value)]) == set(), value


# -- number ---------------------------------------------------------------------------------
def test_number_prefixes_and_implicit_precision(client: TestClient, tag: str) -> None:
    pid = make(client, tag, {"resourceType": "Patient"})

    def risk(probability: float) -> str:
        return make(client, tag, {"resourceType": "RiskAssessment", "status": "final",
                                  "subject": {"reference": f"Patient/{pid}"},
                                  "prediction": [{"probabilityDecimal": probability}]})

    low, mid, high = risk(0.1), risk(0.25), risk(0.8)

    def q(value: str) -> set[str]:
        return found(client, "RiskAssessment", tag, [("probability", value)])

    assert q("0.25") == {mid}
    assert q("eq0.3") == {mid}  # 0.3 means [0.25, 0.35)
    assert q("eq0.30") == set()
    assert q("ne0.25") == {low, high}
    assert q("gt0.25") == {high}
    assert q("ge0.25") == {mid, high}
    assert q("lt0.25") == {low}
    assert q("le0.25") == {low, mid}
    assert q("sa0.5") == {high}
    assert q("eb0.5") == {low, mid}
    assert q("ap0.78") == {high}
    assert q("0.1,0.8") == {low, high}


# -- quantity -------------------------------------------------------------------------------
def _hours(client: TestClient, tag: str, value: float, unit: str = "h/wk") -> str:
    return make(client, tag, observation(valueQuantity={
        "value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}))


def test_quantity_prefixes_and_ucum_conversion(client: TestClient, tag: str) -> None:
    thirty_two = _hours(client, tag, 32)
    in_minutes = _hours(client, tag, 2400, "min/wk")  # 40 h/wk
    twenty = _hours(client, tag, 20)
    ucum = "http://unitsofmeasure.org"

    def q(value: str) -> set[str]:
        return found(client, "Observation", tag, [("value-quantity", value)])

    assert q(f"ge40|{ucum}|h/wk") == {in_minutes}
    assert q(f"40|{ucum}|h/wk") == {in_minutes}
    assert q(f"gt32|{ucum}|h/wk") == {in_minutes}
    assert q(f"lt32|{ucum}|h/wk") == {twenty}
    assert q(f"le32|{ucum}|h/wk") == {twenty, thirty_two}
    assert q(f"ne32|{ucum}|h/wk") == {twenty, in_minutes}
    assert q(f"sa32|{ucum}|h/wk") == {in_minutes}
    assert q(f"eb32|{ucum}|h/wk") == {twenty}
    assert q(f"ap39|{ucum}|h/wk") == {in_minutes}
    assert q(f"ge1920|{ucum}|min/wk") == {thirty_two, in_minutes}
    assert q("32||h/wk") == {thirty_two}
    assert q("2400||min/wk") == {in_minutes}
    assert q("32") == {thirty_two}
    assert q(f"ge20|{ucum}|%") == set()  # a rate never equals a ratio


def test_quantity_eq_has_implicit_precision(client: TestClient, tag: str) -> None:
    """`eq32` means [31.5, 32.5): 32.4 matches, 32.5 and 31.4 do not (R4 3.1.1.4.5)."""
    inside = _hours(client, tag, 32.4)
    exact = _hours(client, tag, 32)
    _hours(client, tag, 32.5)
    _hours(client, tag, 31.4)
    ucum = "http://unitsofmeasure.org"
    assert found(client, "Observation", tag, [("value-quantity", f"eq32|{ucum}|h/wk")]) == {inside, exact}
    assert found(client, "Observation", tag, [("value-quantity", f"eq32.0|{ucum}|h/wk")]) == {exact}
    assert found(client, "Observation", tag, [("value-quantity", "eq32")]) == {inside, exact}


# -- reference ------------------------------------------------------------------------------
def test_reference_forms(client: TestClient, tag: str) -> None:
    anna = make(client, tag, {"resourceType": "Patient"})
    bob = make(client, tag, {"resourceType": "Patient"})
    by_id = make(client, tag, observation(f"Patient/{anna}"))
    absolute = make(client, tag, observation(f"{BASE}/Patient/{bob}"))
    group_subject = make(client, tag, observation(f"Group/{anna}"))
    by_identifier = make(client, tag, {**observation(), "subject": {
        "type": "Patient", "identifier": {"system": BSN, "value": "123456782"}}})

    def q(name: str, value: str) -> set[str]:
        return found(client, "Observation", tag, [(name, value)])

    assert q("subject", f"Patient/{anna}") == {by_id}
    assert q("subject", anna) == {by_id, group_subject}
    assert q("subject:Patient", anna) == {by_id}
    assert q("subject:Group", anna) == {group_subject}
    assert q("patient", anna) == {by_id}
    assert q("subject", f"{BASE}/Patient/{anna}") == {by_id}
    assert q("subject", f"Patient/{bob}") == {absolute}
    assert q("patient", bob) == {absolute}
    assert q("subject:identifier", f"{BSN}|123456782") == {by_identifier}
    assert q("subject:identifier", "123456782") == {by_identifier}
    assert q("subject:identifier", f"{BSN}|000") == set()
    assert q("subject", f"Patient/{anna},Patient/{bob}") == {by_id, absolute}


def test_reference_to_another_server_is_not_a_local_reference(client: TestClient, tag: str) -> None:
    """`http://elsewhere/fhir/Patient/1` is not our Patient/1: not by id, not in its compartment."""
    anna = make(client, tag, {"resourceType": "Patient"})
    local = make(client, tag, observation(f"Patient/{anna}"))
    remote_url = f"https://other.example/fhir/Patient/{anna}"
    remote = make(client, tag, observation(remote_url))

    def q(name: str, value: str) -> set[str]:
        return found(client, "Observation", tag, [(name, value)])

    assert q("subject", f"Patient/{anna}") == {local}
    assert q("patient", anna) == {local}
    assert q("subject", remote_url) == {remote}
    assert q("subject:missing", "false") == {local, remote}
    included = search(client, "Observation", tag, [("_include", "Observation:subject")])
    assert [e["resource"]["id"] for e in included["entry"] if e["search"]["mode"] == "include"] \
        == [anna]


def test_canonical_reference_with_version(client: TestClient, tag: str) -> None:
    url = f"https://pgo-work.nl/fhir/Questionnaire/{tag}"
    make(client, tag, {"resourceType": "Questionnaire", "status": "active", "url": url,
                       "version": "1.0.0"})
    make(client, tag, {"resourceType": "Questionnaire", "status": "active", "url": f"{url}-other"})
    versioned = make(client, tag, {"resourceType": "QuestionnaireResponse", "status": "completed",
                                   "questionnaire": f"{url}|1.0.0"})
    plain = make(client, tag, {"resourceType": "QuestionnaireResponse", "status": "completed",
                               "questionnaire": url})
    make(client, tag, {"resourceType": "QuestionnaireResponse", "status": "completed",
                       "questionnaire": f"{url}-other"})
    assert found(client, "QuestionnaireResponse", tag, [("questionnaire", url)]) == {versioned, plain}


# -- uri ------------------------------------------------------------------------------------
def test_uri_exact_below_above(client: TestClient, tag: str) -> None:
    base = f"https://pgo-work.nl/fhir/{tag}/Questionnaire"
    intake = make(client, tag, {"resourceType": "Questionnaire", "status": "active",
                                "url": f"{base}/intake"})
    intake_v2 = make(client, tag, {"resourceType": "Questionnaire", "status": "active",
                                   "url": f"{base}/intake/v2"})
    make(client, tag, {"resourceType": "Questionnaire", "status": "active",
                       "url": f"https://other.example/{tag}/intake"})

    def q(name: str, value: str) -> set[str]:
        return found(client, "Questionnaire", tag, [(name, value)])

    assert q("url", f"{base}/intake") == {intake}
    assert q("url", f"{base}/int") == set()
    assert q("url:below", base) == {intake, intake_v2}
    assert q("url:below", f"{base}/intake/") == {intake_v2}
    assert q("url:above", f"{base}/intake/v2/extra") == {intake, intake_v2}
    assert q("url:above", f"{base}/intake") == {intake}


# -- common parameters ----------------------------------------------------------------------
def test_id_tag_profile_security(client: TestClient, tag: str) -> None:
    profile = "http://hl7.org/fhir/StructureDefinition/Patient"
    restricted = {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
    a = make(client, tag, {"resourceType": "Patient", "meta": {"profile": [profile],
                                                               "security": [restricted]}})
    b = make(client, tag, {"resourceType": "Patient", "meta": {
        "tag": [{"system": "https://pgo-work.nl/fhir/extra", "code": "demo"}]}})
    c = make(client, tag, {"resourceType": "Patient"})

    def q(name: str, value: str) -> set[str]:
        return found(client, "Patient", tag, [(name, value)])

    assert q("_id", a) == {a}
    assert q("_id", f"{a},{c}") == {a, c}
    assert q("_id", "does-not-exist") == set()
    assert q("_profile", profile) == {a}
    assert q("_security", "http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R") == {a}
    assert q("_security", "R") == {a}
    assert q("_security", "N") == set()
    assert q("_security", "|R") == set()
    unsystematic = make(client, tag, {"resourceType": "Patient", "meta": {"security": [{"code": "LOCAL"}]}})
    assert q("_security", "|LOCAL") == {unsystematic}
    assert q("_security:not", "R") == {b, c, unsystematic}
    assert q("_tag", "https://pgo-work.nl/fhir/extra|demo") == {b}
    assert q("_tag", "demo") == {b}
    # Without the scoping tag the _tag parameter alone finds exactly this test's data.
    alone = search(client, "Patient", None, [("_tag", f"{TAG_SYSTEM}|{tag}"), ("_count", "50")])
    assert {e["resource"]["id"] for e in alone["entry"]} == {a, b, c, unsystematic}


def test_last_updated_prefixes(client: TestClient, tag: str) -> None:
    first = make(client, tag, {"resourceType": "Patient"})
    time.sleep(0.01)
    second = make(client, tag, {"resourceType": "Patient"})
    stamp = client.get(f"/fhir/Patient/{first}").json()["meta"]["lastUpdated"]

    def q(value: str) -> set[str]:
        return found(client, "Patient", tag, [("_lastUpdated", value)])

    assert q(stamp) == {first}
    assert q(f"eq{stamp}") == {first}
    assert q(f"gt{stamp}") == {second}
    assert q(f"sa{stamp}") == {second}
    assert q(f"ge{stamp}") == {first, second}
    assert q(f"le{stamp}") == {first}
    assert q(f"lt{stamp}") == set()
    assert q(f"ne{stamp}") == {second}
    assert q("ge2020") == {first, second}
    assert q("lt2020") == set()
    assert found(client, "Patient", tag, [("_lastUpdated:missing", "false")]) == {first, second}
    assert found(client, "Patient", tag, [("_lastUpdated:missing", "true")]) == set()
