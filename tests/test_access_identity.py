"""Identity-bearing resources (issue 12, L1, L2, L6): consent is judged against who the caller
is, and that is read from PractitionerRoles, CareTeams and RelatedPersons. Only the operator (or
an organisation's administrator, for their own organisation; or the patient, for their own
record) may write those, whichever way the write arrives (create, update, delete, conditional,
Bundle entry); a restricting role holds however its PractitionerRole is set up, and a role no
one defined gets the most restrictive treatment."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi.testclient import TestClient

from service.access.issuer import mint_dev_token
from service.config import Settings

from .auth_helpers import auth, token
from .consent_helpers import PROFESSIONAL_ROLE, grant, permit
from .consent_world import Record, build_record, patient_headers, post
from .helpers import FHIR_JSON, TAG_SYSTEM, create, tagged

ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
SCOPE = "user/*.cruds"


# -- the world of these tests ---------------------------------------------------------------
def world(resource: dict[str, Any], tag: str) -> dict[str, Any]:
    """Tagged apart from the record (whose tag `visible` counts): directory entries are
    everyone's to see."""
    return tagged(resource, f"{tag}-w")


def practitioner(client: TestClient, tag: str, family: str) -> str:
    return str(create(client, world({"resourceType": "Practitioner", "name": [{"family": family}]},
                                    tag))["id"])


def organization(client: TestClient, tag: str, name: str) -> str:
    return str(create(client, world({"resourceType": "Organization", "name": name}, tag))["id"])


def role_body(tag: str, practitioner_id: str, organization_id: str, code: str,
              **extra: Any) -> dict[str, Any]:
    return world({
        "resourceType": "PractitionerRole", "active": True,
        "practitioner": {"reference": f"Practitioner/{practitioner_id}"},
        "organization": {"reference": f"Organization/{organization_id}"},
        "code": [{"coding": [{"system": PROFESSIONAL_ROLE, "code": code}]}], **extra}, tag)


def as_user(settings: Settings, fhir_user: str, role: str | None) -> dict[str, str]:
    return auth(token(settings, SCOPE, fhir_user=fhir_user, role=role, minutes=30))


def visible(anon: TestClient, headers: dict[str, str], record: Record) -> int:
    """How many of the record's resources (five categories and the Patient) the caller sees."""
    resp = anon.get("/fhir/", params={"_tag": record.tag_query, "_summary": "count"}, headers=headers)
    assert resp.status_code == 200, resp.text
    return int(resp.json()["total"])


def put(client: TestClient, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    if "?" not in path:
        body = {**body, "id": path.split("/")[1]}
    return client.put(f"/fhir/{path}", json=body, headers={**FHIR_JSON, **headers})


def transaction(client: TestClient, entries: list[dict[str, Any]], headers: dict[str, str],
                kind: str = "transaction") -> Any:
    return post(client, "", {"resourceType": "Bundle", "type": kind, "entry": entries}, headers)


def refused(resp: Any, *also: int) -> None:
    """403; `also`: statuses that refuse the same write earlier (405 for a PUT on a new id,
    which only the operator may choose: `service/access/client_ids.py`)."""
    assert resp.status_code in (403, *also), resp.text
    assert resp.json()["resourceType"] == "OperationOutcome"


# -- L1: PractitionerRole ---------------------------------------------------------------------
def test_a_professional_cannot_give_themself_an_organisations_consents(
        client: TestClient, anon: TestClient, settings: Settings, record: Record, tag: str) -> None:
    """The exact repro: a PUT of a PractitionerRole naming yourself at the consented
    organisation is refused, and the record stays invisible."""
    arbo = organization(client, tag, "Arbodienst")
    grant(client, record.patient, [permit(f"Organization/{arbo}", as_role="occupational-physician")],
          f"{tag}-c")
    x = practitioner(client, tag, "Indringer")
    headers = as_user(settings, f"Practitioner/{x}", "occupational-physician")
    assert visible(anon, headers, record) == 0

    body = role_body(tag, x, arbo, "occupational-physician")
    refused(put(anon, f"PractitionerRole/{tag}-self", body, headers), 405)
    refused(post(anon, "PractitionerRole", body, headers))
    assert client.get(f"/fhir/PractitionerRole/{tag}-self").status_code == 404
    assert visible(anon, headers, record) == 0
    assert anon.get(f"/fhir/{record.ref('medical')}", headers=headers).status_code == 404


def test_rewriting_or_deleting_another_practitioners_role_is_refused(
        client: TestClient, anon: TestClient, settings: Settings, record: Record, tag: str) -> None:
    arbo = organization(client, tag, "Arbodienst")
    grant(client, record.patient, [permit(f"Organization/{arbo}", as_role="occupational-physician")],
          f"{tag}-c")
    colleague = practitioner(client, tag, "Collega")
    theirs = create(client, role_body(tag, colleague, arbo, "occupational-physician"))
    x = practitioner(client, tag, "Indringer")
    headers = as_user(settings, f"Practitioner/{x}", "occupational-physician")

    repointed = {**theirs, "practitioner": {"reference": f"Practitioner/{x}"}}
    refused(put(anon, f"PractitionerRole/{theirs['id']}", repointed, headers))
    refused(anon.delete(f"/fhir/PractitionerRole/{theirs['id']}", headers=headers))
    stored = client.get(f"/fhir/PractitionerRole/{theirs['id']}").json()
    assert stored["practitioner"]["reference"] == f"Practitioner/{colleague}"
    assert visible(anon, headers, record) == 0


def test_bundles_and_conditional_writes_pass_the_same_check(
        client: TestClient, anon: TestClient, settings: Settings, record: Record, tag: str) -> None:
    arbo = organization(client, tag, "Arbodienst")
    grant(client, record.patient, [permit(f"Organization/{arbo}", as_role="occupational-physician")],
          f"{tag}-c")
    x = practitioner(client, tag, "Indringer")
    headers = as_user(settings, f"Practitioner/{x}", "occupational-physician")
    body = role_body(tag, x, arbo, "occupational-physician",
                     identifier=[{"system": "urn:test", "value": tag}])

    entry = {"resource": {**body, "id": f"{tag}-tx"},
             "request": {"method": "PUT", "url": f"PractitionerRole/{tag}-tx"}}
    refused(transaction(anon, [entry], headers), 405)
    posted = {"resource": body, "request": {"method": "POST", "url": "PractitionerRole"}}
    refused(transaction(anon, [posted], headers))
    batch = transaction(anon, [entry, posted], headers, kind="batch")
    assert batch.status_code == 200, batch.text
    assert [e["response"]["status"][:3] for e in batch.json()["entry"]] == ["405", "403"]
    conditional = {"resource": body, "request": {"method": "POST", "url": "PractitionerRole",
                                                 "ifNoneExist": f"identifier=urn:test|{tag}"}}
    refused(transaction(anon, [conditional], headers))
    refused(put(anon, f"PractitionerRole?identifier=urn:test|{tag}", body, headers))

    # A conditional update that matches someone else's role, to re-point it at yourself.
    colleague = practitioner(client, tag, "Collega")
    create(client, role_body(tag, colleague, arbo, "occupational-physician",
                             identifier=[{"system": "urn:test", "value": f"{tag}-c"}]))
    refused(put(anon, f"PractitionerRole?identifier=urn:test|{tag}-c",
                {**body, "identifier": [{"system": "urn:test", "value": f"{tag}-c"}]}, headers))
    found = client.get("/fhir/PractitionerRole", params={"practitioner": f"Practitioner/{x}"}).json()
    assert found.get("total", 0) == 0
    assert visible(anon, headers, record) == 0


def admin_headers(settings: Settings, fhir_user: str, organization_id: str | None) -> dict[str, str]:
    """An organisation administrator: the organisation is a claim of the token (the account's),
    nothing the admin can write."""
    return auth(asyncio.run(mint_dev_token(
        settings, scope=SCOPE, fhir_user=fhir_user, role="organization-admin", minutes=30,
        organization=f"Organization/{organization_id}" if organization_id else None)))


def test_an_organisation_administrator_maintains_only_their_own_organisations_roles(
        client: TestClient, anon: TestClient, settings: Settings, tag: str) -> None:
    arbo = organization(client, tag, "Arbodienst")
    elsewhere = organization(client, tag, "Andere dienst")
    admin = practitioner(client, tag, "Beheerder")
    headers = admin_headers(settings, f"Practitioner/{admin}", arbo)
    doctor = practitioner(client, tag, "Bedrijfsarts")

    made = post(anon, "PractitionerRole", role_body(tag, doctor, arbo, "occupational-physician"),
                headers)
    assert made.status_code == 201, made.text
    ended = put(anon, f"PractitionerRole/{made.json()['id']}", {**made.json(), "active": False},
                headers)
    assert ended.status_code == 200, ended.text
    refused(post(anon, "PractitionerRole", role_body(tag, doctor, elsewhere, "occupational-physician"),
                 headers))
    # Not even by moving another organisation's role over to their own.
    other = create(client, role_body(tag, doctor, elsewhere, "occupational-physician"))
    refused(put(anon, f"PractitionerRole/{other['id']}",
                {**other, "organization": {"reference": f"Organization/{arbo}"}}, headers))
    # Never a role of their own.
    refused(post(anon, "PractitionerRole", role_body(tag, admin, arbo, "occupational-physician"),
                 headers))
    # The role without the organisation claim administers nothing.
    refused(post(anon, "PractitionerRole", role_body(tag, doctor, arbo, "occupational-physician"),
                 admin_headers(settings, f"Practitioner/{admin}", None)))


# -- L1: CareTeam ----------------------------------------------------------------------------
def test_care_team_membership_is_not_the_members_to_write(
        client: TestClient, anon: TestClient, settings: Settings, record: Record, tag: str) -> None:
    """An organisation's team (in no record) is the operator's; a team in the record is the
    patient's. A professional with a write permit in the record writes neither."""
    insurer = practitioner(client, tag, "Verzekeringsarts")
    team = create(client, world({"resourceType": "CareTeam", "status": "active", "name": "UWV",
                                 "participant": [{"member": {"reference": f"Practitioner/{insurer}"}}]},
                                tag))
    grant(client, record.patient, [permit(f"CareTeam/{team['id']}")], f"{tag}-c")
    x = practitioner(client, tag, "Indringer")
    grant(client, record.patient, [permit(f"Practitioner/{x}", labels=["work-context"],
                                          actions=("access", "collect"))], f"{tag}-x")
    headers = as_user(settings, f"Practitioner/{x}", "general-practitioner")
    assert visible(anon, headers, record) == 2  # the work-context Observation and the Patient

    joined = {**team, "participant": [*team["participant"],
                                      {"member": {"reference": f"Practitioner/{x}"}}]}
    # The organisation's team is labelled work-context and in no record: hidden from them.
    # (A hidden id answers as a free one: 405, only the operator chooses ids.)
    assert put(anon, f"CareTeam/{team['id']}", joined, headers).status_code in (403, 404, 405)
    # Nor by pulling the team into the record where the permit lets them write.
    assert put(anon, f"CareTeam/{team['id']}", {
        **joined, "subject": {"reference": f"Patient/{record.patient}"}},
        headers).status_code in (403, 404, 405)
    assert client.get(f"/fhir/CareTeam/{team['id']}").json()["participant"] == team["participant"]
    # Nor a team of their own making, in no record.
    refused(post(anon, "CareTeam", {**joined, "id": None}, headers))
    own_team = world({"resourceType": "CareTeam", "status": "active",
                       "subject": {"reference": f"Patient/{record.patient}"},
                       "participant": [{"member": {"reference": f"Practitioner/{x}"}}]}, tag)
    refused(post(anon, "CareTeam", own_team, headers))
    assert visible(anon, headers, record) == 2

    # The patient writes the team in their own record.
    mine = patient_headers(settings, record.patient)["patient"]
    assert post(anon, "CareTeam", own_team, mine).status_code == 201


# -- L2: a restricting role holds however its PractitionerRole is set up -------------------------
def test_an_employer_cannot_drop_the_never_medical_rule(
        client: TestClient, anon: TestClient, settings: Settings, record: Record, tag: str) -> None:
    employer_org = organization(client, tag, "Werkgever BV")
    hr = practitioner(client, tag, "Werkgever")
    role = create(client, role_body(tag, hr, employer_org, "employer-hr"))
    grant(client, record.patient, [permit(f"PractitionerRole/{role['id']}")], f"{tag}-c")
    # Her employer status comes only from the PractitionerRole: the token says "practitioner".
    headers = as_user(settings, f"PractitionerRole/{role['id']}", "practitioner")
    assert anon.get(f"/fhir/{record.ref('work-context')}", headers=headers).status_code == 200
    assert anon.get(f"/fhir/{record.ref('medical')}", headers=headers).status_code == 404

    refused(put(anon, f"PractitionerRole/{role['id']}", {**role, "active": False}, headers))
    # Deactivated or ended by the operator: the restriction stays.
    stopped = put(client, f"PractitionerRole/{role['id']}",
                  {**role, "active": False, "period": {"start": "2024-01-01", "end": "2025-01-01"}}, {})
    assert stopped.status_code == 200, stopped.text
    assert anon.get(f"/fhir/{record.ref('medical')}", headers=headers).status_code == 404
    assert visible(anon, headers, record) == 2  # the employer allowlist: work context, the Patient


def test_an_unknown_role_gets_nothing_medical_under_a_broad_consent(
        client: TestClient, anon: TestClient, settings: Settings, record: Record, tag: str) -> None:
    someone = practitioner(client, tag, "Onbekend")
    grant(client, record.patient, [permit(f"Practitioner/{someone}")], f"{tag}-c")
    # A role claim no rule and no CodeSystem defines (an external issuer, a mistyped account).
    headers = as_user(settings, f"Practitioner/{someone}", "chiropractor")
    assert anon.get(f"/fhir/{record.ref('medical')}", headers=headers).status_code == 404
    assert visible(anon, headers, record) == 1  # the broad grant covers no category: the Patient
    grant(client, record.patient, [permit(f"Practitioner/{someone}", labels=["work-context"])],
          f"{tag}-explicit")
    assert anon.get(f"/fhir/{record.ref('work-context')}", headers=headers).status_code == 200

    # A professional-role code the CodeSystem does not define, on a role without a role claim.
    org = organization(client, tag, "Praktijk")
    odd = create(client, role_body(tag, someone, org, "astrologer"))
    grant(client, record.patient, [permit(f"PractitionerRole/{odd['id']}")], f"{tag}-odd")
    by_role = as_user(settings, f"PractitionerRole/{odd['id']}", None)
    assert anon.get(f"/fhir/{record.ref('medical')}", headers=by_role).status_code == 404


# -- L6: representatives ---------------------------------------------------------------------
def guardian(patient_id: str, tag: str, code: str = "GUARD") -> dict[str, Any]:
    return world({"resourceType": "RelatedPerson", "active": True,
                   "patient": {"reference": f"Patient/{patient_id}"},
                   "relationship": [{"coding": [{"system": ROLE_CODE, "code": code}]}],
                   "name": [{"family": "Voogd"}]}, tag)


def as_related(settings: Settings, person_id: str, patient_id: str) -> dict[str, str]:
    return auth(token(settings, f"launch/patient {SCOPE}", fhir_user=f"RelatedPerson/{person_id}",
                      patient=patient_id, role="representative", minutes=30))


def test_only_the_patient_or_the_operator_appoints_a_representative(
        client: TestClient, anon: TestClient, settings: Settings, record: Record, tag: str) -> None:
    gp = practitioner(client, tag, "Huisarts")
    grant(client, record.patient, [permit(f"Practitioner/{gp}", actions=("access", "collect"))],
          f"{tag}-c")
    headers = as_user(settings, f"Practitioner/{gp}", "general-practitioner")

    refused(post(anon, "RelatedPerson", guardian(record.patient, tag), headers))
    refused(transaction(anon, [{"resource": guardian(record.patient, tag),
                                "request": {"method": "POST", "url": "RelatedPerson"}}], headers))
    refused(put(anon, f"RelatedPerson?_tag={TAG_SYSTEM}|{tag}-cond",
                tagged(guardian(record.patient, tag), f"{tag}-cond"), headers))
    # An ordinary related person the permit covers; upgrading it to a guardian is not.
    partner = post(anon, "RelatedPerson", guardian(record.patient, tag, "SPS"), headers)
    assert partner.status_code == 201, partner.text
    upgraded = {**partner.json(), "relationship": guardian(record.patient, tag)["relationship"]}
    refused(put(anon, f"RelatedPerson/{partner.json()['id']}", upgraded, headers))
    assert visible(anon, as_related(settings, partner.json()["id"], record.patient), record) == 0
    listed = client.get("/fhir/RelatedPerson", params={"_tag": f"{TAG_SYSTEM}|{tag}-w"}).json()
    assert listed.get("total") == 1  # the partner only

    # The patient can, and the operator can (a court-appointed guardian).
    own = patient_headers(settings, record.patient)["patient"]
    by_patient = post(anon, "RelatedPerson", guardian(record.patient, tag), own)
    assert by_patient.status_code == 201, by_patient.text
    by_operator = post(client, "RelatedPerson", guardian(record.patient, tag, "POWATT"), {})
    assert by_operator.status_code == 201, by_operator.text
    representative = as_related(settings, by_patient.json()["id"], record.patient)
    assert visible(anon, representative, record) == 6
    # A representative appoints no other representative; the GP ends none.
    refused(post(anon, "RelatedPerson", guardian(record.patient, tag, "HPOWATT"), representative))
    refused(put(anon, f"RelatedPerson/{by_operator.json()['id']}",
                {**by_operator.json(), "active": False}, headers))


def test_a_team_in_a_patients_record_names_its_members_for_that_patient_only(
        client: TestClient, anon: TestClient, settings: Settings, record: Record, tag: str) -> None:
    """A patient writes their own work team; it cannot make anyone a member of a team another
    patient's consent names (a team id that patient learnt, a team that was deleted)."""
    other = build_record(client, f"{tag}-q", f"Other{tag}")
    x = practitioner(client, tag, "Vriend")
    headers = as_user(settings, f"Practitioner/{x}", "general-practitioner")
    theirs = patient_headers(settings, other.patient)["patient"]
    made = post(anon, "CareTeam", world({
        "resourceType": "CareTeam", "status": "active",
        "subject": {"reference": f"Patient/{other.patient}"},
        "participant": [{"member": {"reference": f"Practitioner/{x}"}}]}, tag), theirs)
    assert made.status_code == 201, made.text
    team_id = made.json()["id"]
    grant(client, record.patient, [permit(f"CareTeam/{team_id}")], f"{tag}-c")
    assert visible(anon, headers, record) == 0
    # For the record it is in, the team does name its members.
    grant(client, other.patient, [permit(f"CareTeam/{team_id}", labels=["work-context"])],
          f"{tag}-c")
    assert anon.get(f"/fhir/{other.ref('work-context')}", headers=headers).status_code == 200
    assert visible(anon, headers, record) == 0


def test_the_patient_keeps_their_own_team_and_an_admin_their_departments(
        client: TestClient, anon: TestClient, settings: Settings, record: Record, tag: str) -> None:
    """What the rule leaves to those entitled: the patient creates, changes and deletes a team
    of theirs; an administrator adds a department to their organisation, not elsewhere."""
    mine = patient_headers(settings, record.patient)["patient"]
    body = world({"resourceType": "CareTeam", "status": "active",
                  "subject": {"reference": f"Patient/{record.patient}"}}, tag)
    made = post(anon, "CareTeam", body, mine)
    assert made.status_code == 201, made.text
    team_id = made.json()["id"]
    changed = put(anon, f"CareTeam/{team_id}", {**made.json(), "name": "Mijn werkteam"}, mine)
    assert changed.status_code == 200, changed.text
    assert anon.delete(f"/fhir/CareTeam/{team_id}", headers=mine).status_code in (200, 204)

    arbo = organization(client, tag, "Arbodienst")
    elsewhere = organization(client, tag, "Andere dienst")
    headers = admin_headers(settings, f"Practitioner/{practitioner(client, tag, 'Beheerder')}", arbo)
    department = world({"resourceType": "Organization", "name": "Team Noord",
                        "partOf": {"reference": f"Organization/{arbo}"}}, tag)
    assert post(anon, "Organization", department, headers).status_code == 201
    refused(post(anon, "Organization", {**department, "partOf": {
        "reference": f"Organization/{elsewhere}"}}, headers))
    own = client.get(f"/fhir/Organization/{arbo}").json()
    refused(put(anon, f"Organization/{arbo}", {**own, "name": "Hernoemd"}, headers))
