"""Bearer token verification: from the configured external issuer, or the built-in one.

Both paths run the same checks (allowed algorithm, known key of the right type, signature,
iss, aud, exp/nbf/iat within the clock skew); the built-in path also honours revocation,
which only the built-in server can know about.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..config import Settings
from .db import transaction
from .jose import ACCESS_TOKEN_ALGS, TokenError, check_claims, read_header, verified_claims
from .keys import key_cache
from .models import Grant, RevokedToken, table_of
from .oidc import provider_for
from .principal import Principal, principal_from_claims

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


class TokenVerifier:
    def __init__(self, settings: Settings, engine: AsyncEngine) -> None:
        self.settings = settings
        self.engine = engine

    @property
    def external(self) -> bool:
        return bool(self.settings.oidc_issuer)

    async def verify(self, token: str) -> Principal:
        """The principal a valid access token stands for; TokenError otherwise.

        Raises IssuerUnavailable when an external issuer's keys cannot be fetched.
        """
        return principal_from_claims(await self.claims(token), self.settings.base_url)

    async def claims(self, token: str) -> dict[str, Any]:
        """The verified claims of a valid access token (what `verify` maps to a Principal)."""
        alg, kid = read_header(token, ACCESS_TOKEN_ALGS)
        return await (self._external(token, alg, kid) if self.external
                      else self._builtin(token, alg, kid))

    async def _external(self, token: str, alg: str, kid: str) -> dict[str, Any]:
        key = await provider_for(self.settings).key(kid)
        if key is None:
            raise TokenError("The token is signed with a key the issuer does not publish")
        claims = verified_claims(token, key, alg)
        check_claims(claims, issuer=self.settings.oidc_issuer.rstrip("/"),
                     audience=self.settings.resolved_audience(),
                     leeway=self.settings.token_clock_skew_seconds)
        return claims

    async def _builtin(self, token: str, alg: str, kid: str) -> dict[str, Any]:
        async with transaction(self.engine) as conn:
            found = await key_cache(self.settings.resolved_database_url()).get(conn, kid)
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
            if await is_revoked(conn, claims.get("jti"), claims.get("sid")):
                raise TokenError("The token has been revoked")
        return claims
