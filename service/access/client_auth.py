"""Who is asking for a token: a public client names itself, a backend client proves it with a
signed assertion (`private_key_jwt`, RFC 7523, SMART Backend Services) against the keys it
registered, each assertion usable once."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import Key, KeySet
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ..config import Settings
from ..fhir import dates
from .accounts import ClientRow, find_client
from .jose import ASSERTION_ALGS, TokenError, check_claims, read_header, unverified_claims, verified_claims
from .models import UsedAssertion, table_of
from .oauth_error import OAuthError

USED = table_of(UsedAssertion)
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


async def authenticate_client(conn: AsyncConnection, form: Mapping[str, str], token_endpoint: str,
                              settings: Settings) -> ClientRow:
    """Public clients name themselves; backend clients prove it with a signed assertion."""
    assertion_type, assertion = form.get("client_assertion_type"), form.get("client_assertion")
    if assertion_type or assertion:
        if assertion_type != JWT_BEARER or not assertion:
            raise OAuthError("invalid_client", f"client_assertion_type must be {JWT_BEARER}", 401)
        return await _assertion_client(conn, assertion, form.get("client_id"), token_endpoint,
                                       settings)
    client_id = form.get("client_id")
    client = await find_client(conn, client_id) if client_id else None
    if client is None or client.disabled:
        raise OAuthError("invalid_client", "Unknown client", 401)
    if client.kind != "public":
        raise OAuthError("invalid_client", "This client authenticates with private_key_jwt", 401)
    return client


async def _assertion_client(conn: AsyncConnection, assertion: str, claimed_id: str | None,
                            token_endpoint: str, settings: Settings) -> ClientRow:
    """private_key_jwt (RFC 7523, SMART Backend Services): iss = sub = client_id, aud = the
    token endpoint, exp at most a few minutes ahead, jti never seen before."""
    try:
        alg, kid = read_header(assertion, ASSERTION_ALGS)
        client_id = unverified_claims(assertion).get("iss")
    except TokenError as exc:
        raise OAuthError("invalid_client", f"Client assertion: {exc}", 401) from exc
    if not isinstance(client_id, str) or (claimed_id and claimed_id != client_id):
        raise OAuthError("invalid_client", "Client assertion: iss must be the client_id", 401)
    client = await find_client(conn, client_id)
    if client is None or client.disabled or client.jwks is None:
        raise OAuthError("invalid_client", "Unknown client or no registered keys", 401)
    key = _client_key(client.jwks, kid)
    if key is None:
        raise OAuthError("invalid_client", "Client assertion: kid is not among the registered keys", 401)
    skew = settings.token_clock_skew_seconds
    try:
        claims = verified_claims(assertion, key, alg)
        check_claims(claims, issuer=client_id, audience=token_endpoint, leeway=skew,
                     essential=("exp", "sub", "jti"))
    except TokenError as exc:
        raise OAuthError("invalid_client", f"Client assertion: {exc}", 401) from exc
    if claims.get("sub") != client_id:
        raise OAuthError("invalid_client", "Client assertion: sub must be the client_id", 401)
    exp, jti = claims["exp"], claims["jti"]
    if exp > time.time() + settings.client_assertion_max_seconds + skew:
        raise OAuthError("invalid_client", "Client assertion: exp is too far ahead", 401)
    if len(jti) > 255:
        raise OAuthError("invalid_client", "Client assertion: jti is too long", 401)
    now = dates.utcnow()
    await conn.execute(delete(USED).where(USED.c.expires_at < now))
    try:
        async with conn.begin_nested():
            await conn.execute(USED.insert(), {
                "client_id": client_id, "jti": jti,
                "expires_at": now + timedelta(seconds=max(0, exp - time.time()) + skew)})
    except IntegrityError as exc:
        raise OAuthError("invalid_client", "Client assertion: this jti was already used", 401) \
            from exc
    return client


def _client_key(jwks: dict[str, Any], kid: str) -> Key | None:
    try:
        keyset = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
    except (JoseError, ValueError, KeyError, TypeError):
        return None
    return next((k for k in keyset if k.kid == kid), None)
