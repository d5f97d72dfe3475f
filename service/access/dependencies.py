"""The per-request principal and access policy, as named FastAPI dependencies.

Every FHIR route asks for `AccessDep`; the policy it gets is the AND of everything that applies
to the caller (`build_policy`). A request without a valid bearer token never reaches the store:
it gets 401 with an OperationOutcome and a `WWW-Authenticate` challenge (RFC 6750 3).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..fhir.outcome import FhirError
from ..runtime import Runtime
from ..store.access import AccessPolicy
from .audit import AuditTrail
from .client_ids import ClientIdRule, roles_of
from .consent import ConsentPolicy
from .identity import IdentityRules
from .jose import TokenError
from .oidc import IssuerUnavailable
from .policy import Policies, RecordRules, ScopePolicy
from .principal import Principal, principal_from_claims
from .purpose import purpose_of_event
from .verifier import TokenVerifier, unauthorized

bearer = HTTPBearer(auto_error=False, scheme_name="smartBearer",
                    description="An access token from the built-in authorization server "
                                "(/auth/token) or the configured OpenID Connect issuer")


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The verified caller; 401 when the token is missing or not acceptable."""
    if credentials is None or not credentials.credentials:
        # RFC 6750 3.1: no error code when the request carried no credentials at all.
        raise unauthorized("This request needs a bearer token (Authorization: Bearer ...)", None)
    rt: Runtime = request.app.state.runtime
    verifier = TokenVerifier(rt.settings, rt.engine)
    try:
        # Revocation is checked when the request's transaction opens (`get_access`), as one
        # more statement in it rather than a transaction of its own here.
        claims = await verifier.claims(credentials.credentials, check_revocation=False)
        principal = principal_from_claims(claims, rt.settings.base_url)
    except TokenError as exc:
        raise unauthorized(str(exc)) from exc
    except IssuerUnavailable as exc:
        raise FhirError(503, "transient", f"The token issuer cannot be reached: {exc}") from exc
    request.state.principal = principal  # for whatever records the request afterwards (audit)
    request.state.claims = claims  # for what runs later as this caller (`$export`)
    request.state.revocation = verifier.revocation_check(principal)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


UNRESTRICTED_ROLES = frozenset({"service"})
"""The operator's own maintenance clients (registered with `pgo-work add-client --role
service`): bound by their scopes only. Everyone else who is not the patient needs consent."""


async def build_policy(principal: Principal, rt: Runtime, client_address: str | None = None,
                       request_id: str | None = None,
                       revocation: AccessPolicy | None = None) -> AccessPolicy:
    """Everything that limits this caller, ANDed: effective access is scope AND consent AND
    policy; and the audit trail that records what the request touched. Nothing is read here:
    `revocation` (the token's revocation check, first) and the consent policy read when the
    store opens the request's transaction (`AccessPolicy.open`)."""
    policies: list[AccessPolicy] = [
        *([revocation] if revocation is not None else []),
        ClientIdRule(principal, roles_of(rt.settings.client_ids_for)),
        ScopePolicy(principal, rt.registry), RecordRules(principal)]
    trail = AuditTrail(principal, client_address=client_address, request_id=request_id)
    trail.purposes_of = lambda: purpose_of_event(principal)
    if not principal.is_patient and principal.role not in UNRESTRICTED_ROLES:
        consent = ConsentPolicy(principal, rt.access_cache)
        trail.consent_lookup = consent.consent_ids
        trail.write_consent_lookup = consent.consents_for_writes
        trail.purposes_of = lambda: purpose_of_event(principal, consent.represents is not None)
        policies.extend([IdentityRules(principal, consent), consent])
    else:
        policies.append(IdentityRules(principal))
    return Policies(all_of=policies, trail=trail)


async def get_access(request: Request, principal: PrincipalDep) -> AccessPolicy:
    rt: Runtime = request.app.state.runtime
    address = request.client.host if request.client else None
    # The correlation id (`service.rest.middleware.CorrelationIds`) goes into the AuditEvent.
    return await build_policy(principal, rt, address, getattr(request.state, "request_id", None),
                              getattr(request.state, "revocation", None))


AccessDep = Annotated[AccessPolicy, Depends(get_access)]
