"""A professional with consents from many patients: the largest group of alike consents is not
sent as a list of patients with every query but looked up in the database per row, pinned to the
change epoch at which the caller was resolved. (The threshold is lowered here so that a handful
of patients takes that path; the matrix runs every path both ways.)"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from service.access import consent_plan
from service.access.dependencies import build_policy
from service.access.principal import principal_from_claims
from service.access.resolve import AccessCache
from service.config import Settings
from service.fhir.outcome import FhirError
from service.runtime import Runtime, build_runtime
from service.store.tables import ChangeEpoch

from .consent_helpers import consent as consent_body
from .consent_helpers import grant, permit
from .consent_world import Actors, Record, build_record, entries
from .helpers import FHIR_JSON


@pytest.fixture
def live(monkeypatch: pytest.MonkeyPatch, anon: TestClient) -> None:
    monkeypatch.setattr(consent_plan, "LIVE_FROM", 2)
    monkeypatch.setattr(anon.app.state.runtime, "access_cache", AccessCache())  # type: ignore[attr-defined]


def _records(client: TestClient, tag: str, n: int) -> list[Record]:
    return [build_record(client, f"{tag}-{i}", f"Live{tag[:8]}{i}") for i in range(n)]


def test_the_live_lookup_finds_exactly_the_patients_whose_consents_name_the_caller(
        anon: TestClient, client: TestClient, actors: Actors, tag: str, live: None) -> None:
    """Three patients share work context with the oncologist alike (the live group); one shares
    only with the labour expert; one named the oncologist in a consent that is inactive, one in
    a consent of another scope, one in a consent that only denies."""
    shared, expert_only, inactive, other_scope, denying = (
        _records(client, tag, 3), *_records(client, f"{tag}-x", 4))
    for record in shared:
        grant(client, record.patient, [actors.permit("oncologist", labels=["work-context"])],
              f"{tag}-consent")
    grant(client, expert_only.patient, [actors.permit("labour-expert")], f"{tag}-consent")
    for record, changes in ((inactive, {"status": "inactive"}),
                            (other_scope, {"scope": {"coding": [{
                                "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                "code": "treatment"}]}})):
        body = {**consent_body(record.patient, [actors.permit("oncologist")], f"{tag}-consent"),
                **changes}
        assert client.post("/fhir/Consent", json=body, headers=FHIR_JSON).status_code == 201
    grant(client, denying.patient, [actors.permit("oncologist", provision_type="deny")],
          f"{tag}-consent")

    onc = actors.headers["oncologist"]
    for record in shared:
        assert anon.get(f"/fhir/{record.ref('work-context')}", headers=onc).status_code == 200
        assert anon.get(f"/fhir/{record.ref('absence-benefits')}", headers=onc).status_code == 404
    for record in (expert_only, inactive, other_scope, denying):
        assert anon.get(f"/fhir/{record.ref('work-context')}", headers=onc).status_code == 404
        assert anon.get(f"/fhir/Patient/{record.patient}", headers=onc).status_code == 404
    tags = ",".join(r.tag_query for r in (*shared, expert_only, inactive, other_scope, denying))
    found = anon.get("/fhir/Observation", params={"_tag": tags}, headers=onc)
    assert found.status_code == 200
    assert {e["id"] for e in entries(found.json())} == {r.ids["work-context"] for r in shared}
    assert found.json()["total"] == 3


def test_a_change_committed_while_a_request_runs_grants_nothing_new(
        client: TestClient, settings: Settings, tag: str, live: None) -> None:
    """In a writing transaction on PostgreSQL (read committed: a later statement sees commits
    made after the caller was resolved), the caller's change epoch moved meanwhile (another
    transaction committed a change to a consent that names them): the live lookup holds nothing
    until the caller is resolved again, so the request sees less, never more. (A request that
    only reads runs in one snapshot, and SQLite lets no writer commit while another writes, so
    neither can see such a change.)"""
    if not settings.resolved_database_url().startswith("postgresql"):
        pytest.skip("only PostgreSQL lets another writer commit while a write transaction runs")
    # A professional of their own, so that these are all the consents that name them.
    doctor = client.post("/fhir/Practitioner", json={"resourceType": "Practitioner",
                                                     "name": [{"family": "Live"}]}, headers=FHIR_JSON)
    assert doctor.status_code == 201, doctor.text
    doctor_ref = f"Practitioner/{doctor.json()['id']}"
    shared = _records(client, tag, 2)
    for record in shared:
        grant(client, record.patient, [permit(doctor_ref)], f"{tag}-consent")
    claims = {"sub": "doctor", "iss": "test", "scope": "user/*.rs", "role": "oncologist",
              "fhirUser": doctor_ref}
    principal = principal_from_claims(claims, settings.base_url)
    epoch = ChangeEpoch.__table__

    async def reads() -> list[Any]:
        rt = build_runtime(settings)  # an instance of its own, on its own event loop
        try:
            return [await read(rt, bump) for bump in (False, True, False)]
        finally:
            await rt.close()

    async def read(rt: Runtime, bump: bool) -> Any:
        policy = await build_policy(principal, rt)
        async with rt.store(policy, write=True) as store:
            if bump:  # what a concurrent commit would have done by now
                await store.conn.execute(update(epoch).where(epoch.c.ref == doctor_ref).values(
                    value=epoch.c.value + 1))
            try:
                return (await store.read("Observation", shared[0].ids["work-context"])).id
            except FhirError as exc:
                return exc.status

    visible = shared[0].ids["work-context"]
    assert asyncio.run(reads()) == [visible, 404, visible]
