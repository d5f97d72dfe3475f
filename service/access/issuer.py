"""Minting tokens with the built-in issuer's database key: the one code path behind the token
endpoint, `pgo-work dev-token` and the test suite's token, so all three are the same thing."""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from ..config import Settings
from .db import transaction
from .jose import sign
from .keys import signing_key


def absolute_fhir_user(settings: Settings, fhir_user: str) -> str:
    """SMART's fhirUser is a URL; ours are relative references on our own base."""
    return f"{settings.base_url.rstrip('/')}/{fhir_user}"


async def issue_access_token(conn: AsyncConnection, settings: Settings, *, subject: str, scope: str,
                             client_id: str, fhir_user: str | None = None, role: str | None = None,
                             patient: str | None = None, grant_id: str | None = None,
                             lifetime_seconds: int | None = None,
                             purpose: list[str] | None = None,
                             organization: str | None = None) -> tuple[str, int]:
    """(JWT, lifetime in seconds), signed by the newest key. `conn` must be writing (the first
    key is generated on first use)."""
    key, alg = await signing_key(conn)
    lifetime = lifetime_seconds or settings.access_token_minutes * 60
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": settings.resolved_issuer(), "aud": settings.resolved_audience(), "sub": subject,
        "iat": now, "exp": now + lifetime, "jti": uuid.uuid4().hex, "scope": scope,
        "client_id": client_id,
    }
    if fhir_user:
        claims["fhirUser"] = absolute_fhir_user(settings, fhir_user)
    if patient:
        claims["patient"] = patient
    if role:
        claims["role"] = role
    if grant_id:
        claims["sid"] = grant_id
    if purpose:
        claims["purpose_of_use"] = purpose
    if organization:
        claims["organization"] = organization
    return sign(claims, key, alg, typ="at+jwt"), lifetime


async def issue_id_token(conn: AsyncConnection, settings: Settings, *, subject: str, client_id: str,
                         fhir_user: str | None, nonce: str | None) -> str:
    """OpenID Connect ID token for the app (aud = the client, so it is no access token here)."""
    key, alg = await signing_key(conn)
    now = int(time.time())
    claims: dict[str, Any] = {"iss": settings.resolved_issuer(), "aud": client_id, "sub": subject,
                              "iat": now, "exp": now + settings.access_token_minutes * 60}
    if fhir_user:
        claims["fhirUser"] = absolute_fhir_user(settings, fhir_user)
    if nonce:
        claims["nonce"] = nonce
    return sign(claims, key, alg)


async def mint_dev_token(settings: Settings, *, scope: str, fhir_user: str | None = None,
                         patient: str | None = None, role: str | None = None, minutes: int = 60,
                         subject: str | None = None, client_id: str = "pgo-work-cli",
                         purpose: list[str] | None = None, organization: str | None = None) -> str:
    """A token the server (built-in issuer) accepts, signed with its database key."""
    from ..store.database import create_engine

    if settings.oidc_issuer:
        raise RuntimeError("PGO_WORK_OIDC_ISSUER is set: tokens come from that issuer, and this "
                           "server would not accept one signed here")
    engine = create_engine(settings.resolved_database_url())
    try:
        async with transaction(engine, write=True) as conn:
            token, _ = await issue_access_token(
                conn, settings, subject=subject or fhir_user or client_id, scope=scope,
                client_id=client_id, fhir_user=fhir_user, role=role, patient=patient,
                lifetime_seconds=minutes * 60, purpose=purpose, organization=organization)
    finally:
        await engine.dispose()
    return token
