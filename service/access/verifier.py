"""Bearer token verification: from the configured external issuer, or the built-in one.

Both paths run the same checks (allowed algorithm, known key of the right type, signature,
iss, aud, exp/nbf/iat within the clock skew); the built-in path also honours revocation,
which only the built-in server can know about.

A built-in token that passed those checks is remembered by its SHA-256 until it expires
(`VerifiedTokens`): the next request with it skips the signature and claim work, as long as
the key it was signed with is still trusted (`KeyCache.fresh`, so a retired key stops its
tokens exactly as before). Revocation is never cached: it is checked on every request, for
FHIR requests inside the request's own transaction (`RevocationCheck`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..config import Settings
from ..fhir.outcome import FhirError
from ..store.access import PolicyBase
from .db import transaction
from .jose import ACCESS_TOKEN_ALGS, TokenError, check_claims, read_header, verified_claims
from .keys import key_cache
from .models import Grant, RevokedToken, table_of
from .oidc import provider_for
from .principal import Principal, principal_from_claims

REALM = "pgo-work"


def _challenge(error: str | None = None, description: str | None = None) -> str:
    parts = [f'Bearer realm="{REALM}"']
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append('error_description="{}"'.format(description.replace('"', "'")))
    return ", ".join(parts)


def unauthorized(description: str, error: str | None = "invalid_token") -> FhirError:
    """401 with the RFC 6750 challenge; `Runtime.store` does not audit it (no one was
    authenticated, as when the token is refused before the request)."""
    return FhirError(401, "login", description,
                     headers={"WWW-Authenticate": _challenge(error, description if error else None)})


GRANTS = table_of(Grant)
REVOKED = table_of(RevokedToken)


async def is_revoked(conn: AsyncConnection, jti: Any, sid: Any) -> bool:
    """Revoked one by one (RFC 7009), or with the whole grant it was issued under."""
    checks = []
    if isinstance(jti, str):
        checks.append(select(REVOKED.c.jti).where(REVOKED.c.jti == jti))
    if isinstance(sid, str):
        checks.append(select(GRANTS.c.id).where(GRANTS.c.id == sid, GRANTS.c.revoked_at.is_not(None)))
    if not checks:
        return False
    stmt = union_all(*checks) if len(checks) > 1 else checks[0]
    return (await conn.execute(stmt)).first() is not None


class VerifiedTokens:
    """Built-in tokens whose signature and claims checked out, by SHA-256, until their `exp`.

    Per process and bounded; a cache only (a miss verifies again). The raw token is never
    kept, and an entry holds only while the key that signed it is trusted."""

    MAX_ENTRIES = 10_000

    def __init__(self) -> None:
        self._tokens: dict[bytes, tuple[dict[str, Any], str, float]] = {}

    @staticmethod
    def digest(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()

    def get(self, digest: bytes, leeway: int) -> tuple[dict[str, Any], str] | None:
        hit = self._tokens.get(digest)
        if hit is None:
            return None
        if time.time() > hit[2] + leeway:
            del self._tokens[digest]
            return None
        return hit[0], hit[1]

    def put(self, digest: bytes, claims: dict[str, Any], kid: str) -> None:
        exp = claims.get("exp")
        if not isinstance(exp, int | float):
            return
        if len(self._tokens) >= self.MAX_ENTRIES:
            now = time.time()
            self._tokens = {d: e for d, e in self._tokens.items() if e[2] > now}
            if len(self._tokens) >= self.MAX_ENTRIES:
                self._tokens.clear()
        self._tokens[digest] = (claims, kid, float(exp))


_VERIFIED: dict[str, VerifiedTokens] = {}


def verified_tokens(database_url: str) -> VerifiedTokens:
    """One cache per database (tokens of one issuer), shared by every request of this process."""
    return _VERIFIED.setdefault(database_url, VerifiedTokens())


class RevocationCheck(PolicyBase):
    """The revocation half of verifying a built-in token, run when the request's transaction
    opens (`AccessPolicy.open`): one indexed query in the transaction the request reads in,
    instead of a transaction of its own before it."""

    def __init__(self, token_id: str | None, grant_id: str | None) -> None:
        self.token_id = token_id
        self.grant_id = grant_id

    @property
    def parameters(self) -> Mapping[str, Any]:
        return {}

    async def open(self, conn: AsyncConnection, snapshot: bool = True) -> None:
        if await is_revoked(conn, self.token_id, self.grant_id):
            raise unauthorized("The token has been revoked")


class TokenVerifier:
    def __init__(self, settings: Settings, engine: AsyncEngine) -> None:
        self.settings = settings
        self.engine = engine

    @property
    def external(self) -> bool:
        return bool(self.settings.oidc_issuer)

    async def verify(self, token: str, check_revocation: bool = True) -> Principal:
        """The principal a valid access token stands for; TokenError otherwise.

        `check_revocation=False` leaves the revocation check of a built-in token to the
        caller, who must run it (`revocation_check`) before anything is read for the request.
        Raises IssuerUnavailable when an external issuer's keys cannot be fetched.
        """
        return principal_from_claims(await self.claims(token, check_revocation),
                                     self.settings.base_url)

    async def claims(self, token: str, check_revocation: bool = True) -> dict[str, Any]:
        """The verified claims of a valid access token (what `verify` maps to a Principal)."""
        if self.external:
            alg, kid = read_header(token, ACCESS_TOKEN_ALGS)
            return await self._external(token, alg, kid)
        return await self._builtin(token, check_revocation)

    def revocation_check(self, principal: Principal) -> RevocationCheck | None:
        """What `verify(check_revocation=False)` left to do (nothing for an external issuer)."""
        return None if self.external else RevocationCheck(principal.token_id, principal.grant_id)

    async def _external(self, token: str, alg: str, kid: str) -> dict[str, Any]:
        key = await provider_for(self.settings).key(kid)
        if key is None:
            raise TokenError("The token is signed with a key the issuer does not publish")
        claims = verified_claims(token, key, alg)
        check_claims(claims, issuer=self.settings.oidc_issuer.rstrip("/"),
                     audience=self.settings.resolved_audience(),
                     leeway=self.settings.token_clock_skew_seconds)
        return claims

    async def _builtin(self, token: str, check_revocation: bool) -> dict[str, Any]:
        url = self.settings.resolved_database_url()
        keys, cache = key_cache(url), verified_tokens(url)
        digest = cache.digest(token)
        hit = cache.get(digest, self.settings.token_clock_skew_seconds)
        if hit is not None and keys.fresh(hit[1]) is not None:
            claims = hit[0]
            if check_revocation:
                async with transaction(self.engine) as conn:
                    if await is_revoked(conn, claims.get("jti"), claims.get("sid")):
                        raise TokenError("The token has been revoked")
            return claims
        alg, kid = read_header(token, ACCESS_TOKEN_ALGS)
        async with transaction(self.engine) as conn:
            found = await keys.get(conn, kid)
            if found is None:
                raise TokenError("The token is signed with a key this server does not know")
            key, key_alg = found
            if key_alg != alg:
                raise TokenError("The token's algorithm does not match its key")
            claims = verified_claims(token, key, alg)
            check_claims(claims, issuer=self.settings.resolved_issuer(),
                         audience=self.settings.resolved_audience(),
                         leeway=self.settings.token_clock_skew_seconds,
                         essential=("exp", "sub", "jti"))
            if check_revocation and await is_revoked(conn, claims.get("jti"), claims.get("sid")):
                raise TokenError("The token has been revoked")
        cache.put(digest, claims, kid)
        return claims
