"""Topic-based Subscriptions over HTTP (R4 Subscriptions Backport IG): a real rest-hook
receiver gets the handshake, heartbeats and each topic's notifications; the Subscription is its
owner's alone; what the owner may no longer see is never told."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.config import Settings
from service.main import create_app
from service.subscriptions.delivery import deliver_once

from .conformance_helpers import example
from .conftest import bearer
from .consent_helpers import consent
from .consent_world import Actors, patient_headers
from .helpers import FHIR_JSON, contract_hours, create, patient, tagged
from .subscription_helpers import Receiver, receiver, subscription

FHIR_TYPES = "http://hl7.org/fhir/fhir-types"


def deliver(client: TestClient) -> int:
    """Run the delivery worker until nothing is due (as `pgo-work worker` would)."""
    total = 0
    for _ in range(50):
        done = client.portal.call(deliver_once, client.app.state.runtime)  # type: ignore[attr-defined]
        total += done
        if not done:
            return total
    return total


def subscribe(client: TestClient, body: dict[str, Any],
              headers: dict[str, str] | None = None) -> dict[str, Any]:
    resp = client.post("/fhir/Subscription", json=body, headers={**FHIR_JSON, **(headers or {})})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def active(client: TestClient, box: Receiver, body: dict[str, Any],
           headers: dict[str, str] | None = None) -> str:
    """A Subscription that has passed its handshake."""
    sid = str(subscribe(client, body, headers)["id"])
    deliver(client)
    assert box.of(sid, "handshake"), "no handshake"
    got = client.get(f"/fhir/Subscription/{sid}", headers=headers or {})
    assert got.json()["status"] == "active", got.text
    return sid


def test_topics_are_served_as_r4_basic(client: TestClient) -> None:
    found = client.get(f"/fhir/Basic?code={FHIR_TYPES}|SubscriptionTopic").json()
    urls = set()
    for e in found["entry"]:
        ext = {x["url"].rsplit(".", 1)[-1]: x for x in e["resource"]["extension"]}
        urls.add(ext["url"]["valueUri"])
        filters = [x for x in e["resource"]["extension"] if x["url"].endswith(".canFilterBy")]
        assert any(p.get("valueString") == "patient" for f in filters for p in f["extension"])
    assert {u.rsplit("/", 1)[1] for u in urls} >= {
        "load-capacity-profile", "bar", "contract-hours", "sick-leave-episode", "work-goal",
        "consent", "referral"}
    cap = client.get("/fhir/metadata").json()
    sub = next(r for r in cap["rest"][0]["resource"] if r["type"] == "Subscription")
    assert {o["name"] for o in sub["operation"]} == {"status", "events"}
    assert {x["valueCanonical"] for x in sub["extension"]} == urls


@pytest.mark.parametrize(("change", "path"), [
    (lambda s: {**s, "criteria": "https://pgo-work.nl/fhir/SubscriptionTopic/nope"},
     "Subscription.criteria"),
    (lambda s: {**s, "_criteria": {"extension": [{
        "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
               "backport-filter-criteria", "valueString": "Observation?status=final"}]}},
     "Subscription.criteria.extension[0]"),
    (lambda s: {**s, "channel": {**s["channel"], "type": "websocket"}}, "Subscription.channel.type"),
    (lambda s: {**s, "channel": {**s["channel"], "endpoint": "ftp://example.org/x"}},
     "Subscription.channel.endpoint"),
])
def test_a_subscription_the_server_cannot_serve_is_422_with_its_path(client: TestClient, change: Any,
                                                                      path: str) -> None:
    body = change(subscription("contract-hours", "https://receiver.example/hook"))
    resp = client.post("/fhir/Subscription", json=body, headers=FHIR_JSON)
    assert resp.status_code == 422, resp.text
    assert resp.json()["issue"][0]["expression"] == [path]


def test_a_subscription_is_not_written_through_a_bundle(client: TestClient) -> None:
    body = subscription("contract-hours", "https://receiver.example/hook")
    resp = client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": body, "request": {"method": "POST", "url": "Subscription"}}]},
        headers=FHIR_JSON)
    assert resp.status_code == 422, resp.text


def _referral(tag: str, pid: str) -> dict[str, Any]:
    return tagged({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
                   "code": {"text": "Verwijzing naar de bedrijfsarts"},
                   "subject": {"reference": f"Patient/{pid}"}}, tag)


def _goal(tag: str, pid: str) -> dict[str, Any]:
    return example("work-goal", "valid-contract-hours-target.json", tag, pid)


TOPIC_WRITES = {
    "load-capacity-profile": lambda tag, pid: example("load-capacity-profile",
                                                      "valid-profile.json", tag, pid),
    "bar": lambda tag, pid: example("bar", "valid-minimal.json", tag, pid),
    "contract-hours": lambda tag, pid: contract_hours(tag, pid, 32, "2024-01-01"),
    "sick-leave-episode": lambda tag, pid: example("sick-leave-episode", "valid-short-ended.json", tag, pid),
    "work-goal": _goal,
    "consent": lambda tag, pid: consent(pid, [], tag),
    "referral": _referral,
}


def test_handshake_then_each_topic_notifies_the_patients_app(client: TestClient, settings: Settings,
                                                              tag: str) -> None:
    pid = create(client, patient(tag))["id"]
    other = create(client, patient(tag, given="Other"))["id"]
    app = patient_headers(settings, pid)["pgo-app"]
    with receiver() as box:
        subs = {topic: active(client, box, subscription(
            topic, box.url, [f"{'Goal' if topic == 'work-goal' else ''}"
                             f"{'?' if topic == 'work-goal' else ''}patient=Patient/{pid}"],
            content="full-resource", headers=["Authorization: Bearer hook-secret"]), app)
            for topic in TOPIC_WRITES}
        written = {}
        for topic, build in TOPIC_WRITES.items():
            written[topic] = create(client, build(tag, pid))
            create(client, build(tag, other))  # someone else's: no event for this app
        create(client, contract_hours(tag, pid, 30, "2024-01-01") | {
            "code": {"text": "not contract hours"}})  # no topic's query matches it
        deliver(client)
        for topic, sid in subs.items():
            events = box.of(sid, "event-notification")
            assert len(events) == 1, (topic, [e.numbers for e in events])
            note = events[0]
            rtype = written[topic]["resourceType"]
            assert note.numbers == [1]
            assert note.foci == [f"{client.app.state.runtime.base_url}/{rtype}/{written[topic]['id']}"]
            assert note.body["type"] == "history"
            assert note.body["entry"][1]["resource"]["id"] == written[topic]["id"]
            assert note.headers["authorization"] == "Bearer hook-secret"
            status = note.status()
            assert status["topic"].endswith(f"/SubscriptionTopic/{topic}")
            assert status["events-since-subscription-start"] == "1"


def test_payload_content_and_events_replay(client: TestClient, tag: str) -> None:
    pid = create(client, patient(tag))["id"]
    with receiver() as box:
        ids = active(client, box, subscription("contract-hours", box.url,
                                               [f"patient=Patient/{pid}"], content="id-only"))
        empty = active(client, box, subscription("contract-hours", box.url,
                                                 [f"patient=Patient/{pid}"], content="empty"))
        first = create(client, contract_hours(tag, pid, 32, "2024-01-01"))
        second = create(client, contract_hours(tag, pid, 24, "2025-01-01"))
        deliver(client)
        notes = box.of(ids, "event-notification")
        assert [n for note in notes for n in note.numbers] == [1, 2]
        entries = [e for note in notes for e in note.body["entry"][1:]]
        assert [e["fullUrl"].rsplit("/", 1)[1] for e in entries] == [first["id"], second["id"]]
        assert all("resource" not in e for e in entries)
        quiet = box.of(empty, "event-notification")
        assert [n for note in quiet for n in note.numbers] == [1, 2]
        assert all(len(note.body["entry"]) == 1 and not note.foci for note in quiet)
    replay = client.get(f"/fhir/Subscription/{ids}/$events?eventsSinceNumber=2"
                        "&content=full-resource").json()
    assert replay["type"] == "history"
    status = replay["entry"][0]["resource"]
    assert {p["name"]: p.get("valueCode") for p in status["parameter"]}["type"] == "query-event"
    assert [e["resource"]["id"] for e in replay["entry"][1:]] == [second["id"]]
    state = client.get(f"/fhir/Subscription/{ids}/$status").json()["entry"][0]["resource"]
    values = {p["name"]: p for p in state["parameter"]}
    assert values["status"]["valueCode"] == "active"
    assert values["events-since-subscription-start"]["valueString"] == "2"


def test_heartbeat_when_nothing_was_sent(client: TestClient, tag: str) -> None:
    pid = create(client, patient(tag))["id"]
    with receiver() as box:
        sid = active(client, box, subscription("sick-leave-episode", box.url,
                                               [f"patient=Patient/{pid}"], heartbeat=1))
        assert not box.of(sid, "heartbeat")
        time.sleep(1.2)
        deliver(client)
        beats = box.of(sid, "heartbeat")
        assert len(beats) == 1
        assert beats[0].status()["events-since-subscription-start"] == "0"


def test_failed_deliveries_are_retried_in_order_then_the_subscription_is_error(
        settings: Settings, tag: str) -> None:
    fast = settings.model_copy(update={"subscription_retry_seconds": 0.05,
                                       "subscription_max_attempts": 3})
    with TestClient(create_app(fast), base_url="http://testserver") as c, receiver() as box:
        c.headers.update({"Accept": "application/fhir+json", **bearer(settings)})
        pid = create(c, patient(tag))["id"]
        sid = active(c, box, subscription("contract-hours", box.url, [f"patient=Patient/{pid}"]))
        failures = {"left": 2}

        def flaky(body: dict[str, Any]) -> int:
            if failures["left"]:
                failures["left"] -= 1
                return 503
            return 200

        box.answer = flaky
        one = create(c, contract_hours(tag, pid, 32, "2024-01-01"))
        two = create(c, contract_hours(tag, pid, 20, "2025-01-01"))
        for _ in range(40):
            deliver(c)
            if box.of(sid, "event-notification"):
                break
            time.sleep(0.05)
        notes = box.of(sid, "event-notification")
        assert [n for note in notes for n in note.numbers] == [1, 2]
        assert [f.rsplit("/", 1)[1] for note in notes for f in note.foci] == [one["id"], two["id"]]
        assert c.get(f"/fhir/Subscription/{sid}").json()["status"] == "active"

        box.answer = lambda body: 500
        create(c, contract_hours(tag, pid, 16, "2026-01-01"))
        for _ in range(60):
            deliver(c)
            if c.get(f"/fhir/Subscription/{sid}").json()["status"] == "error":
                break
            time.sleep(0.05)
        stored = c.get(f"/fhir/Subscription/{sid}").json()
        assert stored["status"] == "error"
        assert "500" in stored["error"]


def test_a_handshake_that_fails_makes_the_subscription_error(client: TestClient) -> None:
    with receiver() as box:
        box.answer = lambda body: 404
        sid = subscribe(client, subscription("consent", box.url))["id"]
        deliver(client)
        assert client.get(f"/fhir/Subscription/{sid}").json()["status"] == "error"


def test_only_the_owner_and_the_operator_see_a_subscription(client: TestClient, anon: TestClient,
                                                           settings: Settings, tag: str) -> None:
    pid = create(client, patient(tag))["id"]
    mine, theirs = (patient_headers(settings, p)["pgo-app"] for p in (
        pid, create(client, patient(tag, given="Else"))["id"]))
    sid = subscribe(anon, subscription("consent", "https://receiver.example/hook",
                                       [f"patient=Patient/{pid}"]), mine)["id"]
    assert anon.get(f"/fhir/Subscription/{sid}", headers=mine).status_code == 200
    assert client.get(f"/fhir/Subscription/{sid}").status_code == 200  # the operator
    unknown = anon.get("/fhir/Subscription/does-not-exist", headers=theirs)
    for method, path in [("GET", ""), ("GET", "/$status"), ("GET", "/$events"), ("DELETE", "")]:
        resp = anon.request(method, f"/fhir/Subscription/{sid}{path}", headers=theirs)
        assert resp.status_code == 404, (method, path, resp.text)
        assert resp.json()["issue"][0]["code"] == unknown.json()["issue"][0]["code"]
    put = anon.put(f"/fhir/Subscription/{sid}", json=subscription("consent", "https://evil.example/"),
                   headers={**FHIR_JSON, **theirs})
    assert put.status_code == 404
    listed = anon.get("/fhir/Subscription", headers=theirs).json()
    assert sid not in {e["resource"]["id"] for e in listed.get("entry", [])}
    assert sid in {e["resource"]["id"] for e in anon.get("/fhir/Subscription", headers=mine)
                   .json()["entry"]}
    assert anon.delete(f"/fhir/Subscription/{sid}", headers=mine).status_code == 204
    assert anon.get(f"/fhir/Subscription/{sid}", headers=mine).status_code == 404


def test_a_withdrawn_consent_stops_notifications_on_the_next_event(
        client: TestClient, anon: TestClient, actors: Actors, tag: str) -> None:
    pid = create(client, patient(tag))["id"]
    given = create(client, consent(pid, [actors.permit("labour-expert")], tag))
    expert = actors.headers["labour-expert"]
    with receiver() as box:
        resp = anon.post("/fhir/Subscription", json=subscription(
            "contract-hours", box.url, [f"patient=Patient/{pid}"]), headers={**FHIR_JSON, **expert})
        assert resp.status_code == 201, resp.text
        sid = resp.json()["id"]
        deliver(client)
        seen = create(client, contract_hours(tag, pid, 32, "2024-01-01"))
        deliver(client)
        assert [f.rsplit("/", 1)[1] for n in box.of(sid, "event-notification") for f in n.foci] \
            == [seen["id"]]
        withdrawn = {**given, "status": "inactive"}
        assert client.put(f"/fhir/Consent/{given['id']}", json=withdrawn,
                          headers=FHIR_JSON).status_code == 200
        create(client, contract_hours(tag, pid, 12, "2025-06-01"))
        deliver(client)
        assert len(box.of(sid, "event-notification")) == 1
    state = anon.get(f"/fhir/Subscription/{sid}/$status", headers=expert).json()
    values = {p["name"]: p for p in state["entry"][0]["resource"]["parameter"]}
    assert values["events-since-subscription-start"]["valueString"] == "1"  # no row at all
    replay = anon.get(f"/fhir/Subscription/{sid}/$events", headers=expert).json()
    assert [e["fullUrl"].rsplit("/", 1)[1] for e in replay["entry"][1:]] == []  # nor the old one


def test_each_delivery_is_audited_in_the_patients_record(client: TestClient, settings: Settings,
                                                        tag: str) -> None:
    pid = create(client, patient(tag))["id"]
    app = patient_headers(settings, pid)["pgo-app"]
    with receiver() as box:
        sid = active(client, box, subscription("contract-hours", box.url,
                                               [f"patient=Patient/{pid}"]), app)
        before = client.get(f"/fhir/AuditEvent?patient=Patient/{pid}&_count=0&_total=accurate")
        written = create(client, contract_hours(tag, pid, 32, "2024-01-01"))
        deliver(client)
        assert box.of(sid, "event-notification")
    found = client.get(f"/fhir/AuditEvent?patient=Patient/{pid}&_count=200").json()
    delivered = [e["resource"] for e in found["entry"]
                 if any(x.get("description") == f"Subscription/{sid} notification (rest-hook)"
                        for x in e["resource"].get("entity", []))]
    assert len(delivered) == 1, found
    what = {x["what"]["reference"] for x in delivered[0]["entity"] if "what" in x}
    assert what == {f"Patient/{pid}", f"Observation/{written['id']}"}
    assert delivered[0]["subtype"][0]["code"] == "read"
    assert before.status_code == 200 and before.json()["total"] >= 1


def test_the_filter_narrows_what_an_owner_who_sees_everything_is_told(client: TestClient,
                                                                      tag: str) -> None:
    """The operator may see every record: only the filter keeps other patients out (with and
    without the resource type in front of the filter)."""
    pid = create(client, patient(tag))["id"]
    other = create(client, patient(tag, given="Other"))["id"]
    with receiver() as box:
        bare = active(client, box, subscription("contract-hours", box.url,
                                                [f"patient=Patient/{pid}"]))
        typed = active(client, box, subscription("work-goal", box.url,
                                                 [f"Goal?patient=Patient/{pid}"]))
        mine = create(client, contract_hours(tag, pid, 32, "2024-01-01"))
        create(client, contract_hours(tag, other, 32, "2024-01-01"))
        goal = create(client, _goal(tag, pid))
        create(client, _goal(tag, other))
        deliver(client)
        assert [f.rsplit("/", 1)[1] for n in box.of(bare, "event-notification") for f in n.foci] \
            == [mine["id"]]
        assert [f.rsplit("/", 1)[1] for n in box.of(typed, "event-notification") for f in n.foci] \
            == [goal["id"]]


@pytest.mark.parametrize("body", [[], [{"resourceType": "Subscription"}], "text", 7])
def test_a_body_that_is_not_a_resource_is_400_not_500(client: TestClient, body: Any) -> None:
    """Found by the hostile-input suite: a JSON array as the body was a 500."""
    import json

    for method, url in (("POST", "/fhir/Subscription"), ("PUT", "/fhir/Subscription/x1")):
        resp = client.request(method, url, content=json.dumps(body), headers=FHIR_JSON)
        assert resp.status_code == 400, (method, resp.text)
        assert resp.json()["resourceType"] == "OperationOutcome"
