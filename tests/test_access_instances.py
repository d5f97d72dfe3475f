"""Several instances behind a load balancer share only the database. Each instance keeps what it
resolved about a caller (their roles, CareTeams and Consents) for as long as the database's
change epoch says nothing of that changed: a change made through any instance counts on the next
request to every instance. Here `client` and `anon` are two separate app instances (each with its
own runtime and cache) on one database."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from service.config import Settings

from .consent_helpers import grant
from .consent_world import Actors, Record, patient_headers
from .helpers import FHIR_JSON


def reads(instance: TestClient, headers: dict[str, str], path: str) -> int:
    return int(instance.get(f"/fhir/{path}", headers=headers).status_code)


def put(instance: TestClient, resource: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    resp = instance.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource,
                        headers={**FHIR_JSON, **(headers or {})})
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_consent_changed_through_one_instance_counts_on_the_next_request_to_another(
        client: TestClient, anon: TestClient, settings: Settings, actors: Actors, record: Record,
        tag: str) -> None:
    own = patient_headers(settings, record.patient)["patient"]
    onc = actors.headers["oncologist"]
    for _ in range(2):  # instance B has resolved the oncologist (and may keep it)
        assert reads(anon, onc, record.ref("medical")) == 404
    consent = grant(client, record.patient, [actors.permit("oncologist")], f"{tag}-consent",
                    headers=own)  # through instance A
    assert reads(anon, onc, record.ref("medical")) == 200
    assert reads(anon, onc, record.ref("medical")) == 200
    put(client, {**consent, "status": "inactive"}, own)
    assert reads(anon, onc, record.ref("medical")) == 404
    put(client, {**consent, "status": "active"}, own)
    assert reads(anon, onc, record.ref("medical")) == 200
    assert client.delete(f"/fhir/Consent/{consent['id']}", headers=own).status_code == 204
    assert reads(anon, onc, record.ref("medical")) == 404


def test_a_retired_practitioner_role_stops_counting_on_the_next_request(
        client: TestClient, anon: TestClient, settings: Settings, actors: Actors, record: Record,
        tag: str) -> None:
    """The occupational physician is named through their service, as occupational physician:
    that holds only while their PractitionerRole there is active."""
    own = patient_headers(settings, record.patient)["patient"]
    physician = actors.headers["occupational-physician"]
    grant(client, record.patient, [actors.permit("occupational-physician")], f"{tag}-consent",
          headers=own)
    assert reads(anon, physician, record.ref("functional-capacity")) == 200
    role_path = actors.fhir_user["occupational-physician"]
    role = client.get(f"/fhir/{role_path}").json()
    try:
        put(client, {**role, "active": False})  # the operator, through instance A
        assert reads(anon, physician, record.ref("functional-capacity")) == 404
    finally:
        put(client, {**role, "active": True})
    assert reads(anon, physician, record.ref("functional-capacity")) == 200


def test_a_careteam_that_ends_stops_counting_on_the_next_request(
        client: TestClient, anon: TestClient, settings: Settings, actors: Actors, record: Record,
        tag: str) -> None:
    """The insurance physician is named through the UWV CareTeam they take part in: while the
    team is active."""
    own = patient_headers(settings, record.patient)["patient"]
    physician = actors.headers["insurance-physician"]
    grant(client, record.patient, [actors.permit("insurance-physician")], f"{tag}-consent",
          headers=own)
    assert reads(anon, physician, record.ref("work-context")) == 200
    team_path, _ = actors.actor["insurance-physician"]
    team = client.get(f"/fhir/{team_path}").json()
    try:
        put(client, {**team, "status": "inactive"})
        assert reads(anon, physician, record.ref("work-context")) == 404
    finally:
        put(client, team)
    assert reads(anon, physician, record.ref("work-context")) == 200


def test_a_consent_that_names_someone_else_now_counts_for_both_on_the_next_request(
        client: TestClient, anon: TestClient, settings: Settings, actors: Actors, record: Record,
        tag: str) -> None:
    """The patient gives the grant that was the oncologist's to the labour expert instead: the
    oncologist, no longer named, loses it at once, and the labour expert gains it."""
    own = patient_headers(settings, record.patient)["patient"]
    onc, expert = actors.headers["oncologist"], actors.headers["labour-expert"]
    consent = grant(client, record.patient, [actors.permit("oncologist")], f"{tag}-consent",
                    headers=own)
    assert reads(anon, onc, record.ref("work-context")) == 200
    assert reads(anon, expert, record.ref("work-context")) == 404
    put(client, {**consent, "provision": {**consent["provision"], "provision": [
        actors.permit("labour-expert")]}}, own)
    assert reads(anon, onc, record.ref("work-context")) == 404
    assert reads(anon, expert, record.ref("work-context")) == 200
    # And deleting it takes it from the labour expert again.
    assert client.delete(f"/fhir/Consent/{consent['id']}", headers=own).status_code == 204
    assert reads(anon, expert, record.ref("work-context")) == 404
