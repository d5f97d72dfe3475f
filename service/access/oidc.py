"""An external OpenID Connect issuer: its discovery document and its keys, cached.

Key rotation at the issuer shows up as a token whose `kid` we do not know; we then refetch the
JWKS, but at most once per `jwks_refetch_seconds`, so a stream of forged kids cannot turn us
into a flood against the issuer. The cache is only a cache: a new process starts empty and
fetches again. No lock spans an await, so the cache is safe to share between event loops.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import Key, KeySet

from ..config import Settings


class IssuerUnavailable(Exception):
    """The issuer's discovery document or keys cannot be fetched (a server-side problem)."""


def _check_url(url: str, what: str) -> str:
    """HTTPS only, except on the loopback interface (development and tests)."""
    parts = urlsplit(url)
    local = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and local):
        raise IssuerUnavailable(f"The issuer's {what} must be an https URL: {url}")
    return url


class OidcProvider:
    def __init__(self, issuer: str, cache_seconds: int, refetch_seconds: int, timeout: float) -> None:
        self.issuer = issuer.rstrip("/")
        self.cache_seconds = cache_seconds
        self.refetch_seconds = refetch_seconds
        self.timeout = timeout
        self._discovery: dict[str, Any] | None = None
        self._discovery_at = 0.0
        self._keys: dict[str, Key] = {}
        self._keys_at: float | None = None
        self._failed: str | None = None
        """Why the last key fetch failed (None after a success): until a fetch succeeds, a
        request inside the refetch window is told the issuer is unavailable (503), not that
        its token is invalid (401), which would make a client sign in again for nothing."""

    @property
    def cached_discovery(self) -> dict[str, Any] | None:
        return self._discovery

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as http:
                resp = await http.get(url, headers={"Accept": "application/json"})
            resp.raise_for_status()
            body = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise IssuerUnavailable(f"Cannot fetch {url}: {exc}") from exc
        if not isinstance(body, dict):
            raise IssuerUnavailable(f"{url} did not return a JSON object")
        return body

    async def discovery(self) -> dict[str, Any]:
        """The issuer's /.well-known/openid-configuration, whose `issuer` must be the issuer."""
        now = time.monotonic()
        if self._discovery is not None and now - self._discovery_at < self.cache_seconds:
            return self._discovery
        url = _check_url(self.issuer + "/.well-known/openid-configuration", "discovery document")
        doc = await self._get_json(url)
        if str(doc.get("issuer", "")).rstrip("/") != self.issuer:
            raise IssuerUnavailable("The discovery document names another issuer")
        if not isinstance(doc.get("jwks_uri"), str):
            raise IssuerUnavailable("The discovery document has no jwks_uri")
        _check_url(doc["jwks_uri"], "jwks_uri")
        self._discovery, self._discovery_at = doc, now
        return doc

    async def _refresh_keys(self) -> None:
        self._keys_at = time.monotonic()  # before the await: concurrent misses do not refetch
        try:
            doc = await self.discovery()
            jwks = await self._get_json(doc["jwks_uri"])
            try:
                keyset = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
            except (JoseError, ValueError, KeyError, TypeError) as exc:
                raise IssuerUnavailable("The issuer's JWKS cannot be read") from exc
        except IssuerUnavailable as exc:
            self._failed = str(exc)
            raise
        self._keys = {k.kid: k for k in keyset if k.kid and not k.is_private}
        self._failed = None

    async def key(self, kid: str) -> Key | None:
        """The issuer's public key `kid`, refetching on expiry or (rate-limited) on a miss."""
        now = time.monotonic()
        expired = self._keys_at is None or now - self._keys_at >= self.cache_seconds
        may_refetch = self._keys_at is not None and now - self._keys_at >= self.refetch_seconds
        if expired or (kid not in self._keys and may_refetch):
            await self._refresh_keys()
        elif self._failed is not None and kid not in self._keys:
            raise IssuerUnavailable(self._failed)
        return self._keys.get(kid)


_PROVIDERS: dict[tuple[str, int, int, float], OidcProvider] = {}


def provider_for(settings: Settings) -> OidcProvider:
    """The process-wide provider (and cache) for the configured issuer."""
    key = (settings.oidc_issuer.rstrip("/"), settings.jwks_cache_seconds,
           settings.jwks_refetch_seconds, settings.oidc_http_timeout_seconds)
    if key not in _PROVIDERS:
        _PROVIDERS[key] = OidcProvider(*key)
    return _PROVIDERS[key]
