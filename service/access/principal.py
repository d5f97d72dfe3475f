"""Who is asking: the one value every access decision (scope, consent, audit) starts from."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson

from ..config import PROJECT_ROOT
from .purpose import claimed_purposes
from .scopes import ScopeSet, parse_scopes

BASE_ROLES = ("patient", "representative", "practitioner", "employer", "ehr-system", "service",
              "organization-admin")
"""Roles of the `role` claim besides the professional roles: the patient, a patient's
representative, a generic professional, the employer, a backend system (EHR), `service`
(operators' own tooling, e.g. the test suite's system token) and `organization-admin` (who
maintains one organisation's PractitionerRoles and teams; the organisation is the token's
`organization` claim)."""
PROFESSIONAL_ROLES = PROJECT_ROOT / "profiles" / "work" / "CodeSystem-professional-role.json"


@lru_cache(maxsize=1)
def known_roles() -> tuple[str, ...]:
    """Every role an account or client may carry: the base roles and the codes of our
    professional-role CodeSystem (oncologist, occupational-physician, labour-expert, ...), the
    vocabulary consent provisions and the access rules are written in."""
    codes: list[str] = []
    if PROFESSIONAL_ROLES.exists():
        codes = [c["code"] for c in orjson.loads(PROFESSIONAL_ROLES.read_bytes()).get("concept", [])]
    return tuple(dict.fromkeys([*BASE_ROLES, *codes]))


FHIR_USER_RE = re.compile(r"^(Patient|Practitioner|PractitionerRole|RelatedPerson)/[A-Za-z0-9\-.]{1,64}$")
"""Whom a `fhirUser` may name: a patient, a professional, or a patient's representative."""
ORGANIZATION_RE = re.compile(r"^Organization/[A-Za-z0-9\-.]{1,64}$")


@dataclass(frozen=True)
class Principal:
    """The verified identity behind one request."""

    subject: str
    issuer: str
    scopes: ScopeSet
    client_id: str | None = None
    fhir_user: str | None = None
    """Relative reference (`Practitioner/123`) to the user's own resource."""
    role: str | None = None
    patient: str | None = None
    """The launch context: the Patient id the token is bound to (SMART `patient`)."""
    token_id: str | None = None
    grant_id: str | None = None
    """The built-in server's authorization this token belongs to (revoked together)."""
    expires_at: int | None = None
    purposes: tuple[tuple[str | None, str], ...] = ()
    """Purpose of use the token states (`purpose_of_use` claim); empty: the role's default."""
    organization: str | None = None
    """`Organization/<id>` an `organization-admin` administers (the `organization` claim, set
    by the account or the issuer: nothing the admin can write through the API)."""
    claims: dict[str, Any] | None = field(default=None, compare=False, hash=False, repr=False)
    """The verified claims this principal was mapped from: what a Subscription keeps to
    rebuild its owner's access at every event (`service.subscriptions.owner`), never the
    token itself."""

    @property
    def is_patient(self) -> bool:
        """The patient (or their PGO app acting for them): the owner of the record, confined to
        it. Either the fhirUser is a Patient, or the role says so, or the token carries a
        patient context and names no professional (a PGO app's `patient/` launch); a
        professional launched with a patient context always carries their own fhirUser."""
        if self.role == "patient" or (self.fhir_user or "").startswith("Patient/"):
            return True
        return self.patient is not None and self.fhir_user is None and self.role is None

    @property
    def compartment_patient(self) -> str | None:
        """Whose compartment patient/ scopes (and a patient's user/ scopes) are confined to."""
        if self.patient:
            return self.patient
        if (self.fhir_user or "").startswith("Patient/"):
            return (self.fhir_user or "").split("/", 1)[1]
        return None


def relative_reference(value: Any, base_url: str) -> str | None:
    """`fhirUser` may be absolute (SMART); we keep the relative form our references use."""
    if not isinstance(value, str) or not value:
        return None
    base = base_url.rstrip("/") + "/"
    if value.startswith(base):
        value = value[len(base):]
    return value if FHIR_USER_RE.match(value) else None


def principal_from_claims(claims: dict[str, Any], base_url: str) -> Principal:
    """Map verified JWT claims (ours or an external issuer's) onto a Principal.

    `scope` is the space-separated OAuth form; some issuers send `scp` as a list instead.
    """
    scope = claims.get("scope")
    if scope is None and isinstance(claims.get("scp"), list):
        scope = " ".join(str(s) for s in claims["scp"])
    patient = claims.get("patient")
    role = claims.get("role")
    client_id = claims.get("client_id") or claims.get("azp")
    exp = claims.get("exp")
    return Principal(
        subject=str(claims.get("sub") or ""),
        issuer=str(claims.get("iss") or ""),
        scopes=parse_scopes(scope if isinstance(scope, str) else ""),
        client_id=client_id if isinstance(client_id, str) else None,
        fhir_user=relative_reference(claims.get("fhirUser"), base_url),
        role=role if isinstance(role, str) else None,
        patient=patient if isinstance(patient, str) and patient else None,
        token_id=claims.get("jti") if isinstance(claims.get("jti"), str) else None,
        grant_id=claims.get("sid") if isinstance(claims.get("sid"), str) else None,
        expires_at=int(exp) if isinstance(exp, int | float) else None,
        purposes=claimed_purposes(claims),
        organization=_organization(claims.get("organization"), base_url),
        claims=dict(claims),
    )


def _organization(value: Any, base_url: str) -> str | None:
    """The `organization` claim as a relative `Organization/<id>`, or None."""
    if not isinstance(value, str):
        return None
    base = base_url.rstrip("/") + "/"
    value = value[len(base):] if value.startswith(base) else value
    return value if ORGANIZATION_RE.match(value) else None
