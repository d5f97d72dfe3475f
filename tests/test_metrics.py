"""Prometheus metrics (issue 15): `GET /metrics` counts and times every request by FHIR
interaction, resource type, operation and status class, reads its gauges from the database at
scrape time, and carries no ids, query strings or patient data."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncConnection

from service.config import Settings
from service.main import create_app
from service.telemetry import db_gauges
from service.telemetry.classify import INVALID_TYPE, UNKNOWN_OPERATION, classify

from .helpers import FHIR_JSON, TAG_SYSTEM, create, patient

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
OPERATIONS = frozenset({"everything", "validate"})


def scrape(client: TestClient, **headers: str) -> tuple[str, Samples]:
    resp = client.get("/metrics", headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return resp.text, samples


def requests(samples: Samples, interaction: str, resource_type: str = "", operation: str = "",
             status_class: str = "2xx") -> float:
    key = ("pgo_work_http_requests_total", tuple(sorted({
        "interaction": interaction, "resource_type": resource_type, "operation": operation,
        "status_class": status_class}.items())))
    return samples.get(key, 0.0)


def latency_count(samples: Samples, interaction: str, resource_type: str) -> float:
    key = ("pgo_work_http_request_duration_seconds_count", tuple(sorted({
        "interaction": interaction, "resource_type": resource_type, "operation": "",
        "status_class": "2xx"}.items())))
    return samples.get(key, 0.0)


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("GET", "/fhir/Patient/abc", ("read", "Patient", "")),
    ("GET", "/fhir/Patient/abc/_history/2", ("vread", "Patient", "")),
    ("GET", "/fhir/Observation", ("search-type", "Observation", "")),
    ("POST", "/fhir/Observation/_search", ("search-type", "Observation", "")),
    ("GET", "/fhir", ("search-system", "", "")),
    ("GET", "/fhir/Patient/abc/Observation", ("search-compartment", "Observation", "")),
    ("POST", "/fhir/Observation", ("create", "Observation", "")),
    ("PUT", "/fhir/Patient/abc", ("update", "Patient", "")),
    ("PUT", "/fhir/Patient", ("update", "Patient", "")),
    ("PATCH", "/fhir/Patient/abc", ("patch", "Patient", "")),
    ("DELETE", "/fhir/Patient/abc", ("delete", "Patient", "")),
    ("POST", "/fhir", ("transaction", "", "")),
    ("POST", "/fhir/", ("transaction", "", "")),
    ("GET", "/fhir/metadata", ("capabilities", "", "")),
    ("GET", "/fhir/_history", ("history-system", "", "")),
    ("GET", "/fhir/Patient/_history", ("history-type", "Patient", "")),
    ("GET", "/fhir/Patient/abc/_history", ("history-instance", "Patient", "")),
    ("GET", "/fhir/Patient/abc/$everything", ("operation", "Patient", "$everything")),
    ("POST", "/fhir/Patient/$validate", ("operation", "Patient", "$validate")),
    ("GET", "/fhir/$made-up-by-a-client", ("operation", "", UNKNOWN_OPERATION)),
    ("GET", "/fhir/NotAType/abc", ("read", INVALID_TYPE, "")),
    ("GET", "/fhir/.well-known/smart-configuration", ("auth", "", "")),
    ("POST", "/auth/token", ("auth", "", "")),
    ("GET", "/healthz", ("health", "", "")),
    ("GET", "/metrics", ("metrics", "", "")),
    ("GET", "/something/else", ("other", "", "")),
])
def test_classification_is_bounded(method: str, path: str, expected: tuple[str, str, str]) -> None:
    what = classify(method, path, OPERATIONS)
    assert (what.interaction, what.resource_type, what.operation) == expected


def test_interactions_are_counted_and_timed_without_ids(client: TestClient, tag: str) -> None:
    _, before = scrape(client)
    anna = create(client, patient(tag, family=f"Fam{tag}"))
    pid = anna["id"]
    assert client.get(f"/fhir/Patient/{pid}").status_code == 200
    assert client.get(f"/fhir/Patient/{pid}/_history/1").status_code == 200
    assert client.get("/fhir/Patient", params={"_tag": f"{TAG_SYSTEM}|{tag}",
                                               "family": f"Fam{tag}"}).status_code == 200
    assert client.put(f"/fhir/Patient/{pid}", json={**anna, "gender": "male"},
                      headers=FHIR_JSON).status_code == 200
    assert client.patch(f"/fhir/Patient/{pid}", content=b'[{"op":"replace","path":"/gender",'
                        b'"value":"female"}]',
                        headers={"Content-Type": "application/json-patch+json"}).status_code == 200
    assert client.get(f"/fhir/Patient/{pid}/$everything").status_code == 200
    batch = {"resourceType": "Bundle", "type": "batch",
             "entry": [{"request": {"method": "GET", "url": f"Patient/{pid}"}}]}
    assert client.post("/fhir/", json=batch, headers=FHIR_JSON).status_code == 200
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient(tag), "request": {"method": "POST", "url": "Patient"}}]}
    assert client.post("/fhir", json=transaction, headers=FHIR_JSON).status_code == 200
    assert client.get("/fhir/Patient/does-not-exist-" + tag).status_code == 404
    assert client.delete(f"/fhir/Patient/{pid}").status_code in (200, 204)

    text, after = scrape(client)
    for interaction in ("create", "read", "vread", "search-type", "update", "patch", "delete"):
        assert requests(after, interaction, "Patient") - requests(before, interaction, "Patient") == 1, \
            interaction
        assert latency_count(after, interaction, "Patient") - latency_count(before, interaction,
                                                                            "Patient") == 1
    assert requests(after, "operation", "Patient", "$everything") - \
        requests(before, "operation", "Patient", "$everything") == 1
    assert requests(after, "batch") - requests(before, "batch") == 1
    assert requests(after, "transaction") - requests(before, "transaction") == 1
    assert requests(after, "read", "Patient", status_class="4xx") - \
        requests(before, "read", "Patient", status_class="4xx") == 1
    # No id, no search value, no name: nothing a label could leak.
    assert pid not in text and tag not in text and "Fam" not in text


def test_an_unknown_operation_or_type_adds_no_series(client: TestClient, tag: str) -> None:
    for i in range(5):
        client.get(f"/fhir/$op-{tag}-{i}")
        client.get(f"/fhir/Type{tag}{i}/x")
    text, samples = scrape(client)
    assert tag not in text
    assert requests(samples, "operation", "", UNKNOWN_OPERATION, "4xx") >= 5
    assert requests(samples, "read", INVALID_TYPE, "", "4xx") >= 5


def test_resources_stored_is_read_from_the_database(client: TestClient, tag: str) -> None:
    def stored(samples: Samples, rtype: str) -> float:
        return samples[("pgo_work_resources_stored", (("resource_type", rtype),))]

    create(client, patient(tag))
    _, before = scrape(client)
    create(client, patient(tag))
    created = create(client, patient(tag))
    _, after = scrape(client)
    assert stored(after, "Patient") - stored(before, "Patient") == 2
    assert client.delete(f"/fhir/Patient/{created['id']}").status_code in (200, 204)
    _, later = scrape(client)
    assert stored(later, "Patient") - stored(after, "Patient") == -1
    assert stored(later, "AuditEvent") > 0  # the reads above were audited
    assert later[("pgo_work_db_gauge_up", (("gauge", "pgo_work_resources_stored"),))] == 1


@pytest.fixture
def extra_gauges() -> Iterator[None]:
    saved = dict(db_gauges._GAUGES)
    yield
    db_gauges._GAUGES.clear()
    db_gauges._GAUGES.update(saved)


def test_a_gauge_registers_in_one_line_and_a_broken_one_costs_only_itself(
        client: TestClient, extra_gauges: None) -> None:
    async def jobs(conn: AsyncConnection) -> dict[tuple[str, ...], float]:
        return {("in-progress",): 2.0, ("completed",): 5.0}

    async def broken(conn: AsyncConnection) -> float:
        from sqlalchemy import text
        await conn.execute(text("SELECT * FROM no_such_table"))
        return 1.0

    async def outbox(conn: AsyncConnection) -> float:
        return 7.0

    db_gauges.register_db_gauge("pgo_work_test_export_jobs", "Export jobs by state", jobs,
                                labels=("state",))
    db_gauges.register_db_gauge("pgo_work_test_broken", "Reads a table that is not there", broken)
    db_gauges.register_db_gauge("pgo_work_test_outbox_depth", "Undelivered notifications", outbox)
    _, samples = scrape(client)
    assert samples[("pgo_work_test_export_jobs", (("state", "in-progress"),))] == 2
    assert samples[("pgo_work_test_export_jobs", (("state", "completed"),))] == 5
    assert samples[("pgo_work_test_outbox_depth", ())] == 7  # read after the broken one
    assert ("pgo_work_test_broken", ()) not in samples
    assert samples[("pgo_work_db_gauge_up", (("gauge", "pgo_work_test_broken"),))] == 0
    assert samples[("pgo_work_db_gauge_up", (("gauge", "pgo_work_resources_stored"),))] == 1


def test_metrics_needs_no_fhir_token_but_can_require_its_own(settings: Settings) -> None:
    with TestClient(create_app(settings)) as anon:
        scrape(anon)  # open by default, like /healthz
    guarded = settings.model_copy(update={"metrics_token": "scrape-secret"})
    with TestClient(create_app(guarded)) as anon:
        refused = anon.get("/metrics")
        assert refused.status_code == 401 and "Bearer" in refused.headers["www-authenticate"]
        assert anon.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        text, _ = scrape(anon, Authorization="Bearer scrape-secret")
        assert "pgo_work_http_requests_total" in text



def test_the_outbox_depth_counts_events_not_yet_delivered(client: TestClient, tag: str) -> None:
    """A subscription whose events wait for the delivery worker shows as outbox depth; the
    metric names no subscription, owner or patient."""
    from .helpers import contract_hours
    from .subscription_helpers import subscription

    def depth(samples: Samples) -> float:
        return sum(v for (name, labels), v in samples.items()
                   if name == "pgo_work_subscription_outbox_depth")

    pid = create(client, patient(tag))["id"]
    body = subscription("contract-hours", "https://receiver.example/hook",
                        filters=[f"Observation?patient=Patient/{pid}"])
    sub = client.post("/fhir/Subscription", json=body, headers=FHIR_JSON)
    assert sub.status_code == 201, sub.text
    _, before = scrape(client)
    for hours in (32, 24):
        create(client, contract_hours(tag, pid, hours, "2024-01-01"))
    text, after = scrape(client)
    assert depth(after) - depth(before) == 2  # no worker runs in tests: both wait
    assert pid not in text and sub.json()["id"] not in text


def test_export_jobs_are_counted_by_status(client: TestClient) -> None:
    from .bulk_helpers import kick_off

    def jobs(samples: Samples, status: str) -> float:
        return samples.get(("pgo_work_export_jobs", (("status", status),)), 0.0)

    _, before = scrape(client)
    status_url = kick_off(client, "$export", _type="Patient")
    _, after = scrape(client)
    assert jobs(after, "accepted") - jobs(before, "accepted") == 1
    assert client.delete(status_url).status_code == 202
    _, later = scrape(client)
    assert jobs(later, "accepted") - jobs(before, "accepted") == 0
