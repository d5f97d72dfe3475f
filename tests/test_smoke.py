"""A first end-to-end pass: create, read and search a patient's contract hours."""

from fastapi.testclient import TestClient

from .helpers import contract_hours, create, patient


def test_create_read_search(client: TestClient, tag: str) -> None:
    pat = create(client, patient(tag))
    obs = create(client, contract_hours(tag, pat["id"], 32, "2024-01-01", "2024-06-30"))
    read = client.get(f"/fhir/Observation/{obs['id']}")
    assert read.status_code == 200
    assert read.headers["etag"] == 'W/"1"'
    found = client.get("/fhir/Observation", params={"patient": pat["id"], "_include": "Observation:subject"})
    assert found.status_code == 200
    bundle = found.json()
    assert bundle["total"] == 1
    assert [e["search"]["mode"] for e in bundle["entry"]] == ["match", "include"]
