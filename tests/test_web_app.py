"""The web app at /app over HTTP: what the server sends with it, the demo client it signs in
as, and the sign-in page of the built-in authorization server in the app's design (Dutch by
default, English on request, plain words, no inline code). The browser tests
(test_web_browser.py) walk through the pages themselves."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from fastapi.testclient import TestClient

from service.access.accounts import find_client
from service.access.db import transaction
from service.access.demo import WEB_CLIENT, seed_identities
from service.config import Settings
from service.store.database import create_engine

from .auth_helpers import pkce

STATIC = Path(__file__).resolve().parents[1] / "service" / "web" / "static"
HTML = {"Accept": "text/html"}


def _redirects(settings: Settings) -> tuple[str, ...]:
    async def run() -> tuple[str, ...]:
        engine = create_engine(settings.resolved_database_url())
        try:
            await seed_identities(engine, settings)
            async with transaction(engine) as conn:
                client = await find_client(conn, WEB_CLIENT)
            assert client is not None and client.kind == "public"
            return client.redirect_uris
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _authorize(redirect: str, **extra: str) -> dict[str, str]:
    _, challenge = pkce()
    return {"response_type": "code", "client_id": WEB_CLIENT, "redirect_uri": redirect,
            "scope": "openid fhirUser offline_access launch/patient patient/*.cruds user/*.cruds",
            "state": "st-web", "code_challenge": challenge, "code_challenge_method": "S256", **extra}


def test_the_app_is_served_at_app_with_a_policy_that_allows_no_inline_code(anon: TestClient) -> None:
    for path in ("/app", "/app/", "/app/callback"):
        resp = anon.get(path, headers=HTML)
        assert resp.status_code == 200, path
        assert resp.headers["content-type"].startswith("text/html")
        csp = resp.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "frame-ancestors 'none'" in csp and resp.headers["x-content-type-options"] == "nosniff"
        scripts = re.findall(r"<script[^>]*>", resp.text)
        assert scripts and all('src="/app/' in s for s in scripts), "no inline script in the shell"
        assert "style=" not in resp.text and "<style" not in resp.text
    js = anon.get("/app/main.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "unsafe-inline" not in js.headers["content-security-policy"]


def test_only_the_apps_own_files_are_served(anon: TestClient) -> None:
    for path in ("/app/nothing.js", "/app/..%2Fpyproject.toml", "/app/routes.py", "/app/__init__.py"):
        resp = anon.get(path)
        assert resp.status_code == 404, path
        assert resp.json()["resourceType"] == "OperationOutcome"


def test_every_module_the_app_imports_is_served(anon: TestClient) -> None:
    """A module missing from the package would break the app only in a browser."""
    imported = set()
    for path in STATIC.glob("*.js"):
        imported |= set(re.findall(r"from '\./([a-z-]+\.js)'", path.read_text()))
    assert {"auth.js", "fhir.js", "chart.js"} <= imported
    for name in sorted(imported | {"app.css", "favicon.svg"}):
        assert anon.get(f"/app/{name}").status_code == 200, name


def test_the_app_keeps_tokens_out_of_local_storage_and_builds_no_markup_from_data() -> None:
    scripts = sorted(STATIC.glob("*.js"))
    assert len(scripts) >= 10
    for path in scripts:
        text = path.read_text()
        assert not re.search(r"localStorage\s*[.\[]", text), path.name
        markup = r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write"
        assert not re.search(markup, text), path.name
        assert not re.search(r"\beval\(|new Function\(", text), path.name


def test_seed_demo_registers_the_web_app_at_the_served_address(settings: Settings, anon: TestClient) -> None:
    redirects = _redirects(settings)
    assert "http://testserver/app/callback" in redirects
    moved = settings.model_copy(update={"base_url": "http://127.0.0.1:8181/fhir"})
    assert set(_redirects(moved)) >= {"http://testserver/app/callback", "http://127.0.0.1:8181/app/callback"}
    assert _redirects(moved).count("http://127.0.0.1:8181/app/callback") == 1  # idempotent
    page = anon.get("/auth/authorize", params=_authorize("http://testserver/app/callback"), headers=HTML)
    assert page.status_code == 200 and "<form" in page.text


def test_the_sign_in_page_speaks_dutch_in_plain_words_and_english_on_request(
        settings: Settings, anon: TestClient) -> None:
    _redirects(settings)
    params = _authorize("http://testserver/app/callback")
    page = anon.get("/auth/authorize", params=params, headers=HTML)
    assert page.status_code == 200
    assert '<html lang="nl">' in page.text and "Gebruikersnaam" in page.text and "Wachtwoord" in page.text
    assert "pgo-work (web-app)" in page.text
    assert "als u patiënt bent" in page.text and "182 dagen" in page.text and "15 minuten" in page.text
    assert "log uit in de app" in page.text  # how to withdraw
    assert "<li>patient/" not in page.text and "<li>offline_access" not in page.text
    csp = page.headers["content-security-policy"]
    assert "unsafe-inline" not in csp and "style-src 'self'" in csp and "script-src" not in csp
    assert "ui_locales=en" in page.text  # the language switch

    english = anon.get("/auth/authorize", params={**params, "ui_locales": "en-GB en"}, headers=HTML)
    assert '<html lang="en">' in english.text and "Username" in english.text
    assert "if you are a patient" in english.text
    wrong = anon.post("/auth/authorize", data={**params, "ui_locales": "en", "username": "anna",
                                               "password": "nope"}, headers=HTML, follow_redirects=False)
    assert wrong.status_code == 200 and "wrong password" in wrong.text and 'lang="en"' in wrong.text
    unknown = anon.get("/auth/authorize", params={**params, "client_id": "nobody"}, headers=HTML)
    assert unknown.status_code == 400 and "Inloggen kan niet" in unknown.text
