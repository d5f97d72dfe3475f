"""Purpose of use: why a request is made. It is in every AuditEvent (`purposeOfEvent`, IHE BALP):
the purpose the token states (`purpose_of_use`), or the default of the caller's role; and a
Consent provision that names purposes holds only for requests made for one of them."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from service.config import Settings

from .auth_helpers import auth, token
from .consent_helpers import grant
from .consent_world import Actors, Record, entries, patient_headers

ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
OWN_PURPOSES = "https://pgo-work.nl/fhir/CodeSystem/purpose-of-use"




def purposes_in_trail(anon: TestClient, patient_headers: dict[str, str], patient: str,
                      who: str) -> list[list[tuple[str, str]]]:
    """The purposeOfEvent codings of each AuditEvent by `who` on the patient's trail."""
    resp = anon.get("/fhir/AuditEvent", params={"patient": patient, "_count": "200"},
                    headers=patient_headers)
    assert resp.status_code == 200, resp.text
    return [[(c["system"], c["code"]) for p in e.get("purposeOfEvent", []) for c in p["coding"]]
            for e in entries(resp.json()) if e["agent"][0]["who"].get("reference") == who]


def with_purpose(provision: dict[str, Any], *codes: tuple[str, str]) -> dict[str, Any]:
    return {**provision, "purpose": [{"system": s, "code": c} for s, c in codes]}


def test_every_audit_event_says_why(anon: TestClient, settings: Settings, actors: Actors,
                                    record: Record, tag: str) -> None:
    own = patient_headers(settings, record.patient)
    grant(anon, record.patient, [actors.permit("oncologist"), actors.permit("occupational-physician"),
                                 actors.permit("insurance-physician")],
          f"{tag}-consent", headers=own["patient"])
    reads = {"oncologist": actors.headers["oncologist"],
             "occupational-physician": actors.headers["occupational-physician"],
             "insurance-physician": actors.headers["insurance-physician"]}
    for headers in reads.values():
        assert anon.get(f"/fhir/{record.ref('work-context')}", headers=headers).status_code == 200
    # The oncologist's hospital EHR states its purpose in the token: coordination of care.
    coordinating = auth(token(settings, "user/*.rs", fhir_user=actors.fhir_user["oncologist"],
                              role="oncologist", purpose=["COC"]))
    assert anon.get(f"/fhir/{record.ref('work-context')}", headers=coordinating).status_code == 200
    assert anon.get(f"/fhir/Patient/{record.patient}", headers=own["patient"]).status_code == 200

    onc = purposes_in_trail(anon, own["patient"], record.patient, actors.fhir_user["oncologist"])
    assert sorted(onc) == [[(ACT_REASON, "COC")], [(ACT_REASON, "TREAT")]]
    assert purposes_in_trail(anon, own["patient"], record.patient,
                             actors.fhir_user["occupational-physician"]) == [
        [(OWN_PURPOSES, "work-reintegration")]]
    assert purposes_in_trail(anon, own["patient"], record.patient,
                             actors.fhir_user["insurance-physician"]) == [
        [(OWN_PURPOSES, "work-capacity-assessment")]]
    mine = purposes_in_trail(anon, own["patient"], record.patient, f"Patient/{record.patient}")
    assert mine and all(p == [(ACT_REASON, "PATRQT")] for p in mine)


def test_a_provision_with_purposes_holds_only_for_those_purposes(
        anon: TestClient, settings: Settings, actors: Actors, record: Record, tag: str) -> None:
    """The patient shares work data with the oncologist for treatment only, and takes the
    medical data out of anything done for someone's payment."""
    own = patient_headers(settings, record.patient)
    onc_user = actors.fhir_user["oncologist"]
    grant(anon, record.patient, [
        with_purpose(actors.permit("oncologist", labels=["work-context"]), (ACT_REASON, "TREAT")),
        actors.permit("insurance-physician", exceptions=[
            with_purpose(actors.permit("insurance-physician", labels=["medical"],
                                       provision_type="deny"), (ACT_REASON, "HPAYMT"))])],
        f"{tag}-consent", headers=own["patient"])

    def read(headers: dict[str, str], category: str) -> int:
        return int(anon.get(f"/fhir/{record.ref(category)}", headers=headers).status_code)

    treating = actors.headers["oncologist"]  # the role's default purpose: treatment
    stated_treat = auth(token(settings, "user/*.rs", fhir_user=onc_user, role="oncologist",
                              purpose=[f"{ACT_REASON}|TREAT"]))
    researching = auth(token(settings, "user/*.rs", fhir_user=onc_user, role="oncologist",
                             purpose=["HRESCH"]))
    assert read(treating, "work-context") == 200 and read(stated_treat, "work-context") == 200
    assert read(researching, "work-context") == 404
    assert read(treating, "absence-benefits") == 404  # the provision's categories still hold

    insurance = actors.fhir_user["insurance-physician"]
    assessing = actors.headers["insurance-physician"]  # default: work-capacity assessment
    paying = auth(token(settings, "user/*.rs", fhir_user=insurance, role="insurance-physician",
                        purpose=["HPAYMT"]))
    unstated = auth(token(settings, "user/*.rs", fhir_user=insurance))
    assert read(assessing, "medical") == 200 and read(assessing, "work-context") == 200
    assert read(paying, "medical") == 404 and read(paying, "work-context") == 200
    # Without any purpose (a role with no default) a deny that names purposes holds anyway:
    # a deny fails closed, a permit with purposes would not hold.
    assert read(unstated, "medical") == 404 and read(unstated, "work-context") == 200
