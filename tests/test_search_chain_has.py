"""Chained parameters (one level) and `_has` reverse chaining, nested too (R4 3.1.1.4.13-14)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from .search_helpers import LOINC, OBS_SYSTEM, error, expressions, found, make, observation


def _family(client: TestClient, tag: str) -> dict[str, str]:
    """Two patients, a practitioner and an organisation, with observations and provenance."""
    org = make(client, tag, {"resourceType": "Organization", "name": "Arbodienst Noord"})
    gp = make(client, tag, {"resourceType": "Practitioner", "name": [{"family": "Huisman"}]})
    jose = make(client, tag, {"resourceType": "Patient", "birthDate": "1978-04-12",
                              "name": [{"family": "García", "given": ["José"]}],
                              "managingOrganization": {"reference": f"Organization/{org}"}})
    anna = make(client, tag, {"resourceType": "Patient", "birthDate": "1990-01-01",
                              "name": [{"family": "de Vries", "given": ["Anna"]}],
                              "generalPractitioner": [{"reference": f"Practitioner/{gp}"}]})
    jose_hours = make(client, tag, observation(f"Patient/{jose}"))
    anna_hours = make(client, tag, observation(f"Patient/{anna}",
                                               performer=[{"reference": f"Practitioner/{gp}"}]))
    anna_weight = make(client, tag, observation(f"Patient/{anna}", code="29463-7", system=LOINC,
                                                performer=[{"reference": f"Organization/{org}"}]))
    device_obs = make(client, tag, observation(f"Device/{jose}"))
    make(client, tag, {"resourceType": "Provenance", "recorded": "2024-05-01T10:00:00Z",
                       "target": [{"reference": f"Observation/{anna_weight}"}],
                       "agent": [{"who": {"reference": f"Practitioner/{gp}"}}]})
    return {"org": org, "gp": gp, "jose": jose, "anna": anna, "jose_hours": jose_hours,
            "anna_hours": anna_hours, "anna_weight": anna_weight, "device_obs": device_obs}


def test_chain_one_level(client: TestClient, tag: str) -> None:
    d = _family(client, tag)

    def q(name: str, value: str) -> set[str]:
        return found(client, "Observation", tag, [(name, value)])

    assert q("subject:Patient.name", "jose") == {d["jose_hours"]}
    assert q("subject:Patient.name", "García") == {d["jose_hours"]}
    assert q("subject.name", "jose") == {d["jose_hours"]}  # every target type with a `name`
    assert q("patient.birthdate", "1978-04-12") == {d["jose_hours"]}
    assert q("patient.birthdate", "ge1980") == {d["anna_hours"], d["anna_weight"]}
    assert q("patient.name", "anna,jose") == {d["jose_hours"], d["anna_hours"], d["anna_weight"]}
    assert q("patient._id", d["anna"]) == {d["anna_hours"], d["anna_weight"]}
    assert q("subject:Patient.general-practitioner", f"Practitioner/{d['gp']}") == {
        d["anna_hours"], d["anna_weight"]}
    # Each target type is searched with its own parameter: Practitioner.name, Organization.name.
    assert q("performer.name", "arbodienst") == {d["anna_weight"]}
    assert q("performer.name", "huisman") == {d["anna_hours"]}
    assert q("performer:Organization.name", "huisman") == set()
    # A chain ANDs with plain criteria on the same resource.
    both = found(client, "Observation", tag, [("patient.name", "anna"), ("code", f"{LOINC}|29463-7")])
    assert both == {d["anna_weight"]}


def test_chain_errors(client: TestClient) -> None:
    for name in ("code.name", "subject:Patient.unknown", "patient.name:foo"):
        outcome = error(client, "Observation", [(name, "x")])
        assert expressions(outcome) == [name], name


def test_has_reverse_chain(client: TestClient, tag: str) -> None:
    d = _family(client, tag)

    def q(*params: tuple[str, str]) -> set[str]:
        return found(client, "Patient", tag, list(params))

    assert q(("_has:Observation:patient:code", f"{LOINC}|29463-7")) == {d["anna"]}
    assert q(("_has:Observation:patient:code", f"{OBS_SYSTEM}|contract-hours-per-week")) == {
        d["jose"], d["anna"]}
    assert q(("_has:Observation:subject:code", "29463-7,none")) == {d["anna"]}
    assert q(("_has:Observation:patient:code", "unknown-code")) == set()
    assert q(("_has:Observation:patient:code", "29463-7"), ("name", "jose")) == set()
    assert found(client, "Practitioner", tag, [("_has:Patient:general-practitioner:name", "anna")]) \
        == {d["gp"]}
    assert found(client, "Organization", tag, [("_has:Patient:organization:birthdate", "1978")]) \
        == {d["org"]}


def test_nested_has(client: TestClient, tag: str) -> None:
    """Patients with an Observation that has a Provenance whose agent is the GP."""
    d = _family(client, tag)
    nested = [("_has:Observation:patient:_has:Provenance:target:agent", f"Practitioner/{d['gp']}")]
    assert found(client, "Patient", tag, nested) == {d["anna"]}
    nobody = [("_has:Observation:patient:_has:Provenance:target:agent", "Practitioner/nobody")]
    assert found(client, "Patient", tag, nobody) == set()


def test_has_errors(client: TestClient) -> None:
    for name in ("_has:Observation:patient",
                 "_has:Observation:code:status",  # not a reference parameter
                 "_has:Observation:patient:unknown",
                 "_has:Nonsense:patient:code",
                 "_has:Goal:patient:code",  # Goal has no `code` parameter
                 "_has:Observation:patient:code:foo",
                 "_has:Observation:patient:_has:Observation:patient:code"):  # never points at Observation
        outcome = error(client, "Patient", [(name, "x")])
        assert expressions(outcome) == [name], name
