"""Error responses: every failure is an OperationOutcome (application/fhir+json) with the right
4xx status and, where there is one, an `expression` naming the offending element; never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from service.config import Settings
from service.main import create_app

from .conftest import BASE, bearer
from .helpers import FHIR_JSON
from .rest_examples import assert_outcome, count, example, post, put

SMALL_BODY = 4096


@pytest.fixture(scope="module")
def small_client(database_url: str) -> Iterator[TestClient]:
    """The app on the session's database, with a body limit small enough to hit in a test."""
    settings = Settings(database_url=database_url, base_url=BASE, max_body_bytes=SMALL_BODY)
    with TestClient(create_app(settings), base_url="http://testserver") as c:
        c.headers.update({"Accept": "application/fhir+json", **bearer(settings)})
        yield c


def _raw(client: TestClient, method: str, url: str, body: bytes,
         ctype: str = "application/fhir+json") -> Any:
    return client.request(method, url, content=body, headers={"Content-Type": ctype})


# -- unparsable and mismatched bodies -------------------------------------------------------

@pytest.mark.parametrize("body", [b'{"resourceType": "Patient",', b"not json", b"{'a': 1}",
                                  b"\xff\xfe{}", b""])
def test_malformed_json_is_400(client: TestClient, tag: str, body: bytes) -> None:
    assert_outcome(_raw(client, "POST", "/fhir/Patient", body), 400)
    created = post(client, example("Patient", tag)).json()
    assert_outcome(_raw(client, "PUT", f"/fhir/Patient/{created['id']}", body), 400)
    assert_outcome(_raw(client, "POST", "/fhir", body), 400)


@pytest.mark.parametrize("body", [[], ["Patient"], "Patient", 42, None])
def test_body_that_is_not_an_object_is_400(client: TestClient, body: Any) -> None:
    assert_outcome(_raw(client, "POST", "/fhir/Patient", orjson.dumps(body)), 400)


def test_resource_type_mismatch_is_400(client: TestClient, tag: str) -> None:
    observation = example("Observation", tag)
    assert_outcome(client.post("/fhir/Patient", json=observation, headers=FHIR_JSON), 400)
    created = post(client, example("Patient", tag)).json()
    as_observation = {**created, "resourceType": "Observation"}
    assert_outcome(put(client, as_observation, url=f"/fhir/Patient/{created['id']}"), 400)
    no_type = {k: v for k, v in example("Patient", tag).items() if k != "resourceType"}
    assert_outcome(client.post("/fhir/Patient", json=no_type, headers=FHIR_JSON), 400)
    assert count(client, "Observation", tag) == 0
    assert count(client, "Patient", tag) == 1


def test_body_id_differs_from_url_id_is_400(client: TestClient, tag: str) -> None:
    created = post(client, example("Patient", tag)).json()
    other = post(client, example("Patient", tag)).json()
    resp = put(client, {**created, "id": other["id"]}, url=f"/fhir/Patient/{created['id']}")
    assert_outcome(resp, 400, "Patient.id")
    for rid in (created["id"], other["id"]):
        assert client.get(f"/fhir/Patient/{rid}").headers["etag"] == 'W/"1"'


# -- content that parses but is not valid FHIR ----------------------------------------------

def _changed(resource: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """`resource` with the keys of `change` set, or removed where the new value is None."""
    out = {**resource, **change}
    return {k: v for k, v in out.items() if v is not None}


@pytest.mark.parametrize(("rtype", "change", "expression"), [
    ("Observation", {"foo": "bar"}, "Observation.foo"),
    ("Patient", {"birthDate": 19690302}, "Patient.birthDate"),
    ("Patient", {"birthDate": "2 maart 1969"}, "Patient.birthDate"),
    ("Patient", {"gender": ["male"]}, "Patient.gender"),
    ("Patient", {"name": [{"family": "Jansen", "given": "Pieter"}]}, "Patient.name[0].given"),
    ("Patient", {"active": "yes"}, "Patient.active"),
    ("Observation", {"valueQuantity": {"value": "zeventig"}}, "Observation.valueQuantity.value"),
    ("Observation", {"status": None}, "Observation.status"),
    ("CarePlan", {"subject": {"reference": "Patient/x", "nope": 1}}, "CarePlan.subject.nope"),
])
def test_invalid_content_is_422_with_expression(client: TestClient, tag: str, rtype: str,
                                                change: dict[str, Any], expression: str) -> None:
    assert_outcome(post(client, _changed(example(rtype, tag), change)), 422, expression)
    valid = post(client, example(rtype, tag)).json()
    assert_outcome(put(client, _changed(valid, change)), 422, expression)
    assert client.get(f"/fhir/{rtype}/{valid['id']}").headers["etag"] == 'W/"1"'
    assert count(client, rtype, tag) == 1


def test_nul_character_is_422_on_every_database(client: TestClient, tag: str) -> None:
    """PostgreSQL cannot store U+0000; SQLite could, so the rule is the API's, not the DB's."""
    body = orjson.dumps(_changed(example("Patient", tag), {"name": [{"family": "Jan\x00sen"}]}))
    assert b"\\u0000" in body
    assert_outcome(_raw(client, "POST", "/fhir/Patient", body), 422, "Patient.name[0].family")
    literal = _changed(example("Patient", tag), {"name": [{"family": "back\\u0000slash"}]})
    assert post(client, literal).status_code == 201
    assert count(client, "Patient", tag) == 1


def test_contained_resource_of_unknown_type_is_422(client: TestClient, tag: str) -> None:
    body = _changed(example("Patient", tag), {"contained": [{"resourceType": "Nope", "id": "a"}]})
    assert_outcome(post(client, body), 422)


def test_vread_of_an_impossible_version_is_404(client: TestClient, tag: str) -> None:
    created = post(client, example("Patient", tag)).json()
    assert_outcome(client.get(f"/fhir/Patient/{created['id']}/_history/{10**20}"), 404)


def test_invalid_id_in_body_of_update_as_create(client: TestClient, tag: str) -> None:
    body = {**example("Patient", tag), "id": "not_a$valid*id"}
    resp = client.put("/fhir/Patient/not_a$valid*id", json=body, headers=FHIR_JSON)
    assert_outcome(resp, 400)


# -- unknown things -------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "url"), [
    ("GET", "/fhir/Patiënt"), ("GET", "/fhir/Foo"), ("GET", "/fhir/Foo/1"),
    ("GET", "/fhir/Foo/1/_history"), ("GET", "/fhir/Foo/_history"), ("DELETE", "/fhir/Foo/1"),
    ("GET", "/fhir/patient/1"), ("GET", "/fhir/Resource/1"), ("GET", "/fhir/DomainResource"),
])
def test_unknown_resource_type_is_404(client: TestClient, method: str, url: str) -> None:
    assert_outcome(client.request(method, url), 404)


def test_create_of_unknown_resource_type_is_404(client: TestClient) -> None:
    resp = client.post("/fhir/Foo", json={"resourceType": "Foo"}, headers=FHIR_JSON)
    assert_outcome(resp, 404)


def test_unknown_id_is_404(client: TestClient) -> None:
    assert_outcome(client.get("/fhir/Patient/does-not-exist"), 404)
    assert_outcome(client.get("/fhir/Patient/does-not-exist/_history/1"), 404)
    assert_outcome(client.get("/fhir/Patient/does-not-exist/_history"), 404)


def test_deleted_is_410(client: TestClient, tag: str) -> None:
    created = post(client, example("Consent", tag)).json()
    client.delete(f"/fhir/Consent/{created['id']}")
    resp = client.get(f"/fhir/Consent/{created['id']}")
    body = assert_outcome(resp, 410)
    assert body["issue"][0]["code"] == "deleted"


def test_unknown_path_is_404(client: TestClient) -> None:
    assert_outcome(client.get("/fhir/Patient/1/_history/1/extra"), 404)
    assert_outcome(client.get("/elsewhere"), 404)


# -- method not allowed ---------------------------------------------------------------------

@pytest.mark.parametrize(("method", "url"), [
    ("PATCH", "/fhir/Patient"), ("POST", "/fhir/Patient/123"), ("DELETE", "/fhir/metadata"),
    ("PUT", "/fhir/Patient/123/_history/1"), ("POST", "/fhir/Patient/123/_history"),
    ("DELETE", "/fhir/Patient/_history"), ("PUT", "/fhir"), ("DELETE", "/fhir/_history"),
])
def test_method_not_allowed_is_405(client: TestClient, method: str, url: str) -> None:
    resp = client.request(method, url, content=b"{}", headers=FHIR_JSON)
    assert_outcome(resp, 405)
    assert "allow" in resp.headers


# -- size limit -----------------------------------------------------------------------------

def _oversized(tag: str) -> dict[str, Any]:
    return {**example("Patient", tag),
            "name": [{"family": "X" * 100, "given": ["Y" * 100]} for _ in range(SMALL_BODY // 100)]}


def test_oversized_body_is_413(small_client: TestClient, client: TestClient, tag: str) -> None:
    body = orjson.dumps(_oversized(tag))
    assert len(body) > SMALL_BODY
    assert_outcome(_raw(small_client, "POST", "/fhir/Patient", body), 413)
    assert_outcome(_raw(small_client, "PUT", "/fhir/Patient/big", body), 413)
    assert_outcome(_raw(small_client, "POST", "/fhir", body), 413)
    assert count(client, "Patient", tag) == 0
    assert post(small_client, example("Patient", tag)).status_code == 201


def test_oversized_chunked_body_is_413(small_client: TestClient, client: TestClient,
                                       tag: str) -> None:
    """No Content-Length to trust: the limit is enforced while reading the stream."""
    body = orjson.dumps(_oversized(tag))

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 1000):
            yield body[i:i + 1000]

    resp = small_client.post("/fhir/Patient", content=chunks(), headers=FHIR_JSON)
    assert "content-length" not in resp.request.headers
    assert_outcome(resp, 413)
    assert count(client, "Patient", tag) == 0


def test_lying_content_length_does_not_bypass_the_limit(small_client: TestClient) -> None:
    body = orjson.dumps({"resourceType": "Patient", "name": [{"family": "X" * SMALL_BODY}]})
    resp = small_client.post("/fhir/Patient", content=body,
                             headers={**FHIR_JSON, "Content-Length": str(len(body))})
    assert_outcome(resp, 413)


def test_default_limit_is_ten_mebibytes(client: TestClient, tag: str) -> None:
    body = b'{"resourceType":"Patient","name":[{"family":"' + b"x" * (10 * 1024 * 1024) + b'"}]}'
    assert_outcome(_raw(client, "POST", "/fhir/Patient", body), 413)


# -- never a 500 ----------------------------------------------------------------------------

BAD_REQUESTS: list[tuple[str, str, dict[str, str], bytes]] = [
    ("GET", "/fhir/Patient?birthdate=notadate", {}, b""),
    ("GET", "/fhir/Patient?_count=-1", {}, b""),
    ("GET", "/fhir/Patient?_sort=nope", {}, b""),
    ("GET", "/fhir/Patient/_history?_since=yesterday", {}, b""),
    ("GET", "/fhir/Patient/_history?_count=many", {}, b""),
    ("GET", "/fhir/Patient/x/_history/999999999999999999999", {}, b""),
    ("GET", "/fhir/Patient/" + "a" * 65, {}, b""),
    ("POST", "/fhir/Patient", {"If-None-Exist": "identifier=a|b|c&&&"}, b'{"resourceType":"Patient"}'),
    ("POST", "/fhir/Patient", {"If-None-Exist": "unknown=1"}, b'{"resourceType":"Patient"}'),
    ("PUT", "/fhir/Patient?nope=1", {}, b'{"resourceType":"Patient"}'),
    ("DELETE", "/fhir/Patient?nope=1", {}, b""),
    ("POST", "/fhir/Patient", {}, b'{"resourceType":"Patient","meta":"x"}'),
    ("POST", "/fhir/Patient", {}, b'{"resourceType":"Patient","meta":{"security":"x"}}'),
    ("POST", "/fhir/Patient", {}, b'{"resourceType":"Patient","meta":{"tag":[{"code":5}]}}'),
    ("POST", "/fhir/Patient", {}, b'{"resourceType":"Patient","contained":[{"resourceType":"Nope"}]}'),
    ("POST", "/fhir/Patient", {}, b'{"resourceType":"Patient","birthDate":"2024-02-30"}'),
    ("POST", "/fhir/Patient", {}, b'{"resourceType":"Patient","name":[{"family":"\\u0000"}]}'),
    ("POST", "/fhir/Observation", {}, b'{"resourceType":"Observation","status":"final",'
                                      b'"code":{"text":"x"},"valueQuantity":{"value":1e400}}'),
    ("POST", "/fhir/Patient", {"Prefer": "return=banana"}, b'{"resourceType":"Patient"}'),
    ("PUT", "/fhir/Patient/x", {"If-Match": 'W/"99999999999999999999999"'},
     b'{"resourceType":"Patient","id":"x"}'),
    ("PATCH", "/fhir/Patient/x", {"Content-Type": "application/json-patch+json"}, b"[1, 2]"),
    ("POST", "/fhir", {}, b'{"resourceType":"Bundle","type":"transaction","entry":[1]}'),
    ("POST", "/fhir", {}, b'{"resourceType":"Bundle","type":"transaction","entry":{"a":1}}'),
    ("POST", "/fhir", {}, b'{"resourceType":"Bundle","type":"transaction",'
                          b'"entry":[{"request":{"method":"POST","url":"Patient"},"resource":5}]}'),
    ("POST", "/fhir", {}, b'{"resourceType":"Bundle","type":"transaction",'
                          b'"entry":[{"request":{"method":"GET","url":"http://elsewhere/x"}}]}'),
    ("POST", "/fhir", {}, b'{"resourceType":"Bundle","type":"transaction",'
                          b'"entry":[{"request":{"method":"PUT","url":"Patient/a/b/c/d/e"}}]}'),
    ("POST", "/fhir", {}, b'{"resourceType":"Bundle","type":"batch",'
                          b'"entry":[{"request":{"method":"PATCH","url":"Patient/x"},"resource":{}}]}'),
    ("POST", "/fhir", {}, b'{"resourceType":"Bundle","type":"collection"}'),
    ("POST", "/fhir/Patient/_search", {"Content-Type": "application/json"}, b"{}"),
]


@pytest.mark.parametrize(("method", "url", "headers", "body"), BAD_REQUESTS,
                         ids=[f"{m} {u[:40]}" for m, u, _, _ in BAD_REQUESTS])
def test_bad_input_is_an_outcome_never_500(client: TestClient, method: str, url: str,
                                           headers: dict[str, str], body: bytes) -> None:
    resp = client.request(method, url, content=body or None, headers={**FHIR_JSON, **headers})
    assert 400 <= resp.status_code < 500 or resp.status_code in (200, 201), resp.text
    if resp.status_code >= 400:
        assert_outcome(resp, resp.status_code)
    elif resp.json().get("resourceType") == "Bundle":
        for entry in resp.json().get("entry", []):
            assert not entry["response"]["status"].startswith("5"), entry
