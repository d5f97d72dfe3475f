"""Bearer token verification over HTTP: every token attack gets 401 with an OperationOutcome and
a WWW-Authenticate challenge, against the built-in issuer and against an external OpenID
Connect issuer served over real HTTP by the test (with key rotation)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey, Key, RSAKey

from service.config import Settings
from service.main import create_app

from .auth_helpers import auth, server_claims, server_signed, token
from .conftest import BASE

SEARCH = "/fhir/Patient?_count=1&_total=none"


def assert_401(resp: Any, error: str | None = "invalid_token") -> None:
    assert resp.status_code == 401, resp.text
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "login"
    challenge = resp.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="pgo-work"')
    if error:
        assert f'error="{error}"' in challenge
    else:
        assert "error=" not in challenge


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join([b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)])


def hs256_with_public_key(public_pem: bytes, kid: str, claims: dict[str, Any]) -> str:
    """The classic confusion attack: HMAC keyed with the issuer's *public* key."""
    head = b64(json.dumps({"alg": "HS256", "kid": kid, "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    mac = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def tampered(tok: str) -> str:
    head, body, sig = tok.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["scope"] = "system/*.cruds"
    return f"{head}.{b64(json.dumps(claims).encode())}.{sig}"


# -- built-in issuer -----------------------------------------------------------------------------

def _server_kid(settings: Settings) -> str:
    tok = server_signed(settings, server_claims(settings))
    header = json.loads(base64.urlsafe_b64decode(tok.split(".")[0] + "=="))
    return str(header["kid"])


def test_missing_token_is_401_without_error_code(anon: TestClient) -> None:
    assert_401(anon.get(SEARCH), error=None)
    assert_401(anon.get(SEARCH, headers={"Authorization": "Basic dXNlcjpwdw=="}), error=None)


def test_valid_builtin_token_is_accepted(anon: TestClient, settings: Settings) -> None:
    assert anon.get(SEARCH, headers=auth(server_signed(settings, server_claims(settings)))).status_code == 200


@pytest.mark.parametrize("case", ["garbage", "expired", "not-yet-valid", "issued-in-future",
                                  "wrong-audience", "wrong-issuer", "no-exp", "bad-signature",
                                  "tampered-claims", "alg-none", "hs256-public-key", "unknown-kid",
                                  "foreign-key-same-kid", "es256-header-on-rsa-key"])
def test_builtin_token_attacks_are_401(anon: TestClient, settings: Settings, case: str) -> None:
    now = int(time.time())
    kid = _server_kid(settings)
    good = server_signed(settings, server_claims(settings))
    tokens: dict[str, Callable[[], str]] = {
        "garbage": lambda: "not-a-jwt",
        "expired": lambda: server_signed(settings, server_claims(settings, iat=now - 900, exp=now - 120)),
        "not-yet-valid": lambda: server_signed(settings, server_claims(settings, nbf=now + 120)),
        "issued-in-future": lambda: server_signed(settings, server_claims(settings, iat=now + 120)),
        "wrong-audience": lambda: server_signed(settings, server_claims(settings, aud="https://other/fhir")),
        "wrong-issuer": lambda: server_signed(settings, server_claims(settings, iss="https://evil.example")),
        "no-exp": lambda: server_signed(settings, server_claims(settings, exp=None)),
        "bad-signature": lambda: good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB"),
        "tampered-claims": lambda: tampered(good),
        "alg-none": lambda: unsigned({"alg": "none", "kid": kid}, server_claims(settings)),
        "hs256-public-key": lambda: hs256_with_public_key(
            _public_pem(anon, kid), kid, server_claims(settings)),
        "unknown-kid": lambda: server_signed(settings, server_claims(settings), {"kid": "no-such-key"}),
        "foreign-key-same-kid": lambda: jwt.encode(
            {"alg": "RS256", "kid": kid}, server_claims(settings),
            RSAKey.generate_key(2048, parameters={"kid": kid}), algorithms=["RS256"]),
        "es256-header-on-rsa-key": lambda: jwt.encode(
            {"alg": "ES256", "kid": kid}, server_claims(settings), ECKey.generate_key("P-256"),
            algorithms=["ES256"]),
    }
    assert_401(anon.get(SEARCH, headers=auth(tokens[case]())))


def _public_pem(client: TestClient, kid: str) -> bytes:
    jwks = client.get("/auth/jwks").json()
    key = next(k for k in jwks["keys"] if k["kid"] == kid)
    return RSAKey.import_key(key).as_pem(private=False)


def test_clock_skew_is_tolerated_but_bounded(anon: TestClient, settings: Settings) -> None:
    now = int(time.time())
    within = server_signed(settings, server_claims(settings, iat=now - 600, exp=now - 20))
    assert anon.get(SEARCH, headers=auth(within)).status_code == 200
    strict = settings.model_copy(update={"token_clock_skew_seconds": 0})
    with TestClient(create_app(strict), base_url="http://testserver") as c:
        assert_401(c.get(SEARCH, headers=auth(within)))


def test_rotated_builtin_key_keeps_verifying_until_retired(anon: TestClient, settings: Settings) -> None:
    from service.access.keys import add_key, retire_key

    from .auth_helpers import in_db

    old = token(settings, "system/*.rs")
    old_kid = json.loads(base64.urlsafe_b64decode(old.split(".")[0] + "=="))["kid"]
    new_kid = in_db(settings, lambda c: add_key(c, "ES256"))
    try:
        new = token(settings, "system/*.rs")
        assert json.loads(base64.urlsafe_b64decode(new.split(".")[0] + "=="))["kid"] == new_kid
        assert anon.get(SEARCH, headers=auth(new)).status_code == 200
        assert anon.get(SEARCH, headers=auth(old)).status_code == 200
        kids = {k["kid"] for k in anon.get("/auth/jwks").json()["keys"]}
        assert {old_kid, new_kid} <= kids
    finally:
        in_db(settings, lambda c: retire_key(c, new_kid))
    with TestClient(create_app(settings), base_url="http://testserver") as fresh:
        # A retired key no longer verifies (a fresh process has no cached copy of it).
        from service.access import keys
        keys._CACHES.clear()
        assert_401(fresh.get(SEARCH, headers=auth(new)))
        assert fresh.get(SEARCH, headers=auth(old)).status_code == 200


def test_dev_token_cli_is_accepted_and_refuses_with_external_issuer(
        anon: TestClient, settings: Settings) -> None:
    env = {**os.environ, "PGO_WORK_DATABASE_URL": settings.resolved_database_url(),
           "PGO_WORK_BASE_URL": BASE}
    exe = str(Path(sys.executable).parent / "pgo-work")  # the console script of this venv
    done = subprocess.run([exe, "dev-token", "--fhir-user", "Practitioner/123", "--scope", "user/*.rs",
                           "--role", "oncologist", "--minutes", "5"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    tok = done.stdout.strip()
    assert anon.get(SEARCH, headers=auth(tok)).status_code == 200
    refused = subprocess.run([exe, "dev-token", "--scope", "user/*.rs"],
                             env={**env, "PGO_WORK_OIDC_ISSUER": "https://idp.example"},
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and refused.stdout == ""
    assert "PGO_WORK_OIDC_ISSUER" in refused.stderr


# -- discovery -------------------------------------------------------------------------------------

def test_discovery_documents_are_public(anon: TestClient) -> None:
    smart = anon.get("/fhir/.well-known/smart-configuration").json()
    assert smart == anon.get("/.well-known/smart-configuration").json()
    assert smart["token_endpoint"] == "http://testserver/auth/token"
    assert smart["code_challenge_methods_supported"] == ["S256"]
    assert "permission-v2" in smart["capabilities"]
    oidc = anon.get("/.well-known/openid-configuration").json()
    assert oidc["issuer"] == "http://testserver"
    assert oidc["jwks_uri"] == "http://testserver/auth/jwks"
    assert anon.get("/auth/jwks").json()["keys"]
    meta = anon.get("/fhir/metadata")
    assert meta.status_code == 200
    security = meta.json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    uris = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
    assert uris["token"] == smart["token_endpoint"]
    assert uris["authorize"] == smart["authorization_endpoint"]


# -- external issuer ---------------------------------------------------------------------------------

class Issuer:
    """A minimal OpenID Connect issuer on 127.0.0.1: discovery and a JWKS, keys swappable."""

    def __init__(self) -> None:
        self.rsa = RSAKey.generate_key(2048, auto_kid=True)
        self.ec = ECKey.generate_key("P-256", auto_kid=True)
        self.published: list[Key] = [self.rsa, self.ec]
        self.jwks_hits = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = self.path.removeprefix("/realms/pgo")
                body: dict[str, Any]
                if path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": issuer.url + "/jwks",
                            "authorization_endpoint": issuer.url + "/authorize",
                            "token_endpoint": issuer.url + "/token"}
                elif path == "/jwks":
                    issuer.jwks_hits += 1
                    body = {"keys": [k.as_dict(private=False) for k in issuer.published]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/realms/pgo"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def token(self, key: Key | None = None, alg: str | None = None, **overrides: Any) -> str:
        key = key or self.rsa
        alg = alg or ("RS256" if isinstance(key, RSAKey) else "ES256")
        now = int(time.time())
        claims = {"iss": self.url, "aud": BASE, "sub": "ext-user", "iat": now, "exp": now + 300,
                  "jti": uuid.uuid4().hex, "scope": "user/*.rs", "fhirUser": f"{BASE}/Practitioner/ext-1",
                  "role": "oncologist"}
        claims.update(overrides)
        return jwt.encode({"alg": alg, "kid": key.kid}, {k: v for k, v in claims.items() if v is not None},
                          key, algorithms=[alg])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    iss = Issuer()
    yield iss
    iss.close()


def external_app(settings: Settings, issuer: Issuer, **extra: Any) -> TestClient:
    configured = settings.model_copy(update={"oidc_issuer": issuer.url, **extra})
    c = TestClient(create_app(configured), base_url="http://testserver")
    c.headers.update({"Accept": "application/fhir+json"})
    return c


def test_external_issuer_accepts_rs256_and_es256(settings: Settings, issuer: Issuer) -> None:
    with external_app(settings, issuer) as c:
        assert c.get(SEARCH, headers=auth(issuer.token(issuer.rsa))).status_code == 200
        assert c.get(SEARCH, headers=auth(issuer.token(issuer.ec))).status_code == 200
        # The built-in server is off; discovery points at the issuer.
        assert c.get("/auth/jwks").status_code == 404
        smart = c.get("/.well-known/smart-configuration").json()
        assert smart["issuer"] == issuer.url and smart["token_endpoint"] == issuer.url + "/token"


@pytest.mark.parametrize("case", ["missing", "expired", "not-yet-valid", "wrong-audience", "wrong-issuer",
                                  "bad-signature", "alg-none", "hs256-public-key", "unknown-kid",
                                  "builtin-token", "rs256-header-on-ec-key"])
def test_external_token_attacks_are_401(settings: Settings, issuer: Issuer, case: str) -> None:
    now = int(time.time())
    impostor = RSAKey.generate_key(2048, parameters={"kid": issuer.rsa.kid or ""})
    tokens: dict[str, Callable[[], str | None]] = {
        "missing": lambda: None,
        "expired": lambda: issuer.token(exp=now - 120, iat=now - 900),
        "not-yet-valid": lambda: issuer.token(nbf=now + 120),
        "wrong-audience": lambda: issuer.token(aud="https://elsewhere/fhir"),
        "wrong-issuer": lambda: issuer.token(iss="https://evil.example"),
        "bad-signature": lambda: issuer.token(impostor),
        "alg-none": lambda: unsigned({"alg": "none", "kid": issuer.rsa.kid}, {"iss": issuer.url, "aud": BASE,
                                                                             "sub": "x", "exp": now + 60}),
        "hs256-public-key": lambda: hs256_with_public_key(
            issuer.rsa.as_pem(private=False), issuer.rsa.kid or "",
            {"iss": issuer.url, "aud": BASE, "sub": "x", "exp": now + 60, "scope": "user/*.rs"}),
        "unknown-kid": lambda: issuer.token(RSAKey.generate_key(2048, auto_kid=True)),
        "builtin-token": lambda: token(settings, "system/*.rs"),
        "rs256-header-on-ec-key": lambda: jwt.encode(
            {"alg": "RS256", "kid": issuer.ec.kid}, {"iss": issuer.url, "aud": BASE, "sub": "x",
                                                    "exp": now + 60}, impostor, algorithms=["RS256"]),
    }
    with external_app(settings, issuer) as c:
        assert c.get(SEARCH, headers=auth(issuer.token())).status_code == 200  # the control
        tok = tokens[case]()
        resp = c.get(SEARCH, headers=auth(tok) if tok else {})
        assert_401(resp, error=None if tok is None else "invalid_token")


def test_external_key_rotation_and_refetch_limit(settings: Settings, issuer: Issuer) -> None:
    with external_app(settings, issuer, jwks_refetch_seconds=1) as c:
        assert c.get(SEARCH, headers=auth(issuer.token(issuer.rsa))).status_code == 200
        hits = issuer.jwks_hits
        # The issuer rotates: a new key is published next to the old one.
        rotated = RSAKey.generate_key(2048, auto_kid=True)
        issuer.published = [rotated, issuer.rsa]
        time.sleep(1.1)
        assert c.get(SEARCH, headers=auth(issuer.token(rotated))).status_code == 200
        assert issuer.jwks_hits == hits + 1
        assert c.get(SEARCH, headers=auth(issuer.token(issuer.rsa))).status_code == 200
        # A burst of unknown kids refetches at most once per interval.
        strangers = [issuer.token(ECKey.generate_key("P-256", auto_kid=True)) for _ in range(5)]
        burst_start = issuer.jwks_hits
        for stranger in strangers:
            assert_401(c.get(SEARCH, headers=auth(stranger)))
        assert issuer.jwks_hits - burst_start <= 1


def test_external_key_withdrawn_stops_verifying_after_cache_expiry(settings: Settings,
                                                                    issuer: Issuer) -> None:
    with external_app(settings, issuer, jwks_cache_seconds=1) as c:
        assert c.get(SEARCH, headers=auth(issuer.token(issuer.rsa))).status_code == 200
        issuer.published = [issuer.ec]
        time.sleep(1.1)
        assert_401(c.get(SEARCH, headers=auth(issuer.token(issuer.rsa))))
        assert c.get(SEARCH, headers=auth(issuer.token(issuer.ec))).status_code == 200


def test_unreachable_issuer_is_503_not_401_or_500(settings: Settings) -> None:
    configured = settings.model_copy(update={"oidc_issuer": "http://127.0.0.1:9/realms/none",
                                             "oidc_http_timeout_seconds": 1.0})
    with TestClient(create_app(configured), base_url="http://testserver") as c:
        resp = c.get(SEARCH, headers=auth(unsigned({"alg": "RS256", "kid": "k"}, {"sub": "x"}, b"sig")))
        assert resp.status_code == 503
        assert resp.json()["resourceType"] == "OperationOutcome"
