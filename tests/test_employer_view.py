"""The employer view is safe by construction (issue 11 item 2).

An employer (token role `employer`, the professional-role code `employer-hr`, a line manager)
gets a fixed allowlist of data categories no Consent can widen: work context and the
employer-safe capacity summary. The test gives the employer the broadest Consent the server
accepts (a permit without class or labels, a permit naming every data category, read and write)
on a record with a distinctive string in every category: a diagnosis, a self-reported complaint,
an absence reason, a WIA percentage, load-capacity notes, ICF b/s/e findings, an hours
limitation's reason, BAR free text. None of them may reach the employer on any path: read,
search (with includes), history, `$everything`, `$work-summary` and the text of its PDF.
What was written for the employer (an employer statement) does reach them, so the test cannot
pass by showing nothing.
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

from service.config import Settings

from .auth_helpers import auth, token
from .conformance_helpers import example
from .consent_helpers import CATEGORIES, PROFESSIONAL_ROLE, grant, permit
from .consent_world import Actors, entries, post
from .helpers import FHIR_JSON, create, patient, tagged

PW = "https://pgo-work.nl/fhir/CodeSystem/pgo-work-observation"
SD = "https://pgo-work.nl/fhir/StructureDefinition"
ICF = "http://hl7.org/fhir/sid/icf"
ALL_CATEGORIES = [*CATEGORIES, "employer-summary"]
READ_WRITE = ("access", "use", "disclose", "correct", "collect")
SECRETS = {
    "medical": "GEHEIM-DIAGNOSE-E11",
    "medical-note": "GEHEIM-ZIEKENHUISNOTITIE-E11",
    "complaint": "GEHEIM-KLACHT-E11",
    "absence-reason": "GEHEIM-VERZUIMREDEN-E11",
    "wia-percentage": "63.37",  # seconds never reach 63: no timestamp can contain it
    "load-capacity-note": "GEHEIM-BELASTBAARHEID-E11",
    "icf-b": "GEHEIM-ENERGIE-E11",
    "icf-e": "GEHEIM-GEZIN-E11",
    "hours-reason": "GEHEIM-UURREDEN-E11",
    "bar-home": "GEHEIM-THUISSITUATIE-E11",
    "bar-prognosis": "GEHEIM-PROGNOSE-E11",
}
NOT_FOR_EMPLOYER = "GEHEIM-DOELTEKST-E11"
"""A work goal's own description: work context, which an employer with consent reads as written
(the patient shares it), but not written for the employer, so never copied into the summary."""
FOR_EMPLOYER = "Kan maximaal 4 uur per dag werken, zonder tilwerk boven 10 kg."
ICF_CODE = re.compile(r'"code"\s*:\s*"[bes]\d{3,5}"')


def icf_item(tag: str, pid: str, code: str, qualifier: str, kind: str, note: str) -> dict[str, Any]:
    return tagged({
        "resourceType": "Observation", "meta": {"profile": [f"{SD}/load-capacity-item"]},
        "status": "final",
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "118228005"}]}],
        "code": {"coding": [{"system": ICF, "version": "2017a", "code": code}]},
        "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": "2026-10-20",
        "valueCodeableConcept": {"coding": [{"system": "https://pgo-work.nl/fhir/CodeSystem/icf-qualifier",
                                             "code": qualifier}]},
        "component": [{"code": {"coding": [{"system": PW, "code": "icf-qualifier-type"}]},
                       "valueCodeableConcept": {"coding": [{
                           "system": "https://pgo-work.nl/fhir/CodeSystem/icf-qualifier-type",
                           "code": kind}]}}],
        "note": [{"text": note}]}, tag)


def _answer(items: list[dict[str, Any]], link_id: str, text: str) -> None:
    for item in items:
        if item.get("linkId") == link_id:
            item["answer"] = [{"valueString": text}]
        _answer(item.get("item", []), link_id, text)


def secret_record(client: TestClient, tag: str) -> dict[str, str]:
    """A patient with a distinctive string in every category; the ids by what they hold."""
    pid = create(client, patient(tag, family="Geheim", given="Greta"))["id"]
    ids: dict[str, str] = {"patient": pid}

    def add(key: str, resource: dict[str, Any]) -> None:
        ids[key] = create(client, resource)["id"]

    add("medical", tagged({
        "resourceType": "Condition", "subject": {"reference": f"Patient/{pid}"},
        "code": {"text": SECRETS["medical"]}, "note": [{"text": SECRETS["medical-note"]}],
        "recordedDate": "2025-03-01"}, tag))
    complaint = example("late-effect-report", "valid-fatigue.json", tag, pid)
    complaint["note"] = [{"text": SECRETS["complaint"]}]
    add("complaint", complaint)
    absence = example("sick-leave-episode", "valid-short-ended.json", tag, pid)
    absence["component"].append({"code": {"coding": [{"system": PW, "code": "sick-leave-reason"}]},
                                 "valueCodeableConcept": {"coding": [{
                                     "system": "https://pgo-work.nl/fhir/CodeSystem/sick-leave-reason-category",
                                     "code": "medical"}]}})  # the reason is a category only (sle-2)
    absence["note"] = [{"text": SECRETS["absence-reason"]}]
    add("absence", absence)
    wia = example("wia-benefit", "valid-partial-current.json", tag, pid)
    wia["component"][0]["valueQuantity"]["value"] = float(SECRETS["wia-percentage"])
    add("wia", wia)
    profile = example("load-capacity-profile", "valid-profile.json", tag, pid)
    profile["note"] = [{"text": SECRETS["load-capacity-note"]}]
    add("load-capacity", profile)
    add("icf-b", icf_item(tag, pid, "b130", "2", "impairment-extent", SECRETS["icf-b"]))
    add("icf-e", icf_item(tag, pid, "e310", "2", "barrier", SECRETS["icf-e"]))
    add("icf-d", icf_item(tag, pid, "d430", "2", "capacity", SECRETS["load-capacity-note"]))
    hours = example("hours-limitation", "valid-4h-per-day.json", tag, pid)
    hours["component"][2]["valueCodeableConcept"]["text"] = SECRETS["hours-reason"]
    add("hours", hours)
    bar = example("bar", "valid-complete.json", tag, pid)
    _answer(bar["item"], "bar-personal-factors-text", SECRETS["bar-home"])
    _answer(bar["item"], "bar-prognosis-explanation", SECRETS["bar-prognosis"])
    add("bar", bar)
    add("work-context", example("contract-hours", "valid-28h-since-2024.json", tag, pid))
    goal = example("work-goal", "valid-contract-hours-target.json", tag, pid)
    goal["description"] = {"text": NOT_FOR_EMPLOYER}
    add("goal", goal)
    statement = example("employer-statement", "valid-hours-per-day.json", tag, pid)
    statement["valueString"] = FOR_EMPLOYER
    add("statement", statement)
    return ids


def pdf_text(bundle: dict[str, Any]) -> str:
    [binary] = [r for r in entries(bundle) if r["resourceType"] == "Binary"]
    reader = PdfReader(io.BytesIO(base64.b64decode(binary["data"])))
    return " ".join(" ".join(page.extract_text() for page in reader.pages).split())


def everything_the_employer_gets(anon: TestClient, headers: dict[str, str],
                                 ids: dict[str, str]) -> tuple[str, set[str], str, str]:
    """Every answer along every path, as one text; the ids of the resources they held; the
    $work-summary and the text of its PDF."""
    pid = ids["patient"]
    answers: list[Any] = []
    seen: set[str] = set()

    def get(path: str, track: bool = True, **params: str) -> Any:
        resp = anon.get(f"/fhir/{path}", params=params, headers=headers)
        assert resp.status_code in (200, 404), (path, resp.status_code, resp.text)
        body = resp.json()
        answers.append(body)
        if not track:
            return body
        if resp.status_code == 200 and body.get("resourceType") == "Bundle":
            seen.update(f"{r['resourceType']}/{r.get('id', '')}" for r in entries(body)
                        if r["resourceType"] != "OperationOutcome")
        elif resp.status_code == 200:
            seen.add(f"{body['resourceType']}/{body.get('id', '')}")
        return body

    for key, rid in ids.items():
        rtype = ("Patient" if key == "patient" else "Condition" if key == "medical"
                 else "QuestionnaireResponse" if key == "bar" else "Goal" if key == "goal"
                 else "Observation")
        get(f"{rtype}/{rid}")
        get(f"{rtype}/{rid}/_history")
    for rtype in ("Observation", "Condition", "QuestionnaireResponse", "Goal", "CarePlan"):
        get(rtype, patient=pid, _revinclude="Provenance:target", _include=f"{rtype}:subject")
        get(rtype, patient=pid, _summary="count")
    get("Observation", **{"subject:Patient.name": "Geheim"})
    get("Patient", _id=pid, _revinclude="Observation:subject")
    get("Observation/_history")
    get(f"Patient/{pid}/$everything")
    summary = get(f"Patient/{pid}/$work-summary", track=False)  # a document made for them
    return orjson.dumps(answers).decode(), seen, orjson.dumps(summary).decode(), pdf_text(summary)


def other_records(anon: TestClient, headers: dict[str, str], ids: dict[str, str]) -> set[str]:
    """What the caller sees outside this record (the type history spans every record)."""
    resp = anon.get("/fhir/Observation/_history", params={"_count": "500"}, headers=headers)
    return {f"{r['resourceType']}/{r['id']}" for r in entries(resp.json())
            if r.get("subject", {}).get("reference") != f"Patient/{ids['patient']}"}


@pytest.fixture(scope="module")
def manager(client: TestClient) -> str:
    """The employee's line manager: a PractitionerRole with the code line-manager (issue 11)."""
    tag = "line-manager"
    person = create(client, tagged({"resourceType": "Practitioner", "name": [{"family": "Chef"}]}, tag))
    org = create(client, tagged({"resourceType": "Organization", "name": "Werkgever BV"}, tag))
    role = create(client, tagged({
        "resourceType": "PractitionerRole", "active": True,
        "practitioner": {"reference": f"Practitioner/{person['id']}"},
        "organization": {"reference": f"Organization/{org['id']}"},
        "code": [{"coding": [{"system": PROFESSIONAL_ROLE, "code": "line-manager"}]}]}, tag))
    return f"PractitionerRole/{role['id']}"


@pytest.fixture
def broadest(client: TestClient, actors: Actors, manager: str, tag: str) -> dict[str, str]:
    """The record, and the broadest Consent the server accepts for the employer and the line
    manager: a permit without class or labels, and one naming every data category, medical
    included, to read and write."""
    ids = secret_record(client, tag)
    grant(client, ids["patient"], [
        actors.permit("employer", actions=READ_WRITE),
        actors.permit("employer", labels=ALL_CATEGORIES, actions=READ_WRITE),
        permit(manager, actions=READ_WRITE),
        permit(manager, labels=ALL_CATEGORIES, actions=READ_WRITE),
    ], f"{tag}-consent")
    return ids


def employer_accounts(settings: Settings, actors: Actors, manager: str) -> dict[str, dict[str, str]]:
    """The employer as the base role, as only its PractitionerRole code (employer-hr) says, and
    the line manager, whose token says only `practitioner` (the PractitionerRole code restricts)."""
    hr_role = actors.fhir_user["employer"]
    return {
        "employer": actors.headers["employer"],
        "employer-hr": auth(token(settings, "user/*.cruds", fhir_user=hr_role, role="practitioner",
                                  minutes=60)),
        "line-manager": auth(token(settings, "user/*.cruds", fhir_user=manager, role="practitioner",
                                   minutes=60)),
    }


@pytest.mark.parametrize("account", ["employer", "employer-hr", "line-manager"])
def test_no_consent_widens_what_an_employer_sees(anon: TestClient, settings: Settings,
                                                 actors: Actors, manager: str,
                                                 broadest: dict[str, str], account: str) -> None:
    headers = employer_accounts(settings, actors, manager)[account]
    text, seen, document, printed = everything_the_employer_gets(anon, headers, broadest)
    for what, secret in SECRETS.items():
        assert secret not in text, (account, what)
        assert secret not in printed, (account, what)
    assert not ICF_CODE.search(text), ICF_CODE.search(text)
    for code in ("wia-degree", "sick-leave-reason", "late-effect", "hours-limitation-reason"):
        assert code not in text, code
    # only the allowlist: work context, the statement written for the employer, the Patient
    mine = {f"{t}/{broadest[k]}" for t, k in (("Patient", "patient"), ("Observation", "work-context"),
                                             ("Goal", "goal"), ("Observation", "statement"))}
    assert seen <= mine | other_records(anon, headers, broadest), seen
    assert {f"Observation/{broadest['work-context']}", f"Observation/{broadest['statement']}"} <= seen
    assert FOR_EMPLOYER in printed
    assert NOT_FOR_EMPLOYER not in document and NOT_FOR_EMPLOYER not in printed


def test_the_patient_sees_their_own_summary_without_medical_text(
        anon: TestClient, settings: Settings, client: TestClient, tag: str) -> None:
    """The patient may see everything, and hands the PDF over: still no secret in it, but the
    capacity translated to work, the hours without their reason and the employer statement."""
    ids = secret_record(client, tag)
    own = auth(token(settings, "user/*.cruds", fhir_user=f"Patient/{ids['patient']}", role="patient",
                     minutes=60))
    resp = anon.get(f"/fhir/Patient/{ids['patient']}/$work-summary", headers=own)
    assert resp.status_code == 200, resp.text
    whole, printed = resp.text, pdf_text(resp.json())
    for what, secret in [*SECRETS.items(), ("goal", NOT_FOR_EMPLOYER)]:
        assert secret not in whole and secret not in printed, what
    assert not ICF_CODE.search(whole)
    for shown in ("Tillen en dragen: matig beperkt", FOR_EMPLOYER,
                  "Kan maximaal 4 uur per dag en 20 uur per week werken (naar verwachting t/m 28-02-2027)"):
        assert shown in printed, shown
    for absent in ("Energie", "Naaste familie", "Energetic", "Energetische", "weggelaten"):
        assert absent not in printed, absent


def test_an_employer_writes_nothing_outside_the_allowlist(anon: TestClient, actors: Actors,
                                                          broadest: dict[str, str], tag: str) -> None:
    employer, pid = actors.headers["employer"], broadest["patient"]
    refused = post(anon, "Observation", example("hours-limitation", "valid-4h-per-day.json", tag, pid),
                   employer)
    assert refused.status_code == 403 and refused.json()["resourceType"] == "OperationOutcome"
    refused = post(anon, "Observation", example("sick-leave-episode", "valid-short-ended.json", tag, pid),
                   employer)
    assert refused.status_code == 403
    allowed = post(anon, "Observation", example("contract-hours", "valid-28h-since-2024.json", tag, pid),
                   employer)
    assert allowed.status_code == 201, allowed.text


def test_late_effects_signals_only_for_those_who_can_act_on_them(
        anon: TestClient, client: TestClient, settings: Settings, actors: Actors, manager: str,
        broadest: dict[str, str], tag: str) -> None:
    pid = broadest["patient"]
    grant(client, pid, actors.permits(("occupational-physician", "labour-expert", "oncologist")),
          f"{tag}-consent-2")
    path = f"/fhir/Patient/{pid}/$late-effects-signals"
    for headers in employer_accounts(settings, actors, manager).values():
        resp = anon.get(path, headers=headers)
        assert resp.status_code == 403, resp.text
        assert resp.json()["issue"][0]["code"] == "forbidden"
        # the same answer for a patient that does not exist: the refusal tells nothing
        assert anon.get("/fhir/Patient/no-such-patient/$late-effects-signals",
                        headers=headers).status_code == 403
    assert anon.get(path, headers=actors.headers["oncologist"]).status_code == 403
    for role in ("occupational-physician", "labour-expert"):
        assert anon.get(path, headers=actors.headers[role]).status_code == 200, role
    own = auth(token(settings, "user/*.rs", fhir_user=f"Patient/{pid}", role="patient", minutes=10))
    assert anon.get(path, headers=own).status_code == 200


def test_bar_free_text_is_medical_for_a_labour_expert(anon: TestClient, client: TestClient,
                                                      actors: Actors, tag: str) -> None:
    """The BAR's free text about the home situation and the prognosis: a broad grant does not
    open it to a labour expert, a provision naming medical does."""
    ids = secret_record(client, tag)
    expert = actors.headers["labour-expert"]
    grant(client, ids["patient"], [actors.permit("labour-expert")], f"{tag}-consent")
    resp = anon.get(f"/fhir/QuestionnaireResponse/{ids['bar']}", headers=expert)
    assert resp.status_code == 404
    grant(client, ids["patient"], [actors.permit("labour-expert", labels=ALL_CATEGORIES)],
          f"{tag}-consent-medical")
    resp = anon.get(f"/fhir/QuestionnaireResponse/{ids['bar']}", headers=expert)
    assert resp.status_code == 200 and SECRETS["bar-home"] in resp.text


def test_employer_text_is_validated(client: TestClient, tag: str) -> None:
    """Text for the employer is short; a statement carries no note and no ICF code."""
    pid = create(client, patient(tag))["id"]
    statement = example("employer-statement", "valid-hours-per-day.json", tag, pid)
    statement["note"] = [{"text": "uit het dossier"}]
    resp = client.post("/fhir/Observation", json=statement, headers=FHIR_JSON)
    assert resp.status_code == 422
    assert "Observation.note[0]" in [e for i in resp.json()["issue"] for e in i.get("expression", [])]
