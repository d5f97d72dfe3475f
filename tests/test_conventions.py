"""Conventions real clients rely on (issue 15): trailing slashes, correlation ids, health
probes, CORS, content negotiation, unknown and system-level search parameters, compartment
search and the operations the CapabilityStatement declares."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from service.config import Settings
from service.main import create_app
from service.store.database import create_engine
from service.store.migrate import upgrade

from .conftest import DATABASES, bearer, make_database
from .consent_world import Record
from .helpers import FHIR_JSON, TAG_SYSTEM
from .rest_examples import assert_outcome, example, post
from .search_helpers import error, expressions, ids, link, query_of, scope, search


# -- trailing slashes: processed, never redirected ---------------------------------------------
def test_post_base_with_trailing_slash_processes_the_batch(client: TestClient, tag: str) -> None:
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": example("Patient", tag), "request": {"method": "POST", "url": "Patient"}}]}
    for path in ("/fhir/", "/fhir"):
        resp = client.post(path, json=batch, headers=FHIR_JSON, follow_redirects=False)
        assert resp.status_code == 200, resp.text
        assert resp.json()["type"] == "batch-response"
        assert resp.json()["entry"][0]["response"]["status"].startswith("201")


@pytest.mark.parametrize("path", ["/fhir/metadata/", "/fhir/Patient/", "/fhir/Patient/_history/"])
def test_get_with_trailing_slash_is_answered(client: TestClient, path: str) -> None:
    resp = client.get(path, follow_redirects=False)
    assert resp.status_code == 200, resp.text
    assert resp.json()["resourceType"] in ("CapabilityStatement", "Bundle")


def test_read_with_trailing_slash(client: TestClient, tag: str) -> None:
    created = post(client, example("Patient", tag)).json()
    resp = client.get(f"/fhir/Patient/{created['id']}/", follow_redirects=False)
    assert resp.status_code == 200 and resp.json()["id"] == created["id"]


# -- correlation ids ---------------------------------------------------------------------------
@pytest.mark.parametrize("header", ["MedMij-Request-ID", "X-Request-Id", "X-Correlation-ID"])
def test_correlation_id_is_echoed_and_audited(client: TestClient, record: Record, tag: str,
                                              header: str) -> None:
    rid = f"req-{tag}-{header.lower()}"
    resp = client.get(f"/fhir/Patient/{record.patient}", headers={header: rid})
    assert resp.status_code == 200 and resp.headers[header] == rid
    events = client.get("/fhir/AuditEvent", params={"patient": record.patient, "_count": "200"})
    assert events.status_code == 200, events.text
    recorded = [e for entry in events.json().get("entry", [])
                for e in entry["resource"].get("entity", [])
                if e.get("type", {}).get("code") == "XrequestId"]
    assert [e["what"]["identifier"]["value"] for e in recorded] == [rid]
    # Errors carry it too, so a client can quote it when reporting a failure.
    missing = client.get("/fhir/Patient/does-not-exist", headers={header: rid})
    assert missing.status_code == 404 and missing.headers[header] == rid


# -- health and readiness ----------------------------------------------------------------------
def test_health_and_readiness(anon: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/healthz/"):
        resp = anon.get(path)
        assert resp.status_code == 200, resp.text
        assert resp.json()["status"] == "ok" and resp.json()["checks"]["database"] == "ok"
    assert anon.get("/readyz").json()["checks"]["migrations"]["status"] == "ok"


@pytest.mark.parametrize("kind", DATABASES)
def test_readiness_fails_when_the_schema_is_behind(kind: str, tmp_path: Path) -> None:
    url, drop = make_database(kind, tmp_path)
    try:
        upgrade(url)
        settings = Settings(database_url=url, base_url="http://testserver/fhir")
        with TestClient(create_app(settings), base_url="http://testserver") as c:
            assert c.get("/readyz").status_code == 200

            async def rewind() -> None:
                engine = create_engine(url)
                async with engine.begin() as conn:
                    await conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
                await engine.dispose()

            asyncio.run(rewind())
            resp = c.get("/readyz")
            assert resp.status_code == 503, resp.text
            assert resp.json()["checks"]["migrations"]["current"] == ["0001"]
            assert c.get("/healthz").status_code == 200  # alive, just not ready
    finally:
        drop()


# -- CORS ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser(settings: Settings) -> Any:
    app = create_app(settings.model_copy(update={"cors_origins": "https://app.example"}))
    with TestClient(app, base_url="http://testserver") as c:
        yield c


def test_cors_preflight_and_response_for_an_allowed_origin(browser: TestClient,
                                                           settings: Settings) -> None:
    for path, method in (("/fhir/Patient", "GET"), ("/auth/token", "POST")):
        pre = browser.options(path, headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert pre.status_code == 200, pre.text
        assert pre.headers["access-control-allow-origin"] == "https://app.example"
        assert method in pre.headers["access-control-allow-methods"]
        assert "authorization" in pre.headers["access-control-allow-headers"].lower()
    resp = browser.get("/fhir/Patient", params={"_count": "1"},
                       headers={"Origin": "https://app.example", **bearer(settings)})
    assert resp.status_code == 200
    assert resp.headers["access-control-allow-origin"] == "https://app.example"
    assert "location" in resp.headers["access-control-expose-headers"].lower()


def test_cors_refuses_other_origins(browser: TestClient, client: TestClient) -> None:
    pre = browser.options("/fhir/Patient", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in pre.headers
    # Without configured origins nothing is allowed cross-origin.
    plain = client.get("/fhir/metadata", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in plain.headers


# -- content negotiation ------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["application/fhir+json;fhirVersion=4.0",
                                 "application/fhir+json; fhirVersion=4.0.1"])
def test_format_with_r4_version_parameter(client: TestClient, fmt: str) -> None:
    assert client.get("/fhir/metadata", params={"_format": fmt}).status_code == 200


@pytest.mark.parametrize("accept", ["text/plain", "text/html", "application/fhir+json;q=0",
                                    "application/fhir+json; fhirVersion=3.0",
                                    "image/png, application/pdf"])
def test_unservable_accept_is_406(client: TestClient, accept: str) -> None:
    assert_outcome(client.get("/fhir/metadata", headers={"Accept": accept}), 406)
    assert_outcome(client.get("/fhir/Patient", headers={"Accept": accept}), 406)


@pytest.mark.parametrize("accept", ["text/html,application/xhtml+xml,*/*;q=0.8",
                                    "application/*", "application/fhir+json; fhirVersion=4.0",
                                    "text/plain, application/json;q=0.2"])
def test_acceptable_accept_values(client: TestClient, accept: str) -> None:
    assert client.get("/fhir/metadata", headers={"Accept": accept}).status_code == 200


def test_format_with_another_version_is_406(client: TestClient) -> None:
    assert_outcome(client.get("/fhir/metadata",
                              params={"_format": "application/fhir+json;fhirVersion=5.0"}), 406)


# -- unknown search parameters ------------------------------------------------------------------
def test_unknown_parameters_are_ignored_and_listed(client: TestClient, tag: str) -> None:
    created = post(client, example("Patient", tag)).json()
    bundle = search(client, "Patient", tag, [("_totalMethod", "count"), ("nonsense", "1")])
    assert ids(bundle) == [created["id"]] and bundle["total"] == 1
    names = [k for k, _ in query_of(link(bundle, "self") or "")]
    assert "_totalMethod" not in names and "nonsense" not in names and "_tag" in names
    [outcome] = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert sorted(x for i in outcome["issue"] for x in i["expression"]) == ["_totalMethod",
                                                                          "nonsense"]
    # A malformed value of a known parameter is still an error, and strict refuses unknown ones.
    assert expressions(error(client, "Patient", [("birthdate", "soon")])) == ["birthdate"]
    strict = error(client, "Patient", [("nonsense", "1")], headers={"Prefer": "handling=strict"})
    assert expressions(strict) == ["nonsense"]


def test_conditional_delete_never_ignores_a_criterion(client: TestClient, tag: str) -> None:
    post(client, example("Patient", tag))
    resp = client.delete("/fhir/Patient", params={"_tag": f"{TAG_SYSTEM}|{tag}", "nonsense": "1"})
    assert resp.status_code == 400
    assert search(client, "Patient", tag)["total"] == 1


# -- system search with _type, compartment search ------------------------------------------------
def test_system_search_with_type(client: TestClient, tag: str) -> None:
    pat = post(client, example("Patient", tag)).json()["id"]
    org = post(client, example("Organization", tag)).json()["id"]
    only = search(client, "", tag, [("_type", "Patient")])
    assert ids(only) == [pat]
    assert "_type" in [k for k, _ in query_of(link(only, "self") or "")]
    assert link(only, "self", ).startswith("http://testserver/fhir?")  # type: ignore[union-attr]
    # One type: its own parameters apply.
    gender = example("Patient", tag)["gender"]
    assert ids(search(client, "", tag, [("_type", "Patient"), ("gender", gender)])) == [pat]
    both = search(client, "", tag, [("_type", "Patient,Organization")])
    assert sorted(ids(both)) == sorted([pat, org])
    assert_outcome(client.get("/fhir", params={"_type": "Nope"}), 400, "_type")


def test_compartment_search(client: TestClient, record: Record, tag: str) -> None:
    other = post(client, example("Observation", tag, patient_id="someone-else")).json()["id"]
    resp = client.get(f"/fhir/Patient/{record.patient}/Observation", params=[scope(tag)])
    assert resp.status_code == 200, resp.text
    bundle = resp.json()
    expected = sorted(rid for cat, rid in record.ids.items()
                      if record.ref(cat).startswith("Observation/"))
    assert sorted(ids(bundle)) == expected and other not in ids(bundle)
    assert link(bundle, "self", ).startswith(  # type: ignore[union-attr]
        f"http://testserver/fhir/Patient/{record.patient}/Observation")
    conditions = client.get(f"/fhir/Patient/{record.patient}/Condition").json()
    assert ids(conditions) == [record.ids["medical"]]
    assert client.get(f"/fhir/Encounter/{record.patient}/Observation").status_code == 404
    assert client.get(f"/fhir/Patient/{record.patient}/Nope").status_code == 404


# -- the CapabilityStatement lists the operations ------------------------------------------------
def test_capability_statement_declares_operations(client: TestClient) -> None:
    rest = client.get("/fhir/metadata").json()["rest"][0]
    assert {"name": "validate",
            "definition": "https://pgo-work.nl/fhir/OperationDefinition/Resource-validate"} in \
        rest["operation"]
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    names = {op["name"]: op["definition"] for op in patient["operation"]}
    assert names["everything"] == "http://hl7.org/fhir/OperationDefinition/Patient-everything"
    assert {"work-summary", "late-effects-signals"} <= set(names)
    declared = {op["definition"] for r in rest["resource"] for op in r.get("operation", [])}
    declared |= {op["definition"] for op in rest["operation"]}
    published = client.get("/fhir/OperationDefinition", params={"_count": "100"}).json()
    ours = {e["resource"]["url"] for e in published.get("entry", [])}
    assert ours and ours <= declared
