"""The people and records the consent and audit tests share: one record per data category for a
patient, and one caller per role, each with a real token and named in Consents the way a PGO app
would name them.

Callers are named by every kind of reference a provision can use: the oncologist and labour
expert by Practitioner, the occupational physician through their service (Organization, narrowed
to the occupational-physician role), the insurance physician through a CareTeam, the employer by
PractitionerRole, the hospital EHR as Device/<client_id> (a registered backend client that got its
token through client credentials with a private_key_jwt). The patient uses a token with their own
fhirUser; the PGO app one with only a patient context (SMART `launch/patient`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient
from joserfc.jwk import KeySet, RSAKey

from service.config import Settings

from .auth_helpers import auth, backend_client, client_assertion, client_credentials, token
from .conformance_helpers import example
from .consent_helpers import CATEGORIES, PROFESSIONAL_ROLE, permit
from .helpers import FHIR_JSON, TAG_SYSTEM, create, patient, tagged

PATIENT_ROLES = ("patient", "pgo-app")
PROFESSIONALS = ("oncologist", "occupational-physician", "labour-expert", "insurance-physician",
                 "employer", "ehr-system")
ROLES = PATIENT_ROLES + PROFESSIONALS
CODES = {
    "work-context": "https://pgo-work.nl/fhir/CodeSystem/pgo-work-observation|contract-hours-per-week",
    "functional-capacity": "https://pgo-work.nl/fhir/CodeSystem/pgo-work-observation|load-capacity-profile",
    "absence-benefits": "https://pgo-work.nl/fhir/CodeSystem/pgo-work-observation|sick-leave-episode",
    "self-reported-health": "https://pgo-work.nl/fhir/CodeSystem/late-effect|fatigue",
    "medical": "http://snomed.info/sct|254837009",
}
"""The code of each category's resource, for `_has` and chained criteria."""
TYPES = {c: ("Condition" if c == "medical" else "Observation") for c in CATEGORIES}


def condition(tag: str, patient_id: str) -> dict[str, Any]:
    """A diagnosis: medical by resource type."""
    return tagged({
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "254837009",
                             "display": "Malignant neoplasm of breast"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "recordedDate": "2025-03-01",
    }, tag)


@dataclass
class Record:
    """One patient and one resource per data category, all tagged with `tag`."""

    patient: str
    tag: str
    ids: dict[str, str] = field(default_factory=dict)
    """category -> id."""
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)
    """category -> the resource as stored."""
    family: str = ""

    def ref(self, category: str) -> str:
        return f"{TYPES[category]}/{self.ids[category]}"

    def key_of(self, rtype: str, rid: str) -> str | None:
        """The category (or "patient") a resource of this record is, None for anything else."""
        if rtype == "Patient" and rid == self.patient:
            return "patient"
        for category, cid in self.ids.items():
            if rid == cid and rtype == TYPES[category]:
                return category
        return None

    @property
    def tag_query(self) -> str:
        return f"{TAG_SYSTEM}|{self.tag}"


def build_record(client: TestClient, tag: str, family: str) -> Record:
    """The profiles' own valid examples, re-pointed at a new patient, so the labels are the
    ones the server computes. The work-context Observation has the diagnosis as its `focus`,
    and the load-capacity profile the late-effect report as a member: includes and chains that
    cross categories."""
    pid = create(client, patient(tag, family, "Anna"))["id"]
    record = Record(pid, tag, family=family)

    def add(category: str, resource: dict[str, Any]) -> None:
        stored = create(client, resource)
        record.ids[category], record.bodies[category] = stored["id"], stored

    add("medical", condition(tag, pid))
    add("self-reported-health", example("late-effect-report", "valid-fatigue.json", tag, pid))
    work = example("contract-hours", "valid-28h-since-2024.json", tag, pid)
    work["focus"] = [{"reference": record.ref("medical")}]
    add("work-context", work)
    capacity = example("load-capacity-profile", "valid-profile.json", tag, pid)
    capacity["hasMember"] = [{"reference": record.ref("self-reported-health")}]
    add("functional-capacity", capacity)
    add("absence-benefits", example("sick-leave-episode", "valid-short-ended.json", tag, pid))
    return record


@dataclass
class Actors:
    """One caller per professional role, the references that name them, and their tokens."""

    headers: dict[str, dict[str, str]]
    """role -> Authorization header (professionals)."""
    actor: dict[str, tuple[str, str | None]]
    """role -> (reference a provision names, professional role narrowing it)."""
    fhir_user: dict[str, str]
    ehr_client: str

    def permit(self, role: str, **kwargs: Any) -> dict[str, Any]:
        """A provision naming this role's caller the way its patient would."""
        reference, as_role = self.actor[role]
        return permit(reference, as_role=as_role, **kwargs)

    def permits(self, roles: tuple[str, ...] = PROFESSIONALS, **kwargs: Any) -> list[dict[str, Any]]:
        return [self.permit(r, **kwargs) for r in roles]


def _directory(client: TestClient, tag: str, resource: dict[str, Any]) -> str:
    return str(create(client, tagged(resource, tag))["id"])


def _role(client: TestClient, tag: str, practitioner: str, organization: str, code: str) -> str:
    return _directory(client, tag, {
        "resourceType": "PractitionerRole", "active": True,
        "practitioner": {"reference": f"Practitioner/{practitioner}"},
        "organization": {"reference": f"Organization/{organization}"},
        "code": [{"coding": [{"system": PROFESSIONAL_ROLE, "code": code}]}]})


def build_actors(client: TestClient, anon: TestClient, settings: Settings, tag: str,
                 scope: str = "user/*.cruds") -> Actors:
    """The directory entries of six professionals and a token for each."""
    def practitioner(family: str) -> str:
        return _directory(client, tag, {"resourceType": "Practitioner", "name": [{"family": family}]})

    def organization(name: str) -> str:
        return _directory(client, tag, {"resourceType": "Organization", "name": name})

    onc = practitioner("Oncoloog")
    occ = practitioner("Bedrijfsarts")
    arbo = organization("Arbodienst")
    occ_role = _role(client, tag, occ, arbo, "occupational-physician")
    expert = practitioner("Arbeidsdeskundige")
    insurance = practitioner("Verzekeringsarts")
    uwv = _directory(client, tag, {"resourceType": "CareTeam", "status": "active", "name": "UWV team",
                                   "participant": [{"member": {"reference": f"Practitioner/{insurance}"}}]})
    hr = practitioner("Werkgever")
    employer_org = organization("Werkgever BV")
    hr_role = _role(client, tag, hr, employer_org, "employer-hr")

    fhir_user = {"oncologist": f"Practitioner/{onc}",
                 "occupational-physician": f"PractitionerRole/{occ_role}",
                 "labour-expert": f"Practitioner/{expert}",
                 "insurance-physician": f"Practitioner/{insurance}",
                 "employer": f"PractitionerRole/{hr_role}"}
    claim_role = {"oncologist": "oncologist", "occupational-physician": "occupational-physician",
                  "labour-expert": "labour-expert", "insurance-physician": "insurance-physician",
                  "employer": "employer"}
    headers = {role: auth(token(settings, scope, fhir_user=user, role=claim_role[role], minutes=60))
               for role, user in fhir_user.items()}

    key = RSAKey.generate_key(2048, auto_kid=True)
    ehr = backend_client(settings, dict(KeySet([key]).as_dict(private=False)), scope="system/*.cruds")
    issued = client_credentials(anon, client_assertion(key, ehr), scope="system/*.cruds")
    assert issued.status_code == 200, issued.text
    headers["ehr-system"] = auth(issued.json()["access_token"])

    actor: dict[str, tuple[str, str | None]] = {
        "oncologist": (f"Practitioner/{onc}", None),
        "occupational-physician": (f"Organization/{arbo}", "occupational-physician"),
        "labour-expert": (f"Practitioner/{expert}", None),
        "insurance-physician": (f"CareTeam/{uwv}", None),
        "employer": (f"PractitionerRole/{hr_role}", None),
        "ehr-system": (f"Device/{ehr}", None),
    }
    return Actors(headers, actor, fhir_user, ehr)


def patient_headers(settings: Settings, patient_id: str) -> dict[str, dict[str, str]]:
    """The patient themself (fhirUser Patient/x) and their PGO app (a patient launch context
    without fhirUser), both as tokens the server issues."""
    return {
        "patient": auth(token(settings, "user/*.cruds", fhir_user=f"Patient/{patient_id}",
                              role="patient", minutes=60)),
        "pgo-app": auth(token(settings, "launch/patient patient/*.cruds", patient=patient_id,
                              minutes=60)),
    }


def post(client: TestClient, path: str, body: Any, headers: dict[str, str],
         extra: dict[str, str] | None = None) -> Any:
    return client.post(f"/fhir/{path}", json=body, headers={**FHIR_JSON, **headers, **(extra or {})})


def entries(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if "resource" in e]
