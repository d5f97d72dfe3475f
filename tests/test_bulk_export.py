"""Bulk Data export (HL7 Bulk Data Access 2.0) over HTTP: kick-off, status, manifest, files,
cancel and expiry, each export holding exactly what its requester may see (the compiled consent
predicate), audited per patient, and resumable after its server went away."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from joserfc.jwk import KeySet, RSAKey

from service.config import Settings
from service.demo.loader import seed
from service.fhir import dates
from service.operations.bulk import chunks
from service.runtime import Runtime
from service.store import export_jobs

from .auth_helpers import auth, backend_client, client_assertion, client_credentials, token
from .bulk_helpers import (
    KICK_OFF,
    count,
    download,
    drain,
    kick_off,
    lines_by_type,
    local,
    manifest,
    with_runtime,
)
from .consent_helpers import grant
from .consent_world import Actors, build_record
from .helpers import create, tagged

DEMO_PATIENTS = {"pat-anna", "pat-kees", "pat-ingrid", "pat-marieke", "pat-daan", "pat-peter",
                 "pat-sanne", "pat-johan"}


def _job_id(status: str) -> str:
    return status.rsplit("/", 1)[1]


def _job(settings: Settings, job_id: str) -> export_jobs.Job:
    async def load(rt: Runtime) -> export_jobs.Job:
        async with rt.engine.connect() as conn:
            job = await export_jobs.load_job(conn, job_id)
        assert job is not None
        return job

    return with_runtime(settings, load)


def _patient_of(resource: dict[str, Any]) -> str | None:
    if resource["resourceType"] == "Patient":
        return str(resource["id"])
    for key in ("subject", "patient"):
        ref = (resource.get(key) or {}).get("reference", "")
        if ref.startswith("Patient/"):
            return str(ref[8:])
    return None


def _six_records(client: TestClient, tag: str) -> list[str]:
    return [build_record(client, f"{tag}{i}", f"Bulk{tag}{i}").patient for i in range(6)]


def test_operator_exports_the_demo_data(client: TestClient, settings: Settings) -> None:
    with_runtime(settings, seed)
    status = kick_off(client, "$export", _type="Patient,Observation,Condition")
    pending = client.get(status)
    assert pending.status_code == 202
    assert pending.headers["Retry-After"] and "exported" in pending.headers["X-Progress"]
    assert drain(settings) > 0
    body = manifest(client, status)
    assert body["requiresAccessToken"] is True and body["error"] == []
    assert body["request"].endswith("/fhir/$export?_type=Patient%2CObservation%2CCondition") \
        or "_type=Patient" in body["request"]
    assert dates.parse_instant(body["transactionTime"]) <= dates.utcnow()
    lines = lines_by_type(client, body)
    for rtype in ("Patient", "Observation", "Condition"):
        assert len(lines[rtype]) == count(client, rtype), rtype
        assert len({r["id"] for r in lines[rtype]}) == len(lines[rtype])  # no line twice
    assert {r["id"] for r in lines["Patient"]} >= DEMO_PATIENTS


def test_professional_with_consent_for_two_of_six_gets_those_two(
        client: TestClient, actors: Actors, settings: Settings, tag: str) -> None:
    patients = _six_records(client, tag)
    chosen = patients[:2]
    for pid in chosen:
        grant(client, pid, [actors.permit("oncologist")], tag)
    oncologist = actors.headers["oncologist"]
    status = kick_off(client, "Patient/$export", oncologist,
                      _type="Patient,Observation,Condition")
    drain(settings)
    body = manifest(client, status, oncologist)
    lines = lines_by_type(client, body, oncologist)
    exported = {r["resourceType"]: r for rs in lines.values() for r in rs}
    assert exported, "the two consented records are exported"
    owners = {_patient_of(r) for rs in lines.values() for r in rs}
    assert owners <= set(chosen) | {None}
    assert set(chosen) <= owners
    # Counts match a search with the same token, over the same records.
    both = ",".join(chosen)
    for rtype, param in (("Patient", "_id"), ("Observation", "patient"), ("Condition", "patient")):
        mine = [r for r in lines.get(rtype, []) if _patient_of(r) in chosen]
        assert len(mine) == count(client, rtype, oncologist, **{param: both}), rtype
    # Audited: one AuditEvent per patient the export covered, none for the others.
    job = _job(settings, _job_id(status))
    assert sorted(job.patients) == sorted(chosen)
    for pid in patients:
        events = client.get("/fhir/AuditEvent", params={"patient": pid, "_count": "200"}).json()
        about_export = [e for e in events.get("entry", [])
                        if "$export" in str(e["resource"].get("entity", ""))]
        assert bool(about_export) == (pid in chosen), pid


def test_backend_client_without_consent_gets_an_empty_manifest(
        client: TestClient, anon: TestClient, settings: Settings, tag: str) -> None:
    patients = _six_records(client, tag)
    key = RSAKey.generate_key(2048, auto_kid=True)
    ehr = backend_client(settings, dict(KeySet([key]).as_dict(private=False)), scope="system/*.rs")
    issued = client_credentials(anon, client_assertion(key, ehr), scope="system/*.rs")
    assert issued.status_code == 200, issued.text
    headers = auth(issued.json()["access_token"])
    status = kick_off(anon, "$export", headers, _type="Patient,Observation")
    drain(settings)
    body = manifest(anon, status, headers)
    assert body["output"] == [] and body["error"] == []
    job = _job(settings, _job_id(status))
    # The job row is the record of the export: who asked, what, and for whom (no one).
    assert job.status == "completed" and job.patients == [] and ehr in job.owner
    assert not set(patients) & set(job.patients)


def test_others_cannot_see_poll_download_or_cancel_an_export(
        client: TestClient, actors: Actors, settings: Settings) -> None:
    status = kick_off(client, "$export", _type="Patient")
    drain(settings)
    body = manifest(client, status)
    stranger = actors.headers["oncologist"]
    assert client.get(status, headers=stranger).status_code == 404
    assert client.delete(status, headers=stranger).status_code == 404
    assert client.get(local(body["output"][0]["url"]), headers=stranger).status_code == 404
    assert download(client, body["output"][0]["url"])  # still there for its owner


def test_cancel_removes_the_export_and_its_files(client: TestClient, settings: Settings) -> None:
    status = kick_off(client, "$export", _type="Patient")
    drain(settings)
    url = manifest(client, status)["output"][0]["url"]
    resp = client.delete(status)
    assert resp.status_code == 202
    assert client.get(status).status_code == 404
    assert client.get(local(url)).status_code == 404
    assert client.delete(status).status_code == 404
    # Cancelled before it ran: the worker never starts it.
    pending = kick_off(client, "$export", _type="Patient")
    assert client.delete(pending).status_code == 202
    job_id = _job_id(pending)
    drain(settings)
    assert _job(settings, job_id).status == "cancelled"
    assert with_runtime(settings, lambda rt: _files(rt, job_id)) == 0


async def _files(rt: Runtime, job_id: str) -> int:
    async with rt.engine.connect() as conn:
        return await export_jobs.count_files(conn, job_id)


def test_files_expire(client: TestClient, settings: Settings) -> None:
    status = kick_off(client, "$export", _type="Patient")
    drain(settings)
    body = manifest(client, status)
    assert client.get(status).headers.get("Expires")
    job_id = _job_id(status)
    later = dates.utcnow() + timedelta(seconds=settings.export_retention_seconds + 60)
    assert with_runtime(settings, lambda rt: chunks.expire_due(rt, later)) >= 1
    assert client.get(status).status_code == 404
    assert client.get(local(body["output"][0]["url"])).status_code == 404
    assert with_runtime(settings, lambda rt: _files(rt, job_id)) == 0
    assert _job(settings, job_id).status == "expired"


def test_a_job_resumes_after_its_server_went_away(client: TestClient, settings: Settings,
                                                  tag: str, monkeypatch: pytest.MonkeyPatch
                                                  ) -> None:
    for i in range(7):
        create(client, tagged({"resourceType": "Patient", "name": [{"family": f"Res{tag}{i}"}]},
                              tag))
    expected = count(client, "Patient", _tag=tag)
    status = kick_off(client, "$export", _type="Patient", _typeFilter=f"Patient?_tag={tag}")
    job_id = _job_id(status)
    claims = _job(settings, job_id).claims

    # One process does one chunk of 3 and is gone.
    assert with_runtime(settings, lambda rt: chunks.run_chunk(rt, job_id, claims),
                        export_chunk_size=3)
    # The next dies while writing its chunk: nothing of that chunk stays (file and cursor roll
    # back together).
    original = export_jobs.save_progress

    async def killed(*args: Any) -> None:
        raise RuntimeError("killed")

    monkeypatch.setattr(export_jobs, "save_progress", killed)
    with pytest.raises(RuntimeError):
        with_runtime(settings, lambda rt: chunks.run_chunk(rt, job_id, claims),
                     export_chunk_size=3)
    monkeypatch.setattr(export_jobs, "save_progress", original)
    assert with_runtime(settings, lambda rt: _files(rt, job_id)) == 1
    assert client.get(status).status_code == 202
    # After the restart another process finishes it.
    drain(settings, export_chunk_size=3)
    body = manifest(client, status)
    lines = lines_by_type(client, body)["Patient"]
    assert len(lines) == expected == 7
    assert len({r["id"] for r in lines}) == 7
    assert [o["count"] for o in body["output"]] == [3, 3, 1]


def test_group_export_covers_the_members_the_caller_may_see(
        client: TestClient, actors: Actors, settings: Settings, tag: str) -> None:
    patients = _six_records(client, tag)
    group = create(client, tagged({"resourceType": "Group", "type": "person", "actual": True,
                                   "member": [{"entity": {"reference": f"Patient/{p}"}}
                                              for p in patients[:3]]}, tag))
    grant(client, patients[0], [actors.permit("oncologist")], tag)
    grant(client, patients[4], [actors.permit("oncologist")], tag)  # not a member
    operator = kick_off(client, f"Group/{group['id']}/$export", _type="Patient")
    drain(settings)
    ids = {r["id"] for r in lines_by_type(client, manifest(client, operator)).get("Patient", [])}
    assert ids == set(patients[:3])
    oncologist = actors.headers["oncologist"]
    status = client.get(f"/fhir/Group/{group['id']}/$export", params={"_type": "Patient"},
                        headers={**KICK_OFF, **oncologist})
    assert status.status_code == 202, status.text
    drain(settings)
    body = manifest(client, local(status.headers["Content-Location"]), oncologist)
    ids = {r["id"] for r in lines_by_type(client, body, oncologist).get("Patient", [])}
    assert ids == {patients[0]}


@pytest.mark.parametrize(("params", "headers", "where"), [
    ({"_type": "Patient"}, {"Prefer": ""}, "Prefer"),
    ({"_type": "Patient"}, {"Accept": ""}, "Accept"),
    ({"_outputFormat": "text/csv"}, {}, "_outputFormat"),
    ({"_since": "not-a-date"}, {}, "_since"),
    ({"_since": "2999-01-01T00:00:00Z"}, {}, "_since"),
    ({"_type": "MissingType"}, {}, "_type"),
    ({"_typeFilter": "Patient?nonsense=1"}, {}, "_typeFilter"),
    ({"patient": "Patient/x"}, {}, "patient"),
])
def test_kick_off_refuses_what_the_specification_refuses(
        client: TestClient, params: dict[str, str], headers: dict[str, str], where: str) -> None:
    resp = client.get("/fhir/$export", params=params, headers={**KICK_OFF, **headers})
    assert resp.status_code == 400, resp.text
    outcome = resp.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert where in str(outcome["issue"][0].get("expression", [])) + outcome["issue"][0]["diagnostics"]


def test_lenient_handling_reports_what_it_dropped(client: TestClient, settings: Settings) -> None:
    resp = client.get("/fhir/$export", params={"_type": "Patient,MissingType"},
                      headers={**KICK_OFF, "Prefer": "respond-async, handling=lenient"})
    assert resp.status_code == 202, resp.text
    status = local(resp.headers["Content-Location"])
    drain(settings)
    body = manifest(client, status)
    assert [o["type"] for o in body["output"]] == ["Patient"] * len(body["output"])
    (error,) = body["error"]
    (outcome,) = download(client, error["url"])
    assert "MissingType" in outcome["issue"][0]["diagnostics"]


def test_since_and_post_parameters(client: TestClient, settings: Settings, tag: str) -> None:
    create(client, tagged({"resourceType": "Patient", "name": [{"family": f"Old{tag}"}]}, tag))
    since = dates.to_instant(dates.utcnow())
    new = create(client, tagged({"resourceType": "Patient", "name": [{"family": f"New{tag}"}]},
                                tag))
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "_type", "valueString": "Patient"}, {"name": "_since", "valueInstant": since},
        {"name": "_typeFilter", "valueString": f"Patient?_tag={tag}"}]}
    resp = client.post("/fhir/$export", json=body,
                       headers={**KICK_OFF, "Content-Type": "application/fhir+json"})
    assert resp.status_code == 202, resp.text
    drain(settings)
    out = manifest(client, local(resp.headers["Content-Location"]))
    assert [r["id"] for r in lines_by_type(client, out)["Patient"]] == [new["id"]]


def test_download_needs_scopes_for_the_type(client: TestClient, settings: Settings) -> None:
    status = kick_off(client, "$export", _type="Patient")
    drain(settings)
    url = manifest(client, status)["output"][0]["url"]
    narrow = auth(token(settings, "system/Observation.rs", role="service"))
    resp = client.get(local(url), headers=narrow)
    assert resp.status_code in (403, 404)


def test_capability_statement_lists_the_bulk_operations(client: TestClient) -> None:
    cap = client.get("/fhir/metadata").json()
    assert "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data" in cap["instantiates"]
    rest = cap["rest"][0]
    assert "export" in {o["name"] for o in rest["operation"]}
    by_type = {r["type"]: {o["name"] for o in r.get("operation", [])} for r in rest["resource"]}
    assert "patient-export" in by_type["Patient"] and "group-export" in by_type["Group"]


def test_kick_off_wants_fhir_json_not_plain_json(client: TestClient) -> None:
    resp = client.get("/fhir/$export", params={"_type": "Patient"},
                      headers={**KICK_OFF, "Accept": "application/json"})
    assert resp.status_code == 400 and "Accept" in resp.text


def test_backend_client_asking_for_an_unknown_type_gets_invalid_scope(
        anon: TestClient, settings: Settings) -> None:
    key = RSAKey.generate_key(2048, auto_kid=True)
    ehr = backend_client(settings, dict(KeySet([key]).as_dict(private=False)), scope="system/*.rs")
    resp = client_credentials(anon, client_assertion(key, ehr), scope="system/UnknownResource.rs")
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_scope"
