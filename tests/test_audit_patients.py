"""The audit trail never shows a patient another patient (issue 12 L5 and O3) and counts are on
it too (issue 14).

IHE BALP: one AuditEvent per patient whose record a request touched, naming only that
patient, their resources and their Consents, and the query only when it names no one else's
record. An AuditEvent belongs to the record it is about (its entity), never to a patient who
merely asked: a patient's refused attempt on someone else's record is on the owner's trail,
without naming the patient who tried, and never on their own. A search that only counts is
audited like any search.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.config import Settings

from .consent_helpers import grant
from .consent_world import Actors, Record, build_record, entries, patient_headers, post
from .helpers import TAG_SYSTEM

QUERY_ROLE = "24"


def _secrets(record: Record, consent_id: str) -> list[str]:
    """What would tell a reader about this patient: their id, name, resources and Consent."""
    return [record.patient, record.family, consent_id, *record.ids.values()]


def _leaked(texts: list[str], record: Record, consent_id: str) -> list[str]:
    return [s for s in _secrets(record, consent_id) if any(s in text for text in texts)]


def _query(event: dict[str, Any]) -> str | None:
    found = [e["description"] for e in event["entity"]
             if e.get("role", {}).get("code") == QUERY_ROLE]
    return found[0] if found else None


def _what(event: dict[str, Any]) -> set[str]:
    return {e["what"]["reference"] for e in event["entity"] if "what" in e}


def _events(client: TestClient, headers: dict[str, str] | None = None,
            **params: str) -> list[dict[str, Any]]:
    resp = client.get("/fhir/AuditEvent", params={"_count": "200", **params},
                      headers=headers or {})
    assert resp.status_code == 200, resp.text
    return entries(resp.json())


def _by(events: list[dict[str, Any]], who: str) -> list[dict[str, Any]]:
    return [e for e in events if e["agent"][0]["who"].get("reference") == who]


def _everything_a_patient_reads(anon: TestClient, headers: dict[str, str], patient: str,
                                agent: str, event_ids: list[str]) -> list[str]:
    """Every way a patient can read AuditEvents, as the texts they get back."""
    texts = []
    for params in ({"patient": patient}, {"agent": agent}, {"patient": patient, "agent": agent},
                   {"patient": patient, "_include": "AuditEvent:entity"},
                   {"agent": agent, "_include": "AuditEvent:patient"},
                   {"_id": ",".join(event_ids)}):
        resp = anon.get("/fhir/AuditEvent", params={"_count": "200", **params}, headers=headers)
        assert resp.status_code == 200, resp.text
        texts.append(resp.text)
    for event_id in event_ids:
        resp = anon.get(f"/fhir/AuditEvent/{event_id}", headers=headers)
        assert resp.status_code in (200, 404), resp.text
        texts.append(resp.text)
    return texts


@pytest.fixture
def bob(client: TestClient, tag: str) -> Record:
    """A second patient of the same professional."""
    other = f"{tag[::-1]}"
    return build_record(client, other, f"Bob{other}")


def test_each_patient_reads_only_their_own_part_of_a_search_across_patients(
        anon: TestClient, client: TestClient, settings: Settings, actors: Actors,
        record: Record, bob: Record, tag: str) -> None:
    bea = record
    own = {r.patient: patient_headers(settings, r.patient)["patient"] for r in (bea, bob)}
    consents = {r.patient: grant(anon, r.patient, [actors.permit("oncologist")],
                                 f"{tag}-consent", headers=own[r.patient])["id"]
                for r in (bea, bob)}
    onc, onc_user = actors.headers["oncologist"], actors.fhir_user["oncologist"]

    # One search that names no patient, one that names both.
    by_tag = anon.get("/fhir/Condition", params={
        "_tag": f"{TAG_SYSTEM}|{bea.tag},{TAG_SYSTEM}|{bob.tag}"}, headers=onc)
    assert by_tag.status_code == 200 and by_tag.json()["total"] == 2
    by_subject = anon.get("/fhir/Observation", params={
        "subject": f"Patient/{bea.patient},Patient/{bob.patient}"}, headers=onc)
    assert by_subject.status_code == 200 and by_subject.json()["total"] == 8

    # The operator sees one AuditEvent per patient and search.
    operator = _by(_events(client, patient=f"{bea.patient},{bob.patient}"), onc_user)
    assert len(operator) == 4
    ids = [e["id"] for e in operator]
    for me, other in ((bea, bob), (bob, bea)):
        mine = [e for e in operator if f"Patient/{me.patient}" in _what(e)]
        assert len(mine) == 2
        for event in mine:
            # Only this patient, their resources and their Consent.
            assert [w for w in _what(event) if w.startswith("Patient/")] == [f"Patient/{me.patient}"]
            assert {w for w in _what(event) if w.startswith("Consent/")} == {
                f"Consent/{consents[me.patient]}"}
            assert not _leaked([json.dumps(event)], other, consents[other.patient])
        by_kind = {e["subtype"][0]["code"] + str(_query(e) is not None): e for e in mine}
        kept, stripped = by_kind["search-typeTrue"], by_kind["search-typeFalse"]
        assert "_tag=" in (_query(kept) or "") and me.ref("medical") in _what(kept)
        assert me.ref("work-context") in _what(stripped)  # the query named the other patient

        # Every way the patient reads the trail shows them their part and nothing of the other.
        texts = _everything_a_patient_reads(anon, own[me.patient], me.patient, onc_user, ids)
        assert not _leaked(texts, other, consents[other.patient])
        seen = _by(_events(anon, own[me.patient], patient=me.patient), onc_user)
        assert sorted(e["id"] for e in seen) == sorted(e["id"] for e in mine)
        for event in operator:
            expected = 200 if event in mine else 404
            assert anon.get(f"/fhir/AuditEvent/{event['id']}",
                            headers=own[me.patient]).status_code == expected


def test_a_patients_refused_read_of_another_record_is_not_on_her_trail(
        anon: TestClient, client: TestClient, settings: Settings, record: Record,
        tag: str) -> None:
    """O3, as in the demo: Anna asks for Marieke's breast-cancer Condition."""
    anna = record
    marieke = build_record(client, tag[::-1], f"Marieke{tag[::-1]}")
    as_anna = patient_headers(settings, anna.patient)["patient"]
    as_marieke = patient_headers(settings, marieke.patient)["patient"]
    hidden = marieke.ref("medical")
    assert anon.get(f"/fhir/{hidden}", headers=as_anna).status_code == 404
    assert anon.get(f"/fhir/{anna.ref('medical')}", headers=as_anna).status_code == 200

    # The owner's record holds the attempt (what was asked for, refused), not who tried.
    [attempt] = [e for e in _events(client, patient=marieke.patient) if e["outcome"] == "4"]
    assert hidden in _what(attempt)
    assert anna.patient not in json.dumps(attempt) and anna.family not in json.dumps(attempt)
    assert attempt["agent"][0]["who"] == {"display": "another patient"}
    assert anon.get(f"/fhir/AuditEvent/{attempt['id']}", headers=as_marieke).status_code == 200

    # Anna's trail, every way she can read it: her own read, nothing of Marieke.
    everything = _events(client, agent=f"Patient/{anna.patient}") + _events(
        client, patient=marieke.patient)
    texts = _everything_a_patient_reads(anon, as_anna, anna.patient, f"Patient/{anna.patient}",
                                        [e["id"] for e in everything])
    assert not _leaked(texts, marieke, "no-consent")
    mine = _events(anon, as_anna, agent=f"Patient/{anna.patient}")
    assert [e for e in mine if e["outcome"] == "0" and anna.ref("medical") in _what(e)]
    # Her own trail does record that she asked for a Condition outside her record: the type
    # only, exactly as for an id that does not exist.
    assert anon.get(f"/fhir/Condition/nothing-{tag}", headers=as_anna).status_code == 404
    refused = [e for e in _events(anon, as_anna, agent=f"Patient/{anna.patient}")
               if e["outcome"] == "4"]  # the AuditEvents of Marieke's she asked for, too
    assert not _leaked([json.dumps(refused)], marieke, "no-consent")
    conditions = [e for e in refused if [x["type"]["code"] for x in e["entity"]
                                         if "what" not in x] == ["Condition"]]
    assert len(conditions) == 2
    hidden_copy, nothing_copy = ({k: v for k, v in e.items() if k not in ("id", "meta", "recorded")}
                                 for e in conditions)
    assert hidden_copy == nothing_copy
    assert _what(conditions[0]) == {f"Patient/{anna.patient}"}
    assert "outcomeDesc" not in conditions[0]


COUNTS = {
    "summary": ("GET", {"_summary": "count"}),
    "count-0": ("GET", {"_count": "0"}),
    "post-search": ("POST", {"_summary": "count"}),
    "batch": ("BATCH", {"_summary": "count"}),
}


@pytest.mark.parametrize("way", sorted(COUNTS))
def test_a_count_is_audited_on_the_record_it_counted_in(
        anon: TestClient, settings: Settings, actors: Actors, record: Record, tag: str,
        way: str) -> None:
    own = patient_headers(settings, record.patient)["patient"]
    consent = grant(anon, record.patient, [actors.permit("oncologist")], f"{tag}-consent",
                    headers=own)
    onc, onc_user = actors.headers["oncologist"], actors.fhir_user["oncologist"]
    method, extra = COUNTS[way]
    params = {"subject": f"Patient/{record.patient}", **extra}
    if method == "GET":
        resp = anon.get("/fhir/Observation", params=params, headers=onc)
        total = resp.json()["total"]
    elif method == "POST":
        resp = anon.post("/fhir/Observation/_search", data=params, headers=onc)
        total = resp.json()["total"]
    else:
        url = "Observation?" + "&".join(f"{k}={v}" for k, v in params.items())
        resp = post(anon, "", {"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": url}}]}, onc)
        total = resp.json()["entry"][0]["resource"]["total"]
    assert resp.status_code == 200, resp.text
    assert total == 4

    [event] = _by(_events(anon, own, patient=record.patient), onc_user)
    assert event["outcome"] == "0" and event["action"] == "E"
    assert event["subtype"][0]["code"] == ("batch" if method == "BATCH" else "search-type")
    assert f"Consent/{consent['id']}" in _what(event)
    query = _query(event) or ""
    assert f"Patient/{record.patient}" in query and "=".join(next(iter(extra.items()))) in query


def test_a_count_naming_a_patient_without_consent_keeps_the_query_off_the_other_trail(
        anon: TestClient, settings: Settings, actors: Actors, record: Record, bob: Record,
        tag: str) -> None:
    own = patient_headers(settings, record.patient)["patient"]
    grant(anon, record.patient, [actors.permit("oncologist")], f"{tag}-consent", headers=own)
    onc, onc_user = actors.headers["oncologist"], actors.fhir_user["oncologist"]
    resp = anon.get("/fhir/Observation", params={
        "subject": f"Patient/{record.patient},Patient/{bob.patient}", "_summary": "count"},
        headers=onc)
    assert resp.status_code == 200 and resp.json()["total"] == 4  # Bob's are not counted

    [event] = _by(_events(anon, own, patient=record.patient), onc_user)
    assert _query(event) is None and not _leaked([json.dumps(event)], bob, "no-consent")
    # Nothing was counted in Bob's record, so his trail has nothing of the oncologist's.
    as_bob = patient_headers(settings, bob.patient)["patient"]
    assert _by(_events(anon, as_bob, patient=bob.patient), onc_user) == []


def test_a_conditional_create_that_matches_is_audited(
        anon: TestClient, settings: Settings, actors: Actors, record: Record, tag: str) -> None:
    """It hands back what matched (200) or says that several did (412): both touched the
    record, though nothing was written."""
    own = patient_headers(settings, record.patient)["patient"]
    grant(anon, record.patient, [actors.permit("oncologist", actions=("access", "correct"))],
          f"{tag}-consent", headers=own)
    onc, onc_user = actors.headers["oncologist"], actors.fhir_user["oncologist"]
    body = {k: v for k, v in record.bodies["work-context"].items() if k not in ("id", "meta")}
    matched = post(anon, "Observation", body, onc,
                   {"If-None-Exist": f"_id={record.ids['work-context']}"})
    assert matched.status_code == 200, matched.text
    several = post(anon, "Observation", body, onc,
                   {"If-None-Exist": f"subject=Patient/{record.patient}"})
    assert several.status_code == 412, several.text

    events = _by(_events(anon, own, patient=record.patient), onc_user)
    assert sorted((e["subtype"][0]["code"], e["outcome"]) for e in events) == [
        ("create", "0"), ("create", "4")]
    found = next(e for e in events if e["outcome"] == "0")
    assert record.ref("work-context") in _what(found)


def test_a_query_naming_another_patient_by_identifier_is_kept_off_the_trail(
        anon: TestClient, client: TestClient, settings: Settings, actors: Actors,
        record: Record, bob: Record, tag: str) -> None:
    system = "http://fhir.nl/fhir/NamingSystem/bsn"
    bsn = {record.patient: f"1{tag[:8]}", bob.patient: f"2{tag[:8]}"}
    for pid, value in bsn.items():
        patient = client.get(f"/fhir/Patient/{pid}").json()
        patient["identifier"] = [{"system": system, "value": value}]
        assert client.put(f"/fhir/Patient/{pid}", json=patient).status_code == 200
    own = patient_headers(settings, record.patient)["patient"]
    grant(anon, record.patient, [actors.permit("oncologist")], f"{tag}-consent", headers=own)
    onc, onc_user = actors.headers["oncologist"], actors.fhir_user["oncologist"]
    for values in ([bsn[record.patient]], [bsn[record.patient], bsn[bob.patient]]):
        resp = anon.get("/fhir/Condition", params={
            "subject:Patient.identifier": ",".join(f"{system}|{v}" for v in values)},
            headers=onc)
        assert resp.status_code == 200 and resp.json()["total"] == 1, resp.text

    queries = [_query(e) for e in _by(_events(anon, own, patient=record.patient), onc_user)]
    assert sorted(q is None for q in queries) == [False, True]  # Bob's BSN: no query
    assert not [q for q in queries if q and bsn[bob.patient] in q]
