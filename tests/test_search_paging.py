"""`_sort`, `_count` and keyset paging: next/previous links that survive concurrent writes."""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson
from fastapi.testclient import TestClient

from .search_helpers import (
    error,
    expressions,
    follow,
    ids,
    link,
    make,
    observation,
    query_of,
    scope,
    search,
)


def _patients(client: TestClient, tag: str) -> dict[str, str]:
    """Patients with distinct, partly missing sort values; name -> id."""
    spec: list[tuple[str, str | None, str | None]] = [
        ("Jansen", "male", "1980-05-01"),
        ("bakker", "female", "1975-01-20"),
        ("Ångström", "female", None),
        ("de Vries", None, "1990-12-31"),
        ("Visser", "male", "1962-07-07"),
    ]
    out = {}
    for family, gender, birth in spec:
        resource: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": family}]}
        if gender:
            resource["gender"] = gender
        if birth:
            resource["birthDate"] = birth
        out[family] = make(client, tag, resource)
        time.sleep(0.002)  # distinct lastUpdated instants (millisecond precision)
    out["(nameless)"] = make(client, tag, {"resourceType": "Patient", "gender": "other",
                                           "birthDate": "1985-03-03"})
    return out


def _order(client: TestClient, tag: str, sort: str, rtype: str = "Patient") -> list[str]:
    return ids(search(client, rtype, tag, [("_sort", sort), ("_count", "50")]))


def test_sort_by_string_date_token_and_several_keys(client: TestClient, tag: str) -> None:
    p = _patients(client, tag)

    def names(order: list[str]) -> list[str]:
        by_id = {v: k for k, v in p.items()}
        return [by_id[i] for i in order]

    # Strings sort case- and accent-insensitively; resources without the value come last.
    assert names(_order(client, tag, "family")) == [
        "Ångström", "bakker", "de Vries", "Jansen", "Visser", "(nameless)"]
    assert names(_order(client, tag, "-family")) == [
        "Visser", "Jansen", "de Vries", "bakker", "Ångström", "(nameless)"]
    assert names(_order(client, tag, "birthdate")) == [
        "Visser", "bakker", "Jansen", "(nameless)", "de Vries", "Ångström"]
    assert names(_order(client, tag, "-birthdate")) == [
        "de Vries", "(nameless)", "Jansen", "bakker", "Visser", "Ångström"]
    assert names(_order(client, tag, "gender,-birthdate")) == [
        "bakker", "Ångström", "Jansen", "Visser", "(nameless)", "de Vries"]
    assert names(_order(client, tag, "-gender,family")) == [
        "(nameless)", "Jansen", "Visser", "Ångström", "bakker", "de Vries"]
    assert _order(client, tag, "_id") == sorted(p.values())
    assert _order(client, tag, "-_id") == sorted(p.values(), reverse=True)
    created = list(p.values())
    assert _order(client, tag, "_lastUpdated") == created
    assert _order(client, tag, "-_lastUpdated") == created[::-1]


def test_sort_by_period_and_quantity(client: TestClient, tag: str) -> None:
    spring = make(client, tag, observation(effectivePeriod={"start": "2024-03-01", "end": "2024-05-31"},
                                           valueQuantity={"value": 2400, "unit": "min/wk",
                                                          "system": "http://unitsofmeasure.org",
                                                          "code": "min/wk"}))
    year = make(client, tag, observation(effectivePeriod={"start": "2024-01-01", "end": "2024-12-31"},
                                         valueQuantity={"value": 32, "unit": "h/wk",
                                                        "system": "http://unitsofmeasure.org",
                                                        "code": "h/wk"}))
    undated = make(client, tag, observation())
    assert _order(client, tag, "date", "Observation") == [year, spring, undated]  # by start
    assert _order(client, tag, "-date", "Observation") == [year, spring, undated]  # by end
    assert _order(client, tag, "value-quantity", "Observation") == [year, spring, undated]
    assert _order(client, tag, "-value-quantity", "Observation") == [spring, year, undated]
    for sort in ("date", "-date", "value-quantity", "-value-quantity"):
        first = search(client, "Observation", tag, [("_sort", sort), ("_count", "1")])
        pages = _walk(client, first, "next")
        assert [i for page in pages for i in page] == _order(client, tag, sort, "Observation"), sort


def _walk(client: TestClient, first: dict[str, Any], relation: str) -> list[list[str]]:
    pages = [ids(first)]
    bundle = first
    while (url := link(bundle, relation)) is not None:
        bundle = follow(client, url)
        pages.append(ids(bundle))
        assert len(pages) < 50, "paging does not end"
    return pages


def test_walk_next_and_previous(client: TestClient, tag: str) -> None:
    expected = [make(client, tag, {"resourceType": "Patient", "name": [{"family": f"Fam{i:02d}"}]})
                for i in range(11)]
    first = search(client, "Patient", tag, [("_sort", "family"), ("_count", "3")])
    assert first["total"] == 11
    assert link(first, "previous") is None
    forward = _walk(client, first, "next")
    assert [len(page) for page in forward] == [3, 3, 3, 2]
    assert [i for page in forward for i in page] == expected

    # From the last page, `previous` walks back through the same pages.
    last = first
    while (url := link(last, "next")) is not None:
        last = follow(client, url)
    assert last["total"] == 11
    backward = _walk(client, last, "previous")
    assert backward == forward[::-1]

    # Page links keep the search: the criteria and sort are echoed, only the cursor changes;
    # a page's self link is that page.
    nxt = link(first, "next")
    assert nxt is not None
    second = follow(client, nxt)
    second_self = link(second, "self")
    assert second_self is not None and ids(follow(client, second_self)) == forward[1]
    params = dict(query_of(nxt))
    assert params["_sort"] == "family" and params["_count"] == "3" and "_cursor" in params
    assert params["_tag"] == scope(tag)[1]


def test_every_sort_pages_like_its_full_result(client: TestClient, tag: str) -> None:
    """Keyset cursors over date, string, token, quantity and id keys, missing values included."""
    _patients(client, tag)
    for sort in ("birthdate", "-birthdate", "family", "-family", "gender,-birthdate", "-gender,family",
                 "_id", "-_lastUpdated", "address-city"):
        whole = _order(client, tag, sort)
        pages = _walk(client, search(client, "Patient", tag, [("_sort", sort), ("_count", "2")]),
                      "next")
        assert [i for page in pages for i in page] == whole, sort


def test_default_order_pages_too(client: TestClient, tag: str) -> None:
    expected = [make(client, tag, {"resourceType": "Patient"}) for _ in range(5)]
    pages = _walk(client, search(client, "Patient", tag, [("_count", "2")]), "next")
    seen = [i for page in pages for i in page]
    assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen))


def test_paging_is_stable_under_concurrent_writes(client: TestClient, tag: str) -> None:
    """Inserting before the cursor and deleting ahead of it never repeats or skips a match."""
    names = [f"Mid{i:02d}" for i in range(9)]
    by_name = {n: make(client, tag, {"resourceType": "Patient", "name": [{"family": n}]})
               for n in names}
    first = search(client, "Patient", tag, [("_sort", "family"), ("_count", "3")])
    page_one = ids(first)
    assert page_one == [by_name[n] for n in names[:3]]

    make(client, tag, {"resourceType": "Patient", "name": [{"family": "Aaa"}]})
    make(client, tag, {"resourceType": "Patient", "name": [{"family": "Mid00a"}]})
    gone = by_name["Mid05"]
    assert client.delete(f"/fhir/Patient/{gone}").status_code in (200, 204)
    # An update that leaves the sort value alone moves nothing.
    changed = client.get(f"/fhir/Patient/{by_name['Mid07']}").json()
    resp = client.put(f"/fhir/Patient/{changed['id']}", json={**changed, "gender": "female"},
                      headers={"Content-Type": "application/fhir+json"})
    assert resp.status_code == 200, resp.text

    nxt = link(first, "next")
    assert nxt is not None
    rest = _walk(client, follow(client, nxt), "next")
    seen = page_one + [i for page in rest for i in page]
    assert len(seen) == len(set(seen)), "a match was returned twice"
    unchanged = [by_name[n] for n in names if n != "Mid05"]
    assert seen == unchanged


def test_paging_newest_first_while_new_data_arrives(client: TestClient, tag: str) -> None:
    """`_sort=-_lastUpdated`: new resources sort before the cursor and must not shift pages."""
    old = []
    for _ in range(6):
        old.append(make(client, tag, {"resourceType": "Patient"}))
        time.sleep(0.002)  # distinct lastUpdated instants (millisecond precision)
    first = search(client, "Patient", tag, [("_sort", "-_lastUpdated"), ("_count", "2")])
    assert ids(first) == old[::-1][:2]
    for _ in range(3):
        make(client, tag, {"resourceType": "Patient"})
    nxt = link(first, "next")
    assert nxt is not None
    rest = _walk(client, follow(client, nxt), "next")
    assert ids(first) + [i for page in rest for i in page] == old[::-1]


def test_count_is_capped_at_the_server_maximum(client: TestClient, tag: str) -> None:
    for _ in range(201):
        make(client, tag, {"resourceType": "Patient"})
    bundle = search(client, "Patient", tag, [("_count", "500")])
    assert bundle["total"] == 201
    assert len(ids(bundle)) == 200
    self_link = link(bundle, "self")
    assert self_link is not None and ("_count", "200") in query_of(self_link)  # what was used
    nxt = link(bundle, "next")
    assert nxt is not None
    assert len(ids(follow(client, nxt))) == 1

    default = search(client, "Patient", tag)
    assert len(ids(default)) == 20  # default_page_size in the test settings

    only_total = search(client, "Patient", tag, [("_count", "0")])
    assert only_total["total"] == 201 and "entry" not in only_total


def test_bad_sort_count_and_cursor(client: TestClient, tag: str) -> None:
    for sort in ("unknown", "-", "name:exact", "_has", "family,,nonsense"):
        assert expressions(error(client, "Patient", [("_sort", sort)])) == ["_sort"], sort
    for count in ("-1", "abc", "1.5", ""):
        assert expressions(error(client, "Patient", [("_count", count)])) == ["_count"], count
    for cursor in ("not-a-cursor!", "e30", base64.urlsafe_b64encode(b'{"v": 1}').decode()):
        assert expressions(error(client, "Patient", [("_cursor", cursor)])) == ["_cursor"], cursor


def test_cursor_from_another_search_is_rejected(client: TestClient, tag: str) -> None:
    """A cursor is a position in one ordering; replayed on another it is a client error."""
    for i in range(3):
        make(client, tag, {"resourceType": "Patient", "name": [{"family": f"X{i}"}],
                           "birthDate": f"198{i}-01-01"})
    by_date = search(client, "Patient", tag, [("_sort", "birthdate"), ("_count", "1")])
    url = link(by_date, "next")
    assert url is not None
    cursor = dict(query_of(url))["_cursor"]
    for sort in ("family", "_id", "gender", "-_lastUpdated,family"):
        outcome = error(client, "Patient", [("_sort", sort), ("_cursor", cursor), scope(tag)])
        assert expressions(outcome) == ["_cursor"], sort
    # A forged cursor that decodes but carries the wrong kind of value is refused too.
    token = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    for wrong in ("not a date", 3, None, [1, 2]):
        token["v"] = [wrong, *token["v"][1:]]
        forged = base64.urlsafe_b64encode(orjson.dumps(token)).decode()
        outcome = error(client, "Patient", [("_sort", "birthdate"), ("_cursor", forged)])
        assert expressions(outcome) == ["_cursor"], wrong
