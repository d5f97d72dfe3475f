"""Consent judges every version by its own content, and a data period by overlap (issue 12, L3
and L4).

L3: a provision's `code` was judged by the current version's codes, and a delete cleared them:
an insurance physician permitted one SNOMED code read `_history/1` whose code was another, and
a "deny code X" no longer protected the versions that had it once the resource was recoded or
deleted. L4: a deny with `dataPeriod` looked only at `*.date`/`*.authored` and only at data
wholly inside the period, so a Condition with its onset in the period, a Goal starting in it
and an Observation whose effectivePeriod overlaps it stayed readable.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from service.config import Settings
from service.store.database import create_engine
from service.store.migrate import upgrade

from .auth_helpers import auth, token
from .conftest import DATABASES, make_database
from .consent_helpers import grant
from .consent_world import Actors, Record, entries
from .helpers import FHIR_JSON, TAG_SYSTEM, create, tagged

SNOMED = "http://snomed.info/sct"
FATIGUE = "84229001"
"""The code the insurance physician is permitted (fatigue)."""
DEPRESSION = "35489007"
"""A code the patient keeps from them (depressive disorder)."""
DENIED_2020 = {"start": "2020-01-01", "end": "2020-12-31"}


def _observation(tag: str, patient_id: str, code: str, **timing: Any) -> dict[str, Any]:
    return tagged({
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": SNOMED, "code": code}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "valueBoolean": True, **timing}, tag)


def _condition(tag: str, patient_id: str, **timing: Any) -> dict[str, Any]:
    return tagged({
        "resourceType": "Condition",
        "code": {"coding": [{"system": SNOMED, "code": DEPRESSION}]},
        "subject": {"reference": f"Patient/{patient_id}"}, **timing}, tag)


def _goal(tag: str, patient_id: str, start: str) -> dict[str, Any]:
    return tagged({
        "resourceType": "Goal", "lifecycleStatus": "active",
        "description": {"text": "Back to work for 20 hours a week"},
        "subject": {"reference": f"Patient/{patient_id}"}, "startDate": start}, tag)


def _update(client: TestClient, resource: dict[str, Any]) -> dict[str, Any]:
    resp = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource,
                      headers=FHIR_JSON)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _code_permit(actors: Actors, role: str, code: str) -> dict[str, Any]:
    provision = actors.permit(role, types=["Observation"])
    provision["code"] = [{"coding": [{"system": SNOMED, "code": code}]}]
    return provision


def _deny(**narrowing: Any) -> dict[str, Any]:
    return {"type": "deny", **narrowing}


def _versions(anon: TestClient, path: str, headers: dict[str, str]) -> list[tuple[str, str]]:
    """(id, versionId) of every entry of a history the caller gets, deletions included."""
    resp = anon.get(f"/fhir/{path}", params={"_count": "100"}, headers=headers)
    assert resp.status_code == 200, resp.text
    out = []
    for entry in resp.json().get("entry", []):
        if "resource" in entry:
            out.append((entry["resource"]["id"], entry["resource"]["meta"]["versionId"]))
        else:  # a deletion: only its request URL says which
            parts = entry["request"]["url"].split("/")
            out.append((parts[1], (entry.get("response") or {}).get("etag", "?")))
    return out


def _ids(versions: list[tuple[str, str]]) -> set[str]:
    return {rid for rid, _ in versions}


def _status(anon: TestClient, path: str, headers: dict[str, str]) -> int:
    return int(anon.get(f"/fhir/{path}", headers=headers).status_code)


# -- L3: versions judged by their own codes ---------------------------------------------------
def test_a_code_permit_never_grants_an_old_version_with_another_code(
        anon: TestClient, client: TestClient, actors: Actors, record: Record) -> None:
    """The repro: permitted only fatigue, the insurance physician reads the recoded
    Observation's current version, never its first version, coded as depression."""
    grant(client, record.patient, [_code_permit(actors, "insurance-physician", FATIGUE)],
          record.tag)
    first = create(client, _observation(record.tag, record.patient, DEPRESSION,
                                        effectiveDateTime="2025-05-01"))
    second = _update(client, {**first, "code": {"coding": [{"system": SNOMED, "code": FATIGUE}]}})
    physician = actors.headers["insurance-physician"]
    path = f"Observation/{first['id']}"

    assert anon.get(f"/fhir/{path}", headers=physician).json()["meta"]["versionId"] == "2"
    assert _status(anon, f"{path}/_history/2", physician) == 200
    assert _status(anon, f"{path}/_history/1", physician) == 404
    assert _versions(anon, f"{path}/_history", physician) == [(first["id"], "2")]
    since = {"_since": first["meta"]["lastUpdated"], "_count": "100"}
    typed = anon.get("/fhir/Observation/_history", params=since, headers=physician).json()
    seen = [(e["resource"]["id"], e["resource"]["meta"]["versionId"])
            for e in typed.get("entry", []) if e.get("resource", {}).get("id") == first["id"]]
    assert seen == [(first["id"], second["meta"]["versionId"])]


def test_a_code_deny_still_protects_old_versions_after_a_recode(
        anon: TestClient, client: TestClient, actors: Actors, record: Record) -> None:
    coded_out = _deny(code=[{"coding": [{"system": SNOMED, "code": DEPRESSION}]}])
    grant(client, record.patient, [actors.permit("oncologist", exceptions=[coded_out])],
          record.tag)
    first = create(client, _observation(record.tag, record.patient, DEPRESSION,
                                        effectiveDateTime="2025-05-01"))
    _update(client, {**first, "code": {"coding": [{"system": SNOMED, "code": FATIGUE}]}})
    oncologist = actors.headers["oncologist"]
    path = f"Observation/{first['id']}"

    assert _status(anon, path, oncologist) == 200
    assert _status(anon, f"{path}/_history/1", oncologist) == 404
    assert _versions(anon, f"{path}/_history", oncologist) == [(first["id"], "2")]


def test_a_code_deny_still_protects_old_versions_after_a_delete(
        anon: TestClient, client: TestClient, actors: Actors, record: Record) -> None:
    """A deletion is judged by what it deleted: the denied Observation's versions, its
    deletion and the fact that it existed all stay hidden; an allowed one's stay visible."""
    coded_out = _deny(code=[{"coding": [{"system": SNOMED, "code": DEPRESSION}]}])
    grant(client, record.patient, [actors.permit("oncologist", exceptions=[coded_out])],
          record.tag)
    denied = create(client, _observation(record.tag, record.patient, DEPRESSION,
                                         effectiveDateTime="2025-05-01"))
    allowed = create(client, _observation(record.tag, record.patient, FATIGUE,
                                          effectiveDateTime="2025-05-01"))
    for resource in (denied, allowed):
        assert client.delete(f"/fhir/Observation/{resource['id']}").status_code == 204
    oncologist = actors.headers["oncologist"]

    assert _status(anon, f"Observation/{denied['id']}/_history/1", oncologist) == 404
    assert _status(anon, f"Observation/{denied['id']}/_history/2", oncologist) == 404
    assert _status(anon, f"Observation/{denied['id']}", oncologist) == 404
    assert _status(anon, f"Observation/{denied['id']}/_history", oncologist) == 404
    since = {"_since": denied["meta"]["lastUpdated"], "_count": "100"}
    typed = anon.get("/fhir/Observation/_history", params=since, headers=oncologist)
    urls = [e["request"]["url"] for e in typed.json().get("entry", [])]
    assert not [u for u in urls if denied["id"] in u]
    assert f"Observation/{allowed['id']}" in urls

    assert _status(anon, f"Observation/{allowed['id']}/_history/1", oncologist) == 200
    assert _status(anon, f"Observation/{allowed['id']}", oncologist) == 410
    assert len(_versions(anon, f"Observation/{allowed['id']}/_history", oncologist)) == 2


def test_a_granular_scope_never_grants_an_old_version_it_does_not_match(
        anon: TestClient, client: TestClient, settings: Settings, record: Record) -> None:
    """The same leak through SMART scopes: an app allowed only fatigue Observations of the
    patient reads the recoded Observation, never its first version, coded as depression."""
    first = create(client, _observation(record.tag, record.patient, DEPRESSION,
                                        effectiveDateTime="2025-05-01"))
    _update(client, {**first, "code": {"coding": [{"system": SNOMED, "code": FATIGUE}]}})
    app = auth(token(settings, f"launch/patient patient/Observation.rs?code={SNOMED}|{FATIGUE}",
                     patient=record.patient))
    path = f"Observation/{first['id']}"

    assert _status(anon, path, app) == 200
    assert _status(anon, f"{path}/_history/2", app) == 200
    assert _status(anon, f"{path}/_history/1", app) == 404
    assert _versions(anon, f"{path}/_history", app) == [(first["id"], "2")]


# -- L4: a data period judged by overlap ------------------------------------------------------
def _period_world(client: TestClient, record: Record) -> tuple[dict[str, str], dict[str, str]]:
    """Resources whose clinical time lies in, overlaps or misses 2020: (hidden, visible),
    each as name -> Type/id."""
    def ref(resource: dict[str, Any]) -> str:
        stored = create(client, resource)
        return f"{stored['resourceType']}/{stored['id']}"

    tag, pid = record.tag, record.patient
    hidden = {
        "condition with onset in 2020": ref(_condition(tag, pid, onsetDateTime="2020-06-01",
                                                       recordedDate="2021-02-01")),
        "condition ongoing through 2020": ref(_condition(tag, pid, onsetDateTime="2019-03-01",
                                                         abatementDateTime="2021-04-01")),
        "goal starting in 2020": ref(_goal(tag, pid, "2020-05-01")),
        "observation overlapping 2020": ref(_observation(
            tag, pid, FATIGUE, effectivePeriod={"start": "2019-11-01", "end": "2020-02-01"})),
        "observation ongoing since 2019": ref(_observation(
            tag, pid, FATIGUE, effectivePeriod={"start": "2019-11-01"})),
        "condition without any date": ref(_condition(tag, pid)),
    }
    visible = {
        "condition of 2019": ref(_condition(tag, pid, onsetDateTime="2019-01-01",
                                            abatementDateTime="2019-06-01",
                                            recordedDate="2019-01-02")),
        "goal starting in 2021": ref(_goal(tag, pid, "2021-01-04")),
        "observation of 2021": ref(_observation(tag, pid, FATIGUE,
                                                effectiveDateTime="2021-03-01")),
    }
    return hidden, visible


def test_a_deny_with_a_data_period_hides_whatever_overlaps_it(
        anon: TestClient, client: TestClient, actors: Actors, record: Record) -> None:
    grant(client, record.patient, [actors.permit("oncologist",
                                                 exceptions=[_deny(dataPeriod=DENIED_2020)])],
          record.tag)
    hidden, visible = _period_world(client, record)
    oncologist = actors.headers["oncologist"]

    for name, ref in hidden.items():
        assert _status(anon, ref, oncologist) == 404, name
        assert _status(anon, f"{ref}/_history/1", oncologist) == 404, name
        assert _status(anon, f"{ref}/_history", oncologist) == 404, name
    for name, ref in visible.items():
        assert _status(anon, ref, oncologist) == 200, name
        assert _status(anon, f"{ref}/_history/1", oncologist) == 200, name
    for rtype in ("Condition", "Goal", "Observation"):
        found = anon.get(f"/fhir/{rtype}", params={"_tag": record.tag_query},
                         headers=oncologist)
        assert found.status_code == 200, found.text
        got = {f"{rtype}/{r['id']}" for r in entries(found.json())}
        assert not got & set(hidden.values()), rtype
        assert {ref for ref in visible.values() if ref.startswith(rtype + "/")} <= got, rtype


def test_each_version_is_judged_by_its_own_dates(
        anon: TestClient, client: TestClient, actors: Actors, record: Record) -> None:
    """A Condition first recorded with its onset in the denied year and then corrected: the
    first version stays hidden, the corrected one is visible; and the other way round."""
    grant(client, record.patient, [actors.permit("oncologist",
                                                 exceptions=[_deny(dataPeriod=DENIED_2020)])],
          record.tag)
    corrected = create(client, _condition(record.tag, record.patient,
                                          onsetDateTime="2020-06-01"))
    _update(client, {**corrected, "onsetDateTime": "2022-06-01"})
    mistaken = create(client, _condition(record.tag, record.patient, onsetDateTime="2022-06-01"))
    _update(client, {**mistaken, "onsetDateTime": "2020-06-01"})
    oncologist = actors.headers["oncologist"]

    assert _versions(anon, f"Condition/{corrected['id']}/_history", oncologist) == [
        (corrected["id"], "2")]
    assert _status(anon, f"Condition/{corrected['id']}/_history/1", oncologist) == 404
    assert _status(anon, f"Condition/{mistaken['id']}", oncologist) == 404
    assert _status(anon, f"Condition/{mistaken['id']}/_history/2", oncologist) == 404
    assert _status(anon, f"Condition/{mistaken['id']}/_history/1", oncologist) == 200


def test_a_permit_with_a_data_period_grants_only_what_lies_within_it(
        anon: TestClient, client: TestClient, actors: Actors, record: Record) -> None:
    """A permit limited to 2020 grants data whose whole clinical time lies in 2020 (a Goal
    starting in it, an Observation of it), never data reaching outside it or without a date."""
    provision = actors.permit("oncologist")
    provision["dataPeriod"] = DENIED_2020
    grant(client, record.patient, [provision], record.tag)
    tag, pid = record.tag, record.patient
    inside = [create(client, {**_goal(tag, pid, "2020-05-01"), "lifecycleStatus": "completed",
                              "statusDate": "2020-09-01"}),
              create(client, _observation(tag, pid, FATIGUE, effectivePeriod={
                  "start": "2020-02-01", "end": "2020-03-01"})),
              create(client, _condition(tag, pid, onsetDateTime="2020-02-01",
                                        abatementDateTime="2020-03-01",
                                        recordedDate="2020-02-03"))]
    outside = [create(client, _observation(tag, pid, FATIGUE, effectivePeriod={
                   "start": "2019-11-01", "end": "2020-02-01"})),
               create(client, _condition(tag, pid, onsetDateTime="2020-06-01",
                                         recordedDate="2021-01-05")),
               create(client, _condition(tag, pid)),
               create(client, _goal(tag, pid, "2021-01-04"))]
    oncologist = actors.headers["oncologist"]

    for resource in inside:
        ref = f"{resource['resourceType']}/{resource['id']}"
        assert _status(anon, ref, oncologist) == 200, ref
    for resource in outside:
        ref = f"{resource['resourceType']}/{resource['id']}"
        assert _status(anon, ref, oncologist) == 404, ref


# -- existing data: the migration backfills what consent judges --------------------------------
@pytest.mark.parametrize("kind", DATABASES)
def test_the_migration_gives_stored_versions_their_facts(kind: str, tmp_path: Path) -> None:
    """Versions stored before the version facts existed get them from their own content: an
    old version's code, its clinical date, and a deletion those of the version it deleted."""
    url, drop = make_database(kind, tmp_path)
    first = {"resourceType": "Observation", "id": "o1", "status": "final",
             "code": {"coding": [{"system": SNOMED, "code": DEPRESSION}]},
             "effectiveDateTime": "2020-06-01", "meta": {"tag": [
                 {"system": TAG_SYSTEM, "code": "migration"}]}}
    second = {**first, "code": {"coding": [{"system": SNOMED, "code": FATIGUE}]},
              "effectiveDateTime": "2022-06-01"}

    async def run() -> tuple[list[Any], list[Any]]:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                pk = (await conn.execute(text(
                    "INSERT INTO resource (resource_type, id, version_id, last_updated, deleted, "
                    "content) VALUES ('Observation', 'o1', 3, '2026-01-01 00:00:00', true, NULL) "
                    "RETURNING pk"))).scalar_one()
                for version, content in ((1, first), (2, second), (3, None)):
                    await conn.execute(text(
                        "INSERT INTO resource_version (resource_pk, resource_type, id, version_id, "
                        "last_updated, method, content) VALUES (:pk, 'Observation', 'o1', :v, "
                        "'2026-01-01 00:00:00', 'PUT', :c)"),
                        {"pk": pk, "v": version,
                         "c": orjson.dumps(content).decode() if content else None})
            await asyncio.to_thread(upgrade, url)
            async with engine.connect() as conn:
                codes = (await conn.execute(text(
                    "SELECT version_id, code FROM version_code ORDER BY version_id"))).all()
                periods = (await conn.execute(text(
                    "SELECT version_id, low FROM version_period ORDER BY version_id"))).all()
            return [tuple(r) for r in codes], [(r[0], str(r[1])[:10]) for r in periods]
        finally:
            await engine.dispose()

    try:
        upgrade(url, "0005")
        codes, periods = asyncio.run(run())
        assert codes == [(1, DEPRESSION), (2, FATIGUE), (3, FATIGUE)]
        assert periods == [(1, "2020-06-01"), (2, "2022-06-01"), (3, "2022-06-01")]
    finally:
        drop()
