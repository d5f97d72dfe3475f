"""HTTP headers the FHIR spec gives meaning to (R4 3.1.0.1.x): versioned ETags with If-Match
(no lost update), If-None-Match, If-Modified-Since, and content negotiation."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from .rest_examples import assert_outcome, count, example, note_of, post, put, with_note


def _created(client: TestClient, tag: str, rtype: str = "Patient") -> dict[str, Any]:
    resp = post(client, example(rtype, tag))
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


# -- If-Match -------------------------------------------------------------------------------

def test_if_match(client: TestClient, tag: str) -> None:
    v1 = _created(client, tag)
    stale = put(client, with_note(v1, "stale"), **{"If-Match": 'W/"2"'})
    assert_outcome(stale, 412)
    assert client.get(f"/fhir/Patient/{v1['id']}").headers["etag"] == 'W/"1"'
    fresh = put(client, with_note(v1, "fresh"), **{"If-Match": 'W/"1"'})
    assert fresh.status_code == 200 and fresh.headers["etag"] == 'W/"2"'
    strong = put(client, with_note(v1, "strong"), **{"If-Match": '"2"'})
    assert strong.status_code == 200 and strong.headers["etag"] == 'W/"3"'


def test_if_match_on_unknown_resource_does_not_create(client: TestClient, tag: str) -> None:
    body = {**example("Patient", tag), "id": f"nobody-{tag}"}
    assert_outcome(put(client, body, **{"If-Match": 'W/"1"'}), 412)
    assert client.get(f"/fhir/Patient/nobody-{tag}").status_code == 404


def test_malformed_if_match_is_400(client: TestClient, tag: str) -> None:
    v1 = _created(client, tag)
    assert_outcome(put(client, v1, **{"If-Match": "yesterday"}), 400)


def test_no_lost_update_sequential(client: TestClient, tag: str) -> None:
    """Two clients read version 1 and both write back with If-Match W/"1": the second fails."""
    v1 = _created(client, tag)
    alice = client.get(f"/fhir/Patient/{v1['id']}")
    bob = client.get(f"/fhir/Patient/{v1['id']}")
    etag = alice.headers["etag"]
    assert etag == bob.headers["etag"] == 'W/"1"'
    first = put(client, with_note(alice.json(), "alice"), **{"If-Match": etag})
    second = put(client, with_note(bob.json(), "bob"), **{"If-Match": etag})
    assert first.status_code == 200
    assert_outcome(second, 412)
    assert note_of(client.get(f"/fhir/Patient/{v1['id']}").json()) == "alice"


@pytest.mark.parametrize("writers", [2, 6])
def test_no_lost_update_concurrent(client: TestClient, tag: str, writers: int) -> None:
    """Concurrent writers that all read version 1: exactly one wins, the rest get 412."""
    v1 = _created(client, tag)
    start = threading.Barrier(writers)

    def write(i: int) -> Any:
        start.wait()
        return put(client, with_note(v1, f"writer-{i}"), **{"If-Match": 'W/"1"'})

    with ThreadPoolExecutor(writers) as pool:
        results = list(pool.map(write, range(writers)))
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] + [412] * (writers - 1), [r.text for r in results]
    for r in results:
        if r.status_code == 412:
            assert_outcome(r, 412)
    winner = next(r for r in results if r.status_code == 200)
    current = client.get(f"/fhir/Patient/{v1['id']}")
    assert current.headers["etag"] == 'W/"2"'
    assert note_of(current.json()) == note_of(winner.json())
    history = client.get(f"/fhir/Patient/{v1['id']}/_history").json()
    assert history["total"] == 2


# -- If-None-Match / If-Modified-Since ------------------------------------------------------

def test_if_none_match(client: TestClient, tag: str) -> None:
    v1 = _created(client, tag)
    url = f"/fhir/Patient/{v1['id']}"
    same = client.get(url, headers={"If-None-Match": 'W/"1"'})
    assert same.status_code == 304
    assert same.content == b""
    assert same.headers["etag"] == 'W/"1"'
    put(client, with_note(v1, "changed"))
    changed = client.get(url, headers={"If-None-Match": 'W/"1"'})
    assert changed.status_code == 200 and changed.headers["etag"] == 'W/"2"'
    assert note_of(changed.json()) == "changed"


def test_if_modified_since(client: TestClient, tag: str) -> None:
    v1 = _created(client, tag)
    url = f"/fhir/Patient/{v1['id']}"
    last_modified = client.get(url).headers["last-modified"]
    stamp = parsedate_to_datetime(last_modified)
    assert stamp.tzinfo is not None
    meta_stamp = datetime.fromisoformat(v1["meta"]["lastUpdated"].replace("Z", "+00:00"))
    assert stamp == meta_stamp.replace(microsecond=0)

    assert client.get(url, headers={"If-Modified-Since": last_modified}).status_code == 304
    later = format_datetime(stamp + timedelta(hours=1), usegmt=True)
    assert client.get(url, headers={"If-Modified-Since": later}).status_code == 304
    earlier = format_datetime(stamp - timedelta(days=1), usegmt=True)
    resp = client.get(url, headers={"If-Modified-Since": earlier})
    assert resp.status_code == 200 and resp.json()["id"] == v1["id"]
    garbage = client.get(url, headers={"If-Modified-Since": "not a date"})
    assert garbage.status_code == 200


def test_read_and_vread_carry_version_headers(client: TestClient, tag: str) -> None:
    v1 = _created(client, tag, "Observation")
    put(client, with_note(v1, "2"))
    read = client.get(f"/fhir/Observation/{v1['id']}")
    vread = client.get(f"/fhir/Observation/{v1['id']}/_history/1")
    assert read.headers["etag"] == 'W/"2"' and vread.headers["etag"] == 'W/"1"'
    assert parsedate_to_datetime(read.headers["last-modified"]) >= \
        parsedate_to_datetime(vread.headers["last-modified"])
    assert datetime.now(UTC) - parsedate_to_datetime(read.headers["last-modified"]) < \
        timedelta(minutes=5)


# -- content negotiation --------------------------------------------------------------------

def test_responses_are_fhir_json(client: TestClient, tag: str) -> None:
    v1 = _created(client, tag)
    for resp in (client.get(f"/fhir/Patient/{v1['id']}"), client.get("/fhir/Patient",
                 params={"_id": v1["id"]}), client.get("/fhir/metadata")):
        assert resp.headers["content-type"] == "application/fhir+json; charset=utf-8"


@pytest.mark.parametrize("fmt", ["json", "application/fhir+json", "application/json"])
def test_format_json(client: TestClient, tag: str, fmt: str) -> None:
    v1 = _created(client, tag)
    resp = client.get(f"/fhir/Patient/{v1['id']}", params={"_format": fmt},
                      headers={"Accept": "application/fhir+xml"})
    assert resp.status_code == 200
    assert resp.json() == v1


@pytest.mark.parametrize("fmt", ["ttl", "application/fhir+turtle", "html",
                                 "application/fhir+xml;fhirVersion=5.0"])
def test_unserved_format_is_406(client: TestClient, tag: str, fmt: str) -> None:
    v1 = _created(client, tag)
    assert_outcome(client.get(f"/fhir/Patient/{v1['id']}", params={"_format": fmt}), 406)


@pytest.mark.parametrize("accept", ["application/fhir+turtle", "text/turtle",
                                    "application/fhir+xml;q=0"])
def test_unserved_accept_is_406(client: TestClient, tag: str, accept: str) -> None:
    v1 = _created(client, tag)
    assert_outcome(client.get(f"/fhir/Patient/{v1['id']}", headers={"Accept": accept}), 406)
    assert_outcome(client.get("/fhir/Patient", headers={"Accept": accept}), 406)


@pytest.mark.parametrize("accept", ["application/json", "*/*", "application/fhir+json;q=0.9",
                                    "application/fhir+xml;q=0.5, application/fhir+json"])
def test_accept_json_variants(client: TestClient, tag: str, accept: str) -> None:
    v1 = _created(client, tag)
    resp = client.get(f"/fhir/Patient/{v1['id']}", headers={"Accept": accept})
    assert resp.status_code == 200 and resp.json()["id"] == v1["id"]


def test_pretty(client: TestClient, tag: str) -> None:
    v1 = _created(client, tag)
    url = f"/fhir/Patient/{v1['id']}"
    compact = client.get(url)
    pretty = client.get(url, params={"_pretty": "true"})
    assert b"\n" not in compact.content
    assert b'\n  "resourceType": "Patient"' in pretty.content
    assert orjson.loads(pretty.content) == compact.json()
    search = client.get("/fhir/Patient", params={"_id": v1["id"], "_pretty": "true"})
    assert b"\n  " in search.content and search.json()["total"] == 1


@pytest.mark.parametrize("ctype", ["application/fhir+turtle", "text/plain",
                                   "application/x-www-form-urlencoded"])
def test_unsupported_content_type_is_415(client: TestClient, tag: str, ctype: str) -> None:
    body = orjson.dumps(example("Patient", tag))
    assert_outcome(client.post("/fhir/Patient", content=body, headers={"Content-Type": ctype}), 415)
    created = _created(client, tag)
    assert_outcome(client.put(f"/fhir/Patient/{created['id']}", content=orjson.dumps(created),
                              headers={"Content-Type": ctype}), 415)
    assert count(client, "Patient", tag) == 1


def test_missing_content_type_is_415(client: TestClient, tag: str) -> None:
    body = orjson.dumps(example("Patient", tag))
    assert_outcome(client.post("/fhir/Patient", content=body), 415)
    assert count(client, "Patient", tag) == 0


@pytest.mark.parametrize("ctype", ["application/json", "application/fhir+json; charset=utf-8",
                                   "application/json+fhir"])
def test_json_content_types_accepted(client: TestClient, tag: str, ctype: str) -> None:
    body = orjson.dumps(example("Patient", tag))
    assert client.post("/fhir/Patient", content=body,
                       headers={"Content-Type": ctype}).status_code == 201


def test_patch_requires_json_patch_media_type(client: TestClient, tag: str) -> None:
    created = _created(client, tag)
    ops = orjson.dumps([{"op": "replace", "path": "/gender", "value": "other"}])
    resp = client.patch(f"/fhir/Patient/{created['id']}", content=ops,
                        headers={"Content-Type": "text/plain"})
    assert_outcome(resp, 415)
    assert client.get(f"/fhir/Patient/{created['id']}").json()["gender"] == "male"


def _concurrently(writers: int, write: Any) -> list[Any]:
    start = threading.Barrier(writers)

    def run(i: int) -> Any:
        start.wait()
        return write(i)

    with ThreadPoolExecutor(writers) as pool:
        return list(pool.map(run, range(writers)))


def test_concurrent_updates_without_if_match_all_land(client: TestClient, tag: str) -> None:
    """Without If-Match the last writer wins, but no write fails or overwrites a version."""
    v1 = _created(client, tag)
    results = _concurrently(5, lambda i: put(client, with_note(v1, f"writer-{i}")))
    assert sorted(r.status_code for r in results) == [200] * 5, [r.text for r in results]
    assert sorted(r.headers["etag"] for r in results) == [f'W/"{v}"' for v in range(2, 7)]
    history = client.get(f"/fhir/Patient/{v1['id']}/_history").json()
    assert history["total"] == 6


def test_concurrent_update_as_create_with_one_client_id(client: TestClient, tag: str) -> None:
    body = {**example("Patient", tag), "id": f"race-{tag}"}
    results = _concurrently(4, lambda i: put(client, with_note(body, f"writer-{i}")))
    assert sorted(r.status_code for r in results) == [200, 200, 200, 201], [r.text for r in results]
    assert client.get(f"/fhir/Patient/race-{tag}").headers["etag"] == 'W/"4"'
