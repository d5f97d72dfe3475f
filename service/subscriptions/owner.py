"""Who a Subscription belongs to, and their access rebuilt when an event happens or a
notification goes out.

The owner is kept as the verified claims of the token that created the subscription, less
what belongs to that token alone (its id, its times): never the token. From them the same
`Principal` and the same policy (`build_policy`: scope AND consent AND rules) are built as for
a request of theirs, so a notification tells exactly what the owner could read at that moment.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..access.dependencies import UNRESTRICTED_ROLES, build_policy
from ..access.principal import Principal, principal_from_claims
from ..runtime import Runtime
from ..store.access import AccessPolicy

TOKEN_ONLY = frozenset({"jti", "exp", "iat", "nbf", "auth_time", "nonce", "at_hash"})


def owner_key(principal: Principal) -> str:
    """The caller a subscription belongs to: the user (issuer and subject) through one client,
    as the same person (fhirUser) in the same patient context: a representative's app for
    one patient does not see the subscriptions it made for another."""
    return "|".join((principal.issuer, principal.subject, principal.client_id or "",
                     principal.fhir_user or "", principal.patient or ""))


def is_operator(principal: Principal) -> bool:
    return principal.role in UNRESTRICTED_ROLES


def owner_record(principal: Principal) -> str:
    """What is stored to rebuild the owner's access later."""
    claims = {k: v for k, v in (principal.claims or {}).items() if k not in TOKEN_ONLY}
    if not claims:  # a principal not built from claims (tests, tooling): its fields
        claims = {"sub": principal.subject, "iss": principal.issuer,
                  "client_id": principal.client_id, "fhirUser": principal.fhir_user,
                  "role": principal.role, "patient": principal.patient}
    return orjson.dumps(claims).decode()


def owner_principal(record: str, rt: Runtime) -> Principal:
    claims: dict[str, Any] = orjson.loads(record)
    return principal_from_claims(claims, rt.settings.base_url)


async def owner_policy(record: str, rt: Runtime) -> AccessPolicy:
    """The owner's access policy, as `build_policy` builds it for their requests."""
    return await build_policy(owner_principal(record, rt), rt)
