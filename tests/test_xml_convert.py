"""FHIR XML <-> JSON conversion (service.fhir.xml) without a server: the demo data round-trips,
the XML follows the R4 rules a reader checks (definition order, attributes, primitive
extensions, contained resources, XHTML), and hostile or malformed XML is refused with where."""

from __future__ import annotations

from typing import Any

import pytest
from lxml import etree

from service.demo.loader import demo_resources
from service.fhir.outcome import FhirError
from service.fhir.xml import FHIR_NS, XHTML_NS, from_xml, to_xml

F = "{" + FHIR_NS + "}"
DIV = '<div xmlns="http://www.w3.org/1999/xhtml"><p>Anna <b>de Vries</b></p>\n  <p>tweede</p></div>'


def _patient() -> dict[str, Any]:
    """Every shape the JSON and XML forms differ on, keys deliberately out of definition order."""
    return {
        "resourceType": "Patient",
        "multipleBirthInteger": 2,
        "birthDate": "1970-01-01",
        "_birthDate": {"id": "bd", "extension": [
            {"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
             "valueDateTime": "1970-01-01T10:15:00+01:00"}]},
        "name": [{"id": "n1", "family": "Vries", "given": ["Anna", None, "Maria"],
                  "_given": [None, {"extension": [{"url": "http://example.org/x",
                                                   "valueString": "unknown"}]}, None]}],
        "active": False,
        "text": {"status": "generated", "div": DIV},
        "contained": [{"resourceType": "Organization", "id": "org", "name": "Werkgever BV"}],
        "managingOrganization": {"reference": "#org"},
        "extension": [
            {"url": "http://example.org/decimal", "valueDecimal": 1.5},
            {"url": "http://example.org/whole", "valueDecimal": 2},
            {"url": "http://example.org/tiny", "valueDecimal": 1e-7},
            {"url": "http://example.org/nested", "extension": [
                {"url": "part", "valueQuantity": {"value": 32.25, "unit": "h"}}]},
        ],
        "id": "anna",
    }


def test_every_demo_resource_round_trips() -> None:
    resources = demo_resources()
    assert len(resources) > 150
    for resource in resources:
        for pretty in (False, True):
            text = to_xml(resource, pretty)
            root = etree.fromstring(text)
            assert root.tag == F + resource["resourceType"]
            assert from_xml(text) == resource, resource["id"]


def test_xml_follows_the_r4_rules() -> None:
    root = etree.fromstring(to_xml(_patient()))
    names = [etree.QName(c).localname for c in root]
    assert names == ["id", "text", "contained", "extension", "extension", "extension",
                     "extension", "active", "name", "birthDate", "multipleBirthInteger",
                     "managingOrganization"]
    assert root.find(F + "id").get("value") == "anna"  # a resource's id is an element
    name = root.find(F + "name")
    assert name.get("id") == "n1" and name.find(F + "id") is None  # an element's id: attribute
    given = name.findall(F + "given")
    assert [g.get("value") for g in given] == ["Anna", None, "Maria"]
    assert given[1].find(F + "extension").get("url") == "http://example.org/x"
    birth = root.find(F + "birthDate")
    assert birth.get("id") == "bd" and birth.find(F + "extension/" + F + "valueDateTime") \
        .get("value") == "1970-01-01T10:15:00+01:00"
    assert root.find(F + "active").get("value") == "false"
    decimals = [e.find(F + "valueDecimal") for e in root.findall(F + "extension")[:3]]
    assert [d.get("value") for d in decimals] == ["1.5", "2", "1e-07"]
    assert root.find(F + "contained/" + F + "Organization/" + F + "name").get("value") == \
        "Werkgever BV"
    div = root.find(F + "text/{" + XHTML_NS + "}div")
    assert div is not None and div.find("{" + XHTML_NS + "}p/{" + XHTML_NS + "}b").text == \
        "de Vries"
    assert from_xml(to_xml(_patient())) == _patient()


def test_pretty_indents_but_keeps_the_narrative_exactly() -> None:
    pretty = to_xml(_patient(), pretty=True).decode()
    assert '\n  <id value="anna"/>' in pretty and '\n    <status value="generated"/>' in pretty
    assert DIV in pretty
    assert from_xml(pretty.encode()) == _patient()


def test_bundles_and_parameters_carry_resources() -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:5d0f3c5e-0c1e-4d5e-9f5b-1a2b3c4d5e6f", "resource": _patient(),
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Parameters", "parameter": [
            {"name": "resource", "resource": {"resourceType": "Basic", "code": {"text": "t"}}},
            {"name": "hours", "valueQuantity": {"value": 12.75, "unit": "h"}},
            {"name": "flag", "valueBoolean": True}]},
         "request": {"method": "POST", "url": "Parameters"}}]}
    root = etree.fromstring(to_xml(bundle))
    assert root.find(F + "entry/" + F + "resource/" + F + "Patient") is not None
    assert from_xml(to_xml(bundle)) == bundle


def _refused(text: bytes) -> dict[str, Any]:
    with pytest.raises(FhirError) as caught:
        from_xml(text)
    assert caught.value.status == 400
    issue: dict[str, Any] = caught.value.outcome["issue"][0]
    return issue


def test_malformed_xml_names_line_and_column() -> None:
    issue = _refused(b'<Patient xmlns="http://hl7.org/fhir">\n  <active value="true">\n'
                     b'</Patient>')
    assert issue["code"] == "structure" and "line 3, column" in issue["diagnostics"]
    assert issue["location"][0].startswith("Line[3] Col[")


@pytest.mark.parametrize("text, expression", [
    (b'<Patient xmlns="http://hl7.org/fhir"><active value="yes"/></Patient>', "Patient.active"),
    (b'<Patient xmlns="http://hl7.org/fhir"><nickname value="x"/></Patient>', "Patient.nickname"),
    (b'<Patient xmlns="http://hl7.org/fhir"><gender value="male"/><active value="true"/>'
     b'</Patient>', "Patient.active"),
    (b'<Patient xmlns="http://hl7.org/fhir"><active value="true"/><active value="false"/>'
     b'</Patient>', "Patient.active"),
    (b'<Patient xmlns="http://hl7.org/fhir"><active>true</active></Patient>', "Patient.active"),
    (b'<Patient xmlns="http://hl7.org/fhir"><name><family value="A" id="x" bogus="1"/></name>'
     b'</Patient>', "Patient.name[0].family"),
])
def test_xml_that_is_not_fhir_is_refused_with_its_path(text: bytes, expression: str) -> None:
    issue = _refused(text)
    assert issue["expression"] == [expression] and "line 1" in issue["diagnostics"]


def test_not_fhir_namespace_or_type_is_refused() -> None:
    assert "namespace" in _refused(b"<Patient><id value='1'/></Patient>")["diagnostics"]
    assert "not a FHIR R4 resource type" in _refused(
        b'<Nonsense xmlns="http://hl7.org/fhir"/>')["diagnostics"]


def test_entities_and_dtds_are_refused(tmp_path: Any) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top-secret")
    external = (f'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file://{secret}">]>'
                '<Patient xmlns="http://hl7.org/fhir"><id value="&x;"/></Patient>').encode()
    laughs = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
              + b"".join(f'<!ENTITY {c} "{("&" + p + ";") * 10}">'.encode()
                         for p, c in zip("abcdefgh", "bcdefghi", strict=True))
              + b']><Patient xmlns="http://hl7.org/fhir"><id value="&i;"/></Patient>')
    for text in (external, laughs, external.replace(b"DOCTYPE", b"doctype")):
        issue = _refused(text)
        assert "top-secret" not in str(issue)
    undeclared = _refused(b'<Patient xmlns="http://hl7.org/fhir"><id value="&x;"/></Patient>')
    assert "not well-formed" in undeclared["diagnostics"]


def test_nesting_beyond_any_resource_is_refused() -> None:
    deep = (b'<Patient xmlns="http://hl7.org/fhir">' + b'<extension url="u">' * 10000
            + b"</extension>" * 10000 + b"</Patient>")
    assert "depth" in _refused(deep)["diagnostics"]
    remote = (b'<?xml version="1.0"?><!DOCTYPE p SYSTEM "http://127.0.0.1:9/evil.dtd">'
              b'<Patient xmlns="http://hl7.org/fhir"/>')
    assert "DOCTYPE" in _refused(remote)["diagnostics"]


def test_characters_xml_cannot_carry_do_not_fail_the_answer() -> None:
    """An OperationOutcome that echoes a hostile parameter (control characters, a lone
    surrogate) is still an XML answer: those characters become U+FFFD."""
    outcome = {"resourceType": "OperationOutcome", "issue": [{
        "severity": "error", "code": "invalid", "diagnostics": "bad \x08\x1b\udc80 value \x00"}]}
    back = from_xml(to_xml(outcome))
    assert back["issue"][0]["diagnostics"] == "bad \ufffd\ufffd\ufffd value \ufffd"
