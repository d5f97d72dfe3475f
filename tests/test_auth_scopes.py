"""SMART scopes enforced by the store on every path: patient/ scopes stay in the launch patient's
compartment (hidden rows are 404, not 403), types and actions outside the scopes are 403,
granular `?category=` scopes filter rows, and v1 `.read/.write` scopes mean what they meant."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.access.scopes import parse_scopes
from service.config import Settings

from .auth_helpers import auth, token
from .consent_helpers import grant, permit
from .helpers import FHIR_JSON, TAG_SYSTEM, contract_hours, create, patient, tagged

CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def categorised(tag: str, patient_id: str, category: str) -> dict[str, Any]:
    return tagged({"resourceType": "Observation", "status": "final",
                   "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
                   "code": {"text": f"{category} finding"},
                   "subject": {"reference": f"Patient/{patient_id}"}}, tag)


@pytest.fixture
def world(client: TestClient, tag: str) -> dict[str, str]:
    """Two patients, each with a work observation and a lab observation; one Practitioner."""
    anna = create(client, patient(tag, "de Vries", "Anna"))["id"]
    bob = create(client, patient(tag, "Jansen", "Bob"))["id"]
    world = {
        "anna": anna, "bob": bob,
        "anna_hours": create(client, contract_hours(tag, anna, 32, "2024-01-01"))["id"],
        "bob_hours": create(client, contract_hours(tag, bob, 40, "2024-01-01"))["id"],
        "anna_lab": create(client, categorised(tag, anna, "laboratory"))["id"],
        "bob_lab": create(client, categorised(tag, bob, "laboratory"))["id"],
        "prac": create(client, tagged({"resourceType": "Practitioner",
                                       "name": [{"family": "Arts"}]}, tag))["id"],
    }
    # Both patients share their record with the practitioner (and with "Practitioner/p"), so
    # that what these tests see is limited by scopes alone; consent has its own tests.
    for pid in (world["anna"], world["bob"]):
        grant(client, pid, [permit(f"Practitioner/{world['prac']}", actions=("access", "correct")),
                            permit("Practitioner/p", actions=("access", "correct"))],
              f"consent-{tag}")
    return world


def ids(bundle: dict[str, Any], rtype: str | None = None) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", [])
            if rtype is None or e["resource"]["resourceType"] == rtype}


def tagq(tag: str) -> str:
    return f"_tag={TAG_SYSTEM}|{tag}"


def assert_403(resp: Any) -> None:
    assert resp.status_code == 403, resp.text
    assert resp.json()["issue"][0]["code"] == "forbidden"
    assert 'error="insufficient_scope"' in resp.headers["www-authenticate"]


def test_patient_scope_reads_only_the_launch_patient(anon: TestClient, settings: Settings,
                                                     world: dict[str, str], tag: str) -> None:
    tok = auth(token(settings, "patient/Observation.rs", patient=world["anna"]))
    assert anon.get(f"/fhir/Observation/{world['anna_hours']}", headers=tok).status_code == 200
    # Another patient's Observation does not exist for this token: 404, not 403.
    hidden = anon.get(f"/fhir/Observation/{world['bob_hours']}", headers=tok)
    assert hidden.status_code == 404 and hidden.json()["resourceType"] == "OperationOutcome"
    assert anon.get(f"/fhir/Observation/{world['bob_hours']}/_history/1", headers=tok).status_code == 404
    assert anon.get(f"/fhir/Observation/{world['bob_hours']}/_history", headers=tok).status_code == 404
    found = anon.get(f"/fhir/Observation?{tagq(tag)}", headers=tok).json()
    assert found["total"] == 2 and ids(found) == {world["anna_hours"], world["anna_lab"]}
    explicit = anon.get(f"/fhir/Observation?subject=Patient/{world['bob']}&{tagq(tag)}", headers=tok).json()
    assert explicit["total"] == 0
    history = anon.get("/fhir/Observation/_history?_count=500", headers=tok).json()
    assert {e["resource"]["subject"]["reference"] for e in history["entry"]
            if "resource" in e} == {f"Patient/{world['anna']}"}
    # No Patient scope: reading Patient, even her own, is 403; and _include brings nothing in.
    assert_403(anon.get(f"/fhir/Patient/{world['anna']}", headers=tok))
    included = anon.get(f"/fhir/Observation?{tagq(tag)}&_include=Observation:subject", headers=tok).json()
    assert ids(included, "Patient") == set()


def test_patient_scope_cannot_create_patient_or_write_elsewhere(anon: TestClient, settings: Settings,
                                                                world: dict[str, str], tag: str) -> None:
    read_only = auth(token(settings, "patient/*.rs", patient=world["anna"]))
    assert_403(anon.post("/fhir/Patient", json=patient(tag, "Nieuw"), headers={**read_only, **FHIR_JSON}))
    writer = auth(token(settings, "patient/*.cruds", patient=world["anna"]))
    # Creating a Patient would be a record outside her compartment.
    assert_403(anon.post("/fhir/Patient", json=patient(tag, "Nieuw"), headers={**writer, **FHIR_JSON}))
    mine = anon.post("/fhir/Observation", json=contract_hours(tag, world["anna"], 20, "2024-05-01"),
                     headers={**writer, **FHIR_JSON})
    assert mine.status_code == 201
    assert_403(anon.post("/fhir/Observation", json=contract_hours(tag, world["bob"], 20, "2024-05-01"),
                         headers={**writer, **FHIR_JSON}))
    # Updating or deleting Bob's resources: they are not visible, so answered as for an id that
    # is not there (a PUT: 405, as patients do not choose ids; a DELETE: 404).
    bob_obs = contract_hours(tag, world["bob"], 1, "2024-05-01")
    assert anon.put(f"/fhir/Observation/{world['bob_hours']}", json={**bob_obs, "id": world["bob_hours"]},
                    headers={**writer, **FHIR_JSON}).status_code == 405
    assert anon.delete(f"/fhir/Observation/{world['bob_hours']}", headers=writer).status_code == 404
    # Moving her own observation to Bob is refused, and it stays hers.
    moved = contract_hours(tag, world["bob"], 1, "2024-05-01")
    resp = anon.put(f"/fhir/Observation/{world['anna_hours']}", json={**moved, "id": world["anna_hours"]},
                    headers={**writer, **FHIR_JSON})
    assert resp.status_code in (403, 422)
    # A transaction cannot smuggle a write for Bob either; nothing of it is stored.
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": contract_hours(tag, world["anna"], 2, "2024-07-01"),
         "request": {"method": "POST", "url": "Observation"}},
        {"resource": contract_hours(tag, world["bob"], 2, "2024-07-01"),
         "request": {"method": "POST", "url": "Observation"}}]}
    assert anon.post("/fhir", json=bundle, headers={**writer, **FHIR_JSON}).status_code == 403
    after = anon.get(f"/fhir/Observation?{tagq(tag)}&date=2024-07-01", headers=writer).json()
    assert after["total"] == 0


def test_user_scope_limits_types_and_actions(anon: TestClient, settings: Settings,
                                             world: dict[str, str], tag: str) -> None:
    tok = auth(token(settings, "user/Observation.rs", fhir_user=f"Practitioner/{world['prac']}",
                     role="oncologist"))
    # user/ scopes do not restrict rows (consent does that): both patients' observations.
    found = anon.get(f"/fhir/Observation?{tagq(tag)}", headers=tok).json()
    assert found["total"] == 4
    assert_403(anon.get(f"/fhir/Patient/{world['anna']}", headers=tok))
    assert_403(anon.get(f"/fhir/Patient?{tagq(tag)}", headers=tok))
    assert_403(anon.post("/fhir/Observation", json=contract_hours(tag, world["anna"], 8, "2024-02-01"),
                         headers={**tok, **FHIR_JSON}))
    assert_403(anon.delete(f"/fhir/Observation/{world['anna_hours']}", headers=tok))
    # Search only (.s) does not allow read by id; read only (.r) does not allow search.
    search_only = auth(token(settings, "user/Observation.s", fhir_user="Practitioner/p"))
    assert anon.get(f"/fhir/Observation?{tagq(tag)}", headers=search_only).status_code == 200
    assert_403(anon.get(f"/fhir/Observation/{world['anna_hours']}", headers=search_only))
    read_only = auth(token(settings, "user/Observation.r", fhir_user="Practitioner/p"))
    assert anon.get(f"/fhir/Observation/{world['anna_hours']}", headers=read_only).status_code == 200
    assert_403(anon.get(f"/fhir/Observation?{tagq(tag)}", headers=read_only))


def test_system_search_sees_only_types_in_scope(anon: TestClient, settings: Settings,
                                                world: dict[str, str], tag: str) -> None:
    tok = auth(token(settings, "user/Observation.rs", fhir_user="Practitioner/p"))
    everything = anon.get(f"/fhir?{tagq(tag)}", headers=tok).json()
    assert {e["resource"]["resourceType"] for e in everything["entry"]} == {"Observation"}
    assert everything["total"] == 4


def test_patient_user_sees_nothing_outside_own_record(anon: TestClient, settings: Settings,
                                                      world: dict[str, str], tag: str) -> None:
    """A patient's token with broad user/ scopes is still confined to their own compartment."""
    tok = auth(token(settings, "user/*.cruds", fhir_user=f"Patient/{world['anna']}", role="patient"))
    assert anon.get(f"/fhir/Patient/{world['anna']}", headers=tok).status_code == 200
    assert anon.get(f"/fhir/Patient/{world['bob']}", headers=tok).status_code == 404
    # The directory of professionals belongs to no one's record: a patient may read it (to
    # choose whom to share with); other patients' records stay invisible.
    assert anon.get(f"/fhir/Practitioner/{world['prac']}", headers=tok).status_code == 200
    found = anon.get(f"/fhir?{tagq(tag)}", headers=tok).json()
    assert ids(found) - {world["prac"]} == {world["anna"], world["anna_hours"], world["anna_lab"]}
    own = anon.get(f"/fhir/Patient/{world['anna']}", headers=tok).json()
    own["gender"] = "other"
    updated = anon.put(f"/fhir/Patient/{world['anna']}", json=own, headers={**tok, **FHIR_JSON})
    assert updated.status_code == 200
    assert_403(anon.post("/fhir/Practitioner", json=tagged({"resourceType": "Practitioner"}, tag),
                         headers={**tok, **FHIR_JSON}))


def test_granular_category_scope(anon: TestClient, settings: Settings, world: dict[str, str],
                                 tag: str) -> None:
    tok = auth(token(settings, f"patient/Observation.rs?category={CATEGORY}|laboratory",
                     patient=world["anna"]))
    found = anon.get(f"/fhir/Observation?{tagq(tag)}", headers=tok).json()
    assert ids(found) == {world["anna_lab"]} and found["total"] == 1
    assert anon.get(f"/fhir/Observation/{world['anna_hours']}", headers=tok).status_code == 404
    # A granular write scope admits only matching resources.
    writer = auth(token(settings, f"user/Observation.c?category={CATEGORY}|laboratory",
                        fhir_user="Practitioner/p"))
    lab = categorised(tag, world["anna"], "laboratory")
    assert anon.post("/fhir/Observation", json=lab, headers={**writer, **FHIR_JSON}).status_code == 201
    assert_403(anon.post("/fhir/Observation", json=categorised(tag, world["anna"], "vital-signs"),
                         headers={**writer, **FHIR_JSON}))
    # A parameter that cannot be enforced grants nothing (fail closed).
    odd = auth(token(settings, "patient/Observation.rs?value-quantity=32", patient=world["anna"]))
    assert anon.get(f"/fhir/Observation?{tagq(tag)}", headers=odd).json()["total"] == 0


def test_v1_scopes(anon: TestClient, settings: Settings, world: dict[str, str], tag: str) -> None:
    read = auth(token(settings, "patient/*.read", patient=world["anna"]))
    assert anon.get(f"/fhir/Patient/{world['anna']}", headers=read).status_code == 200
    assert anon.get(f"/fhir/Observation?{tagq(tag)}", headers=read).json()["total"] == 2
    assert_403(anon.post("/fhir/Observation", json=contract_hours(tag, world["anna"], 1, "2024-01-02"),
                         headers={**read, **FHIR_JSON}))
    write = auth(token(settings, "patient/Observation.write", patient=world["anna"]))
    assert anon.post("/fhir/Observation", json=contract_hours(tag, world["anna"], 1, "2024-01-02"),
                     headers={**write, **FHIR_JSON}).status_code == 201
    assert_403(anon.get(f"/fhir/Observation/{world['anna_hours']}", headers=write))


def test_patient_scope_without_patient_context_grants_nothing(anon: TestClient, settings: Settings,
                                                              world: dict[str, str], tag: str) -> None:
    tok = auth(token(settings, "patient/*.rs", fhir_user="Practitioner/p"))
    assert_403(anon.get(f"/fhir/Observation?{tagq(tag)}", headers=tok))


def test_scope_parsing() -> None:
    scopes = parse_scopes("openid fhirUser launch/patient offline_access patient/Observation.rs "
                          "user/*.cruds system/Patient.read patient/Observation.rs?category=a|b "
                          "patient/Observation.sr user/Foo.x bogus")
    by_text = {s.text: s for s in scopes.resources}
    assert by_text["patient/Observation.rs"].permissions == {"r", "s"}
    assert by_text["user/*.cruds"].resource_type == "*"
    assert by_text["system/Patient.read"].permissions == {"r", "s"}
    assert by_text["patient/Observation.rs?category=a|b"].params == (("category", "a|b"),)
    assert scopes.launch_patient and scopes.wants_refresh
    assert set(scopes.unknown) == {"patient/Observation.sr", "user/Foo.x", "bogus"}
