"""The built-in authorization server end to end over HTTP: a PGO app's authorization code flow
with PKCE (login page, token, FHIR data, refresh with rotation, revoke, introspect), and an EHR
system's client credentials grant with a private_key_jwt assertion (SMART Backend Services)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from joserfc.jwk import ECKey, KeySet, RSAKey

from service.config import Settings

from .auth_helpers import (
    PASSWORD,
    REDIRECT,
    account,
    auth,
    authorize_params,
    backend_client,
    client_assertion,
    client_credentials,
    exchange,
    login,
    pkce,
    public_client,
    query_of,
)
from .conftest import BASE
from .consent_helpers import grant, permit
from .helpers import contract_hours, create, patient

PGO_SCOPE = "openid fhirUser launch/patient offline_access patient/*.rs patient/Observation.c"


def claims_of(jwt_text: str) -> dict[str, Any]:
    body = jwt_text.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


def _two_patients(client: TestClient, tag: str) -> tuple[str, str]:
    anna = create(client, patient(tag, "de Vries", "Anna"))["id"]
    bob = create(client, patient(tag, "Jansen", "Bob"))["id"]
    create(client, contract_hours(tag, anna, 32, "2024-01-01"))
    create(client, contract_hours(tag, bob, 40, "2024-01-01"))
    return anna, bob


def _search(anon: TestClient, tok: str, query: str) -> Any:
    return anon.get(f"/fhir/{query}", headers=auth(tok))


def test_pgo_flow_end_to_end(client: TestClient, anon: TestClient, settings: Settings, tag: str) -> None:
    anna, bob = _two_patients(client, tag)
    app_id = public_client(settings)
    username = account(settings, f"Patient/{anna}", "patient")

    code, verifier = login(anon, app_id, username, PGO_SCOPE)
    resp = exchange(anon, app_id, code, verifier)
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store"
    tokens = resp.json()
    assert tokens["token_type"] == "Bearer" and tokens["patient"] == anna
    assert set(tokens["scope"].split()) == set(PGO_SCOPE.split())
    access = tokens["access_token"]
    claims = claims_of(access)
    assert claims["aud"] == BASE and claims["iss"] == "http://testserver"
    assert claims["fhirUser"] == f"{BASE}/Patient/{anna}" and claims["role"] == "patient"
    assert claims["patient"] == anna and claims["client_id"] == app_id
    id_claims = claims_of(tokens["id_token"])
    assert id_claims["aud"] == app_id and id_claims["fhirUser"] == f"{BASE}/Patient/{anna}"

    # The patient's own data, and nothing of anyone else's.
    own = _search(anon, access, f"Observation?_tag=https://pgo-work.nl/fhir/test-run|{tag}").json()
    assert own["total"] == 1
    assert own["entry"][0]["resource"]["subject"]["reference"] == f"Patient/{anna}"
    assert _search(anon, access, f"Patient/{anna}").status_code == 200
    assert _search(anon, access, f"Patient/{bob}").status_code == 404
    # The app may add the patient's own observation (patient/Observation.c), not someone else's.
    mine = contract_hours(tag, anna, 24, "2024-06-01")
    assert anon.post("/fhir/Observation", json=mine, headers={**auth(access),
                     "Content-Type": "application/fhir+json"}).status_code == 201
    theirs = contract_hours(tag, bob, 24, "2024-06-01")
    assert anon.post("/fhir/Observation", json=theirs, headers={**auth(access),
                     "Content-Type": "application/fhir+json"}).status_code == 403

    # Refresh: a new access token and a new refresh token; the old refresh token is spent.
    first_refresh = tokens["refresh_token"]
    refreshed = anon.post("/auth/token", data={"grant_type": "refresh_token", "client_id": app_id,
                                               "refresh_token": first_refresh},
                          headers={"MedMij-Request-ID": "6f1c0a52-2f3e-4c1c-9d7e-3f0f0a8b1c2d"})
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.headers["medmij-request-id"] == "6f1c0a52-2f3e-4c1c-9d7e-3f0f0a8b1c2d"
    second = refreshed.json()
    assert second["refresh_token"] != first_refresh and second["patient"] == anna
    assert _search(anon, second["access_token"], f"Patient/{anna}").status_code == 200

    # Introspection while active, revocation, introspection after.
    intro = anon.post("/auth/introspect", data={"client_id": app_id, "token": second["access_token"]})
    assert intro.json()["active"] is True and intro.json()["scope"] == tokens["scope"]
    refresh_intro = anon.post("/auth/introspect", data={"client_id": app_id,
                                                        "token": second["refresh_token"]}).json()
    assert refresh_intro["active"] is True and refresh_intro["token_type"] == "refresh_token"
    revoked = anon.post("/auth/revoke", data={"client_id": app_id, "token": second["refresh_token"]})
    assert revoked.status_code == 200
    for tok in (second["access_token"], second["refresh_token"], access):
        assert anon.post("/auth/introspect", data={"client_id": app_id, "token": tok}).json() == {
            "active": False}
    # Revoking the refresh token ended the grant: its access tokens stop working at once.
    assert _search(anon, second["access_token"], f"Patient/{anna}").status_code == 401
    again = anon.post("/auth/token", data={"grant_type": "refresh_token", "client_id": app_id,
                                           "refresh_token": second["refresh_token"]})
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_refresh_token_reuse_revokes_the_whole_grant(client: TestClient, anon: TestClient,
                                                     settings: Settings, tag: str) -> None:
    anna, _ = _two_patients(client, tag)
    app_id = public_client(settings)
    username = account(settings, f"Patient/{anna}", "patient")
    code, verifier = login(anon, app_id, username, "launch/patient offline_access patient/*.rs")
    first = exchange(anon, app_id, code, verifier).json()
    second = anon.post("/auth/token", data={"grant_type": "refresh_token", "client_id": app_id,
                                            "refresh_token": first["refresh_token"]}).json()
    assert _search(anon, second["access_token"], f"Patient/{anna}").status_code == 200
    # A stolen, already used refresh token is replayed: refused, and the family is revoked.
    replay = anon.post("/auth/token", data={"grant_type": "refresh_token", "client_id": app_id,
                                            "refresh_token": first["refresh_token"]})
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    latest = anon.post("/auth/token", data={"grant_type": "refresh_token", "client_id": app_id,
                                            "refresh_token": second["refresh_token"]})
    assert latest.status_code == 400
    assert _search(anon, second["access_token"], f"Patient/{anna}").status_code == 401


def test_authorization_code_is_single_use_and_bound(client: TestClient, anon: TestClient,
                                                    settings: Settings, tag: str) -> None:
    anna, _ = _two_patients(client, tag)
    app_id = public_client(settings)
    other_app = public_client(settings)
    username = account(settings, f"Patient/{anna}", "patient")
    code, verifier = login(anon, app_id, username, "launch/patient patient/*.rs")
    wrong_verifier, _ = pkce()
    assert exchange(anon, app_id, code, wrong_verifier).json()["error"] == "invalid_grant"
    assert exchange(anon, other_app, code, verifier).json()["error"] == "invalid_grant"
    no_pkce = anon.post("/auth/token", data={"grant_type": "authorization_code", "code": code,
                                             "redirect_uri": REDIRECT, "client_id": app_id})
    assert no_pkce.json()["error"] == "invalid_grant"
    ok = exchange(anon, app_id, code, verifier)
    assert ok.status_code == 200
    assert "refresh_token" not in ok.json()  # neither offline_access nor online_access asked
    replay = exchange(anon, app_id, code, verifier)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    # Replaying a code revokes what it produced (RFC 6749 4.1.2).
    assert _search(anon, ok.json()["access_token"], f"Patient/{anna}").status_code == 401


def test_login_page_rejects_bad_requests_and_passwords(anon: TestClient, settings: Settings) -> None:
    app_id = public_client(settings)
    username = account(settings, "Practitioner/prac-1", "occupational-physician")
    _, challenge = pkce()
    html = {"Accept": "text/html"}
    # Unknown client or unregistered redirect: shown, never redirected.
    unknown = anon.get("/auth/authorize", params=authorize_params("nobody", "user/*.rs", challenge),
                       headers=html, follow_redirects=False)
    assert unknown.status_code == 400 and "location" not in unknown.headers
    evil = anon.get("/auth/authorize", params={**authorize_params(app_id, "user/*.rs", challenge),
                                               "redirect_uri": "https://evil.example/cb"},
                    headers=html, follow_redirects=False)
    assert evil.status_code == 400 and "location" not in evil.headers
    # Without PKCE S256: error sent back to the app.
    plain = anon.get("/auth/authorize", params={**authorize_params(app_id, "user/*.rs", challenge),
                                                "code_challenge_method": "plain"},
                     headers=html, follow_redirects=False)
    assert plain.status_code == 303
    assert query_of(plain.headers["location"])["error"] == "invalid_request"
    wrong_aud = anon.get("/auth/authorize", params={**authorize_params(app_id, "user/*.rs", challenge),
                                                    "aud": "https://other.example/fhir"},
                         headers=html, follow_redirects=False)
    assert query_of(wrong_aud.headers["location"])["error"] == "invalid_request"
    # system/ scopes are never granted at the login page.
    system = anon.get("/auth/authorize", params=authorize_params(app_id, "system/*.rs", challenge),
                      headers=html, follow_redirects=False)
    assert query_of(system.headers["location"])["error"] == "invalid_scope"
    # A wrong password shows the form again, with no code.
    params = authorize_params(app_id, "user/*.rs", challenge)
    wrong = anon.post("/auth/authorize", data={**params, "username": username, "password": "nope"},
                      headers=html, follow_redirects=False)
    assert wrong.status_code == 200 and "location" not in wrong.headers
    assert "verkeerd wachtwoord" in wrong.text  # the page is Dutch unless ui_locales asks otherwise
    right = anon.post("/auth/authorize", data={**params, "username": username, "password": PASSWORD},
                      headers=html, follow_redirects=False)
    assert right.status_code == 303 and "code" in query_of(right.headers["location"])


def test_client_scope_limit_narrows_what_is_granted(client: TestClient, anon: TestClient,
                                                    settings: Settings, tag: str) -> None:
    anna, _ = _two_patients(client, tag)
    app_id = public_client(settings, scope="launch/patient patient/Observation.rs")
    username = account(settings, f"Patient/{anna}", "patient")
    _, challenge = pkce()
    wide = anon.get("/auth/authorize", params=authorize_params(
        app_id, "launch/patient patient/*.cruds offline_access", challenge), follow_redirects=False)
    # patient/*.cruds is wider than the client may get, and nothing else was asked for.
    assert query_of(wide.headers["location"])["error"] == "invalid_scope"
    code, verifier = login(anon, app_id, username,
                           "launch/patient patient/Observation.rs patient/Observation.c offline_access")
    granted = exchange(anon, app_id, code, verifier).json()
    assert granted["scope"].split() == ["patient/Observation.rs", "launch/patient"]
    assert "refresh_token" not in granted


def test_professional_login_gets_no_patient_context(anon: TestClient, client: TestClient,
                                                    settings: Settings, tag: str) -> None:
    anna, _ = _two_patients(client, tag)
    app_id = public_client(settings)
    username = account(settings, "Practitioner/prac-oncology", "oncologist")
    code, verifier = login(anon, app_id, username, "launch/patient user/Observation.rs fhirUser")
    tokens = exchange(anon, app_id, code, verifier).json()
    assert "patient" not in tokens and "launch/patient" not in tokens["scope"].split()
    assert tokens["fhirUser"] == f"{BASE}/Practitioner/prac-oncology"
    claims = claims_of(tokens["access_token"])
    assert claims["role"] == "oncologist" and "patient" not in claims
    # Without the patient's consent the oncologist sees nothing of her record ...
    hidden = _search(anon, tokens["access_token"], f"Observation?subject=Patient/{anna}")
    assert hidden.status_code == 200 and hidden.json()["total"] == 0
    # ... and with it, her observation.
    grant(client, anna, [permit("Practitioner/prac-oncology")], f"consent-{tag}")
    found = _search(anon, tokens["access_token"], f"Observation?subject=Patient/{anna}")
    assert found.status_code == 200 and found.json()["total"] == 1


# -- SMART Backend Services ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ehr_keys() -> tuple[RSAKey, ECKey]:
    return RSAKey.generate_key(2048, auto_kid=True), ECKey.generate_key("P-384", auto_kid=True)


def test_backend_client_credentials_with_private_key_jwt(anon: TestClient, client: TestClient,
                                                         settings: Settings, tag: str,
                                                         ehr_keys: tuple[RSAKey, ECKey]) -> None:
    anna, _ = _two_patients(client, tag)
    rsa, ec = ehr_keys
    jwks = KeySet([rsa, ec]).as_dict(private=False)
    ehr = backend_client(settings, dict(jwks), scope="system/Observation.rs system/Patient.rs")
    resp = client_credentials(anon, client_assertion(rsa, ehr), scope="system/Observation.rs "
                              "system/Patient.cruds user/*.rs")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["scope"] == "system/Observation.rs" and "refresh_token" not in body
    claims = claims_of(body["access_token"])
    assert claims["sub"] == ehr and claims["client_id"] == ehr and claims["role"] == "ehr-system"
    # The hospital EHR (a registered Device) reads only what the patient shared with it.
    assert _search(anon, body["access_token"], f"Observation?subject=Patient/{anna}").json()["total"] == 0
    grant(client, anna, [permit(f"Device/{ehr}")], f"consent-{tag}")
    found = _search(anon, body["access_token"], f"Observation?subject=Patient/{anna}")
    assert found.status_code == 200 and found.json()["total"] == 1
    # Read-only: writes are 403, other types too.
    obs = contract_hours(tag, anna, 20, "2024-03-01")
    assert anon.post("/fhir/Observation", json=obs, headers={
        **auth(body["access_token"]), "Content-Type": "application/fhir+json"}).status_code == 403
    assert _search(anon, body["access_token"], f"Patient/{anna}").status_code == 403
    # ES384 assertions work too (SMART asks servers to support RS384 and ES384).
    assert client_credentials(anon, client_assertion(ec, ehr, alg="ES384"),
                              scope="system/Observation.rs").status_code == 200


def test_backend_assertion_attacks(anon: TestClient, settings: Settings,
                                   ehr_keys: tuple[RSAKey, ECKey]) -> None:
    rsa, ec = ehr_keys
    ehr = backend_client(settings, dict(KeySet([rsa]).as_dict(private=False)))
    stranger = RSAKey.generate_key(2048, parameters={"kid": rsa.kid or ""})
    good = client_assertion(rsa, ehr)
    assert client_credentials(anon, good).status_code == 200
    attacks = {
        "replayed jti": good,
        "wrong audience": client_assertion(rsa, ehr, aud="http://testserver/fhir"),
        "sub differs": client_assertion(rsa, ehr, sub="someone-else"),
        "expired": client_assertion(rsa, ehr, exp=1_000_000_000),
        "lives too long": client_assertion(rsa, ehr, exp=4_000_000_000),
        "no jti": client_assertion(rsa, ehr, jti=None),
        "unregistered key": client_assertion(stranger, ehr),
        "unknown client": client_assertion(rsa, "no-such-client"),
        "bad signature": client_assertion(rsa, ehr).rsplit(".", 1)[0] + ".c2ln",
    }
    for name, assertion in attacks.items():
        resp = client_credentials(anon, assertion)
        assert resp.status_code == 401, (name, resp.text)
        assert resp.json()["error"] == "invalid_client", name
    # Public clients cannot use client_credentials; backend clients must authenticate.
    app_id = public_client(settings)
    resp = anon.post("/auth/token", data={"grant_type": "client_credentials", "client_id": app_id,
                                          "scope": "system/*.rs"})
    assert resp.json()["error"] == "unauthorized_client"
    resp = anon.post("/auth/token", data={"grant_type": "client_credentials", "client_id": ehr,
                                          "scope": "system/*.rs"})
    assert resp.status_code == 401 and resp.json()["error"] == "invalid_client"


def test_token_endpoint_errors_are_oauth_json(anon: TestClient) -> None:
    resp = anon.post("/auth/token", data={"grant_type": "password", "username": "x", "password": "y"})
    assert resp.status_code == 400 and resp.json()["error"] == "unsupported_grant_type"
    resp = anon.post("/auth/token", json={"grant_type": "authorization_code"})
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request"


def test_cli_registers_account_and_client_that_can_log_in(anon: TestClient, client: TestClient,
                                                          settings: Settings, tag: str) -> None:
    anna, _ = _two_patients(client, tag)
    env = {**os.environ, "PGO_WORK_DATABASE_URL": settings.resolved_database_url(),
           "PGO_WORK_BASE_URL": BASE}
    exe = str(Path(sys.executable).parent / "pgo-work")  # the console script of this venv
    username, app_id = f"cli-{tag}", f"cli-app-{tag}"
    made = subprocess.run([exe, "add-account", username, "--fhir-user", f"Patient/{anna}", "--role",
                           "patient", "--password-stdin"], input=PASSWORD + "\n", env=env,
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    dup = subprocess.run([exe, "add-account", username, "--fhir-user", f"Patient/{anna}", "--role",
                          "patient", "--password-stdin"], input=PASSWORD + "\n", env=env,
                         capture_output=True, text=True, timeout=120)
    assert dup.returncode != 0 and "already exists" in dup.stderr
    reg = subprocess.run([exe, "add-client", app_id, "--redirect-uri", REDIRECT], env=env,
                         capture_output=True, text=True, timeout=120)
    assert reg.returncode == 0, reg.stderr
    code, verifier = login(anon, app_id, username, "launch/patient patient/Patient.rs")
    tokens = exchange(anon, app_id, code, verifier).json()
    assert _search(anon, tokens["access_token"], f"Patient/{anna}").status_code == 200
