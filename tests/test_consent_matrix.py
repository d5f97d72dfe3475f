"""The consent matrix: every role against every data category, on every path data leaves by.

One world per database: a patient per consent scenario, each with one resource per data category
(the profiles' own examples, so the labels are the ones the server computes), and one caller per
role. EXPECTED says, per scenario and role, which categories the caller may see; every path must
show exactly that, no more (nothing hidden leaks, not even its existence) and no less.

One test per (role, path) asks along that path about all scenarios' records at once and compares
the (scenario, column) items it got with the table, so a failure names the role and the path and
shows the cells that differ.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.access import consent_plan
from service.access.resolve import AccessCache
from service.config import Settings

from .consent_helpers import CATEGORIES, grant
from .consent_world import (
    CODES,
    PATIENT_ROLES,
    PROFESSIONALS,
    ROLES,
    TYPES,
    Actors,
    Record,
    build_actors,
    build_record,
    entries,
    patient_headers,
    post,
)
from .helpers import FHIR_JSON, TAG_SYSTEM

# -- the expectations ------------------------------------------------------------------------
#
# Columns: W work-context, F functional-capacity, A absence-benefits, S self-reported-health,
# M medical, P the Patient resource. A letter: visible on every path; "-": invisible on every
# path (404 where it is addressed directly, absent from every answer, matched by no criteria).

COLUMNS = (*CATEGORIES, "patient")
EXPECTED: dict[str, dict[str, str]] = {
    # Nobody but the patient sees anything without a consent.
    "no-consent": {
        "patient":                "W F A S M P",
        "pgo-app":                "W F A S M P",
        "oncologist":             "- - - - - -",
        "occupational-physician": "- - - - - -",
        "labour-expert":          "- - - - - -",
        "insurance-physician":    "- - - - - -",
        "employer":               "- - - - - -",
        "ehr-system":             "- - - - - -",
    },
    # One permit per professional without class or labels: the whole record, except what the
    # rules keep back (an employer only ever gets work context, issue 11; a labour expert no
    # medical through a broad grant).
    "broad": {
        "patient":                "W F A S M P",
        "pgo-app":                "W F A S M P",
        "oncologist":             "W F A S M P",
        "occupational-physician": "W F A S M P",
        "labour-expert":          "W F A S - P",
        "insurance-physician":    "W F A S M P",
        "employer":               "W - - - - P",
        "ehr-system":             "W F A S M P",
    },
    # Each professional gets the categories in BY_CATEGORY.
    "by-category": {
        "patient":                "W F A S M P",
        "pgo-app":                "W F A S M P",
        "oncologist":             "- - - S M P",
        "occupational-physician": "W F A - - P",
        "labour-expert":          "W F - - - P",
        "insurance-physician":    "- F A - M P",
        "employer":               "W - - - - P",
        "ehr-system":             "- - - - M P",
    },
    # Every category named explicitly, medical included: the labour expert now sees medical,
    # the employer still never does (issue 11: an employer gets only work context and the
    # employer summary, whatever the consent names).
    "explicit-all": {
        "patient":                "W F A S M P",
        "pgo-app":                "W F A S M P",
        "oncologist":             "W F A S M P",
        "occupational-physician": "W F A S M P",
        "labour-expert":          "W F A S M P",
        "insurance-physician":    "W F A S M P",
        "employer":               "W - - - - P",
        "ehr-system":             "W F A S M P",
    },
    # A broad permit with a nested deny of self-reported health.
    "deny-exception": {
        "patient":                "W F A S M P",
        "pgo-app":                "W F A S M P",
        "oncologist":             "W F A - M P",
        "occupational-physician": "W F A - M P",
        "labour-expert":          "W F A - - P",
        "insurance-physician":    "W F A - M P",
        "employer":               "W - - - - P",
        "ehr-system":             "W F A - M P",
    },
    # The broad consent, withdrawn by the patient (status inactive), deleted by the PGO app, or
    # with a period that has ended: as if there never was one.
    **{scenario: {
        "patient":                "W F A S M P",
        "pgo-app":                "W F A S M P",
        "oncologist":             "- - - - - -",
        "occupational-physician": "- - - - - -",
        "labour-expert":          "- - - - - -",
        "insurance-physician":    "- - - - - -",
        "employer":               "- - - - - -",
        "ehr-system":             "- - - - - -",
    } for scenario in ("withdrawn", "deleted", "expired")},
}
BY_CATEGORY = {
    "oncologist": ["medical", "self-reported-health"],
    "occupational-physician": ["work-context", "functional-capacity", "absence-benefits"],
    "labour-expert": ["work-context", "functional-capacity"],
    "insurance-physician": ["functional-capacity", "absence-benefits", "medical"],
    "employer": ["work-context", "absence-benefits"],
    "ehr-system": ["medical"],
}
EXPIRED = {"start": "2020-01-01", "end": "2021-01-01"}


def expected(scenario: str, role: str) -> set[str]:
    marks = EXPECTED[scenario][role].split()
    assert len(marks) == len(COLUMNS)
    return {column for column, mark in zip(COLUMNS, marks, strict=True) if mark != "-"}


def provisions(scenario: str, actors: Actors) -> list[dict[str, Any]] | None:
    """The Consent each scenario's patient writes (None: no consent at all)."""
    if scenario == "no-consent":
        return None
    if scenario == "by-category":
        return [actors.permit(r, labels=BY_CATEGORY[r]) for r in PROFESSIONALS]
    if scenario == "explicit-all":
        return actors.permits(labels=list(CATEGORIES))
    if scenario == "deny-exception":
        deny = {"type": "deny", "securityLabel": [
            {"system": "https://pgo-work.nl/fhir/CodeSystem/data-category",
             "code": "self-reported-health"}]}
        return actors.permits(exceptions=[deny])
    if scenario == "expired":
        return actors.permits(period=EXPIRED)
    return actors.permits()  # broad, and the two that are withdrawn afterwards


# -- the world -------------------------------------------------------------------------------

Item = tuple[str, str]
"""(scenario, column): one resource of the world."""


@dataclass
class World:
    records: dict[str, Record]
    """scenario -> its patient's record (all tagged with one world tag)."""
    headers: dict[str, dict[str, str]]
    """role -> Authorization header; the patient roles belong to the "broad" scenario's patient."""
    bodies: dict[Item, dict[str, Any]]
    """The stored resources, to send again in conditional creates."""
    tag: str
    family: str
    since: str

    def item(self, rtype: str, rid: str) -> Item | None:
        for scenario, record in self.records.items():
            key = record.key_of(rtype, rid)
            if key is not None:
                return scenario, key
        return None

    def items(self, resources: list[dict[str, Any]]) -> set[Item]:
        found = {self.item(r["resourceType"], r["id"]) for r in resources}
        return {i for i in found if i is not None}

    def targets(self, scenarios: tuple[str, ...] | None = None) -> list[tuple[Item, str, str]]:
        """(item, type, id) of every resource in these scenarios' records."""
        return [((s, key), rtype, rid) for s, r in self.records.items()
                if scenarios is None or s in scenarios
                for key, rtype, rid in [("patient", "Patient", r.patient),
                                        *[(c, TYPES[c], r.ids[c]) for c in CATEGORIES]]]

    @property
    def tag_query(self) -> str:
        return f"{TAG_SYSTEM}|{self.tag}"


PATIENT_WRITES = ("broad", "withdrawn", "deleted")
OWN_SCENARIO = "broad"
"""Whose patient the patient roles are: they must see all of their own record, whatever its
consents say, and nothing of the other patients' records."""


@pytest.fixture(scope="module")
def world(client: TestClient, anon: TestClient, settings: Settings) -> World:
    since = (datetime.now(UTC) - timedelta(seconds=1)).isoformat(timespec="seconds")
    run = uuid.uuid4().hex[:12]
    tag, family = f"matrix-{run}", f"Matrix{run}"
    actors = build_actors(client, anon, settings, f"{tag}-actors")
    records: dict[str, Record] = {}
    headers = dict(actors.headers)
    for scenario in EXPECTED:
        record = build_record(client, tag, family)
        wanted = provisions(scenario, actors)
        # The patient writes their own consent (tagged apart: it is not part of the record);
        # tokens cost time, so the operator writes the ones no patient token is needed for.
        own = patient_headers(settings, record.patient) if scenario in PATIENT_WRITES else None
        if wanted is not None:
            consent = grant(client, record.patient, wanted, f"{tag}-consent",
                            headers=own["patient"] if own else None)
            if scenario == "withdrawn":
                assert own is not None
                resp = client.put(f"/fhir/Consent/{consent['id']}", json={**consent, "status": "inactive"},
                                  headers={**FHIR_JSON, **own["patient"]})
                assert resp.status_code == 200, resp.text
            elif scenario == "deleted":
                assert own is not None
                resp = client.delete(f"/fhir/Consent/{consent['id']}", headers=own["pgo-app"])
                assert resp.status_code == 204, resp.text
        records[scenario] = record
        if scenario == OWN_SCENARIO:
            assert own is not None
            headers.update(own)
    bodies = {(s, c): body for s, r in records.items() for c, body in r.bodies.items()}
    return World(records, headers, bodies, tag, family, since)


def visible_to(role: str) -> dict[str, set[str]]:
    """scenario -> the columns of that scenario's record the role may see."""
    if role in PATIENT_ROLES:
        return {s: (expected(s, role) if s == OWN_SCENARIO else set()) for s in EXPECTED}
    return {s: expected(s, role) for s in EXPECTED}


def test_the_examples_carry_exactly_their_category(client: TestClient, world: World) -> None:
    """The matrix is only meaningful if each resource carries its own category label only."""
    for item, body in world.bodies.items():
        labels = [s["code"] for s in body["meta"]["security"] if s["system"].endswith("/data-category")]
        assert labels == [item[1]], item


# -- the paths -------------------------------------------------------------------------------
#
# Each probe asks the server, with one caller's token, along one path, and returns the items it
# revealed. Per-resource interactions other than read are probed on the record of PER_RESOURCE
# (the scenario where visibility differs most between roles and categories); read and every
# path that answers with a set of resources cover all scenarios at once.

PER_RESOURCE = ("by-category",)
Probe = Callable[[TestClient, dict[str, str], World], set[Item]]


def _status(resp: Any, visible: int, hidden: tuple[int, ...] = (404,)) -> bool:
    assert resp.status_code in (visible, *hidden), f"{resp.request.url}: {resp.status_code} {resp.text}"
    return bool(resp.status_code == visible)


def _get(c: TestClient, h: dict[str, str], url: str, **params: Any) -> dict[str, Any]:
    resp = c.get(url if url.startswith("http") else f"/fhir/{url}", params=params or None, headers=h)
    assert resp.status_code == 200, f"{url}: {resp.status_code} {resp.text}"
    body: dict[str, Any] = resp.json()
    return body


def _all_pages(c: TestClient, h: dict[str, str], first: dict[str, Any],
               audited: bool = False) -> list[dict[str, Any]]:
    """The entries of every page, following `next`; each page agrees on the total. With
    `audited` the pages list AuditEvents of the caller's own record too, and each page request
    adds one: the total may grow by one per page fetched, and by nothing else."""
    page, found = first, entries(first)
    for fetched in range(1, 51):
        following = [link["url"] for link in page["link"] if link["relation"] == "next"]
        if not following:
            return found
        page = _get(c, h, following[0])
        if audited:
            assert first["total"] <= page["total"] <= first["total"] + fetched
        else:
            assert page.get("total") == first.get("total")
        found += entries(page)
    raise AssertionError("more pages than expected")


def read(c: TestClient, h: dict[str, str], w: World) -> set[Item]:
    return {i for i, t, rid in w.targets() if _status(c.get(f"/fhir/{t}/{rid}", headers=h), 200)}


def vread(c: TestClient, h: dict[str, str], w: World) -> set[Item]:
    return {i for i, t, rid in w.targets(PER_RESOURCE)
            if _status(c.get(f"/fhir/{t}/{rid}/_history/1", headers=h), 200)}


def instance_history(c: TestClient, h: dict[str, str], w: World) -> set[Item]:
    return {i for i, t, rid in w.targets(PER_RESOURCE)
            if _status(c.get(f"/fhir/{t}/{rid}/_history", headers=h), 200)}


def validate_stored(c: TestClient, h: dict[str, str], w: World) -> set[Item]:
    return {i for i, t, rid in w.targets(PER_RESOURCE)
            if _status(c.get(f"/fhir/{t}/{rid}/$validate", headers=h), 200)}


def conditional_create(c: TestClient, h: dict[str, str], w: World) -> set[Item]:
    """If-None-Exist matches only what the caller may see: a hidden match is no match, and the
    create then needs a write permit no one here has (403)."""
    out = set()
    for item, rtype, rid in w.targets(PER_RESOURCE):
        body = dict(w.bodies[item]) if item[1] != "patient" else {
            "resourceType": "Patient", "name": [{"family": w.family}]}
        body.pop("id", None)
        body.pop("meta", None)
        if _status(post(c, rtype, body, h, {"If-None-Exist": f"_id={rid}"}), 200, (403,)):
            out.add(item)
    return out


def conditional_delete(c: TestClient, h: dict[str, str], w: World) -> set[Item]:
    """A visible match without a write permit is 403; a hidden one is no match at all (204)."""
    return {i for i, t, rid in w.targets(PER_RESOURCE)
            if _status(c.delete(f"/fhir/{t}", params={"_id": rid}, headers=h), 403, (204,))}


def search_paged(c: TestClient, h: dict[str, str], w: World) -> set[Item]:
    """Five per page: the total, `_summary=count` and the pages all match what may be seen."""
    first = _get(c, h, "", _tag=w.tag_query, _count=5)
    found = _all_pages(c, h, first)
    assert all(len(entries(p)) <= 5 for p in [first])
    assert len(found) == first["total"] == len({(r["resourceType"], r["id"]) for r in found})
    count = _get(c, h, "", _tag=w.tag_query, _summary="count")
    assert count["total"] == first["total"] and "entry" not in count
    return w.items(found)


def compartment_search(c: TestClient, h: dict[str, str], w: World) -> set[Item]:
    patients = ",".join(r.patient for r in w.records.values())
    found: list[dict[str, Any]] = []
    for rtype in ("Observation", "Condition"):
        bundle = _get(c, h, rtype, patient=patients, _count=50)
        assert bundle["total"] == len(entries(bundle))
        found += entries(bundle)
    return w.items(found + entries(_get(c, h, "Patient", _id=patients, _count=50)))


def include(c: TestClient, h: dict[str, str], w: World) -> set[Item]:
    """Includes through `focus` (the diagnosis), `has-member` (the late-effect report) and
    `subject`: an included resource is shown only to whoever may see it."""
    first = _get(c, h, "Observation", _tag=w.tag_query, _count=50,
                 _include=["Observation:focus", "Observation:has-member", "Observation:subject"])
    return w.items(entries(first))


def revinclude(c: TestClient, h: dict[str, str], w: World) -> set[Item]:
    first = _get(c, h, "Patient", _tag=w.tag_query, _count=50,
                 _revinclude=["Observation:subject", "Condition:subject"])
    return w.items(entries(first))


def has(c: TestClient, h: dict[str, str], w: World) -> set[Item]:
    """`_has` must not tell whether a patient has a resource the caller may not see."""
    out = set()
    for category in CATEGORIES:
        bundle = _get(c, h, "Patient", _tag=w.tag_query, _count=50,
                      **{f"_has:{TYPES[category]}:subject:code": CODES[category]})
        out |= {(s, category) for s, _ in w.items(entries(bundle))}
    return out


def chain(c: TestClient, h: dict[str, str], w: World) -> set[Item]:
    """Chained criteria through a hidden resource match nothing: the work-context Observation
    is found by its focus's code only when the diagnosis is visible too."""
    out = w.items(entries(_get(c, h, "Observation", _tag=w.tag_query, _count=50,
                               **{"focus:Condition.code": CODES["medical"]})))
    out |= w.items(entries(_get(c, h, "Observation", _tag=w.tag_query, _count=50,
                                **{"has-member:Observation.code": CODES["self-reported-health"]})))
    out |= w.items(entries(_get(c, h, "Condition", _tag=w.tag_query, _count=50,
                                **{"subject:Patient.family": w.family})))
    return out


def history(c: TestClient, h: dict[str, str], w: World) -> set[Item]:
    """Type and system history since the world was built."""
    found: list[dict[str, Any]] = []
    for path in ("Condition/_history", "Observation/_history", "Patient/_history", "_history"):
        found += _all_pages(c, h, _get(c, h, path, _since=w.since, _count=200),
                            audited=path == "_history")
    return w.items(found)


def batch(c: TestClient, h: dict[str, str], w: World) -> set[Item]:
    """Each batch entry is answered as if it were its own request: 200 or 404 per entry."""
    targets = w.targets(PER_RESOURCE)
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"{t}/{rid}"}} for _, t, rid in targets]}
    resp = post(c, "", bundle, h)
    assert resp.status_code == 200, resp.text
    out = set()
    for (item, _, _), entry in zip(targets, resp.json()["entry"], strict=True):
        status = entry["response"]["status"].split()[0]
        assert status in ("200", "404"), entry
        if status == "200":
            out.add(item)
    return out


def transaction(c: TestClient, h: dict[str, str], w: World) -> set[Item]:
    """Searches inside a transaction see what the caller may see."""
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": f"{t}?_tag={w.tag_query}&_count=50"}}
        for t in ("Patient", "Observation", "Condition")]}
    resp = post(c, "", bundle, h)
    assert resp.status_code == 200, resp.text
    return w.items([r for e in resp.json()["entry"] for r in entries(e["resource"])])


def everything(c: TestClient, h: dict[str, str], w: World) -> set[Item]:
    out: set[Item] = set()
    for record in w.records.values():
        resp = c.get(f"/fhir/Patient/{record.patient}/$everything", headers=h)
        if _status(resp, 200):
            bundle = resp.json()
            assert bundle["total"] == len(entries(bundle))
            out |= w.items(entries(bundle))
    return out


PATHS: dict[str, Probe] = {p.__name__: p for p in (
    read, vread, instance_history, validate_stored, conditional_create, conditional_delete,
    search_paged, compartment_search, include, revinclude, has, chain, history, batch,
    transaction, everything)}
PROFESSIONAL_ONLY = {"conditional_delete"}
"""The patient may delete their own data; that probe would."""


def expected_on(path: str, visible: dict[str, set[str]]) -> set[Item]:
    """What a path shows, given what the caller may see of each scenario's record."""
    out: set[Item] = set()
    for scenario, shown in visible.items():
        if PATHS[path] in (vread, instance_history, validate_stored, conditional_create,
                           conditional_delete, batch) and scenario not in PER_RESOURCE:
            continue
        out |= {(scenario, key) for key in _shown_on(path, shown)}
    return out


def _shown_on(path: str, visible: set[str]) -> set[str]:
    observations = visible & {c for c in CATEGORIES if TYPES[c] == "Observation"}
    if path == "has":
        return visible & set(CATEGORIES)
    if path == "include":
        # The matched Observations, their subject, and the diagnosis as the focus of the
        # work-context Observation (the late-effect report is a member and a match itself).
        focus = {"medical"} if {"work-context", "medical"} <= visible else set()
        return observations | focus | ({"patient"} if observations else set())
    if path == "chain":
        shown = {"medical"} & visible
        if {"work-context", "medical"} <= visible:
            shown.add("work-context")
        if {"functional-capacity", "self-reported-health"} <= visible:
            shown.add("functional-capacity")
        return shown
    if path in ("revinclude", "everything"):
        return visible if "patient" in visible else set()
    return visible


MATRIX = [(role, path) for role in ROLES for path in PATHS
          if role in PROFESSIONALS or path not in PROFESSIONAL_ONLY]


@pytest.fixture(params=["lists", "live"])
def lookup(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, anon: TestClient) -> str:
    """How the consent SQL finds a group's patients: bound as a list, or (as it does for a
    caller with many alike consents) looked up live in the database for the largest group.
    The instance starts with an empty cache, so what it decides is decided this way."""
    if request.param == "live":
        monkeypatch.setattr(consent_plan, "LIVE_FROM", 1)
    monkeypatch.setattr(anon.app.state.runtime, "access_cache", AccessCache())  # type: ignore[attr-defined]
    return str(request.param)


@pytest.mark.parametrize(("role", "path"), MATRIX, ids=[f"{r}-{p}" for r, p in MATRIX])
def test_matrix(anon: TestClient, world: World, role: str, path: str, lookup: str) -> None:
    seen = PATHS[path](anon, world.headers[role], world)
    assert sorted(seen) == sorted(expected_on(path, visible_to(role)))
