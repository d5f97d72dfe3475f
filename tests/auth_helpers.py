"""Helpers for the identity and token tests: register accounts and clients in the test database,
mint tokens the way the CLI does, drive the login page like a browser, sign client assertions."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from authlib.oauth2.rfc7636 import create_s256_code_challenge
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import Key
from sqlalchemy.ext.asyncio import AsyncConnection

from service.access.accounts import add_account, add_client
from service.access.db import transaction
from service.access.issuer import mint_dev_token
from service.access.keys import signing_key
from service.config import Settings
from service.store.database import create_engine

T = TypeVar("T")
PASSWORD = "correct horse battery staple"
REDIRECT = "https://pgo.example/callback"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def in_db(settings: Settings, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Run `fn` in one writing transaction on the test database."""
    async def run() -> T:
        engine = create_engine(settings.resolved_database_url())
        try:
            async with transaction(engine, write=True) as conn:
                return await fn(conn)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def account(settings: Settings, fhir_user: str, role: str) -> str:
    """A new account (unique username) with PASSWORD; returns the username."""
    username = f"user-{uuid.uuid4().hex[:10]}"
    in_db(settings, lambda c: add_account(c, username, PASSWORD, fhir_user, role))
    return username


def public_client(settings: Settings, scope: str = "") -> str:
    client_id = f"pgo-{uuid.uuid4().hex[:10]}"
    in_db(settings, lambda c: add_client(c, client_id, kind="public", redirect_uris=[REDIRECT],
                                         scope=scope))
    return client_id


def backend_client(settings: Settings, public_jwks: dict[str, Any], scope: str = "system/*.rs",
                   role: str = "ehr-system") -> str:
    client_id = f"ehr-{uuid.uuid4().hex[:10]}"
    in_db(settings, lambda c: add_client(c, client_id, kind="backend", jwks=public_jwks, scope=scope,
                                         role=role))
    return client_id


def token(settings: Settings, scope: str, fhir_user: str | None = None, patient: str | None = None,
          role: str | None = None, minutes: int = 10, purpose: list[str] | None = None) -> str:
    """Minted exactly as `pgo-work dev-token` does."""
    return asyncio.run(mint_dev_token(settings, scope=scope, fhir_user=fhir_user, patient=patient,
                                      role=role, minutes=minutes, purpose=purpose))


def server_signed(settings: Settings, claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    """A JWT signed with the built-in issuer's real key (to build honest-but-invalid tokens)."""
    async def sign(conn: AsyncConnection) -> str:
        key, alg = await signing_key(conn)
        return jwt.encode({"alg": alg, "kid": key.kid, **(header or {})}, claims, key, algorithms=[alg])

    return in_db(settings, sign)


def server_claims(settings: Settings, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": settings.resolved_issuer(), "aud": settings.resolved_audience(), "sub": "tester",
              "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex, "scope": "system/*.rs",
              "client_id": "tests"}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, create_s256_code_challenge(verifier)


def authorize_params(client_id: str, scope: str, challenge: str, state: str = "st-1",
                     **extra: str) -> dict[str, str]:
    return {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
            "scope": scope, "state": state, "code_challenge": challenge,
            "code_challenge_method": "S256", "aud": "http://testserver/fhir", **extra}


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def login(client: TestClient, client_id: str, username: str, scope: str,
          password: str = PASSWORD) -> tuple[str, str]:
    """Walk the login page like a browser; returns (code, code_verifier)."""
    verifier, challenge = pkce()
    params = authorize_params(client_id, scope, challenge)
    page = client.get("/auth/authorize", params=params, headers={"Accept": "text/html"},
                      follow_redirects=False)
    assert page.status_code == 200, page.text
    assert "<form" in page.text and 'name="password"' in page.text
    resp = client.post("/auth/authorize", data={**params, "username": username, "password": password},
                       headers={"Accept": "text/html"}, follow_redirects=False)
    assert resp.status_code == 303, resp.text
    location = resp.headers["location"]
    assert location.startswith(REDIRECT + "?")
    answer = query_of(location)
    assert answer["state"] == "st-1" and answer["iss"] == "http://testserver"
    return answer["code"], verifier


def exchange(client: TestClient, client_id: str, code: str, verifier: str) -> Any:
    return client.post("/auth/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
        "client_id": client_id, "code_verifier": verifier})


def client_assertion(key: Key, client_id: str, aud: str = "http://testserver/auth/token",
                     alg: str = "RS384", **overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": aud, "exp": now + 240,
              "jti": uuid.uuid4().hex, "iat": now}
    claims.update(overrides)
    return jwt.encode({"alg": alg, "kid": key.kid}, {k: v for k, v in claims.items() if v is not None},
                      key, algorithms=[alg])


def client_credentials(client: TestClient, assertion: str, scope: str = "system/*.rs") -> Any:
    return client.post("/auth/token", data={
        "grant_type": "client_credentials", "scope": scope,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion})
