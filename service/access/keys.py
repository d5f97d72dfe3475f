"""The built-in issuer's signing keys, kept in the database.

Why the database: every instance behind a load balancer must sign with, and accept, the same
keys, and a restart must not invalidate tokens. The newest unretired key signs; all unretired
keys verify, so rotation is: add a key (it signs from now on), wait until tokens signed by the
old one have expired, retire the old one.
"""

from __future__ import annotations

import json
import time
from typing import Any

from joserfc import jwk
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..fhir import dates
from .models import SigningKey, table_of

SIGNING_ALGS = ("RS256", "ES256")
KEY_CACHE_SECONDS = 60.0
"""How long a verifying instance trusts its copy of a key; a retired key stops verifying
everywhere within this time."""

SK = table_of(SigningKey)


def generate_key(alg: str = "RS256") -> jwk.Key:
    """A new private key for `alg`, its kid the RFC 7638 thumbprint."""
    if alg == "RS256":
        key: jwk.Key = jwk.RSAKey.generate_key(2048, auto_kid=True)
    elif alg == "ES256":
        key = jwk.ECKey.generate_key("P-256", auto_kid=True)
    else:
        raise ValueError(f"signing algorithm {alg} is not supported; use one of {SIGNING_ALGS}")
    return key


def _load(row: Any) -> jwk.Key:
    return jwk.import_key(json.loads(row.private_jwk))


async def add_key(conn: AsyncConnection, alg: str = "RS256") -> str:
    """Add a signing key; being the newest, it signs every token from now on. Returns its kid."""
    key = generate_key(alg)
    assert key.kid is not None
    await conn.execute(SK.insert(), {
        "kid": key.kid, "alg": alg, "private_jwk": json.dumps(key.as_dict(private=True)),
        "created_at": dates.utcnow(), "retired_at": None})
    return key.kid


async def retire_key(conn: AsyncConnection, kid: str) -> bool:
    """Stop signing and verifying with `kid`. False when there is no such unretired key."""
    result = await conn.execute(update(SK).where(SK.c.kid == kid, SK.c.retired_at.is_(None))
                                .values(retired_at=dates.utcnow()))
    return bool(result.rowcount)


async def signing_key(conn: AsyncConnection) -> tuple[jwk.Key, str]:
    """The key to sign with and its algorithm; generates the first key on first use.

    `conn` must be a writing transaction. Two instances creating the first key at once both
    succeed; both keys verify, and the newer one signs from then on.
    """
    row = (await conn.execute(select(SK).where(SK.c.retired_at.is_(None))
                              .order_by(SK.c.created_at.desc(), SK.c.kid).limit(1))).first()
    if row is None:
        kid = await add_key(conn)
        row = (await conn.execute(select(SK).where(SK.c.kid == kid))).one()
    return _load(row), str(row.alg)


async def public_jwks(conn: AsyncConnection) -> dict[str, Any]:
    """The JWKS every verifier needs: public halves of all unretired keys."""
    rows = (await conn.execute(select(SK).where(SK.c.retired_at.is_(None))
                               .order_by(SK.c.created_at.desc(), SK.c.kid))).all()
    return {"keys": [{**_load(r).as_dict(private=False), "alg": r.alg, "use": "sig"} for r in rows]}


async def list_keys(conn: AsyncConnection) -> list[dict[str, Any]]:
    rows = (await conn.execute(select(SK.c.kid, SK.c.alg, SK.c.created_at, SK.c.retired_at)
                               .order_by(SK.c.created_at))).all()
    return [dict(r._mapping) for r in rows]


class KeyCache:
    """Verification keys by kid, read from the database on a miss and trusted for a minute.

    A cache, not state: losing it costs one query. An unknown kid is looked up directly (one
    indexed read), so a key another instance just added verifies at once.
    """

    def __init__(self) -> None:
        self._keys: dict[str, tuple[jwk.Key, str, float]] = {}

    def fresh(self, kid: str) -> tuple[jwk.Key, str] | None:
        """The key when it is cached and still trusted, without asking the database: what a
        token verified earlier with this key may go on relying on (`verifier.VerifiedTokens`)."""
        hit = self._keys.get(kid)
        if hit is not None and time.monotonic() - hit[2] < KEY_CACHE_SECONDS:
            return hit[0], hit[1]
        return None

    async def get(self, conn: AsyncConnection, kid: str) -> tuple[jwk.Key, str] | None:
        hit = self._keys.get(kid)
        now = time.monotonic()
        if hit is not None and now - hit[2] < KEY_CACHE_SECONDS:
            return hit[0], hit[1]
        row = (await conn.execute(select(SK).where(SK.c.kid == kid, SK.c.retired_at.is_(None)))).first()
        if row is None:
            self._keys.pop(kid, None)
            return None
        key = jwk.import_key(_load(row).as_dict(private=False))
        if len(self._keys) > 64:
            self._keys.clear()
        self._keys[kid] = (key, str(row.alg), now)
        return key, str(row.alg)


_CACHES: dict[str, KeyCache] = {}


def key_cache(database_url: str) -> KeyCache:
    """One cache per database, shared by every request of this process."""
    return _CACHES.setdefault(database_url, KeyCache())
