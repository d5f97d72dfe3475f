"""Conditional writes are atomic among themselves (issue 14): parallel clients with one condition.

20 clients at once send the same conditional create (`If-None-Exist`) or conditional update
(`PUT Patient?identifier=...`) to a real server over real sockets. Without a lock the match
count and the write of each request interleave under PostgreSQL's READ COMMITTED and several
Patients appear (after which every conditional write on that identifier fails with 412). On
SQLite writers queue (`BEGIN IMMEDIATE` and a busy timeout); the same test holds it to that.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier
from typing import Any

import httpx
import pytest

from service.config import Settings

from .conftest import system_token
from .live_server import live_server

PARALLEL = 20
SYSTEM = "urn:pgo-work:test:conditional-atomic"


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[tuple[str, dict[str, str]]]:
    with live_server(settings) as base:
        token = system_token(settings.model_copy(update={"base_url": base}))
        yield base, {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json",
                     "Content-Type": "application/fhir+json"}


def _parallel(send: Any) -> list[httpx.Response]:
    """Run `send(client, i)` in PARALLEL threads released at the same moment."""
    start = Barrier(PARALLEL)

    def one(i: int) -> httpx.Response:
        with httpx.Client(timeout=60) as c:
            start.wait()
            return send(c, i)

    with ThreadPoolExecutor(PARALLEL) as pool:
        return list(pool.map(one, range(PARALLEL)))


def _patient(identifier: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": identifier}],
            **extra}


def _matches(base: str, headers: dict[str, str], identifier: str) -> list[dict[str, Any]]:
    bundle = httpx.get(f"{base}/Patient", params={"identifier": f"{SYSTEM}|{identifier}"},
                       headers=headers).json()
    return [e["resource"] for e in bundle.get("entry", [])]


def test_parallel_conditional_creates_make_one_resource(server: tuple[str, dict[str, str]],
                                                        tag: str) -> None:
    base, headers = server
    condition = f"identifier={SYSTEM}|{tag}"
    answers = _parallel(lambda c, i: c.post(f"{base}/Patient", json=_patient(tag),
                                            headers={**headers, "If-None-Exist": condition}))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] * (PARALLEL - 1) + [201], statuses
    assert len({r.json()["id"] for r in answers}) == 1
    assert len(_matches(base, headers, tag)) == 1
    # The identifier still works: one match, so a further conditional create answers 200.
    again = httpx.post(f"{base}/Patient", json=_patient(tag),
                       headers={**headers, "If-None-Exist": condition})
    assert again.status_code == 200, again.text


def test_parallel_conditional_updates_make_one_resource(server: tuple[str, dict[str, str]],
                                                        tag: str) -> None:
    base, headers = server
    url = f"{base}/Patient?identifier={SYSTEM}|{tag}"
    answers = _parallel(lambda c, i: c.put(url, json=_patient(tag, gender="other",
                                                              birthDate=f"1980-01-{i + 1:02d}"),
                                           headers=headers))
    statuses = [r.status_code for r in answers]
    assert all(s in (200, 201) for s in statuses), statuses
    assert statuses.count(201) == 1, statuses
    found = _matches(base, headers, tag)
    assert len(found) == 1, [p["id"] for p in found]
    history = httpx.get(f"{base}/Patient/{found[0]['id']}/_history", params={"_count": 100},
                        headers=headers).json()
    assert history["total"] == PARALLEL == int(found[0]["meta"]["versionId"])


def test_parallel_conditional_deletes_and_creates_leave_no_duplicate(
        server: tuple[str, dict[str, str]], tag: str) -> None:
    """Creates racing deletes on one condition: never two live resources, never a 5xx."""
    base, headers = server
    condition = f"identifier={SYSTEM}|{tag}"

    def send(c: httpx.Client, i: int) -> httpx.Response:
        if i % 2:
            return c.delete(f"{base}/Patient?{condition}", headers=headers)
        return c.post(f"{base}/Patient", json=_patient(tag),
                      headers={**headers, "If-None-Exist": condition})

    answers = _parallel(send)
    assert all(r.status_code in (200, 201, 204) for r in answers), [
        (r.status_code, r.text[:200]) for r in answers if r.status_code not in (200, 201, 204)]
    assert len(_matches(base, headers, tag)) <= 1


def test_parallel_transactions_with_conditional_entries(server: tuple[str, dict[str, str]],
                                                        tag: str) -> None:
    """Transaction Bundles whose conditional creates name the same two identifiers in opposite
    order: one Patient per identifier, no deadlock, no 5xx."""
    base, headers = server
    first, second = f"{tag}-a", f"{tag}-b"

    def entry(identifier: str) -> dict[str, Any]:
        return {"resource": _patient(identifier), "request": {
            "method": "POST", "url": "Patient", "ifNoneExist": f"identifier={SYSTEM}|{identifier}"}}

    def send(c: httpx.Client, i: int) -> httpx.Response:
        pair = [entry(first), entry(second)] if i % 2 else [entry(second), entry(first)]
        return c.post(base, json={"resourceType": "Bundle", "type": "transaction", "entry": pair},
                      headers=headers)

    answers = _parallel(send)
    assert all(r.status_code == 200 for r in answers), [
        (r.status_code, r.text[:300]) for r in answers if r.status_code != 200]
    assert len(_matches(base, headers, first)) == 1
    assert len(_matches(base, headers, second)) == 1
