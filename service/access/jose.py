"""JWT checks in one place, strict by construction.

The header is read before any key is chosen and the algorithm must be on an explicit allow
list, so `alg: none`, HMAC with a public key as the secret, and algorithm/key-type confusion
are refused before a signature is ever computed. Claims are then checked with a bounded
clock skew. (JOSE through joserfc, the library Authlib's own JOSE support now delegates to.)
"""

from __future__ import annotations

import base64
import json
from collections.abc import Collection
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, RSAKey
from joserfc.registry import HeaderParameter

ACCESS_TOKEN_ALGS = ("RS256", "ES256")
"""Access tokens: exactly these (RFC 7518 RS256 and ES256), from any issuer."""
ASSERTION_ALGS = ("RS256", "RS384", "ES256", "ES384")
"""Client assertions: SMART Backend Services asks servers to support RS384 and ES384 too."""
_CURVES = {"ES256": "P-256", "ES384": "P-384"}


class TokenError(Exception):
    """A token that must not be accepted; the message says why (it reaches the client)."""


def _b64json(part: str) -> Any:
    padded = part + "=" * (-len(part) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


def read_header(token: str, allowed: Collection[str]) -> tuple[str, str]:
    """(alg, kid) of a compact JWS, before any verification; refuses other algorithms."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise TokenError("The token is not a signed JWT")
    try:
        header = _b64json(parts[0])
    except (ValueError, UnicodeError) as exc:
        raise TokenError("The token header cannot be read") from exc
    if not isinstance(header, dict):
        raise TokenError("The token header cannot be read")
    alg = header.get("alg")
    if alg not in allowed:
        raise TokenError(f"Signing algorithm {alg!r} is not accepted; use one of {', '.join(allowed)}")
    if "crit" in header:
        raise TokenError("Critical header extensions are not supported")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenError("The token header names no key (kid)")
    return str(alg), kid


def unverified_claims(token: str) -> dict[str, Any]:
    """The payload before verification: only to find out whose key to verify with."""
    try:
        claims = _b64json(token.split(".")[1])
    except (ValueError, UnicodeError, IndexError) as exc:
        raise TokenError("The token payload cannot be read") from exc
    if not isinstance(claims, dict):
        raise TokenError("The token payload cannot be read")
    return claims


def key_fits(key: Key, alg: str) -> bool:
    """RS* needs an RSA key, ES* an EC key on that algorithm's curve: no type confusion."""
    if alg.startswith("RS"):
        return isinstance(key, RSAKey)
    if alg.startswith("ES"):
        return isinstance(key, ECKey) and key.as_dict().get("crv") == _CURVES.get(alg)
    return False


def _registry(alg: str) -> jws.JWSRegistry:
    """The JWS header parameters we accept: the registered ones, and `kty`, which the SMART
    Bulk Data test client (and clients built on node-jose) put in a client assertion's
    header. An unknown parameter is still refused (it might be one we were meant to obey)."""
    return jws.JWSRegistry(header_registry={"kty": HeaderParameter("Key type", "str")},
                           algorithms=[alg])


def verified_claims(token: str, key: Key, alg: str) -> dict[str, Any]:
    """The claims, once the signature checks out with `key` under exactly `alg`."""
    if not key_fits(key, alg):
        raise TokenError("The token's algorithm does not match its key")
    try:
        obj = jws.deserialize_compact(token, key, algorithms=[alg], registry=_registry(alg))
        claims = json.loads(obj.payload or b"")
    except (JoseError, ValueError) as exc:
        raise TokenError("The token signature is not valid") from exc
    if not isinstance(claims, dict):
        raise TokenError("The token claims are not a JSON object")
    return claims


def check_claims(claims: dict[str, Any], *, issuer: str, audience: str, leeway: int,
                 essential: Collection[str] = ("exp", "sub")) -> None:
    """iss and aud must match; exp (required), nbf and iat must hold within `leeway` seconds."""
    options: dict[str, jwt.ClaimsOption] = {name: {"essential": True} for name in essential}
    options["iss"] = {"essential": True, "value": issuer}
    registry = jwt.JWTClaimsRegistry(None, leeway, **options)
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if audience not in audiences:
        raise TokenError("The token is not meant for this server (aud)")
    try:
        registry.validate(claims)
    except JoseError as exc:
        if exc.error == "expired_token":
            raise TokenError("The token has expired") from exc
        raise TokenError(f"The token is not valid: {exc.description or exc.error}") from exc


def sign(claims: dict[str, Any], key: Key, alg: str, typ: str = "JWT") -> str:
    assert key.kid is not None
    return jwt.encode({"alg": alg, "kid": key.kid, "typ": typ}, claims, key, algorithms=[alg])
