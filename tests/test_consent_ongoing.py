"""Ongoing data has an open-ended clinical time (issue 12, L4 follow-up).

A version's clinical time ran from its earliest to its latest clinical date, so an active
Condition with its onset in 2019 and no abatement spanned 2019 only: a patient's "deny
dataPeriod 2020" left it readable although it was (and is) their condition during 2020, and a
permit limited to 2020 granted an active Condition with its onset in February 2020 as if it
had ended then. The rule `clinical-date-ongoing` on the type's clinical-date SearchParameter
(profiles/access) now gives such versions an open end.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from service.store.database import create_engine
from service.store.migrate import upgrade

from .conftest import DATABASES, make_database
from .consent_helpers import grant
from .consent_world import Actors, Record, entries
from .helpers import FHIR_JSON, TAG_SYSTEM, create, tagged

SNOMED = "http://snomed.info/sct"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
DENIED_2020 = {"start": "2020-01-01", "end": "2020-12-31"}


def _status_code(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _condition(record: Record, status: str | None = None, **timing: Any) -> dict[str, Any]:
    condition: dict[str, Any] = {
        "resourceType": "Condition",
        "code": {"coding": [{"system": SNOMED, "code": "35489007"}]},
        "subject": {"reference": f"Patient/{record.patient}"}, **timing}
    if status:
        condition["clinicalStatus"] = _status_code(CLINICAL, status)
    return tagged(condition, record.tag)


def _goal(record: Record, lifecycle: str, **timing: Any) -> dict[str, Any]:
    return tagged({
        "resourceType": "Goal", "lifecycleStatus": lifecycle,
        "description": {"text": "Back to work for 20 hours a week"},
        "subject": {"reference": f"Patient/{record.patient}"}, **timing}, record.tag)


def _ref(client: TestClient, resource: dict[str, Any]) -> str:
    stored = create(client, resource)
    return f"{stored['resourceType']}/{stored['id']}"


def _update(client: TestClient, path: str, resource: dict[str, Any]) -> None:
    resp = client.put(f"/fhir/{path}", json={**resource, "id": path.split("/")[1]},
                      headers=FHIR_JSON)
    assert resp.status_code == 200, resp.text


def _status(anon: TestClient, path: str, headers: dict[str, str]) -> int:
    return int(anon.get(f"/fhir/{path}", headers=headers).status_code)


def _searched(anon: TestClient, rtype: str, record: Record, headers: dict[str, str]) -> set[str]:
    found = anon.get(f"/fhir/{rtype}", params={"_tag": record.tag_query}, headers=headers)
    assert found.status_code == 200, found.text
    return {f"{rtype}/{r['id']}" for r in entries(found.json())}


def _deny_2020(client: TestClient, actors: Actors, record: Record) -> dict[str, str]:
    grant(client, record.patient, [actors.permit(
        "oncologist", exceptions=[{"type": "deny", "dataPeriod": DENIED_2020}])], record.tag)
    return actors.headers["oncologist"]


def test_a_deny_on_a_later_period_hides_data_that_is_still_going_on(
        anon: TestClient, client: TestClient, actors: Actors, record: Record) -> None:
    """Deny 2020: what began in 2019 and still goes on is hidden (read, vread, history,
    search); what began in 2019 and ended in 2019 stays visible."""
    oncologist = _deny_2020(client, actors, record)
    pid = record.patient
    hidden = {
        "active condition since 2019": _ref(client, _condition(
            record, "active", onsetDateTime="2019-03-01", recordedDate="2019-03-02")),
        "condition since 2019, status not recorded": _ref(client, _condition(
            record, onsetDateTime="2019-03-01")),
        "active goal since 2019": _ref(client, _goal(record, "active", startDate="2019-09-01")),
        "medication taken since 2019": _ref(client, tagged({
            "resourceType": "MedicationStatement", "status": "active",
            "medicationCodeableConcept": {"text": "methylfenidaat"},
            "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": "2019-10-01"}, record.tag)),
        "active allergy since 2019": _ref(client, tagged({
            "resourceType": "AllergyIntolerance",
            "clinicalStatus": _status_code(
                "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active"),
            "code": {"text": "latex"}, "patient": {"reference": f"Patient/{pid}"},
            "onsetDateTime": "2019-05-01"}, record.tag)),
    }
    visible = {
        "condition resolved in 2019": _ref(client, _condition(
            record, "resolved", onsetDateTime="2019-03-01", abatementDateTime="2019-06")),
        "goal completed in 2019": _ref(client, _goal(
            record, "completed", startDate="2019-02-01", statusDate="2019-08-01")),
        "medication stopped in 2019": _ref(client, tagged({
            "resourceType": "MedicationStatement", "status": "completed",
            "medicationCodeableConcept": {"text": "oxazepam"},
            "subject": {"reference": f"Patient/{pid}"},
            "effectivePeriod": {"start": "2019-01-01", "end": "2019-04-01"}}, record.tag)),
    }

    for name, ref in hidden.items():
        assert _status(anon, ref, oncologist) == 404, name
        assert _status(anon, f"{ref}/_history/1", oncologist) == 404, name
        assert _status(anon, f"{ref}/_history", oncologist) == 404, name
    for name, ref in visible.items():
        assert _status(anon, ref, oncologist) == 200, name
        assert _status(anon, f"{ref}/_history/1", oncologist) == 200, name
    for rtype in ("Condition", "Goal", "MedicationStatement", "AllergyIntolerance"):
        got = _searched(anon, rtype, record, oncologist)
        assert not got & set(hidden.values()), rtype
        assert {r for r in visible.values() if r.startswith(rtype + "/")} <= got, rtype


def test_a_period_without_end_is_open_for_every_type_that_has_one(
        anon: TestClient, client: TestClient, actors: Actors, record: Record) -> None:
    """CarePlan, EpisodeOfCare, Encounter, Flag and Coverage say they go on by a `period`
    without `end`: that is open already, without a rule (and must stay so)."""
    oncologist = _deny_2020(client, actors, record)
    pid = record.patient
    since_2019 = {"start": "2019-04-01"}
    subject = {"reference": f"Patient/{pid}"}
    ongoing = [
        {"resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": subject,
         "period": since_2019},
        {"resourceType": "EpisodeOfCare", "status": "active", "patient": subject,
         "period": since_2019},
        {"resourceType": "Encounter", "status": "in-progress", "subject": subject,
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
         "period": since_2019},
        {"resourceType": "Flag", "status": "active", "code": {"text": "werkhervatting"},
         "subject": subject, "period": since_2019},
        {"resourceType": "Coverage", "status": "active", "beneficiary": subject,
         "payor": [subject], "period": since_2019},
    ]
    for resource in ongoing:
        ref = _ref(client, tagged(resource, record.tag))
        assert _status(anon, ref, oncologist) == 404, ref
        assert ref not in _searched(anon, resource["resourceType"], record, oncologist), ref


def test_each_version_is_judged_by_whether_it_was_still_going_on(
        anon: TestClient, client: TestClient, actors: Actors, record: Record) -> None:
    """Recorded as active, later as resolved in 2019: under deny 2020 the first version is
    hidden and the resolved one visible; and the other way round."""
    oncologist = _deny_2020(client, actors, record)
    active = _condition(record, "active", onsetDateTime="2019-03-01")
    resolved = _condition(record, "resolved", onsetDateTime="2019-03-01",
                          abatementDateTime="2019-06")
    healed = _ref(client, active)
    _update(client, healed, resolved)
    relapsed = _ref(client, resolved)
    _update(client, relapsed, active)

    assert _status(anon, healed, oncologist) == 200
    assert _status(anon, f"{healed}/_history/1", oncologist) == 404
    assert _status(anon, f"{healed}/_history/2", oncologist) == 200
    history = anon.get(f"/fhir/{healed}/_history", headers=oncologist).json()
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2"]
    assert _status(anon, relapsed, oncologist) == 404
    assert _status(anon, f"{relapsed}/_history/1", oncologist) == 200
    assert _status(anon, f"{relapsed}/_history/2", oncologist) == 404


def test_a_permit_limited_to_a_period_never_grants_what_still_goes_on(
        anon: TestClient, client: TestClient, actors: Actors, record: Record) -> None:
    """Permit 2020 only: an active Condition with its onset in February 2020 runs beyond
    2020 and is not granted; the same Condition resolved in May 2020 is."""
    provision = actors.permit("oncologist")
    provision["dataPeriod"] = DENIED_2020
    grant(client, record.patient, [provision], record.tag)
    oncologist = actors.headers["oncologist"]
    ongoing = _ref(client, _condition(record, "active", onsetDateTime="2020-02-01",
                                      recordedDate="2020-02-03"))
    unknown_status = _ref(client, _condition(record, onsetDateTime="2020-02-01"))
    goal = _ref(client, _goal(record, "active", startDate="2020-02-01"))
    ended = _ref(client, _condition(record, "resolved", onsetDateTime="2020-02-01",
                                    abatementDateTime="2020-05-01"))

    for ref in (ongoing, unknown_status, goal):
        assert _status(anon, ref, oncologist) == 404, ref
        assert _status(anon, f"{ref}/_history/1", oncologist) == 404, ref
    assert _status(anon, ended, oncologist) == 200
    got = _searched(anon, "Condition", record, oncologist)
    assert ended in got
    assert not got & {ongoing, unknown_status}


# -- existing data: the migration opens the end of stored ongoing versions ---------------------
@pytest.mark.parametrize("kind", DATABASES)
def test_the_migration_opens_the_end_of_stored_ongoing_versions(kind: str,
                                                                 tmp_path: Path) -> None:
    """Versions stored before the rule: an active Condition's version and the deletion after
    it get an open end; a resolved version keeps its own span; other types are left alone."""
    url, drop = make_database(kind, tmp_path)
    tag = {"meta": {"tag": [{"system": TAG_SYSTEM, "code": "migration"}]}}
    active = {"resourceType": "Condition", "id": "c1", "onsetDateTime": "2019-03-01",
              "clinicalStatus": _status_code(CLINICAL, "active"), **tag}
    resolved = {**active, "clinicalStatus": _status_code(CLINICAL, "resolved"),
                "abatementDateTime": "2019-06-01"}
    observation = {"resourceType": "Observation", "id": "o1", "status": "final",
                   "code": {"text": "x"}, "effectiveDateTime": "2019-03-01", **tag}

    async def store(conn: Any, rtype: str, rid: str,
                    versions: list[dict[str, Any] | None]) -> None:
        pk = (await conn.execute(text(
            "INSERT INTO resource (resource_type, id, version_id, last_updated, deleted, "
            "content) VALUES (:t, :i, :v, '2026-01-01 00:00:00', :d, NULL) RETURNING pk"),
            {"t": rtype, "i": rid, "v": len(versions), "d": versions[-1] is None})).scalar_one()
        for version, content in enumerate(versions, start=1):
            await conn.execute(text(
                "INSERT INTO resource_version (resource_pk, resource_type, id, version_id, "
                "last_updated, method, content) VALUES (:pk, :t, :i, :v, "
                "'2026-01-01 00:00:00', 'PUT', :c)"),
                {"pk": pk, "t": rtype, "i": rid, "v": version,
                 "c": orjson.dumps(content).decode() if content else None})
            # the facts as the server wrote them before the rule: the span of the dates only
            dated = content or versions[version - 2]
            assert dated is not None
            high = datetime(2019, 6, 1, 23, 59, 59) if "abatementDateTime" in dated else \
                datetime(2019, 3, 1, 23, 59, 59)
            await conn.execute(text(
                "INSERT INTO version_period (resource_pk, version_id, low, high) "
                "VALUES (:pk, :v, :l, :h)"),
                {"pk": pk, "v": version, "l": datetime(2019, 3, 1), "h": high})

    async def run() -> list[tuple[str, int, str]]:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                await store(conn, "Condition", "c1", [resolved, active, None])
                await store(conn, "Observation", "o1", [observation])
            await asyncio.to_thread(upgrade, url)
            async with engine.connect() as conn:
                rows = (await conn.execute(text(
                    "SELECT r.id, p.version_id, p.high FROM version_period p "
                    "JOIN resource r ON r.pk = p.resource_pk "
                    "ORDER BY r.id, p.version_id, p.high"))).all()
            return sorted({(r[0], r[1], str(r[2])[:4]) for r in rows})  # the year it ends
        finally:
            await engine.dispose()

    try:
        upgrade(url, "0007")
        assert asyncio.run(run()) == [
            ("c1", 1, "2019"),
            ("c1", 2, "2019"), ("c1", 2, "9999"),
            ("c1", 3, "2019"), ("c1", 3, "9999"),
            ("o1", 1, "2019"),
        ]
    finally:
        drop()
