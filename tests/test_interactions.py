"""FHIR REST interactions (R4 3.1.0) over HTTP: create, read, vread, update, delete, the
conditional variants and JSON Patch, for every resource type issue 2 names."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from .conftest import BASE
from .rest_examples import (
    BSN,
    TYPES,
    assert_outcome,
    count,
    example,
    note_of,
    post,
    put,
    with_note,
)

PATCH_JSON = {"Content-Type": "application/json-patch+json"}


def _assert_written(resp: Any, rtype: str, version: int) -> dict[str, Any]:
    """Status-independent checks of a create/update answer: headers agree with the body."""
    assert resp.headers["etag"] == f'W/"{version}"'
    assert "last-modified" in resp.headers
    body: dict[str, Any] = resp.json()
    assert body["resourceType"] == rtype
    assert body["meta"]["versionId"] == str(version)
    assert resp.headers["location"] == f"{BASE}/{rtype}/{body['id']}/_history/{version}"
    return body


MUTABLE = [t for t in TYPES if t != "AuditEvent"]


@pytest.mark.parametrize("rtype", MUTABLE)
def test_create_read_update_delete_round_trip(client: TestClient, tag: str, rtype: str) -> None:
    original = example(rtype, tag)
    created = post(client, original)
    assert created.status_code == 201, created.text
    v1 = _assert_written(created, rtype, 1)
    rid = v1["id"]
    assert v1["meta"]["lastUpdated"].endswith("Z")
    assert {"system": "https://pgo-work.nl/fhir/test-run", "code": tag} in v1["meta"]["tag"]

    read = client.get(f"/fhir/{rtype}/{rid}")
    assert read.status_code == 200
    assert read.json() == v1
    assert read.headers["etag"] == 'W/"1"'
    assert read.headers["last-modified"] == created.headers["last-modified"]

    updated = put(client, with_note({**v1}, "second version"))
    assert updated.status_code == 200, updated.text
    v2 = _assert_written(updated, rtype, 2)
    assert v2["id"] == rid and note_of(v2) == "second version"
    assert client.get(f"/fhir/{rtype}/{rid}").json() == v2

    old = client.get(f"/fhir/{rtype}/{rid}/_history/1")
    assert old.status_code == 200 and old.headers["etag"] == 'W/"1"'
    assert old.json() == v1 and note_of(old.json()) is None
    assert client.get(f"/fhir/{rtype}/{rid}/_history/2").json() == v2
    assert count(client, rtype, tag, _id=rid) == 1

    deleted = client.delete(f"/fhir/{rtype}/{rid}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert_outcome(client.get(f"/fhir/{rtype}/{rid}"), 410)
    assert client.get(f"/fhir/{rtype}/{rid}/_history/1").json() == v1
    assert client.get(f"/fhir/{rtype}/{rid}/_history/2").json() == v2
    assert_outcome(client.get(f"/fhir/{rtype}/{rid}/_history/3"), 410)
    assert count(client, rtype, tag) == 0

    history = client.get(f"/fhir/{rtype}/{rid}/_history").json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "PUT", "POST"]
    assert [e["response"]["etag"] for e in history["entry"]] == ['W/"3"', 'W/"2"', 'W/"1"']
    assert "resource" not in history["entry"][0]


def test_audit_event_is_append_only(client: TestClient, tag: str) -> None:
    """AuditEvents can be created and read like any resource, but never changed or deleted."""
    created = post(client, example("AuditEvent", tag))
    assert created.status_code == 201, created.text
    v1 = _assert_written(created, "AuditEvent", 1)
    url = f"/fhir/AuditEvent/{v1['id']}"
    assert client.get(url).json() == v1
    assert client.get(f"{url}/_history/1").json() == v1
    assert count(client, "AuditEvent", tag, _id=v1["id"]) == 1
    for resp in (put(client, with_note(v1, "tampered")), client.delete(url)):
        body = assert_outcome(resp, resp.status_code)
        assert 400 <= resp.status_code < 500, body
    assert client.get(url).json() == v1
    assert client.get(f"{url}/_history").json()["total"] == 1


def test_create_assigns_its_own_id_and_meta(client: TestClient, tag: str) -> None:
    body = example("Patient", tag)
    body["id"] = "client-chosen"
    body["meta"] = {**body["meta"], "versionId": "7", "lastUpdated": "2001-01-01T00:00:00Z"}
    resp = post(client, body)
    assert resp.status_code == 201
    created = resp.json()
    assert created["id"] != "client-chosen"
    assert created["meta"]["versionId"] == "1"
    assert not created["meta"]["lastUpdated"].startswith("2001")
    assert client.get("/fhir/Patient/client-chosen").status_code == 404


def test_create_prefer_return(client: TestClient, tag: str) -> None:
    minimal = post(client, example("Patient", tag), Prefer="return=minimal")
    assert minimal.status_code == 201
    assert minimal.content == b""
    assert minimal.headers["etag"] == 'W/"1"'
    location = minimal.headers["location"]
    assert location.startswith(f"{BASE}/Patient/") and location.endswith("/_history/1")
    assert client.get(location.removeprefix("http://testserver")).status_code == 200

    outcome = post(client, example("Patient", tag), Prefer="return=OperationOutcome")
    assert outcome.status_code == 201
    assert outcome.json()["resourceType"] == "OperationOutcome"
    assert outcome.json()["issue"][0]["severity"] == "information"
    assert "location" in outcome.headers

    representation = post(client, example("Patient", tag), Prefer="return=representation")
    assert representation.status_code == 201
    assert representation.json()["resourceType"] == "Patient"
    assert count(client, "Patient", tag) == 3


def test_update_prefer_minimal(client: TestClient, tag: str) -> None:
    created = post(client, example("Goal", tag)).json()
    resp = put(client, with_note(created, "x"), Prefer="return=minimal")
    assert resp.status_code == 200 and resp.content == b""
    assert resp.headers["etag"] == 'W/"2"'


def test_update_as_create_with_client_id(client: TestClient, tag: str) -> None:
    rid = f"client-{uuid.uuid4().hex[:12]}"
    body = {**example("Organization", tag), "id": rid}
    first = put(client, body)
    assert first.status_code == 201, first.text
    assert first.headers["location"] == f"{BASE}/Organization/{rid}/_history/1"
    assert first.headers["etag"] == 'W/"1"'
    second = put(client, with_note(body, "v2"))
    assert second.status_code == 200
    assert second.headers["etag"] == 'W/"2"'
    assert client.get(f"/fhir/Organization/{rid}").json()["meta"]["versionId"] == "2"


def test_update_without_body_id_is_rejected(client: TestClient, tag: str) -> None:
    created = post(client, example("Patient", tag)).json()
    body = {k: v for k, v in created.items() if k != "id"}
    assert_outcome(put(client, body, url=f"/fhir/Patient/{created['id']}"), 400)
    assert client.get(f"/fhir/Patient/{created['id']}").headers["etag"] == 'W/"1"'


def test_update_revives_a_deleted_resource(client: TestClient, tag: str) -> None:
    created = post(client, example("CarePlan", tag)).json()
    assert client.delete(f"/fhir/CarePlan/{created['id']}").status_code == 204
    revived = put(client, created)
    assert revived.status_code in (200, 201)
    assert revived.headers["etag"] == 'W/"3"'
    assert client.get(f"/fhir/CarePlan/{created['id']}").status_code == 200
    assert count(client, "CarePlan", tag) == 1


def test_delete_twice_is_harmless(client: TestClient, tag: str) -> None:
    created = post(client, example("Observation", tag)).json()
    assert client.delete(f"/fhir/Observation/{created['id']}").status_code == 204
    again = client.delete(f"/fhir/Observation/{created['id']}")
    assert again.status_code in (200, 204)
    history = client.get(f"/fhir/Observation/{created['id']}/_history").json()
    assert history["total"] == 2


def test_vread_unknown_version(client: TestClient, tag: str) -> None:
    created = post(client, example("Patient", tag)).json()
    assert_outcome(client.get(f"/fhir/Patient/{created['id']}/_history/2"), 404)
    assert_outcome(client.get(f"/fhir/Patient/{created['id']}/_history/abc"), 404)


# -- conditional create ---------------------------------------------------------------------

def _patient_with_bsn(tag: str, bsn: str) -> dict[str, Any]:
    return {**example("Patient", tag), "identifier": [{"system": BSN, "value": bsn}]}


def test_conditional_create(client: TestClient, tag: str) -> None:
    bsn = uuid.uuid4().hex[:9]
    condition = f"identifier={BSN}|{bsn}"
    first = post(client, _patient_with_bsn(tag, bsn), **{"If-None-Exist": condition})
    assert first.status_code == 201, first.text
    rid = first.json()["id"]

    again = post(client, _patient_with_bsn(tag, bsn), **{"If-None-Exist": condition})
    assert again.status_code == 200, again.text
    assert again.json()["id"] == rid
    assert again.headers["location"] == f"{BASE}/Patient/{rid}/_history/1"
    assert again.headers["etag"] == 'W/"1"'
    assert count(client, "Patient", tag) == 1

    post(client, _patient_with_bsn(tag, bsn))  # a duplicate slips in without the condition
    ambiguous = post(client, _patient_with_bsn(tag, bsn), **{"If-None-Exist": condition})
    assert_outcome(ambiguous, 412)
    assert count(client, "Patient", tag) == 2


def test_conditional_create_with_full_url_criteria(client: TestClient, tag: str) -> None:
    bsn = uuid.uuid4().hex[:9]
    condition = f"{BASE}/Patient?identifier={BSN}|{bsn}"
    assert post(client, _patient_with_bsn(tag, bsn), **{"If-None-Exist": condition}).status_code == 201
    assert post(client, _patient_with_bsn(tag, bsn), **{"If-None-Exist": condition}).status_code == 200


def test_conditional_create_with_bad_criteria(client: TestClient, tag: str) -> None:
    resp = post(client, example("Patient", tag), **{"If-None-Exist": "no-such-param=1"})
    assert_outcome(resp, 400)
    assert count(client, "Patient", tag) == 0


# -- conditional update ---------------------------------------------------------------------

def test_conditional_update(client: TestClient, tag: str) -> None:
    bsn = uuid.uuid4().hex[:9]
    url = f"/fhir/Patient?identifier={BSN}|{bsn}"
    created = put(client, _patient_with_bsn(tag, bsn), url=url)
    assert created.status_code == 201, created.text
    rid = created.json()["id"]
    assert created.headers["etag"] == 'W/"1"'

    updated = put(client, with_note(_patient_with_bsn(tag, bsn), "v2"), url=url)
    assert updated.status_code == 200, updated.text
    assert updated.json()["id"] == rid and updated.headers["etag"] == 'W/"2"'
    assert note_of(client.get(f"/fhir/Patient/{rid}").json()) == "v2"

    post(client, _patient_with_bsn(tag, bsn))
    assert_outcome(put(client, _patient_with_bsn(tag, bsn), url=url), 412)
    assert count(client, "Patient", tag) == 2
    assert client.get(f"/fhir/Patient/{rid}").headers["etag"] == 'W/"2"'


def test_conditional_update_with_conflicting_body_id(client: TestClient, tag: str) -> None:
    bsn = uuid.uuid4().hex[:9]
    url = f"/fhir/Patient?identifier={BSN}|{bsn}"
    rid = put(client, _patient_with_bsn(tag, bsn), url=url).json()["id"]
    resp = put(client, {**_patient_with_bsn(tag, bsn), "id": "someone-else"}, url=url)
    assert_outcome(resp, 400)
    assert client.get(f"/fhir/Patient/{rid}").headers["etag"] == 'W/"1"'


def test_conditional_update_honours_if_match(client: TestClient, tag: str) -> None:
    bsn = uuid.uuid4().hex[:9]
    url = f"/fhir/Patient?identifier={BSN}|{bsn}"
    put(client, _patient_with_bsn(tag, bsn), url=url)
    assert_outcome(put(client, _patient_with_bsn(tag, bsn), url=url, **{"If-Match": 'W/"5"'}), 412)
    ok = put(client, _patient_with_bsn(tag, bsn), url=url, **{"If-Match": 'W/"1"'})
    assert ok.status_code == 200 and ok.headers["etag"] == 'W/"2"'


def test_conditional_update_without_criteria(client: TestClient, tag: str) -> None:
    assert_outcome(put(client, example("Patient", tag), url="/fhir/Patient"), 400)
    assert count(client, "Patient", tag) == 0


# -- conditional delete ---------------------------------------------------------------------

def test_conditional_delete(client: TestClient, tag: str) -> None:
    bsn = uuid.uuid4().hex[:9]
    criteria = {"identifier": f"{BSN}|{bsn}"}
    assert client.delete("/fhir/Patient", params=criteria).status_code in (200, 204)

    rid = post(client, _patient_with_bsn(tag, bsn)).json()["id"]
    other = post(client, example("Patient", tag)).json()["id"]
    assert client.delete("/fhir/Patient", params=criteria).status_code == 204
    assert_outcome(client.get(f"/fhir/Patient/{rid}"), 410)
    assert client.get(f"/fhir/Patient/{other}").status_code == 200

    post(client, _patient_with_bsn(tag, bsn))
    post(client, _patient_with_bsn(tag, bsn))
    assert_outcome(client.delete("/fhir/Patient", params=criteria), 412)
    assert count(client, "Patient", tag, identifier=f"{BSN}|{bsn}") == 2


def test_conditional_delete_without_criteria_deletes_nothing(client: TestClient, tag: str) -> None:
    post(client, example("Patient", tag))
    assert_outcome(client.delete("/fhir/Patient"), 400)
    assert count(client, "Patient", tag) == 1


# -- JSON Patch -----------------------------------------------------------------------------

def _patch(client: TestClient, url: str, ops: Any, **headers: str) -> Any:
    return client.patch(url, json=ops, headers={**PATCH_JSON, **headers})


def test_json_patch(client: TestClient, tag: str) -> None:
    created = post(client, example("Patient", tag)).json()
    url = f"/fhir/Patient/{created['id']}"
    resp = _patch(client, url, [
        {"op": "test", "path": "/birthDate", "value": "1969-03-02"},
        {"op": "replace", "path": "/birthDate", "value": "1970-01-01"},
        {"op": "add", "path": "/name/0/given/-", "value": "Jan"},
    ])
    assert resp.status_code == 200, resp.text
    assert resp.headers["etag"] == 'W/"2"'
    current = client.get(url).json()
    assert current["birthDate"] == "1970-01-01"
    assert current["name"][0]["given"] == ["Pieter", "Jan"]
    assert current["meta"]["versionId"] == "2"


@pytest.mark.parametrize("ops", [
    [{"op": "test", "path": "/birthDate", "value": "2000-01-01"}],
    [{"op": "remove", "path": "/telecom"}],
    [{"op": "frobnicate", "path": "/gender"}],
    [{"op": "replace", "path": "/id", "value": "other"}],
    [{"op": "replace", "path": "/resourceType", "value": "Group"}],
])
def test_json_patch_that_cannot_apply_is_422(client: TestClient, tag: str, ops: Any) -> None:
    created = post(client, example("Patient", tag)).json()
    url = f"/fhir/Patient/{created['id']}"
    assert_outcome(_patch(client, url, ops), 422)
    assert client.get(url).json() == created


def test_json_patch_producing_invalid_resource_is_422(client: TestClient, tag: str) -> None:
    created = post(client, example("Patient", tag)).json()
    url = f"/fhir/Patient/{created['id']}"
    resp = _patch(client, url, [{"op": "replace", "path": "/birthDate", "value": "yesterday"}])
    assert_outcome(resp, 422, "Patient.birthDate")
    assert client.get(url).json() == created


def test_json_patch_not_an_array_is_400(client: TestClient, tag: str) -> None:
    created = post(client, example("Patient", tag)).json()
    url = f"/fhir/Patient/{created['id']}"
    assert_outcome(_patch(client, url, {"op": "remove", "path": "/gender"}), 400)


def test_json_patch_honours_if_match(client: TestClient, tag: str) -> None:
    created = post(client, example("Patient", tag)).json()
    url = f"/fhir/Patient/{created['id']}"
    ops = [{"op": "replace", "path": "/gender", "value": "other"}]
    assert_outcome(_patch(client, url, ops, **{"If-Match": 'W/"2"'}), 412)
    assert client.get(url).json()["gender"] == "male"
    ok = _patch(client, url, ops, **{"If-Match": 'W/"1"'})
    assert ok.status_code == 200 and ok.headers["etag"] == 'W/"2"'


def test_json_patch_on_missing_or_deleted_resource(client: TestClient, tag: str) -> None:
    ops = [{"op": "replace", "path": "/gender", "value": "other"}]
    assert_outcome(_patch(client, "/fhir/Patient/does-not-exist", ops), 404)
    created = post(client, example("Patient", tag)).json()
    client.delete(f"/fhir/Patient/{created['id']}")
    assert_outcome(_patch(client, f"/fhir/Patient/{created['id']}", ops), 410)


def test_delete_honours_if_match(client: TestClient, tag: str) -> None:
    created = post(client, example("Goal", tag)).json()
    put(client, with_note(created, "seen by nobody"))
    url = f"/fhir/Goal/{created['id']}"
    assert_outcome(client.delete(url, headers={"If-Match": 'W/"1"'}), 412)
    assert client.get(url).status_code == 200
    assert client.delete(url, headers={"If-Match": 'W/"2"'}).status_code == 204
    assert_outcome(client.get(url), 410)
