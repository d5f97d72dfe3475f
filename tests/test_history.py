"""History (R4 3.1.0.9): instance, type and system level, with `_since`, `_at` and `_count`
paging that visits every version exactly once."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from fastapi.testclient import TestClient

from .conftest import BASE
from .rest_examples import assert_outcome, example, note_of, post, put, with_note


def _history(client: TestClient, url: str, **params: str) -> dict[str, Any]:
    resp = client.get(url, params=params or None)  # httpx drops the URL's query for params={}
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/fhir+json")
    body: dict[str, Any] = resp.json()
    assert body["resourceType"] == "Bundle" and body["type"] == "history"
    return body


def _all_pages(client: TestClient, url: str, **params: str) -> list[dict[str, Any]]:
    """Every entry of a paged history, following `next` links to the end."""
    page = _history(client, url, **params)
    entries = list(page.get("entry", []))
    pages = 1
    while (nxt := next((lk["url"] for lk in page["link"] if lk["relation"] == "next"), None)):
        assert nxt.startswith(BASE)
        page = _history(client, nxt.removeprefix("http://testserver"))
        entries += page.get("entry", [])
        pages += 1
        assert pages < 100
    return entries


def _versions(entries: list[dict[str, Any]], ids: set[str]) -> list[tuple[str, str]]:
    out = []
    for e in entries:
        rid = e["fullUrl"].rsplit("/", 1)[-1]
        if rid in ids:
            out.append((rid, e["response"]["etag"]))
    return out


def _edits(client: TestClient, tag: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A Goal in three versions (create, update, update), each a few ms apart."""
    v1 = post(client, example("Goal", tag)).json()
    time.sleep(0.01)
    v2 = put(client, with_note(v1, "two")).json()
    time.sleep(0.01)
    v3 = put(client, with_note(v1, "three")).json()
    return v1, v2, v3


def test_instance_history(client: TestClient, tag: str) -> None:
    v1, v2, v3 = _edits(client, tag)
    rid = v1["id"]
    assert client.delete(f"/fhir/Goal/{rid}").status_code == 204
    bundle = _history(client, f"/fhir/Goal/{rid}/_history")
    assert bundle["total"] == 4
    entries = bundle["entry"]
    assert [e["response"]["etag"] for e in entries] == ['W/"4"', 'W/"3"', 'W/"2"', 'W/"1"']
    assert [e["request"]["method"] for e in entries] == ["DELETE", "PUT", "PUT", "POST"]
    assert [e["response"]["status"][:3] for e in entries] == ["204", "200", "200", "201"]
    assert entries[0]["request"]["url"] == f"Goal/{rid}"
    assert entries[3]["request"]["url"] == "Goal"
    assert "resource" not in entries[0]
    assert [e["resource"] for e in entries[1:]] == [v3, v2, v1]
    assert all(e["fullUrl"] == f"{BASE}/Goal/{rid}" for e in entries)
    assert entries[1]["response"]["lastModified"] == v3["meta"]["lastUpdated"]
    self_link = next(lk["url"] for lk in bundle["link"] if lk["relation"] == "self")
    assert self_link == f"{BASE}/Goal/{rid}/_history"


def test_instance_history_since(client: TestClient, tag: str) -> None:
    v1, v2, v3 = _edits(client, tag)
    url = f"/fhir/Goal/{v1['id']}/_history"
    since_v2 = _history(client, url, _since=v2["meta"]["lastUpdated"])
    assert [e["response"]["etag"] for e in since_v2["entry"]] == ['W/"3"', 'W/"2"']
    assert since_v2["total"] == 2
    all_three = _history(client, url, _since="2000-01-01T00:00:00Z")
    assert all_three["total"] == 3
    nothing = _history(client, url, _since="2999-01-01T00:00:00Z")
    assert nothing["total"] == 0 and "entry" not in nothing


def test_instance_history_at(client: TestClient, tag: str) -> None:
    v1, v2, v3 = _edits(client, tag)
    url = f"/fhir/Goal/{v1['id']}/_history"
    at_v2 = _history(client, url, _at=v2["meta"]["lastUpdated"])
    assert [e["resource"] for e in at_v2["entry"]] == [v2]
    at_v1 = _history(client, url, _at=v1["meta"]["lastUpdated"])
    assert [note_of(e["resource"]) for e in at_v1["entry"]] == [None]
    assert _history(client, url, _at="2999")["entry"][0]["resource"] == v3
    assert "entry" not in _history(client, url, _at="2001-01-01")


def test_instance_history_count_and_paging(client: TestClient, tag: str) -> None:
    v1 = post(client, example("Observation", tag)).json()
    for i in range(6):
        put(client, with_note(v1, str(i)))
    url = f"/fhir/Observation/{v1['id']}/_history"
    first = _history(client, url, _count="3")
    assert len(first["entry"]) == 3 and first["total"] == 7
    entries = _all_pages(client, url, _count="3")
    assert [e["response"]["etag"] for e in entries] == [f'W/"{v}"' for v in range(7, 0, -1)]


def test_type_history_pages_every_version_once(client: TestClient, tag: str) -> None:
    start = post(client, example("CareTeam", tag)).json()["meta"]["lastUpdated"]
    ids = set()
    for i in range(5):
        created = post(client, example("CareTeam", tag)).json()
        ids.add(created["id"])
        put(client, with_note(created, f"{i}-a"))
        put(client, with_note(created, f"{i}-b"))
    other = post(client, example("Goal", tag)).json()
    entries = _all_pages(client, "/fhir/CareTeam/_history", _since=start, _count="4")
    assert all(e["fullUrl"].startswith(f"{BASE}/CareTeam/") for e in entries)
    seen = _versions(entries, ids)
    assert Counter(seen) == Counter((rid, f'W/"{v}"') for rid in ids for v in (1, 2, 3))
    assert other["id"] not in {e["fullUrl"].rsplit("/", 1)[-1] for e in entries}
    stamps = [e["response"]["lastModified"] for e in entries]
    assert stamps == sorted(stamps, reverse=True)


def test_type_history_paging_survives_concurrent_writes(client: TestClient, tag: str) -> None:
    start = post(client, example("CarePlan", tag)).json()["meta"]["lastUpdated"]
    ids = {post(client, example("CarePlan", tag)).json()["id"] for _ in range(6)}
    first = _history(client, "/fhir/CarePlan/_history", _since=start, _count="3")
    newcomer = post(client, example("CarePlan", tag)).json()["id"]
    entries = list(first["entry"])
    nxt = next(lk["url"] for lk in first["link"] if lk["relation"] == "next")
    entries += _all_pages(client, nxt.removeprefix("http://testserver"))
    seen = _versions(entries, ids)
    assert sorted(seen) == sorted((rid, 'W/"1"') for rid in ids)
    assert newcomer not in {rid for rid, _ in _versions(entries, {newcomer})}


def test_system_history(client: TestClient, tag: str) -> None:
    start = post(client, example("Organization", tag)).json()["meta"]["lastUpdated"]
    pat = post(client, example("Patient", tag)).json()
    obs = post(client, example("Observation", tag, pat["id"])).json()
    client.delete(f"/fhir/Observation/{obs['id']}")
    entries = _all_pages(client, "/fhir/_history", _since=start, _count="2")
    mine = [(e["fullUrl"].removeprefix(BASE + "/"), e["request"]["method"]) for e in entries
            if e["fullUrl"].rsplit("/", 1)[-1] in (pat["id"], obs["id"])]
    assert mine == [(f"Observation/{obs['id']}", "DELETE"), (f"Observation/{obs['id']}", "POST"),
                    (f"Patient/{pat['id']}", "POST")]


def test_history_of_deleted_resource_is_available(client: TestClient, tag: str) -> None:
    created = post(client, example("Provenance", tag)).json()
    client.delete(f"/fhir/Provenance/{created['id']}")
    bundle = _history(client, f"/fhir/Provenance/{created['id']}/_history")
    assert bundle["total"] == 2


def test_history_of_unknown_resource_is_404(client: TestClient) -> None:
    assert_outcome(client.get("/fhir/Patient/never-existed/_history"), 404)


@pytest.mark.parametrize(("param", "value"), [
    ("_since", "yesterday"), ("_since", "2024-13-01"), ("_since", "2024-01-01T25:00:00Z"),
    ("_at", "now"), ("_count", "many"), ("_count", "-1"), ("_cursor", "garbage"),
    ("_sort", "_lastUpdated"), ("name", "Jansen"),
])
def test_bad_history_parameters_are_400(client: TestClient, tag: str, param: str,
                                        value: str) -> None:
    created = post(client, example("Patient", tag)).json()
    for url in (f"/fhir/Patient/{created['id']}/_history", "/fhir/Patient/_history",
                "/fhir/_history"):
        body = assert_outcome(client.get(url, params={param: value}), 400)
        if not param.startswith("name"):
            assert param in [e for i in body["issue"] for e in i.get("expression", [])] or \
                param == "_cursor"


def test_history_count_is_capped(client: TestClient, tag: str) -> None:
    post(client, example("Patient", tag))
    bundle = _history(client, "/fhir/_history", _count="100000")
    assert len(bundle.get("entry", [])) <= 200
