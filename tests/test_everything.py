"""Patient/$everything returns the patient's compartment, and nothing of other patients."""

from fastapi.testclient import TestClient

from .helpers import contract_hours, create, patient


def test_everything_returns_the_patients_compartment(client: TestClient, tag: str) -> None:
    anna = create(client, patient(tag))
    bram = create(client, patient(tag, family="Smit", given="Bram"))
    mine = create(client, contract_hours(tag, anna["id"], 32, "2024-01-01"))
    create(client, contract_hours(tag, bram["id"], 40, "2024-01-01"))
    resp = client.get(f"/fhir/Patient/{anna['id']}/$everything")
    assert resp.status_code == 200, resp.text
    refs = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in resp.json()["entry"]}
    assert refs == {("Patient", anna["id"]), ("Observation", mine["id"])}


def test_unknown_operation_is_an_operation_outcome(client: TestClient) -> None:
    resp = client.get("/fhir/Patient/$no-such-operation")
    assert resp.status_code == 404
    assert resp.json()["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/Patient/unknown-id/$everything").status_code == 404
