"""The built-in OAuth 2.0 authorization server, without HTTP: the REST layer adapts requests.

Grants (RFC 6749): authorization code with PKCE S256 for PGO and SMART apps (MedMij allows only
this one for PGOs), refresh tokens that rotate on every use, and client credentials with a
`private_key_jwt` client assertion for backend systems (SMART Backend Services). Revocation is
RFC 7009, introspection RFC 7662. Every piece of state lives in the database, so any instance
can finish what another one started.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from authlib.oauth2.rfc7636 import create_s256_code_challenge
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..config import Settings
from ..conformance.structure import r4_resource_types
from ..fhir import dates
from .accounts import (
    AccountRow,
    ClientRow,
    account_by_pk,
    authenticate,
    find_client,
    related_patient,
)
from .client_auth import authenticate_client
from .db import transaction
from .discovery import endpoints
from .issuer import absolute_fhir_user, issue_access_token, issue_id_token
from .jose import (
    ACCESS_TOKEN_ALGS,
    TokenError,
    check_claims,
    read_header,
    verified_claims,
)
from .keys import key_cache, public_jwks, signing_key
from .models import AuthCode, Grant, RefreshToken, RevokedToken, table_of
from .oauth_error import OAuthError
from .scopes import ScopeSet, parse_scopes
from .verifier import is_revoked

CODES = table_of(AuthCode)
GRANTS = table_of(Grant)
REFRESH = table_of(RefreshToken)
REVOKED = table_of(RevokedToken)

VERIFIER_RE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
CHALLENGE_RE = re.compile(r"^[A-Za-z0-9_\-]{43}$")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def with_query(uri: str, params: Mapping[str, str]) -> str:
    return uri + ("&" if "?" in uri else "?") + urlencode(params)


class AuthorizeProblem(Exception):
    """An authorization request that cannot even be answered at its redirect URI (unknown
    client, unregistered redirect): shown to the user, never redirected (RFC 6749 4.1.2.1)."""


class AuthorizeRedirect(Exception):
    """An authorization request error reported back to the client at its redirect URI."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


class LoginFailed(Exception):
    """Wrong username or password, or an account this app cannot act for (the message says
    which; the login page shows it)."""


PATIENT_APP_ONLY = ("This app acts for one patient and can only be used with a patient's own "
                    "account (or a representative's). Professionals sign in to an app for "
                    "professionals.")


def _for_account(scopes: ScopeSet, fhir_user: str, patient: str | None) -> ScopeSet:
    """`patient/` scopes need a patient: a professional account (no patient context) would get
    a token that fits no request and 403 everywhere. Its `user/` scopes still apply; with only
    `patient/` scopes asked, the sign-in is refused with a message instead."""
    if patient is not None or fhir_user.startswith("Patient/") or not scopes.in_context("patient"):
        return scopes
    remaining = scopes.without_context("patient")
    if not remaining.resources:
        raise LoginFailed(PATIENT_APP_ONLY)
    return remaining


@dataclass(frozen=True)
class AuthorizeRequest:
    """A checked authorization request, as the login form carries it along."""

    client_id: str
    client_name: str
    redirect_uri: str
    state: str
    code_challenge: str
    scope: str
    nonce: str | None = None
    aud: str | None = None

    def form_fields(self) -> dict[str, str]:
        fields = {"response_type": "code", "client_id": self.client_id,
                  "redirect_uri": self.redirect_uri, "state": self.state,
                  "code_challenge": self.code_challenge, "code_challenge_method": "S256",
                  "scope": self.scope}
        if self.nonce:
            fields["nonce"] = self.nonce
        if self.aud:
            fields["aud"] = self.aud
        return fields


class AuthServer:
    def __init__(self, settings: Settings, engine: AsyncEngine) -> None:
        self.settings = settings
        self.engine = engine
        self.issuer = settings.resolved_issuer()

    # -- endpoints, as URLs ------------------------------------------------------------------
    @property
    def token_endpoint(self) -> str:
        return endpoints(self.settings)["token_endpoint"]

    @property
    def authorization_endpoint(self) -> str:
        return endpoints(self.settings)["authorization_endpoint"]

    # -- authorization endpoint ----------------------------------------------------------------
    async def check_authorize(self, params: Mapping[str, str]) -> AuthorizeRequest:
        """Validate an authorization request (GET query, or the login form's hidden fields)."""
        client_id = params.get("client_id") or ""
        async with transaction(self.engine) as conn:
            client = await find_client(conn, client_id) if client_id else None
        if client is None or client.disabled or client.kind != "public":
            raise AuthorizeProblem("This application is not registered here.")
        redirect = params.get("redirect_uri") or (
            client.redirect_uris[0] if len(client.redirect_uris) == 1 else "")
        if redirect not in client.redirect_uris:
            raise AuthorizeProblem("The redirect URI is not registered for this application.")
        state = params.get("state") or ""

        def fail(error: str, description: str) -> AuthorizeRedirect:
            answer = {"error": error, "error_description": description, "iss": self.issuer}
            if state:
                answer["state"] = state
            return AuthorizeRedirect(with_query(redirect, answer))

        if params.get("response_type") != "code":
            raise fail("unsupported_response_type", "Only response_type=code is supported")
        if not state:
            raise fail("invalid_request", "state is required")
        challenge = params.get("code_challenge") or ""
        if params.get("code_challenge_method") != "S256" or not CHALLENGE_RE.match(challenge):
            raise fail("invalid_request", "PKCE is required: code_challenge with method S256")
        aud = params.get("aud")
        if aud and aud.rstrip("/") != self.settings.resolved_audience():
            raise fail("invalid_request", "aud does not name this FHIR server")
        scopes = parse_scopes(params.get("scope")).without_context("system")
        if client.scope:
            scopes = scopes.narrowed_to(parse_scopes(client.scope))
        if not scopes.resources:
            raise fail("invalid_scope", "None of the requested scopes can be granted to this app")
        return AuthorizeRequest(client.client_id, client.name, redirect, state, challenge,
                                scopes.to_string(), params.get("nonce") or None, aud or None)

    async def login(self, req: AuthorizeRequest, username: str, password: str) -> str:
        """Check the password, record the grant and a code; the redirect URL with code+state."""
        async with transaction(self.engine) as conn:
            account = await authenticate(conn, username, password)
        if account is None:
            raise LoginFailed()
        scopes = parse_scopes(req.scope)
        patient = None
        if scopes.launch_patient:
            if account.fhir_user.startswith("Patient/"):
                patient = account.fhir_user.split("/", 1)[1]
            elif account.fhir_user.startswith("RelatedPerson/"):
                # A related person launches for the patient their RelatedPerson belongs to;
                # whether they may act for that patient is decided on every request.
                async with transaction(self.engine) as conn:
                    patient = await related_patient(conn, account.fhir_user.split("/", 1)[1])
            if patient is None:
                # No patient picker yet: a professional's standalone launch gets no patient.
                scopes = scopes.without_special("launch/patient")
        scopes = _for_account(scopes, account.fhir_user, patient)
        grant_id = str(uuid.uuid4())
        code = secrets.token_urlsafe(32)
        now = dates.utcnow()
        async with transaction(self.engine, write=True) as conn:
            await conn.execute(GRANTS.insert(), {
                "id": grant_id, "client_id": req.client_id, "account_pk": account.pk,
                "scope": scopes.to_string(), "patient": patient, "created_at": now,
                "revoked_at": None})
            await conn.execute(CODES.insert(), {
                "code_hash": digest(code), "grant_id": grant_id, "redirect_uri": req.redirect_uri,
                "code_challenge": req.code_challenge, "nonce": req.nonce,
                "expires_at": now + timedelta(seconds=self.settings.auth_code_seconds),
                "used_at": None})
        return with_query(req.redirect_uri, {"code": code, "state": req.state, "iss": self.issuer})

    # -- token endpoint ------------------------------------------------------------------------
    async def token(self, form: Mapping[str, str]) -> dict[str, Any]:
        grant_type = form.get("grant_type")
        handlers = {"authorization_code": self._authorization_code,
                    "refresh_token": self._refresh_token,
                    "client_credentials": self._client_credentials}
        handler = handlers.get(grant_type or "")
        if handler is None:
            raise OAuthError("unsupported_grant_type",
                             f"grant_type must be one of {', '.join(handlers)}")
        try:
            async with transaction(self.engine, write=True) as conn:
                return await handler(conn, form)
        except OAuthError as exc:
            if exc.revoke_grant:
                async with transaction(self.engine, write=True) as conn:
                    await self._revoke_grant(conn, exc.revoke_grant)
            raise

    async def _authorization_code(self, conn: AsyncConnection, form: Mapping[str, str]) -> dict[str, Any]:
        client = await self._client(conn, form)
        code = form.get("code")
        if not code:
            raise OAuthError("invalid_request", "code is required")
        row = (await conn.execute(
            select(CODES, GRANTS.c.client_id, GRANTS.c.account_pk, GRANTS.c.scope, GRANTS.c.patient,
                   GRANTS.c.revoked_at)
            .join(GRANTS, GRANTS.c.id == CODES.c.grant_id)
            .where(CODES.c.code_hash == digest(code)))).first()
        if row is None or row.client_id != client.client_id:
            raise OAuthError("invalid_grant", "The authorization code is not valid")
        if row.used_at is not None:
            raise OAuthError("invalid_grant", "The authorization code was already used; every "
                             "token issued with it is revoked", revoke_grant=row.grant_id)
        if row.expires_at < dates.utcnow():
            raise OAuthError("invalid_grant", "The authorization code has expired")
        if form.get("redirect_uri") != row.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri differs from the authorization request")
        verifier = form.get("code_verifier") or ""
        if not VERIFIER_RE.match(verifier) or not hmac.compare_digest(
                create_s256_code_challenge(verifier), row.code_challenge):
            raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge")
        await _consume(conn, CODES.c.code_hash, row.code_hash, row.grant_id, "authorization code")
        account = await self._live_account(conn, row.account_pk, row.revoked_at)
        return await self._user_tokens(conn, client, row.grant_id, account, row.scope, row.patient,
                                       nonce=row.nonce)

    async def _refresh_token(self, conn: AsyncConnection, form: Mapping[str, str]) -> dict[str, Any]:
        token = form.get("refresh_token")
        if not token:
            raise OAuthError("invalid_request", "refresh_token is required")
        row = await self._refresh_row(conn, token)
        if row is None and not _names_client(form):
            raise OAuthError("invalid_grant", "The refresh token is not valid")
        client = await self._client(conn, _named_by_token(form, row.client_id if row else None))
        if row is None or row.client_id != client.client_id:
            raise OAuthError("invalid_grant", "The refresh token is not valid")
        if row.used_at is not None:
            raise OAuthError("invalid_grant", "The refresh token was already used; the "
                             "authorization is revoked", revoke_grant=row.grant_id)
        if row.expires_at < dates.utcnow():
            raise OAuthError("invalid_grant", "The refresh token has expired")
        await _consume(conn, REFRESH.c.token_hash, row.token_hash, row.grant_id, "refresh token")
        account = await self._live_account(conn, row.account_pk, row.revoked_at)
        scope = row.scope
        if form.get("scope"):
            requested, granted = parse_scopes(form["scope"]), parse_scopes(row.scope)
            narrowed = requested.narrowed_to(granted)
            if narrowed != ScopeSet(requested.resources, requested.special) or requested.unknown:
                raise OAuthError("invalid_scope", "A refresh can only narrow the granted scopes")
            scope = narrowed.to_string()
        return await self._user_tokens(conn, client, row.grant_id, account, scope, row.patient,
                                       refresh=True)

    async def _client_credentials(self, conn: AsyncConnection, form: Mapping[str, str]) -> dict[str, Any]:
        client = await self._client(conn, form)
        if client.kind != "backend":
            raise OAuthError("unauthorized_client", "Only backend clients may use client_credentials")
        scopes = parse_scopes(form.get("scope")).only_context("system")
        unknown = [s.text for s in scopes.resources
                   if s.resource_type != "*" and s.resource_type not in r4_resource_types()]
        if unknown:
            # SMART Backend Services: a scope naming no resource type is an error, not nothing.
            raise OAuthError("invalid_scope", f"Unknown resource type in {', '.join(unknown)}")
        if client.scope:
            scopes = scopes.narrowed_to(parse_scopes(client.scope))
        if not scopes.resources:
            raise OAuthError("invalid_scope", "Request system/ scopes this client is registered for")
        scope = scopes.to_string()
        access, lifetime = await issue_access_token(
            conn, self.settings, subject=client.client_id, scope=scope, client_id=client.client_id,
            fhir_user=client.fhir_user, role=client.role)
        return {"access_token": access, "token_type": "Bearer", "expires_in": lifetime, "scope": scope}

    async def _user_tokens(self, conn: AsyncConnection, client: ClientRow, grant_id: str,
                           account: AccountRow, scope: str, patient: str | None,
                           nonce: str | None = None, refresh: bool = False) -> dict[str, Any]:
        scopes = parse_scopes(scope)
        access, lifetime = await issue_access_token(
            conn, self.settings, subject=account.subject, scope=scope, client_id=client.client_id,
            fhir_user=account.fhir_user, role=account.role, patient=patient, grant_id=grant_id)
        body: dict[str, Any] = {"access_token": access, "token_type": "Bearer",
                                "expires_in": lifetime, "scope": scope}
        if patient:
            body["patient"] = patient
        if "fhirUser" in scopes.special:
            body["fhirUser"] = absolute_fhir_user(self.settings, account.fhir_user)
        if scopes.wants_refresh or refresh:
            body["refresh_token"] = await self._new_refresh_token(conn, grant_id)
        if "openid" in scopes.special:
            body["id_token"] = await issue_id_token(
                conn, self.settings, subject=account.subject, client_id=client.client_id,
                fhir_user=account.fhir_user if "fhirUser" in scopes.special else None, nonce=nonce)
        return body

    async def _new_refresh_token(self, conn: AsyncConnection, grant_id: str) -> str:
        token = secrets.token_urlsafe(32)
        now = dates.utcnow()
        await conn.execute(REFRESH.insert(), {
            "token_hash": digest(token), "grant_id": grant_id, "created_at": now,
            "expires_at": now + timedelta(days=self.settings.refresh_token_days), "used_at": None})
        return token

    async def _refresh_row(self, conn: AsyncConnection, token: str) -> Any:
        return (await conn.execute(
            select(REFRESH, GRANTS.c.client_id, GRANTS.c.account_pk, GRANTS.c.scope,
                   GRANTS.c.patient, GRANTS.c.revoked_at)
            .join(GRANTS, GRANTS.c.id == REFRESH.c.grant_id)
            .where(REFRESH.c.token_hash == digest(token)))).first()

    async def _live_account(self, conn: AsyncConnection, account_pk: int,
                            revoked_at: datetime | None) -> AccountRow:
        if revoked_at is not None:
            raise OAuthError("invalid_grant", "The authorization was revoked")
        account = await account_by_pk(conn, account_pk)
        if account is None or account.disabled:
            raise OAuthError("invalid_grant", "The account is disabled")
        return account

    async def _revoke_grant(self, conn: AsyncConnection, grant_id: str) -> None:
        await conn.execute(update(GRANTS).where(GRANTS.c.id == grant_id, GRANTS.c.revoked_at.is_(None))
                           .values(revoked_at=dates.utcnow()))

    # -- client authentication -------------------------------------------------------------
    async def _client(self, conn: AsyncConnection, form: Mapping[str, str]) -> ClientRow:
        return await authenticate_client(conn, form, self.token_endpoint, self.settings)

    # -- revocation and introspection ---------------------------------------------------------
    async def revoke(self, form: Mapping[str, str]) -> None:
        """RFC 7009: revoke a refresh token (its whole grant) or one access token. Unknown or
        foreign tokens are ignored, so the answer does not reveal anything."""
        token = form.get("token")
        async with transaction(self.engine, write=True) as conn:
            if not token:
                await self._client(conn, form)
                raise OAuthError("invalid_request", "token is required")
            owner = await self._token_client(conn, token)
            if owner is None and not _names_client(form):
                return  # a token we never issued, from a public client: nothing to revoke
            client = await self._client(conn, _named_by_token(form, owner))
            if token.count(".") == 2:
                claims = await self._own_access_claims(conn, token, check_expiry=False)
                if claims is not None and claims.get("client_id") == client.client_id:
                    await self._revoke_access(conn, claims)
                return
            row = await self._refresh_row(conn, token)
            if row is not None and row.client_id == client.client_id:
                await self._revoke_grant(conn, row.grant_id)

    async def _token_client(self, conn: AsyncConnection, token: str) -> str | None:
        """The client a token of ours was issued to (None: not ours, or not readable)."""
        if token.count(".") == 2:
            claims = await self._own_access_claims(conn, token, check_expiry=False)
            owner = claims.get("client_id") if claims else None
            return owner if isinstance(owner, str) else None
        row = await self._refresh_row(conn, token)
        return row.client_id if row is not None else None

    async def _revoke_access(self, conn: AsyncConnection, claims: dict[str, Any]) -> None:
        jti = claims.get("jti")
        if not isinstance(jti, str) or (await conn.execute(
                select(REVOKED.c.jti).where(REVOKED.c.jti == jti))).first():
            return
        await conn.execute(delete(REVOKED).where(REVOKED.c.expires_at < dates.utcnow()))
        expires = dates.utcnow() + timedelta(seconds=max(0, int(claims.get("exp", 0)) - time.time()))
        try:
            async with conn.begin_nested():
                await conn.execute(REVOKED.insert(), {"jti": jti, "expires_at": expires})
        except IntegrityError:
            return  # revoked concurrently: the outcome is the same

    async def introspect(self, form: Mapping[str, str]) -> dict[str, Any]:
        """RFC 7662, for the client the token was issued to; anything else is inactive."""
        token = form.get("token")
        async with transaction(self.engine, write=True) as conn:
            client = await self._client(conn, form)
            if not token:
                raise OAuthError("invalid_request", "token is required")
            if token.count(".") == 2:
                claims = await self._own_access_claims(conn, token, check_expiry=True)
                if claims is None or claims.get("client_id") != client.client_id:
                    return {"active": False}
                if await is_revoked(conn, claims.get("jti"), claims.get("sid")):
                    return {"active": False}
                keep = ("scope", "client_id", "sub", "exp", "iat", "iss", "aud", "jti", "fhirUser",
                        "patient", "role")
                return {"active": True, "token_type": "Bearer",
                        **{k: claims[k] for k in keep if k in claims}}
            row = await self._refresh_row(conn, token)
            if (row is None or row.client_id != client.client_id or row.used_at is not None
                    or row.revoked_at is not None or row.expires_at < dates.utcnow()):
                return {"active": False}
            account = await account_by_pk(conn, row.account_pk)
            return {"active": True, "token_type": "refresh_token", "scope": row.scope,
                    "client_id": row.client_id, "sub": account.subject if account else None,
                    "exp": int(row.expires_at.replace(tzinfo=UTC).timestamp()),
                    "iss": self.issuer}

    async def _own_access_claims(self, conn: AsyncConnection, token: str,
                                 check_expiry: bool) -> dict[str, Any] | None:
        """Claims of an access token this server signed (optionally ignoring expiry); None if not."""
        try:
            alg, kid = read_header(token, ACCESS_TOKEN_ALGS)
            found = await key_cache(self.settings.resolved_database_url()).get(conn, kid)
            if found is None or found[1] != alg:
                return None
            claims = verified_claims(token, found[0], alg)
            check_claims(claims, issuer=self.issuer, audience=self.settings.resolved_audience(),
                         leeway=self.settings.token_clock_skew_seconds if check_expiry else 10**9,
                         essential=("exp", "sub", "jti"))
        except TokenError:
            return None
        return claims

    # -- keys --------------------------------------------------------------------------------
    async def jwks(self) -> dict[str, Any]:
        async with transaction(self.engine) as conn:
            keys = await public_jwks(conn)
        if keys["keys"]:
            return keys
        async with transaction(self.engine, write=True) as conn:
            await signing_key(conn)
            return await public_jwks(conn)


async def _consume(conn: AsyncConnection, key: Any, value: str, grant_id: Any, what: str) -> None:
    """Mark a single-use secret (code, refresh token) used, atomically: of two concurrent
    redemptions exactly one wins, and the loser's replay revokes the whole authorization."""
    table = key.table
    used = await conn.execute(update(table).where(key == value, table.c.used_at.is_(None))
                              .values(used_at=dates.utcnow()))
    if used.rowcount != 1:
        raise OAuthError("invalid_grant", f"The {what} was already used", revoke_grant=grant_id)


def _names_client(form: Mapping[str, str]) -> bool:
    return bool(form.get("client_id") or form.get("client_assertion")
                or form.get("client_assertion_type"))


def _named_by_token(form: Mapping[str, str], owner: str | None) -> Mapping[str, str]:
    """RFC 6749 6 and 2.3 / SMART v2: a public client need not send `client_id` with a refresh
    (or, RFC 7009, a revocation); the token names its client. Only a public client can be
    named this way: `authenticate_client` still demands a backend client's signed assertion."""
    if owner is None or _names_client(form):
        return form
    return {**form, "client_id": owner}
