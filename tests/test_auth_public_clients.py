"""What browser and mobile SMART clients do at the built-in authorization server (issue 15):
refresh and revoke without `client_id` (the token names its client, RFC 6749 6, RFC 7009,
SMART v2), and a professional signing in through a patient app."""

from __future__ import annotations

from fastapi.testclient import TestClient

from service.config import Settings

from .auth_helpers import (
    PASSWORD,
    account,
    auth,
    authorize_params,
    exchange,
    login,
    pkce,
    public_client,
)
from .helpers import create, patient

PGO_SCOPE = "launch/patient offline_access patient/*.rs"


def _tokens(client: TestClient, anon: TestClient, settings: Settings, tag: str) -> tuple[str, dict[str, str]]:
    anna = create(client, patient(tag))["id"]
    app_id = public_client(settings)
    code, verifier = login(anon, app_id, account(settings, f"Patient/{anna}", "patient"), PGO_SCOPE)
    resp = exchange(anon, app_id, code, verifier)
    assert resp.status_code == 200, resp.text
    return anna, resp.json()


def test_refresh_without_client_id(client: TestClient, anon: TestClient, settings: Settings,
                                   tag: str) -> None:
    anna, tokens = _tokens(client, anon, settings, tag)
    refreshed = anon.post("/auth/token", data={"grant_type": "refresh_token",
                                               "refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    body = refreshed.json()
    assert body["patient"] == anna and body["refresh_token"] != tokens["refresh_token"]
    assert anon.get(f"/fhir/Patient/{anna}", headers=auth(body["access_token"])).status_code == 200
    # The spent token is still refused (and its reuse revokes the grant), as with client_id.
    again = anon.post("/auth/token", data={"grant_type": "refresh_token",
                                           "refresh_token": tokens["refresh_token"]})
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    bogus = anon.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": "nope"})
    assert bogus.status_code == 400 and bogus.json()["error"] == "invalid_grant"


def test_refresh_by_another_client_is_refused(client: TestClient, anon: TestClient,
                                              settings: Settings, tag: str) -> None:
    _, tokens = _tokens(client, anon, settings, tag)
    other = public_client(settings)
    resp = anon.post("/auth/token", data={"grant_type": "refresh_token", "client_id": other,
                                          "refresh_token": tokens["refresh_token"]})
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"


def test_revoke_without_client_id(client: TestClient, anon: TestClient, settings: Settings,
                                  tag: str) -> None:
    anna, tokens = _tokens(client, anon, settings, tag)
    assert anon.post("/auth/revoke", data={"token": tokens["refresh_token"]}).status_code == 200
    # Revoking the refresh token ended the grant: its access token stops working at once.
    assert anon.get(f"/fhir/Patient/{anna}", headers=auth(tokens["access_token"])).status_code == 401
    # A token we never issued: 200 and nothing happens (RFC 7009 2.2).
    assert anon.post("/auth/revoke", data={"token": "never-issued"}).status_code == 200


def test_revoke_access_token_without_client_id(client: TestClient, anon: TestClient,
                                               settings: Settings, tag: str) -> None:
    anna, tokens = _tokens(client, anon, settings, tag)
    assert anon.post("/auth/revoke", data={"token": tokens["access_token"]}).status_code == 200
    assert anon.get(f"/fhir/Patient/{anna}", headers=auth(tokens["access_token"])).status_code == 401


def test_professional_cannot_sign_in_to_a_patient_app(anon: TestClient, settings: Settings) -> None:
    app_id = public_client(settings)
    username = account(settings, "Practitioner/prac-conventions", "occupational-physician")
    _, challenge = pkce()
    params = {**authorize_params(app_id, PGO_SCOPE, challenge), "ui_locales": "en"}
    html = {"Accept": "text/html"}
    page = anon.get("/auth/authorize", params=params, headers=html)
    assert page.status_code == 200 and "patient&#x27;s own account" in page.text
    resp = anon.post("/auth/authorize", data={**params, "username": username, "password": PASSWORD},
                     headers=html, follow_redirects=False)
    assert resp.status_code == 200 and "location" not in resp.headers
    assert "Professionals sign in to an app for professionals" in resp.text


def test_professional_keeps_user_scopes_but_not_patient_scopes(anon: TestClient,
                                                               settings: Settings) -> None:
    app_id = public_client(settings)
    username = account(settings, "Practitioner/prac-conventions", "occupational-physician")
    code, verifier = login(anon, app_id, username, "launch/patient patient/*.rs user/Observation.rs")
    granted = exchange(anon, app_id, code, verifier).json()
    assert granted["scope"].split() == ["user/Observation.rs"] and "patient" not in granted
