"""Transaction and batch Bundles (R4 3.1.0.11): all-or-nothing, urn:uuid and conditional
references, ifNoneExist, processing order, and per-entry outcomes in a batch."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import orjson
from fastapi.testclient import TestClient

from .conftest import BASE
from .helpers import FHIR_JSON
from .rest_examples import BSN, assert_outcome, count, example, note_of, post, with_note


def _urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def _bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def _entry(method: str, url: str, resource: dict[str, Any] | None = None,
           full_url: str | None = None, **request: str) -> dict[str, Any]:
    out: dict[str, Any] = {"request": {"method": method, "url": url, **request}}
    if resource is not None:
        out["resource"] = resource
    if full_url:
        out["fullUrl"] = full_url
    return out


def _send(client: TestClient, bundle: dict[str, Any], **headers: str) -> Any:
    return client.post("/fhir", json=bundle, headers={**FHIR_JSON, **headers})


def _ok(client: TestClient, bundle: dict[str, Any]) -> list[dict[str, Any]]:
    resp = _send(client, bundle)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["resourceType"] == "Bundle" and body["type"] == f"{bundle['type']}-response"
    assert len(body["entry"]) == len(bundle["entry"])
    entries: list[dict[str, Any]] = body["entry"]
    return entries


def _patient(tag: str, bsn: str | None = None) -> dict[str, Any]:
    body = example("Patient", tag)
    if bsn:
        body["identifier"] = [{"system": BSN, "value": bsn}]
    return body


def _id_of(location: str) -> str:
    return location.split("/")[1]


# -- transaction ----------------------------------------------------------------------------

def test_transaction_rewrites_urn_uuid_references(client: TestClient, tag: str) -> None:
    pat_urn, obs_urn = _urn(), _urn()
    observation = example("Observation", tag)
    observation["subject"] = {"reference": pat_urn}
    observation["hasMember"] = [{"reference": obs_urn}]  # a self-reference via its own fullUrl
    goal = example("Goal", tag)
    goal["subject"] = {"reference": pat_urn}
    goal["addresses"] = [{"reference": obs_urn}]
    entries = _ok(client, _bundle(
        "transaction",
        _entry("POST", "Observation", observation, obs_urn),
        _entry("POST", "Patient", _patient(tag), pat_urn),
        _entry("POST", "Goal", goal, _urn()),
    ))
    assert [e["response"]["status"] for e in entries] == ["201 Created"] * 3
    obs_loc, pat_loc, goal_loc = (e["response"]["location"] for e in entries)
    assert obs_loc.startswith("Observation/") and obs_loc.endswith("/_history/1")
    assert pat_loc.startswith("Patient/") and goal_loc.startswith("Goal/")
    assert all(e["response"]["etag"] == 'W/"1"' for e in entries)
    assert all(e["response"]["lastModified"].endswith("Z") for e in entries)
    pid, oid = _id_of(pat_loc), _id_of(obs_loc)

    stored = client.get(f"/fhir/Observation/{oid}").json()
    assert stored["subject"] == {"reference": f"Patient/{pid}"}
    assert stored["hasMember"] == [{"reference": f"Observation/{oid}"}]
    stored_goal = client.get(f"/fhir/Goal/{_id_of(goal_loc)}").json()
    assert stored_goal["subject"] == {"reference": f"Patient/{pid}"}
    assert stored_goal["addresses"] == [{"reference": f"Observation/{oid}"}]
    assert entries[0]["resource"]["subject"] == {"reference": f"Patient/{pid}"}
    assert entries[1]["fullUrl"] == f"{BASE}/Patient/{pid}"

    found = client.get("/fhir/Observation", params={"subject": f"Patient/{pid}"}).json()
    assert found["total"] == 1, "the rewritten reference is indexed, not just stored"


def test_transaction_is_all_or_nothing(client: TestClient, tag: str) -> None:
    pat_urn = _urn()
    bad = example("Observation", tag)
    bad["subject"] = {"reference": pat_urn}
    bad["foo"] = "not an Observation element"
    existing = post(client, example("Goal", tag)).json()
    doomed = post(client, example("Goal", tag)).json()
    resp = _send(client, _bundle(
        "transaction",
        _entry("POST", "Patient", _patient(tag), pat_urn),
        _entry("PUT", f"Goal/{existing['id']}", with_note(existing, "changed")),
        _entry("POST", "Observation", bad, _urn()),
        _entry("DELETE", f"Goal/{doomed['id']}"),
    ))
    body = assert_outcome(resp, 422, "Bundle.entry[2]")
    assert any("Bundle.entry[2].resource.foo" in i.get("expression", []) for i in body["issue"])
    assert count(client, "Patient", tag) == 0
    assert count(client, "Observation", tag) == 0
    assert count(client, "Goal", tag) == 2
    current = client.get(f"/fhir/Goal/{existing['id']}")
    assert current.status_code == 200 and current.headers["etag"] == 'W/"1"'
    assert note_of(current.json()) is None
    for goal in (existing, doomed):
        history = client.get(f"/fhir/Goal/{goal['id']}/_history").json()
        assert history["total"] == 1


def test_transaction_failing_late_entry_rolls_back_earlier_ones(client: TestClient, tag: str) -> None:
    """The last processed entry (a GET) fails after every write ran: nothing may remain."""
    resp = _send(client, _bundle(
        "transaction",
        _entry("GET", "Patient/does-not-exist"),
        _entry("POST", "Patient", _patient(tag)),
        _entry("PUT", f"Patient/tx-{tag}", {**_patient(tag), "id": f"tx-{tag}"}),
    ))
    assert_outcome(resp, 404, "Bundle.entry[0]")
    assert count(client, "Patient", tag) == 0
    assert client.get(f"/fhir/Patient/tx-{tag}").status_code == 404


def test_transaction_with_unresolvable_urn_is_rejected(client: TestClient, tag: str) -> None:
    observation = example("Observation", tag)
    observation["subject"] = {"reference": _urn()}
    resp = _send(client, _bundle("transaction", _entry("POST", "Patient", _patient(tag), _urn()),
                                 _entry("POST", "Observation", observation, _urn())))
    assert_outcome(resp, 400, "Bundle.entry[1]")
    assert count(client, "Patient", tag) == 0


def test_transaction_resolves_conditional_references(client: TestClient, tag: str) -> None:
    bsn = uuid.uuid4().hex[:9]
    pid = post(client, _patient(tag, bsn)).json()["id"]
    observation = example("Observation", tag)
    observation["subject"] = {"reference": f"Patient?identifier={BSN}|{bsn}"}
    entries = _ok(client, _bundle("transaction", _entry("POST", "Observation", observation, _urn())))
    oid = _id_of(entries[0]["response"]["location"])
    assert client.get(f"/fhir/Observation/{oid}").json()["subject"] == {"reference": f"Patient/{pid}"}


def test_transaction_conditional_reference_must_match_exactly_one(client: TestClient,
                                                                  tag: str) -> None:
    bsn = uuid.uuid4().hex[:9]
    observation = example("Observation", tag)
    observation["subject"] = {"reference": f"Patient?identifier={BSN}|{bsn}"}
    bundle = _bundle("transaction", _entry("POST", "Observation", observation, _urn()))
    none = _send(client, bundle)
    assert 400 <= none.status_code < 500
    assert_outcome(none, none.status_code, "Bundle.entry[0]")
    post(client, _patient(tag, bsn))
    post(client, _patient(tag, bsn))
    assert_outcome(_send(client, bundle), 412, "Bundle.entry[0]")
    assert count(client, "Observation", tag) == 0


def test_transaction_if_none_exist(client: TestClient, tag: str) -> None:
    bsn = uuid.uuid4().hex[:9]
    existing = post(client, _patient(tag, bsn)).json()["id"]
    pat_urn = _urn()
    observation = example("Observation", tag)
    observation["subject"] = {"reference": pat_urn}
    bundle = _bundle(
        "transaction",
        _entry("POST", "Patient", _patient(tag, bsn), pat_urn, ifNoneExist=f"identifier={BSN}|{bsn}"),
        _entry("POST", "Observation", observation, _urn()),
    )
    entries = _ok(client, bundle)
    assert entries[0]["response"]["status"].startswith("200")
    assert entries[0]["response"]["location"].startswith(f"Patient/{existing}/")
    oid = _id_of(entries[1]["response"]["location"])
    assert client.get(f"/fhir/Observation/{oid}").json()["subject"] == \
        {"reference": f"Patient/{existing}"}
    assert count(client, "Patient", tag) == 1

    fresh_bsn = uuid.uuid4().hex[:9]
    new_urn = _urn()
    observation["subject"] = {"reference": new_urn}
    entries = _ok(client, _bundle(
        "transaction",
        _entry("POST", "Patient", _patient(tag, fresh_bsn), new_urn,
               ifNoneExist=f"identifier={BSN}|{fresh_bsn}"),
        _entry("POST", "Observation", observation, _urn()),
    ))
    assert entries[0]["response"]["status"].startswith("201")
    new_pid = _id_of(entries[0]["response"]["location"])
    assert new_pid != existing
    assert count(client, "Patient", tag) == 2


def test_transaction_conditional_update_identity(client: TestClient, tag: str) -> None:
    """A conditional PUT's fullUrl stands for the resource it matches, or the one it creates."""
    known_bsn, new_bsn = uuid.uuid4().hex[:9], uuid.uuid4().hex[:9]
    known = post(client, _patient(tag, known_bsn)).json()["id"]
    urns = [_urn(), _urn()]
    observations = [example("Observation", tag), example("Observation", tag)]
    for obs, urn in zip(observations, urns, strict=True):
        obs["subject"] = {"reference": urn}
    entries = _ok(client, _bundle(
        "transaction",
        _entry("PUT", f"Patient?identifier={BSN}|{known_bsn}", _patient(tag, known_bsn), urns[0]),
        _entry("PUT", f"Patient?identifier={BSN}|{new_bsn}", _patient(tag, new_bsn), urns[1]),
        _entry("POST", "Observation", observations[0], _urn()),
        _entry("POST", "Observation", observations[1], _urn()),
    ))
    assert [e["response"]["status"][:3] for e in entries] == ["200", "201", "201", "201"]
    assert _id_of(entries[0]["response"]["location"]) == known
    created = _id_of(entries[1]["response"]["location"])
    for entry, pid in zip(entries[2:], (known, created), strict=True):
        stored = client.get(f"/fhir/Observation/{_id_of(entry['response']['location'])}").json()
        assert stored["subject"] == {"reference": f"Patient/{pid}"}
    assert count(client, "Patient", tag) == 2


def test_transaction_may_touch_a_resource_once(client: TestClient, tag: str) -> None:
    """R4 3.1.0.11.2: overlapping identities in the DELETE/POST/PUT steps fail the transaction."""
    created = post(client, _patient(tag)).json()
    url = f"Patient/{created['id']}"
    resp = _send(client, _bundle(
        "transaction",
        _entry("PUT", url, with_note(created, "one")),
        _entry("DELETE", url),
    ))
    assert_outcome(resp, 400, "Bundle.entry[1]")
    current = client.get(f"/fhir/{url}")
    assert current.status_code == 200 and current.headers["etag"] == 'W/"1"'

    bsn = uuid.uuid4().hex[:9]
    resp = _send(client, _bundle(
        "transaction",
        _entry("POST", "Patient", _patient(tag, bsn), _urn(), ifNoneExist=f"identifier={BSN}|{bsn}"),
        _entry("PUT", f"Patient?identifier={BSN}|{bsn}", _patient(tag, bsn)),
        _entry("POST", "Observation", example("Observation", tag)),
    ))
    assert 400 <= resp.status_code < 500
    assert_outcome(resp, resp.status_code, "Bundle.entry[1]")
    assert count(client, "Patient", tag) == 1
    assert count(client, "Observation", tag) == 0


def test_transaction_processing_order(client: TestClient, tag: str) -> None:
    """DELETE, then POST, then PUT, then GET, whatever the order of the entries; the response
    lists the entries in request order."""
    doomed = post(client, _patient(tag)).json()["id"]
    kept = post(client, _patient(tag)).json()
    client_id = f"put-{tag}"
    entries = _ok(client, _bundle(
        "transaction",
        _entry("GET", f"Patient?_tag=https://pgo-work.nl/fhir/test-run|{tag}&_count=50"),
        _entry("PUT", f"Patient/{client_id}", {**_patient(tag), "id": client_id}),
        _entry("PUT", f"Patient/{kept['id']}", with_note(kept, "updated")),
        _entry("POST", "Patient", _patient(tag), _urn()),
        _entry("DELETE", f"Patient/{doomed}"),
        _entry("GET", f"Patient/{kept['id']}"),
    ))
    statuses = [e["response"]["status"][:3] for e in entries]
    assert statuses == ["200", "201", "200", "201", "204", "200"]
    search = entries[0]["resource"]
    assert search["type"] == "searchset"
    found = {e["resource"]["id"] for e in search.get("entry", [])}
    posted = _id_of(entries[3]["response"]["location"])
    assert found == {client_id, kept["id"], posted}, "GET runs after every write"
    assert note_of(entries[5]["resource"]) == "updated", "GET runs after PUT"
    assert entries[5]["response"]["etag"] == 'W/"2"'
    assert entries[1]["response"]["location"] == f"Patient/{client_id}/_history/1"
    assert entries[2]["response"]["location"] == f"Patient/{kept['id']}/_history/2"
    assert client.get(f"/fhir/Patient/{doomed}").status_code == 410


def test_transaction_delete_then_post_same_identifier(client: TestClient, tag: str) -> None:
    """DELETE runs before POST: a conditional create may reuse an identifier being deleted."""
    bsn = uuid.uuid4().hex[:9]
    old = post(client, _patient(tag, bsn)).json()["id"]
    pat_urn = _urn()
    observation = example("Observation", tag)
    observation["subject"] = {"reference": pat_urn}
    entries = _ok(client, _bundle(
        "transaction",
        _entry("POST", "Patient", _patient(tag, bsn), pat_urn,
               ifNoneExist=f"identifier={BSN}|{bsn}"),
        _entry("POST", "Observation", observation, _urn()),
        _entry("DELETE", f"Patient/{old}"),
    ))
    assert entries[0]["response"]["status"].startswith("201"), entries
    new = _id_of(entries[0]["response"]["location"])
    assert new != old
    assert count(client, "Patient", tag, identifier=f"{BSN}|{bsn}") == 1
    oid = _id_of(entries[1]["response"]["location"])
    assert client.get(f"/fhir/Observation/{oid}").json()["subject"] == \
        {"reference": f"Patient/{new}"}, "the reference follows the patient actually created"


def test_transaction_if_none_exist_matching_an_earlier_entry(client: TestClient,
                                                             tag: str) -> None:
    """Two entries create the same patient under one condition: the references of both must
    end up at one stored patient, or the transaction fails; never a dangling reference."""
    bsn = uuid.uuid4().hex[:9]
    first_urn, second_urn = _urn(), _urn()
    obs = [example("Observation", tag), example("Observation", tag)]
    obs[0]["subject"], obs[1]["subject"] = {"reference": first_urn}, {"reference": second_urn}
    condition = f"identifier={BSN}|{bsn}"
    resp = _send(client, _bundle(
        "transaction",
        _entry("POST", "Patient", _patient(tag, bsn), first_urn, ifNoneExist=condition),
        _entry("POST", "Patient", _patient(tag, bsn), second_urn, ifNoneExist=condition),
        _entry("POST", "Observation", obs[0], _urn()),
        _entry("POST", "Observation", obs[1], _urn()),
    ))
    if resp.status_code != 200:
        assert_outcome(resp, resp.status_code, "Bundle.entry[1]")
        assert 400 <= resp.status_code < 500
        assert count(client, "Patient", tag) == 0
        return
    entries = resp.json()["entry"]
    (pid,) = {_id_of(e["response"]["location"]) for e in entries[:2]}
    assert [e["response"]["status"][:3] for e in entries[:2]] == ["201", "200"]
    assert count(client, "Patient", tag) == 1
    for e in entries[2:]:
        stored = client.get(f"/fhir/Observation/{_id_of(e['response']['location'])}").json()
        assert stored["subject"] == {"reference": f"Patient/{pid}"}


def test_transaction_prefer_minimal(client: TestClient, tag: str) -> None:
    resp = _send(client, _bundle("transaction", _entry("POST", "Patient", _patient(tag))),
                 Prefer="return=minimal")
    assert resp.status_code == 200
    entry = resp.json()["entry"][0]
    assert "resource" not in entry
    assert entry["response"]["location"].startswith("Patient/")


def _binary_patch(ops: list[dict[str, Any]], content_type: str = "application/json-patch+json"
                  ) -> dict[str, Any]:
    data = base64.b64encode(orjson.dumps(ops)).decode()
    return {"resourceType": "Binary", "contentType": content_type, "data": data}


def test_transaction_patch_entry(client: TestClient, tag: str) -> None:
    created = post(client, _patient(tag)).json()
    gp_urn = _urn()
    ops = [{"op": "replace", "path": "/gender", "value": "other"},
           {"op": "add", "path": "/generalPractitioner",
            "value": [{"reference": gp_urn}]}]  # even a patch value may use a urn
    entries = _ok(client, _bundle(
        "transaction",
        _entry("PATCH", f"Patient/{created['id']}", _binary_patch(ops)),
        _entry("PUT", f"Practitioner/gp-{tag}", {**example("Practitioner", tag), "id": f"gp-{tag}"},
               gp_urn),
    ))
    assert entries[0]["response"]["status"].startswith("200")
    assert entries[0]["response"]["etag"] == 'W/"2"'
    stored = client.get(f"/fhir/Patient/{created['id']}").json()
    assert stored["gender"] == "other"
    assert stored["generalPractitioner"] == [{"reference": f"Practitioner/gp-{tag}"}]


def test_transaction_patch_entry_errors(client: TestClient, tag: str) -> None:
    created = post(client, _patient(tag)).json()
    url = f"Patient/{created['id']}"
    ops = [{"op": "replace", "path": "/gender", "value": "other"}]
    cases = [
        (_binary_patch(ops, "application/fhir+json"), 415),
        ({"resourceType": "Binary", "contentType": "application/json-patch+json",
          "data": "%%% not base64"}, 400),
        (ops, 400),
        (_binary_patch([{"op": "test", "path": "/gender", "value": "female"}]), 422),
    ]
    for body, status in cases:
        resp = _send(client, _bundle("transaction", _entry("PATCH", url, body),
                                     _entry("POST", "Patient", _patient(tag))))
        assert_outcome(resp, status, "Bundle.entry[0]")
    assert client.get(f"/fhir/Patient/{created['id']}").headers["etag"] == 'W/"1"'
    assert count(client, "Patient", tag) == 1


def test_empty_transaction(client: TestClient) -> None:
    resp = _send(client, {"resourceType": "Bundle", "type": "transaction"})
    assert resp.status_code == 200
    assert resp.json()["type"] == "transaction-response"


# -- batch ----------------------------------------------------------------------------------

def test_batch_entries_are_independent(client: TestClient, tag: str) -> None:
    bad = example("Observation", tag)
    bad["foo"] = "bar"
    stale = post(client, _patient(tag)).json()
    entries = _ok(client, _bundle(
        "batch",
        _entry("POST", "Patient", _patient(tag)),
        _entry("POST", "Observation", bad),
        _entry("GET", "Patient/does-not-exist"),
        _entry("PUT", f"Patient/{stale['id']}", with_note(stale, "x"), ifMatch='W/"9"'),
        _entry("PUT", f"Organization/org-{tag}", {**example("Organization", tag), "id": f"org-{tag}"}),
        _entry("GET", f"Patient/{stale['id']}"),
    ))
    statuses = [e["response"]["status"][:3] for e in entries]
    assert statuses == ["201", "422", "404", "412", "201", "200"]
    for i in (1, 2, 3):
        outcome = entries[i]["response"]["outcome"]
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["severity"] == "error"
        assert "resource" not in entries[i]
    assert [e for i in entries[1]["response"]["outcome"]["issue"]
            for e in i.get("expression", [])] == ["Observation.foo"]
    assert count(client, "Patient", tag) == 2
    assert count(client, "Observation", tag) == 0
    assert client.get(f"/fhir/Organization/org-{tag}").status_code == 200
    assert entries[5]["resource"]["meta"]["versionId"] == "1"


def test_batch_runs_in_request_order(client: TestClient, tag: str) -> None:
    """A batch has no ordering rules beyond its entries'; each sees the ones before it."""
    rid = f"batch-{tag}"
    entries = _ok(client, _bundle(
        "batch",
        _entry("PUT", f"Patient/{rid}", {**_patient(tag), "id": rid}),
        _entry("GET", f"Patient/{rid}"),
        _entry("DELETE", f"Patient/{rid}"),
    ))
    assert [e["response"]["status"][:3] for e in entries] == ["201", "200", "204"]


# -- malformed bundles ----------------------------------------------------------------------

def test_bundle_must_be_transaction_or_batch(client: TestClient) -> None:
    assert_outcome(_send(client, {"resourceType": "Bundle", "type": "collection"}), 400,
                   "Bundle.type")
    assert_outcome(_send(client, {"resourceType": "Patient"}), 400)


def test_bundle_entry_without_request(client: TestClient, tag: str) -> None:
    resp = _send(client, _bundle("transaction", {"resource": _patient(tag)}))
    assert_outcome(resp, 400, "Bundle.entry[0].request")
    resp = _send(client, _bundle("batch", _entry("TRACE", "Patient")))
    assert_outcome(resp, 400, "Bundle.entry[0].request.method")
    assert count(client, "Patient", tag) == 0


def test_post_entry_with_an_id_in_the_url_is_refused(client: TestClient, tag: str) -> None:
    rid = f"chosen-{tag}"
    entries = _ok(client, _bundle("batch", _entry("POST", f"Patient/{rid}", _patient(tag))))
    assert entries[0]["response"]["status"].startswith("4")
    resp = _send(client, _bundle("transaction", _entry("POST", f"Patient/{rid}", _patient(tag))))
    assert_outcome(resp, 400, "Bundle.entry[0]")
    assert client.get(f"/fhir/Patient/{rid}").status_code == 404


def test_transaction_bad_if_none_exist_names_the_entry(client: TestClient, tag: str) -> None:
    resp = _send(client, _bundle(
        "transaction",
        _entry("POST", "Patient", _patient(tag)),
        _entry("POST", "Patient", _patient(tag), ifNoneExist="no-such-parameter=1"),
    ))
    assert_outcome(resp, 400, "Bundle.entry[1]")
    assert count(client, "Patient", tag) == 0
