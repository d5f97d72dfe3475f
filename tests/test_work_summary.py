"""Patient/$work-summary: the employer-safe document (a FHIR document Bundle and a PDF).

It holds functional possibilities and limitations, agreed adjustments, the work goal and the
plan, and nothing labelled medical can reach it, whatever the caller may see: medical data with
distinctive strings is added next to the work data, and the strings are absent from the Bundle
and from the text of the PDF, while the work data is present in both.
"""

from __future__ import annotations

import base64
import io
import re
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader

from service.config import PROJECT_ROOT, Settings

from .helpers import FHIR_JSON, create, patient, tagged
from .work_helpers import (
    BASE,
    adjustment,
    as_patient,
    as_professional,
    phase,
    professional,
    rtw_plan,
    seed_demo,
    work_goal,
)

RULES = orjson.loads((PROJECT_ROOT / "profiles/rules/work-summary.json").read_bytes())
TERMS = RULES["medicalWording"]["terms"]
MEDICAL_LABEL = {"system": f"{BASE}/CodeSystem/data-category", "code": "medical"}
ICF = "http://hl7.org/fhir/sid/icf"
SECRETS = ["ZEBRA-DIAGNOSE-4711", "GEHEIM-DOEL-4711", "GEHEIM-PLAN-4711", "GEHEIM-FASE-4711",
           "GEHEIM-AANPASSING-4711", "GEHEIM-NOTITIE-4711", "Maintaining a body position",
           "Lifting and carrying objects", "chemokuur-4711", "NOTITIE-ZICHTBAAR-4711",
           "GEHEIM-OMSCHRIJVING-4711", "Weer 24 uur per week werken", "Opbouwplan"]


@pytest.fixture(scope="module")
def demo(settings: Settings, client: TestClient) -> None:
    seed_demo(settings)


def summary(client: TestClient, pid: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    resp = client.get(f"/fhir/Patient/{pid}/$work-summary", headers=headers or {})
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def entry(bundle: dict[str, Any], rtype: str) -> dict[str, Any]:
    [found] = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]
    return found


def narrative(bundle: dict[str, Any]) -> str:
    """The Composition's narrative as text (tags dropped, whitespace collapsed)."""
    div = entry(bundle, "Composition")["text"]["div"]
    return " ".join(re.sub(r"<[^>]+>", " ", div).replace("&amp;", "&").split())


def pdf_text(bundle: dict[str, Any]) -> str:
    binary = entry(bundle, "Binary")
    assert binary["contentType"] == "application/pdf"
    data = base64.b64decode(binary["data"])
    assert data.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(data))
    return " ".join(" ".join(page.extract_text() for page in reader.pages).split())


def load_item(tag: str, pid: str, code: str, display: str, qualifier: str, kind: str = "capacity",
              **extra: Any) -> dict[str, Any]:
    item = {
        "resourceType": "Observation",
        "meta": {"profile": [f"{BASE}/StructureDefinition/load-capacity-item"]},
        "status": "final",
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "118228005"}]}],
        "code": {"coding": [{"system": ICF, "version": "2017a", "code": code, "display": display}]},
        "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": "2026-10-20",
        "valueCodeableConcept": {"coding": [{"system": f"{BASE}/CodeSystem/icf-qualifier",
                                             "code": qualifier}]},
        "component": [{"code": {"coding": [{"system": f"{BASE}/CodeSystem/pgo-work-observation",
                                            "code": "icf-qualifier-type"}]},
                       "valueCodeableConcept": {"coding": [{"system": f"{BASE}/CodeSystem/icf-qualifier-type",
                                                            "code": kind}]}}]}
    item.update(extra)
    return tagged(item, tag)


def for_employer(element: dict[str, Any], text: str) -> dict[str, Any]:
    """The element with text written for the employer (the only free text the summary shows)."""
    return {**element, "extension": [{"url": f"{BASE}/StructureDefinition/employer-text",
                                      "valueString": text}]}


def medical(resource: dict[str, Any]) -> dict[str, Any]:
    """The same resource, labelled medical by its writer (a label may only be added)."""
    return {**resource, "meta": {**resource["meta"], "security": [MEDICAL_LABEL]}}


# -- the demo -------------------------------------------------------------------------------------------
def test_anna_gets_a_document_and_a_pdf_with_the_same_work_content(client: TestClient, demo: None) -> None:
    bundle = summary(client, "pat-anna")
    assert bundle["type"] == "document" and bundle["identifier"]["value"].startswith("urn:uuid:")
    composition = bundle["entry"][0]["resource"]
    assert composition["resourceType"] == "Composition" and composition["status"] == "final"
    assert composition["subject"] == {"reference": "Patient/pat-anna"}
    titles = [s["title"] for s in composition["section"]]
    assert titles == ["Werkdoel", "Beperkingen", "Toelichting voor de werkgever",
                      "Afgesproken aanpassingen", "Re-integratieplan", "Over dit overzicht", "PDF"]
    assert composition["section"][-1]["entry"][0]["reference"] == bundle["entry"][2]["fullUrl"]
    person = entry(bundle, "Patient")
    assert set(person) == {"resourceType", "id", "meta", "name"}  # no address, birth date, contact
    assert person["meta"]["tag"][0]["code"] == "SUBSETTED"
    # Issue 11: an allowlist. Work-translated d-categories (with the FML norm), the hours
    # limitation and its expected duration, text written for the employer; no b/e codes.
    expected = ["Anna de Vries", "Doel: in maart 2027 weer de volle 32 uur per week werken",
                "Tillen en dragen: niet meer dan 10 kg", "Omgaan met werkdruk",
                "Kan maximaal 5 uur per dag en 20 uur per week werken (naar verwachting t/m 06-12-2026)",
                "Geen tilwerk boven 10 kg, zoals dozen met archiefstukken.",
                "Korte pauzes (06-07-2026 t/m 01-03-2027; bezig): Elke 2 uur een pauze van 10 minuten.",
                "Rustige werkplek", "Thuiswerken", "Huidige fase: Fase 4, 20 uur per week.",
                "Fase 2 (03-08-2026 t/m 13-09-2026), 12 uur per week, afgerond"]
    text, printed = narrative(bundle), pdf_text(bundle)
    for phrase in expected:
        assert phrase in text, phrase
        assert phrase in printed, phrase
    # the diagnosis, the load-capacity notes and why a phase was extended stay out
    for absent in ("Borstkanker", "254837009", "Snel vermoeid", "herstel kost een nacht",
                   "vermoeidheid nam toe", "Fatiguability", "b4552", "b140", "e330", "Energetic",
                   "Energetische", "op geleide van klachten", "weggelaten"):
        assert absent not in orjson.dumps(bundle).decode() and absent not in printed, absent


def test_the_document_is_valid_fhir(client: TestClient, demo: None) -> None:
    bundle = summary(client, "pat-anna")
    resp = client.post("/fhir/Bundle/$validate", json=bundle, headers=FHIR_JSON)
    assert resp.status_code == 200
    assert [i for i in resp.json()["issue"] if i["severity"] in ("error", "fatal")] == []


@pytest.mark.parametrize("pid", ["pat-anna", "pat-kees", "pat-ingrid", "pat-marieke", "pat-daan",
                                 "pat-peter"])
def test_no_demo_summary_uses_medical_wording(client: TestClient, demo: None, pid: str) -> None:
    bundle = summary(client, pid)
    conditions = client.get("/fhir/Condition", params={"patient": pid}).json()["entry"]
    diagnoses = [c["resource"]["code"]["text"] for c in conditions]
    for text in (narrative(bundle), pdf_text(bundle)):
        lowered = text.lower()
        assert [t for t in TERMS if t in lowered] == []
        assert not [d for d in diagnoses if d in text]


# -- nothing labelled medical can reach it ------------------------------------------------------------
@pytest.fixture
def mixed(client: TestClient, tag: str) -> str:
    """A record with work data next to medical data that carries distinctive strings."""
    pid = create(client, patient(tag, family="Bakker", given="Sanne"))["id"]
    create(client, tagged({"resourceType": "Condition", "subject": {"reference": f"Patient/{pid}"},
                           "code": {"text": "ZEBRA-DIAGNOSE-4711"}}, tag))
    goal = create(client, work_goal(tag, pid, hours=24))["id"]
    create(client, medical({**work_goal(tag, pid), "description": {"text": "GEHEIM-DOEL-4711"}}))
    create(client, rtw_plan(tag, pid, goal, [
        phase(1, "2026-01-05", "2026-02-01", 8, "in-progress"),
        for_employer(adjustment("quiet-room", "2026-01-05", "GEHEIM-OMSCHRIJVING-4711"),
                     "Eigen kamer op de tweede verdieping."),
        for_employer(adjustment("short-breaks", "2026-01-05", "Pauze."), "Pauze na de chemokuur-4711."),
    ]))
    secret_plan = rtw_plan(tag, pid, goal, [
        {"detail": {**phase(1, "2026-01-05", "2026-02-01", 8, "in-progress")["detail"],
                    "description": "GEHEIM-FASE-4711"}},
        adjustment("remote-work", "2026-01-05", "GEHEIM-AANPASSING-4711")])
    create(client, medical({**secret_plan, "title": "GEHEIM-PLAN-4711"}))
    create(client, load_item(tag, pid, "d220", "Undertaking multiple tasks", "3",
                             note=[{"text": "NOTITIE-ZICHTBAAR-4711"}]))
    create(client, medical(load_item(tag, pid, "d430", "Lifting and carrying objects", "1",
                                     note=[{"text": "GEHEIM-NOTITIE-4711"}])))
    # an ICF finding from a clinical examination: the rules label it medical, whatever the writer says
    lab = load_item(tag, pid, "d415", "Maintaining a body position", "2")
    lab["meta"] = {"tag": lab["meta"]["tag"]}
    lab["category"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                    "code": "exam"}]}]
    stored = create(client, lab)
    assert "medical" in {s["code"] for s in stored["meta"]["security"]}
    return str(pid)


def test_nothing_labelled_medical_reaches_the_summary(client: TestClient, settings: Settings,
                                                      mixed: str) -> None:
    # the operator and the patient may both see the medical data: the summary still leaves it out
    seen = client.get("/fhir/Condition", params={"patient": mixed}).json()
    assert seen["total"] == 1
    for headers in ({}, as_patient(settings, mixed)):
        bundle = summary(client, mixed, headers)
        whole, printed = orjson.dumps(bundle).decode(), pdf_text(bundle)
        for secret in SECRETS:
            assert secret not in whole, secret
            assert secret not in printed, secret
        for shown in ("Sanne Bakker", "Gewerkte uren per week: 24 uur per week", "Rustige werkplek",
                      "Meerdere taken tegelijk doen: sterk beperkt", "Eigen kamer op de tweede verdieping.",
                      "Fase 1"):
            assert shown in narrative(bundle), shown
            assert shown in printed, shown
        # the adjustment itself stays; its text with medical wording does not, silently
        assert "Korte pauzes (vanaf 05-01-2026; bezig)" in printed
        assert "Korte pauzes (vanaf 05-01-2026; bezig):" not in printed
        assert "weggelaten" not in printed


def test_an_empty_record_still_gives_a_document(client: TestClient, tag: str) -> None:
    pid = create(client, patient(tag, family="Leeg", given="Lotte"))["id"]
    bundle = summary(client, pid)
    assert [s["title"] for s in entry(bundle, "Composition")["section"]] == ["Over dit overzicht", "PDF"]
    assert "geen mogelijkheden, aanpassingen of plannen vastgelegd" in pdf_text(bundle)


def test_the_summary_runs_under_the_callers_access(client: TestClient, settings: Settings, tag: str,
                                                  mixed: str) -> None:
    expert = professional(client, tag, "labour-expert")
    resp = client.get(f"/fhir/Patient/{mixed}/$work-summary",
                      headers=as_professional(settings, expert, "labour-expert"))
    assert resp.status_code == 404 and resp.json()["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/Patient/no-such-patient/$work-summary").status_code == 404
