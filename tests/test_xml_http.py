"""FHIR XML over HTTP (issue 15, formats): every stored demo resource reads back in XML as the
same resource as in JSON; read, vread, search, history, create, update, transaction and
operations speak XML when asked (`Accept`, `_format`), errors come as XML OperationOutcomes,
`_pretty` indents, and JSON stays the default."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from lxml import etree

from service.config import Settings
from service.demo.loader import demo_resources
from service.fhir.xml import FHIR_NS, from_xml, to_xml

from .rest_examples import example, post, tag_param
from .work_helpers import seed_demo

FHIR_XML = "application/fhir+xml"
XML_IN = {"Content-Type": FHIR_XML}
XML_OUT = {"Accept": FHIR_XML}
F = "{" + FHIR_NS + "}"


def _xml(resp: Any, status: int = 200) -> dict[str, Any]:
    """The response is FHIR XML with `status`; its JSON form."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == f"{FHIR_XML}; charset=utf-8", resp.headers
    assert resp.content.startswith(b"<?xml")
    return from_xml(resp.content)


def _outcome(resp: Any, status: int) -> dict[str, Any]:
    body = _xml(resp, status)
    assert body["resourceType"] == "OperationOutcome", body
    issue: dict[str, Any] = body["issue"][0]
    return issue


@pytest.fixture(scope="module")
def demo(settings: Settings, client: TestClient) -> list[dict[str, Any]]:
    """The demo data loaded (idempotently) into this database."""
    seed_demo(settings)
    return demo_resources()


def test_every_stored_demo_resource_round_trips(client: TestClient,
                                                demo: list[dict[str, Any]]) -> None:
    assert len(demo) > 150
    for resource in demo:
        url = f"/fhir/{resource['resourceType']}/{resource['id']}"
        stored = client.get(url)
        assert stored.status_code == 200
        as_xml = client.get(url, params={"_format": "xml"})
        assert _xml(as_xml) == stored.json(), url
        assert as_xml.headers["etag"] == stored.headers["etag"]
        assert from_xml(to_xml(stored.json())) == stored.json()


def test_demo_search_bundle_in_xml(client: TestClient, demo: list[dict[str, Any]]) -> None:
    params = {"_count": "50", "_include": "Observation:subject"}
    as_json = client.get("/fhir/Observation", params=params).json()
    bundle = _xml(client.get("/fhir/Observation", params=params, headers=XML_OUT))
    assert bundle["type"] == "searchset" and bundle["total"] == as_json["total"] > 0
    assert bundle["entry"] == as_json["entry"] and bundle["link"] == as_json["link"]


@pytest.mark.parametrize("ask", [
    {"headers": {"Accept": "application/fhir+xml"}},
    {"headers": {"Accept": "application/xml"}},
    {"headers": {"Accept": "text/xml"}},
    {"headers": {"Accept": "application/fhir+json;q=0.5, application/fhir+xml"}},
    {"headers": {"Accept": "application/fhir+xml;fhirVersion=4.0"}},
    {"params": {"_format": "xml"}},
    {"params": {"_format": "application/fhir+xml"}},
    {"params": {"_format": "text/xml"}, "headers": {"Accept": "application/fhir+json"}},
])
def test_read_in_xml(client: TestClient, tag: str, ask: dict[str, Any]) -> None:
    created = post(client, example("Patient", tag)).json()
    assert _xml(client.get(f"/fhir/Patient/{created['id']}", **ask)) == created


@pytest.mark.parametrize("accept", ["*/*", "application/fhir+json", "application/*",
                                    "application/fhir+xml;q=0.5, application/json"])
def test_json_stays_the_default(client: TestClient, tag: str, accept: str) -> None:
    created = post(client, example("Patient", tag)).json()
    resp = client.get(f"/fhir/Patient/{created['id']}", headers={"Accept": accept})
    assert resp.headers["content-type"] == "application/fhir+json; charset=utf-8"
    assert resp.json() == created


def test_vread_history_and_search_in_xml(client: TestClient, tag: str) -> None:
    created = post(client, example("Patient", tag)).json()
    url = f"/fhir/Patient/{created['id']}"
    assert _xml(client.get(f"{url}/_history/1", headers=XML_OUT)) == created
    history = _xml(client.get(f"{url}/_history", headers=XML_OUT))
    assert history["type"] == "history" and history["entry"][0]["resource"] == created
    found = _xml(client.get("/fhir/Patient", params={"_tag": tag_param(tag)}, headers=XML_OUT))
    assert [e["resource"] for e in found["entry"]] == [created]


def test_create_and_update_in_xml(client: TestClient, tag: str) -> None:
    patient = example("Patient", tag)
    resp = client.post("/fhir/Patient", content=to_xml(patient), headers={**XML_IN, **XML_OUT})
    created = _xml(resp, 201)
    assert resp.headers["location"].endswith(f"/Patient/{created['id']}/_history/1")
    stored = client.get(f"/fhir/Patient/{created['id']}").json()
    assert stored == created
    assert {k: v for k, v in stored.items() if k not in ("id", "meta")} == \
        {k: v for k, v in patient.items() if k != "meta"}
    changed = {**stored, "gender": "female", "_birthDate": {"extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
         "valueDateTime": "1969-03-02T08:30:00+01:00"}]}}
    updated = client.put(f"/fhir/Patient/{created['id']}", content=to_xml(changed),
                         headers={**XML_IN, **XML_OUT})
    body = _xml(updated)
    assert body["meta"]["versionId"] == "2" and body["gender"] == "female"
    assert client.get(f"/fhir/Patient/{created['id']}").json()["_birthDate"] == \
        changed["_birthDate"]


def test_xml_body_without_accept_is_answered_in_xml(client: TestClient, tag: str) -> None:
    """No stated preference: the answer follows the body's format (R4 3.1.0.1.10)."""
    resp = client.post("/fhir/Patient", content=to_xml(example("Patient", tag)),
                       headers={**XML_IN, "Accept": "*/*"})
    assert _xml(resp, 201)["resourceType"] == "Patient"
    json_in = post(client, example("Patient", tag))
    assert json_in.headers["content-type"].startswith("application/fhir+json")


def test_transaction_in_xml(client: TestClient, tag: str) -> None:
    patient = example("Patient", tag)
    observation = example("Observation", tag)
    observation["subject"] = {"reference": "urn:uuid:8f6c8a0e-4b53-4b4e-9d1e-3c2a1b0f9e7d"}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:8f6c8a0e-4b53-4b4e-9d1e-3c2a1b0f9e7d", "resource": patient,
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": observation, "request": {"method": "POST", "url": "Observation"}}]}
    answer = _xml(client.post("/fhir", content=to_xml(bundle, pretty=True),
                              headers={**XML_IN, **XML_OUT}))
    assert answer["type"] == "transaction-response"
    assert [e["response"]["status"][:3] for e in answer["entry"]] == ["201", "201"]
    pid = answer["entry"][0]["response"]["location"].split("/")[1]
    obs = client.get("/fhir/Observation", params={"_tag": tag_param(tag)}).json()["entry"]
    assert obs[0]["resource"]["subject"]["reference"] == f"Patient/{pid}"
    assert obs[0]["resource"]["valueQuantity"] == observation["valueQuantity"]


def test_operation_results_in_xml(client: TestClient, tag: str) -> None:
    created = post(client, example("Patient", tag)).json()
    everything = _xml(client.get(f"/fhir/Patient/{created['id']}/$everything",
                                 params={"_format": "xml"}))
    assert everything["resourceType"] == "Bundle"
    assert created["id"] in {e["resource"]["id"] for e in everything["entry"]}
    checked = client.post("/fhir/Patient/$validate", content=to_xml(example("Patient", tag)),
                          headers={**XML_IN, **XML_OUT})
    assert _xml(checked)["resourceType"] == "OperationOutcome"


def test_errors_in_xml(client: TestClient, tag: str) -> None:
    missing = _outcome(client.get("/fhir/Patient/does-not-exist", headers=XML_OUT), 404)
    assert missing["code"] == "not-found"
    broken = b'<Patient xmlns="http://hl7.org/fhir">\n  <active value="true">\n</Patient>'
    bad = _outcome(client.post("/fhir/Patient", content=broken,
                               headers={**XML_IN, **XML_OUT}), 400)
    assert "line 3, column" in bad["diagnostics"] and bad["location"][0].startswith("Line[3]")
    unknown = _outcome(client.post("/fhir/Patient", content=(
        b'<Patient xmlns="http://hl7.org/fhir">\n<nickname value="P"/></Patient>'),
        headers={**XML_IN, "Accept": "*/*"}), 400)
    assert unknown["expression"] == ["Patient.nickname"] and "line 2" in unknown["diagnostics"]
    invalid = {**example("Patient", tag), "gender": "nonsense"}
    wrong = _outcome(client.post("/fhir/Patient", content=to_xml(invalid),
                                 headers={**XML_IN, **XML_OUT}), 422)
    assert wrong["expression"] == ["Patient.gender"]
    hostile = (b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
               b'<Patient xmlns="http://hl7.org/fhir"><id value="&x;"/></Patient>')
    refused = client.post("/fhir/Patient", content=hostile, headers={**XML_IN, **XML_OUT})
    assert _outcome(refused, 400)["code"] == "structure" and b"root:" not in refused.content
    assert client.get("/fhir/Patient", params={"_tag": tag_param(tag)}).json()["total"] == 0


def test_unsupported_format_stays_406_in_json(client: TestClient) -> None:
    resp = client.get("/fhir/metadata", headers={"Accept": "text/turtle"})
    assert resp.status_code == 406
    assert resp.headers["content-type"].startswith("application/fhir+json")


def test_xml_body_is_size_bounded(client: TestClient, settings: Settings) -> None:
    resp = client.post("/fhir/Patient", content=b"<Patient/>", headers={
        **XML_IN, **XML_OUT, "Content-Length": str(settings.max_body_bytes + 1)})
    assert _outcome(resp, 413)["code"] == "too-long"


def test_patch_stays_json_patch(client: TestClient, tag: str) -> None:
    created = post(client, example("Patient", tag)).json()
    url = f"/fhir/Patient/{created['id']}"
    xml_patch = client.patch(url, content=to_xml(created), headers={**XML_IN, **XML_OUT})
    assert _outcome(xml_patch, 415)["code"] == "not-supported"
    patched = client.patch(url, content=orjson.dumps([
        {"op": "replace", "path": "/gender", "value": "other"}]), headers={
        "Content-Type": "application/json-patch+json", **XML_OUT})
    assert _xml(patched)["gender"] == "other"


def test_pretty_xml(client: TestClient, tag: str) -> None:
    created = post(client, example("Patient", tag)).json()
    url = f"/fhir/Patient/{created['id']}"
    compact = client.get(url, headers=XML_OUT)
    pretty = client.get(url, params={"_pretty": "true"}, headers=XML_OUT)
    assert compact.content.count(b"\n") <= 1
    assert b'\n  <id value="' in pretty.content and b'\n    <versionId value="1"/>' in \
        pretty.content
    assert from_xml(pretty.content) == from_xml(compact.content) == created


def test_capability_statement_lists_xml(client: TestClient) -> None:
    formats = client.get("/fhir/metadata").json()["format"]
    assert "application/fhir+xml" in formats and "application/fhir+json" in formats
    root = etree.fromstring(client.get("/fhir/metadata", params={"_format": "xml"}).content)
    assert root.tag == F + "CapabilityStatement"
    assert FHIR_XML in [e.get("value") for e in root.findall(F + "format")]
