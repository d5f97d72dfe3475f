"""Hostile input found by the reliability suite (issue 14): answered 4xx, nothing written."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient

FHIR = {"Content-Type": "application/fhir+json"}


def _count(client: TestClient, family: str) -> int:
    resp = client.get("/fhir/Patient", params={"family": family, "_summary": "count"})
    assert resp.status_code == 200
    return int(resp.json()["total"])


def test_duplicate_json_keys_are_refused(client: TestClient) -> None:
    # Parsers disagree on which "gender" wins; we refuse rather than store one of them.
    family = f"dup{uuid.uuid4().hex[:8]}"
    body = ('{"resourceType":"Patient","name":[{"family":"' + family + '"}],'
            '"gender":"male","gender":"female"}')
    resp = client.post("/fhir/Patient", content=body, headers=FHIR)
    assert resp.status_code == 400, resp.text
    outcome = resp.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "structure"
    assert outcome["issue"][0]["expression"] == ["gender"]
    assert _count(client, family) == 0


def test_duplicate_keys_deep_in_a_transaction_are_refused(client: TestClient) -> None:
    family, other = f"dup{uuid.uuid4().hex[:8]}", f"dup{uuid.uuid4().hex[:8]}"
    body = ('{"resourceType":"Bundle","type":"transaction","entry":[{"resource":'
            '{"resourceType":"Patient","name":[{"family":"' + family + '","family":"' + other +
            '"}]},"request":{"method":"POST","url":"Patient"}}]}')
    resp = client.post("/fhir", content=body, headers=FHIR)
    assert resp.status_code == 400, resp.text
    assert resp.json()["issue"][0]["expression"] == ["family"]
    assert _count(client, family) == 0 and _count(client, other) == 0


def test_same_key_in_different_objects_is_fine(client: TestClient) -> None:
    body = ('{"resourceType":"Patient","name":[{"family":"a","given":["x"]},'
            '{"family":"b","given":["y"]}]}')
    assert client.post("/fhir/Patient", content=body, headers=FHIR).status_code == 201


def test_unicode_digits_in_count_if_match_and_version_are_4xx(client: TestClient) -> None:
    # "²".isdigit() is true but int("²") fails: these were 500s.
    resp = client.get("/fhir/Patient", params={"_count": "\u00b2"})
    assert resp.status_code == 400, resp.text
    assert resp.json()["issue"][0]["expression"] == ["_count"]
    made = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FHIR).json()
    resp = client.put(f"/fhir/Patient/{made['id']}", json={**made, "gender": "other"},
                      headers={**FHIR, "If-Match": b'W/"\xb2"'})  # type: ignore[dict-item]
    assert resp.status_code == 400, resp.text
    assert client.get(f"/fhir/Patient/{made['id']}").json()["meta"]["versionId"] == "1"
    resp = client.get(f"/fhir/Patient/{made['id']}/_history/\u00b2")
    assert resp.status_code in (400, 404), resp.text
    assert resp.json()["resourceType"] == "OperationOutcome"
