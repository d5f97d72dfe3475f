"""Hidden and nonexistent look the same (issue 12, O1 and O2): for a caller without access, a
resource they may not see and an id that was never used give the same status, the same
OperationOutcome text (but for the id itself) and the same Bundle totals, on every read and
write path: reads, history, searches of every kind, conditional interactions, PUT (also with
If-Match), DELETE, PATCH, a Provenance about it, batch and transaction Bundles and operations.

The world: a patient who consented to nobody (the hidden record), the callers of
`consent_world` (six professionals, none named in any Consent), and another patient with their
own token and PGO app. Each (role, template) pair is sent once for the hidden ids and once for
fresh random ids; a failure names the role and the template.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.config import Settings
from service.main import create_app

from .conformance_helpers import example
from .consent_helpers import grant
from .consent_world import (
    PATIENT_ROLES,
    PROFESSIONALS,
    Actors,
    Record,
    build_record,
    condition,
    patient_headers,
)
from .helpers import FHIR_JSON, create, patient
from .work_helpers import phase, rtw_plan, work_goal

KEYS = ("patient", "condition", "observation", "careplan", "qr")
"""The hidden resources a template can aim at (the same kinds, with random ids, for the
nonexistent probe)."""
READ_WRITE = ("access", "correct")


@dataclass
class Probe:
    method: str
    path: str
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Template = Callable[[dict[str, str], str], Probe]
"""(ids by KEYS, the caller's own patient or the hidden one) -> the request."""


@dataclass
class World:
    hidden: Record
    ids: dict[str, str]
    headers: dict[str, dict[str, str]]
    own: dict[str, str]
    """role -> the patient a write names: their own record for patient roles, the hidden
    patient (whom they cannot write for) for professionals."""


@pytest.fixture(scope="module")
def world(client: TestClient, settings: Settings, actors: Actors) -> World:
    tag = f"oracles-{uuid.uuid4().hex[:8]}"
    hidden = build_record(client, tag, f"Hidden{tag}")
    pid = hidden.patient
    goal = create(client, work_goal(tag, pid))["id"]
    plan = create(client, rtw_plan(tag, pid, goal, [
        phase(1, "2026-01-05", "2026-02-01", 8, "in-progress")]))["id"]
    qr = create(client, example("load-capacity", "response-sample.json", tag, pid))["id"]
    ids = {"patient": pid, "condition": hidden.ids["medical"],
           "observation": hidden.ids["work-context"], "careplan": plan, "qr": qr}
    visitor = create(client, patient(tag, f"Visitor{tag}", "Bea"))["id"]
    headers = {**actors.headers, **patient_headers(settings, visitor)}
    own = {role: (visitor if role in PATIENT_ROLES else pid) for role in headers}
    return World(hidden, ids, headers, own)


# -- request templates ---------------------------------------------------------------------------
def _condition(ids: dict[str, str], subject: str, with_id: bool = False) -> dict[str, Any]:
    body = condition("oracles", subject)
    return {**body, "id": ids["condition"]} if with_id else body


def _patch() -> list[dict[str, Any]]:
    return [{"op": "replace", "path": "/recordedDate", "value": "2025-04-01"}]


def _provenance(ids: dict[str, str], _own: str) -> dict[str, Any]:
    return {"resourceType": "Provenance", "target": [{"reference": f"Condition/{ids['condition']}"}],
            "recorded": "2026-11-20T10:00:00+01:00",
            "agent": [{"who": {"reference": f"Patient/{ids['patient']}"}}]}


def _bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def _get(url: str) -> dict[str, Any]:
    return {"request": {"method": "GET", "url": url}}


def _put(url: str, resource: dict[str, Any], **extra: str) -> dict[str, Any]:
    return {"resource": resource, "request": {"method": "PUT", "url": url, **extra}}


def _delete(url: str) -> dict[str, Any]:
    return {"request": {"method": "DELETE", "url": url}}


def _binary_patch() -> dict[str, Any]:
    return {"resourceType": "Binary", "contentType": "application/json-patch+json",
            "data": base64.b64encode(json.dumps(_patch()).encode()).decode()}


TEMPLATES: dict[str, Template] = {
    # reads
    "read": lambda i, o: Probe("GET", f"Condition/{i['condition']}"),
    "read-patient": lambda i, o: Probe("GET", f"Patient/{i['patient']}"),
    "vread": lambda i, o: Probe("GET", f"Condition/{i['condition']}/_history/1"),
    "history-instance": lambda i, o: Probe("GET", f"Condition/{i['condition']}/_history"),
    "search-id": lambda i, o: Probe("GET", f"Condition?_id={i['condition']}"),
    "search-reference": lambda i, o: Probe("GET", f"Observation?subject=Patient/{i['patient']}"),
    "search-chain": lambda i, o: Probe("GET", f"Condition?subject:Patient._id={i['patient']}"),
    "search-has": lambda i, o: Probe("GET", f"Patient?_has:Condition:subject:_id={i['condition']}"),
    "search-include": lambda i, o: Probe(
        "GET", f"Observation?_id={i['observation']}&_include=Observation:focus&_total=accurate"),
    "search-revinclude": lambda i, o: Probe(
        "GET", f"Patient?_id={i['patient']}&_revinclude=Condition:subject&_total=accurate"),
    "search-summary-count": lambda i, o: Probe(
        "GET", f"Condition?subject=Patient/{i['patient']}&_summary=count"),
    "search-post": lambda i, o: Probe("POST", "Condition/_search", f"_id={i['condition']}",
                                      {"Content-Type": "application/x-www-form-urlencoded"}),
    "search-system": lambda i, o: Probe("GET", f"?_id={i['condition']}"),
    # writes
    "conditional-create": lambda i, o: Probe(
        "POST", "Condition", _condition(i, o), {"If-None-Exist": f"_id={i['condition']}"}),
    "conditional-update": lambda i, o: Probe("PUT", f"Condition?_id={i['condition']}",
                                             _condition(i, o)),
    "conditional-update-body-id": lambda i, o: Probe(
        "PUT", f"Condition?_id={i['condition']}", _condition(i, o, with_id=True)),
    "conditional-delete": lambda i, o: Probe("DELETE", f"Condition?_id={i['condition']}"),
    "put": lambda i, o: Probe("PUT", f"Condition/{i['condition']}", _condition(i, o, with_id=True)),
    "put-own-subject": lambda i, o: Probe("PUT", f"Condition/{i['condition']}",
                                          _condition(i, i["patient"], with_id=True)),
    "put-if-match": lambda i, o: Probe("PUT", f"Condition/{i['condition']}",
                                       _condition(i, o, with_id=True), {"If-Match": 'W/"1"'}),
    "delete": lambda i, o: Probe("DELETE", f"Condition/{i['condition']}"),
    "delete-if-match": lambda i, o: Probe("DELETE", f"Condition/{i['condition']}",
                                          headers={"If-Match": 'W/"1"'}),
    "patch": lambda i, o: Probe("PATCH", f"Condition/{i['condition']}", _patch(),
                                {"Content-Type": "application/json-patch+json"}),
    "provenance": lambda i, o: Probe("POST", "Provenance", _provenance(i, o)),
    "batch": lambda i, o: Probe("POST", "", _bundle(
        "batch", _get(f"Condition/{i['condition']}"),
        _get(f"Condition?_id={i['condition']}"),
        _put(f"Condition/{i['condition']}", _condition(i, o, with_id=True)),
        _put(f"Condition/{i['condition']}", _condition(i, o, with_id=True), ifMatch='W/"1"'),
        _put(f"Condition?_id={i['condition']}", _condition(i, o, with_id=True)),
        {"resource": _binary_patch(), "request": {"method": "PATCH",
                                                  "url": f"Condition/{i['condition']}"}},
        {"resource": _provenance(i, o), "request": {"method": "POST", "url": "Provenance"}},
        _delete(f"Condition/{i['condition']}"))),
    "transaction-get": lambda i, o: Probe("POST", "", _bundle(
        "transaction", _get(f"Condition/{i['condition']}"))),
    "transaction-search": lambda i, o: Probe("POST", "", _bundle(
        "transaction", _get(f"Condition?_id={i['condition']}"))),
    "transaction-put": lambda i, o: Probe("POST", "", _bundle(
        "transaction", _put(f"Condition/{i['condition']}", _condition(i, o, with_id=True)))),
    "transaction-conditional-put": lambda i, o: Probe("POST", "", _bundle(
        "transaction", _put(f"Condition?_id={i['condition']}", _condition(i, o, with_id=True)))),
    "transaction-delete": lambda i, o: Probe("POST", "", _bundle(
        "transaction", _delete(f"Condition/{i['condition']}"))),
    "transaction-provenance": lambda i, o: Probe("POST", "", _bundle(
        "transaction", {"resource": _provenance(i, o),
                        "request": {"method": "POST", "url": "Provenance"}})),
    # operations
    "everything": lambda i, o: Probe("GET", f"Patient/{i['patient']}/$everything"),
    "work-summary": lambda i, o: Probe("GET", f"Patient/{i['patient']}/$work-summary"),
    "late-effects-signals": lambda i, o: Probe("GET", f"Patient/{i['patient']}/$late-effects-signals"),
    "validate-instance": lambda i, o: Probe("GET", f"Condition/{i['condition']}/$validate"),
    "progress": lambda i, o: Probe("GET", f"CarePlan/{i['careplan']}/$progress"),
    "extract": lambda i, o: Probe("POST", f"QuestionnaireResponse/{i['qr']}/$extract",
                                  {"resourceType": "Parameters"}),
}


# -- what a caller can tell apart ----------------------------------------------------------------
def _normalised(text: str, ids: dict[str, str]) -> str:
    for key, value in ids.items():
        text = text.replace(value, f"<{key}>")
    return text


def _outcome(body: dict[str, Any], ids: dict[str, str]) -> list[tuple[Any, ...]]:
    return [(i.get("severity"), i.get("code"), _normalised(i.get("diagnostics", ""), ids),
             tuple(i.get("expression", []))) for i in body.get("issue", [])]


def _observed(resp: Any, ids: dict[str, str]) -> dict[str, Any]:
    seen: dict[str, Any] = {"status": resp.status_code}
    try:
        body = resp.json()
    except ValueError:
        return seen
    if not isinstance(body, dict):
        return seen
    kind = body.get("resourceType")
    seen["resourceType"] = kind
    if kind == "OperationOutcome":
        seen["outcome"] = _outcome(body, ids)
    elif kind == "Bundle":
        seen["total"] = body.get("total")
        entries = body.get("entry", [])
        seen["entries"] = [(e.get("resource", {}).get("resourceType"),
                            e.get("resource", {}).get("total"),
                            e.get("search", {}).get("mode"),
                            (e.get("response") or {}).get("status"),
                            _outcome((e.get("response") or {}).get("outcome") or {}, ids))
                           for e in entries]
    elif kind == "Parameters":
        seen["parameters"] = sorted(p.get("name", "") for p in body.get("parameter", []))
    return seen


def _send(anon: TestClient, probe: Probe, headers: dict[str, str]) -> Any:
    url = f"/fhir/{probe.path}" if probe.path else "/fhir"
    url = url.replace("/fhir/?", "/fhir?")
    all_headers = {**FHIR_JSON, **headers, **probe.headers}
    if isinstance(probe.body, str):
        return anon.request(probe.method, url, content=probe.body, headers=all_headers)
    if probe.body is None:
        return anon.request(probe.method, url, headers=all_headers)
    return anon.request(probe.method, url, content=json.dumps(probe.body), headers=all_headers)


def _fresh() -> dict[str, str]:
    return {key: f"nx-{uuid.uuid4()}" for key in KEYS}


ROLES = PROFESSIONALS + PATIENT_ROLES


@pytest.mark.parametrize("template", sorted(TEMPLATES))
@pytest.mark.parametrize("role", ROLES)
def test_hidden_and_nonexistent_answer_alike(anon: TestClient, world: World, role: str,
                                             template: str) -> None:
    build = TEMPLATES[template]
    hidden_ids = world.ids
    free_ids = _fresh()
    own = world.own[role]
    own_free = own if own != hidden_ids["patient"] else free_ids["patient"]
    hidden = _send(anon, build(hidden_ids, own), world.headers[role])
    free = _send(anon, build(free_ids, own_free), world.headers[role])
    assert hidden.status_code < 500, hidden.text
    assert _observed(hidden, hidden_ids) == _observed(free, free_ids), (
        f"{role} / {template}: hidden {hidden.status_code} {hidden.text[:400]} | "
        f"nonexistent {free.status_code} {free.text[:400]}")


def test_the_probes_reach_the_hidden_record(client: TestClient, world: World) -> None:
    """The world is what the pairs assume: the operator sees every hidden resource, so a pair
    that answers alike does so because the caller may not see it, not because it is absent."""
    for rtype, key in (("Patient", "patient"), ("Condition", "condition"),
                       ("Observation", "observation"), ("CarePlan", "careplan"),
                       ("QuestionnaireResponse", "qr")):
        assert client.get(f"/fhir/{rtype}/{world.ids[key]}").status_code == 200


# -- the fixes one by one, with what a user notices ----------------------------------------------
def test_put_on_a_hidden_id_is_refused_like_a_free_one(anon: TestClient, world: World) -> None:
    """O1: a professional's PUT on someone's hidden Condition and on a free id both get the
    spec's answer for a server that assigns ids (405), with the same text."""
    headers = {**FHIR_JSON, **world.headers["oncologist"]}
    free = f"nx-{uuid.uuid4()}"
    body = condition("oracles", world.ids["patient"])
    hidden = anon.put(f"/fhir/Condition/{world.ids['condition']}",
                      json={**body, "id": world.ids["condition"]}, headers=headers)
    other = anon.put(f"/fhir/Condition/{free}", json={**body, "id": free}, headers=headers)
    assert hidden.status_code == other.status_code == 405, (hidden.text, other.text)
    assert hidden.json()["issue"][0]["diagnostics"].replace(world.ids["condition"], "X") == \
        other.json()["issue"][0]["diagnostics"].replace(free, "X")


def test_a_patient_creates_with_post_not_put(anon: TestClient, world: World) -> None:
    """A patient may not choose ids in their own record either: otherwise a PUT naming their own
    record would create on a free id and fail on someone else's hidden one."""
    headers = {**FHIR_JSON, **world.headers["patient"]}
    own = world.own["patient"]
    rid = f"mine-{uuid.uuid4()}"
    put = anon.put(f"/fhir/Condition/{rid}", json={**condition("oracles", own), "id": rid},
                   headers=headers)
    assert put.status_code == 405, put.text
    assert put.json()["issue"][0]["expression"] == ["Condition.id"]
    posted = anon.post("/fhir/Condition", json=condition("oracles", own), headers=headers)
    assert posted.status_code == 201, posted.text


def test_the_operator_still_chooses_ids(client: TestClient) -> None:
    rid = f"chosen-{uuid.uuid4()}"
    resp = client.put(f"/fhir/Patient/{rid}", json={**patient("oracles"), "id": rid},
                      headers=FHIR_JSON)
    assert resp.status_code == 201, resp.text
    assert client.get(f"/fhir/Patient/{rid}").status_code == 200


def test_configured_roles_may_choose_ids(settings: Settings, world: World) -> None:
    """`PGO_WORK_CLIENT_IDS_FOR` opens update as create to more roles (here the EHR backend
    client); a hidden id then still answers like a free id the caller may not write."""
    opened = Settings(**{**settings.model_dump(), "client_ids_for": "service,ehr-system"})
    with TestClient(create_app(opened), base_url="http://testserver") as ehr:
        headers = {**FHIR_JSON, "Accept": "application/fhir+json", **world.headers["ehr-system"]}
        rid = f"ehr-{uuid.uuid4()}"
        own = ehr.put(f"/fhir/Questionnaire/{rid}", json={
            "resourceType": "Questionnaire", "id": rid, "status": "draft"}, headers=headers)
        assert own.status_code == 201, own.text
        free = f"nx-{uuid.uuid4()}"
        body = condition("oracles", world.ids["patient"])
        hidden = ehr.put(f"/fhir/Condition/{world.ids['condition']}",
                         json={**body, "id": world.ids["condition"]}, headers=headers)
        other = ehr.put(f"/fhir/Condition/{free}", json={**body, "id": free}, headers=headers)
        assert hidden.status_code == other.status_code == 403, (hidden.text, other.text)
        assert hidden.json()["issue"] == other.json()["issue"]


def test_a_provenance_about_a_hidden_resource_names_no_one(anon: TestClient,
                                                           world: World) -> None:
    """O2: a Provenance whose target the caller cannot see is refused exactly like one about a
    free id, naming only the reference as written, at Provenance.target[i]; never its owner."""
    headers = {**FHIR_JSON, **world.headers["labour-expert"]}
    free = {**world.ids, "condition": f"nx-{uuid.uuid4()}"}
    hidden = anon.post("/fhir/Provenance", json=_provenance(world.ids, ""), headers=headers)
    other = anon.post("/fhir/Provenance", json=_provenance(free, ""), headers=headers)
    assert hidden.status_code == other.status_code == 422, (hidden.text, other.text)
    issue = hidden.json()["issue"][0]
    assert issue["expression"] == ["Provenance.target[0]"]
    assert f"Condition/{world.ids['condition']}" in issue["diagnostics"]
    assert "Patient/" not in hidden.text


def test_a_refused_write_does_not_name_the_patient(anon: TestClient, world: World) -> None:
    """The consent refusal of a write is neutral: no patient id in the text."""
    resp = anon.post("/fhir/Condition", json=condition("oracles", world.ids["patient"]),
                     headers={**FHIR_JSON, **world.headers["insurance-physician"]})
    assert resp.status_code == 403, resp.text
    assert world.ids["patient"] not in resp.text
    assert re.search(r"Patient/", resp.json()["issue"][0]["diagnostics"]) is None


def test_a_transaction_writes_a_resource_and_its_provenance(anon: TestClient, client: TestClient,
                                                            actors: Actors) -> None:
    """A professional with a write permit still records a Condition with its Provenance in one
    transaction (the target is a urn:uuid of the same Bundle)."""
    tag = f"oracles-tx-{uuid.uuid4().hex[:8]}"
    pid = create(client, patient(tag, f"Writer{tag}"))["id"]
    grant(client, pid, [actors.permit("oncologist", actions=READ_WRITE)], tag)
    full_url = f"urn:uuid:{uuid.uuid4()}"
    bundle = _bundle("transaction",
                     {"fullUrl": full_url, "resource": condition(tag, pid),
                      "request": {"method": "POST", "url": "Condition"}},
                     {"resource": {"resourceType": "Provenance", "target": [{"reference": full_url}],
                                   "recorded": "2026-11-20T10:00:00+01:00",
                                   "agent": [{"who": {"reference": actors.fhir_user["oncologist"]}}]},
                      "request": {"method": "POST", "url": "Provenance"}})
    resp = anon.post("/fhir", json=bundle, headers={**FHIR_JSON, **actors.headers["oncologist"]})
    assert resp.status_code == 200, resp.text
    assert [e["response"]["status"] for e in resp.json()["entry"]] == ["201 Created"] * 2


def test_a_transaction_conditional_put_without_id_creates_for_a_professional(
        anon: TestClient, client: TestClient, actors: Actors) -> None:
    """A conditional PUT that matches nothing and carries no id is a create under an id the
    server assigns: allowed to callers who may not choose ids."""
    tag = f"oracles-cu-{uuid.uuid4().hex[:8]}"
    pid = create(client, patient(tag, f"Writer{tag}"))["id"]
    grant(client, pid, [actors.permit("oncologist", actions=READ_WRITE)], tag)
    bundle = _bundle("transaction", _put(f"Condition?subject=Patient/{pid}&code=254837009",
                                         condition(tag, pid)))
    resp = anon.post("/fhir", json=bundle, headers={**FHIR_JSON, **actors.headers["oncologist"]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["entry"][0]["response"]["status"] == "201 Created"


def test_capability_statement_says_clients_do_not_choose_ids(client: TestClient) -> None:
    statement = client.get("/fhir/metadata").json()
    assert {r["updateCreate"] for r in statement["rest"][0]["resource"]} == {False}
