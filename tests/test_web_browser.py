"""The web app at /app in a real browser (Debian's chromium, headless, driven by Playwright):
the patient signs in, grants the occupational physician access, the physician sees the work
story and its charts, the patient withdraws, the physician's next page shows nothing, and the
patient's access log lists the physician's reads. Screenshots of every main page go to
test-artifacts/screenshots/<database>/ (not committed) for a reviewer to look at.

Needs /usr/bin/chromium (`apt-get install -y chromium`; `.ci/run` installs it); skipped, with
that reason, only when it is missing. Playwright's own browser download is never used."""

from __future__ import annotations

import asyncio
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from service.access.demo import DEMO_PASSWORD, seed_identities
from service.config import PROJECT_ROOT, Settings
from service.conformance.publish import publish
from service.demo.loader import seed
from service.main import create_app
from service.runtime import build_runtime
from service.store.migrate import upgrade

from .conftest import DATABASES, make_database
from .live_server import free_port

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's chromium is not installed at /usr/bin/chromium "
                                       "(apt-get install -y chromium)")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = PROJECT_ROOT / "test-artifacts" / "screenshots"
TIMEOUT_MS = 20_000


async def _seed_demo(settings: Settings) -> None:
    """What `pgo-work seed-demo` does: the conformance package, the demo data, the accounts
    and the web app's client with this server's redirect URI."""
    rt = build_runtime(settings)
    try:
        await publish(rt)
        await seed(rt)
        await seed_identities(rt.engine, settings)
    finally:
        await rt.close()


@pytest.fixture(scope="module", params=DATABASES)
def app_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real server on a loopback port with the demo data; yields its root URL."""
    shutil.rmtree(SHOTS / request.param, ignore_errors=True)  # only this run's screenshots
    url, drop = make_database(request.param, tmp_path_factory.mktemp(f"web-{request.param}"))
    upgrade(url)
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    settings = Settings(database_url=url, base_url=f"{root}/fhir")
    asyncio.run(_seed_demo(settings))
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.05)
    try:
        yield root
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        drop()


@pytest.fixture(scope="module")
def browser(app_url: str) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@dataclass
class User:
    """One person's browser tab, with what the page reported that should not happen."""

    page: Any
    root: str
    shots: Path
    problems: list[str] = field(default_factory=list)

    def ready(self, route: str | None = None) -> None:
        """Wait until the app has drawn the page for `route` (main[data-ready])."""
        selector = f'main[data-ready="{route}"]' if route else "main[data-ready]"
        self.page.wait_for_selector(selector, timeout=TIMEOUT_MS)

    def go(self, route: str) -> None:
        """Open a page of the app as a new visit (also the page shown now: a fresh look)."""
        if self.page.evaluate("location.hash") == route:
            self.page.evaluate("location.hash = '#/reload'")
            self.ready("#/reload")
        self.page.evaluate("document.getElementById('main').removeAttribute('data-ready')")
        self.page.evaluate(f"location.hash = {route!r}")
        self.ready(route)

    def click(self, locator: Any, route: str) -> None:
        """Click something that redraws the page, and wait for the new page."""
        self.page.evaluate("document.getElementById('main').removeAttribute('data-ready')")
        locator.click()
        self.ready(route)

    def shot(self, name: str) -> None:
        self.shots.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)

    def main_text(self) -> str:
        return str(self.page.inner_text("main"))


def _user(browser: Any, app_url: str, request: pytest.FixtureRequest, phone: bool = False) -> User:
    db = request.node.callspec.params.get("app_url", "db")
    size = {"width": 390, "height": 844} if phone else {"width": 1200, "height": 900}
    context = browser.new_context(viewport=size, locale="nl-NL")
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    user = User(page, app_url, SHOTS / db)
    # a script error or a CSP refusal ("Refused to ...") is a problem; a FHIR 404 the app
    # expects (a record no longer shared) is the browser's note, not one
    page.on("console", lambda msg: user.problems.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource") else None)
    page.on("pageerror", lambda exc: user.problems.append(str(exc)))
    return user


def _sign_in(user: User, username: str, shot: str | None = None) -> None:
    page = user.page
    page.goto(f"{user.root}/app/")
    page.get_by_role("button", name="Inloggen").click()
    page.wait_for_url(re.compile(r"/auth/authorize"))
    if shot:
        user.shot(shot)
    page.get_by_label(re.compile("Gebruikersnaam")).fill(username)
    page.get_by_label(re.compile("Wachtwoord")).fill(DEMO_PASSWORD)
    page.get_by_role("button", name=re.compile("Inloggen")).click()
    page.wait_for_url(re.compile(r"/app/"))
    user.ready()


def test_consent_given_seen_and_withdrawn_in_the_browser(browser: Any, app_url: str,
                                                         request: pytest.FixtureRequest) -> None:
    anna = _user(browser, app_url, request)
    _sign_in(anna, "anna", shot="00-sign-in")
    anna.ready("#/")
    assert "Mijn werkverhaal" in anna.main_text()
    assert anna.page.locator("figure.chart svg").count() >= 2  # hours, load capacity
    anna.shot("01-patient-work-story")
    stored = anna.page.evaluate("Object.keys(localStorage)")
    assert not [k for k in stored if "session" in k], "tokens must not be kept in localStorage"

    anna.go("#/consents")
    assert "nog niemand toestemming" in anna.main_text()
    anna.go("#/consents/new")
    anna.page.get_by_label("Rol").select_option("occupational-physician")
    anna.page.get_by_label("Plaats").fill("Amersfoort")
    anna.page.get_by_role("button", name="Zoeken").click()
    anna.page.get_by_label(re.compile("dr. Pieter Jansen")).check()
    anna.page.get_by_label(re.compile("Verzuim en uitkeringen")).check()
    anna.page.get_by_label(re.compile("Mag ook gegevens toevoegen")).check()
    consequences = anna.page.locator(".consequences").inner_text()
    assert "dr. Pieter Jansen (bedrijfsarts) mag" in consequences
    assert "ziet geen diagnose" in consequences
    anna.shot("02-patient-grant-consent")
    anna.click(anna.page.locator("form").get_by_role("button", name="Toestemming geven"), "#/consents")
    assert "Toestemming voor dr. Pieter Jansen gegeven" in anna.main_text()
    assert "Actief" in anna.main_text()
    anna.shot("03-patient-consents")

    doctor = _user(browser, app_url, request)
    _sign_in(doctor, "bedrijfsarts")
    doctor.ready("#/")
    doctor.click(doctor.page.get_by_role("link", name="Anna de Vries"), "#/patients/pat-anna")
    text = doctor.main_text()
    assert "Contracturen en gewerkte uren" in text and "Belastbaarheid (ICF)" in text
    assert "Fase 4" in text and "Signalen van late gevolgen" in text
    assert doctor.page.locator("figure.chart svg path.c-contract").count() == 1
    assert doctor.page.locator("figure.chart svg rect.c-worked").count() == 5
    doctor.shot("04-physician-patient")

    # the consent lets the physician add information: a load-capacity profile through the form
    doctor.click(doctor.page.get_by_role("link", name="Vragenlijst invullen voor deze patiënt"),
                 "#/forms?patient=pat-anna")
    doctor.click(doctor.page.get_by_role("link", name="Belastbaarheidsprofiel (ICF-typering)"),
                 "#/forms/load-capacity?patient=pat-anna")
    doctor.page.get_by_label(re.compile("Datum van beoordeling")).fill("2026-12-01")
    doctor.page.locator('[data-link-id="lc-b4552"] select').select_option("1")
    doctor.page.get_by_role("button", name="Versturen").click()
    doctor.page.wait_for_selector(".extracted, .notice-error")
    doctor.shot("05-physician-questionnaire-extracted")
    assert "Wat eruit is overgenomen" in doctor.main_text(), doctor.main_text()
    doctor.go("#/patients/pat-anna")
    capacity = doctor.page.locator('section[aria-labelledby="h-capacity"]').inner_text()
    # the previous profile is the demo's latest before today's (its date follows the demo data)
    assert "Laatste: 1 december 2026" in capacity and "Vorige: " in capacity, capacity
    doctor.page.locator('section[aria-labelledby="h-capacity"]').screenshot(
        path=str(doctor.shots / "05b-physician-load-capacity-latest-vs-previous.png"))

    # pause: the physician sees nothing until the patient resumes
    anna.click(anna.page.get_by_role("button", name="Pauzeren"), "#/consents")
    assert "Gepauzeerd" in anna.main_text()
    doctor.go("#/patients")
    assert "Anna de Vries" not in doctor.main_text()
    anna.click(anna.page.get_by_role("button", name="Hervatten"), "#/consents")
    assert "Actief" in anna.main_text()
    doctor.go("#/patients")
    assert "Anna de Vries" in doctor.main_text()

    anna.click(anna.page.get_by_role("button", name=re.compile("Intrekken")), "#/consents")
    assert "ingetrokken" in anna.main_text() and "Ingetrokken" in anna.main_text()
    assert "Op dit moment mag niemand uw gegevens zien" in anna.main_text()
    anna.shot("06-patient-consent-withdrawn")

    doctor.go("#/patients")
    assert "Anna de Vries" not in doctor.main_text()
    doctor.go("#/patients/pat-anna")
    assert "Niet met u gedeeld" in doctor.main_text()
    assert doctor.page.locator("figure.chart").count() == 0
    doctor.shot("07-physician-after-withdrawal")

    # the access token ran out: the refresh token keeps the session alive (and rotates)
    before = anna.page.evaluate("JSON.parse(sessionStorage.getItem('pgo-web.session')).refresh_token")
    anna.page.evaluate("""() => { const s = JSON.parse(sessionStorage.getItem('pgo-web.session'));
        s.expires_at = 0; sessionStorage.setItem('pgo-web.session', JSON.stringify(s)); }""")
    anna.go("#/log")
    after = anna.page.evaluate("JSON.parse(sessionStorage.getItem('pgo-web.session')).refresh_token")
    assert after != before
    log = anna.main_text()
    assert re.search(r"dr\. Pieter Jansen, bedrijfsarts, bekeek .* "
                     r"toegestaan door uw toestemming van", log), log
    assert re.search(r"dr\. Pieter Jansen, bedrijfsarts, probeerde .* Dat is geweigerd", log), log
    anna.shot("08-patient-access-log")
    assert not anna.problems and not doctor.problems, anna.problems + doctor.problems


def test_pages_work_on_a_phone_and_in_english(browser: Any, app_url: str,
                                              request: pytest.FixtureRequest) -> None:
    anna = _user(browser, app_url, request, phone=True)
    _sign_in(anna, "anna")
    anna.page.get_by_role("button", name="English").click()
    anna.ready("#/")
    assert "My work story" in anna.main_text()
    width = anna.page.evaluate("document.documentElement.scrollWidth")
    wide = anna.page.evaluate("""() => [...document.querySelectorAll('main *')]
        .filter((e) => e.getBoundingClientRect().right > 391).slice(0, 5)
        .map((e) => e.tagName + '.' + e.className + ' ' + (e.textContent || '').slice(0, 40))""")
    assert width <= 390, f"the page scrolls sideways on a phone ({width}px): {wide}"
    anna.shot("09-phone-work-story-en")
    anna.page.get_by_role("button", name="Nederlands").click()
    anna.go("#/forms/late-effects-signals")
    symptoms = anna.page.locator('.q-choice[data-link-id^="le-"]')
    for i in range(symptoms.count()):
        symptoms.nth(i).get_by_label("Geen").check()
    anna.page.locator('[data-link-id="le-fatigue"]').get_by_label("Matig").check()
    anna.page.get_by_role("button", name="Versturen").click()
    anna.page.wait_for_selector(".extracted, .notice-error")
    anna.shot("10-phone-questionnaire-extracted")
    assert "Wat eruit is overgenomen" in anna.main_text(), anna.main_text()
    assert "Matig" in anna.page.locator(".extracted").inner_text()
    anna.shot("10-phone-questionnaire-extracted")
    anna.go("#/summary")
    assert "Download als PDF" in anna.main_text()
    assert "diagnose" not in anna.page.locator(".preview").inner_text().lower()
    anna.shot("11-phone-employer-summary")
    assert not anna.problems, anna.problems


def test_poortwachter_steps_in_the_patients_work_story(browser: Any, app_url: str,
                                                       request: pytest.FixtureRequest) -> None:
    """Sanne (demo: sick since February 2026, plan van aanpak done) sees in her work story the
    week of her sickness case and the Poortwachter steps, each with an icon and a word."""
    sanne = _user(browser, app_url, request)
    _sign_in(sanne, "sanne")
    sanne.ready("#/")
    section = sanne.page.locator("section.poortwachter")
    text = section.inner_text()
    assert re.search(r"Week \d+ van 104", text), text
    done = section.locator("li.pw-step.pw-done")
    assert done.count() >= 2 and "gedaan" in done.first.inner_text()  # probleemanalyse, plan van aanpak
    assert any("Plan van aanpak" in t for t in done.all_inner_texts())
    pending = section.locator("li.pw-due, li.pw-overdue")
    assert pending.count() >= 1
    assert re.search(r"nu aan de beurt|te laat", pending.first.inner_text())
    assert section.locator(".pw-icon").count() == section.locator("li.pw-step").count()
    assert "Einde loondoorbetaling verwacht op" in text and "Art. 7:629" in text  # and its source
    sanne.shot("12-poortwachter")
    sanne.page.get_by_role("button", name="English").click()
    sanne.ready("#/")
    english = sanne.page.locator("section.poortwachter").inner_text()
    assert re.search(r"Week \d+ of 104", english) and "done" in english, english
    sanne.page.get_by_role("button", name="Nederlands").click()
    sanne.ready("#/")

    # the occupational physician sees the steps once Sanne shares her absence data
    doctor = _user(browser, app_url, request)
    _sign_in(doctor, "bedrijfsarts")
    doctor.go("#/patients/pat-sanne")
    assert doctor.page.locator("section.poortwachter").count() == 0
    sanne.go("#/consents/new")
    sanne.page.get_by_label("Rol").select_option("occupational-physician")
    sanne.page.get_by_label("Plaats").fill("Amersfoort")
    sanne.page.get_by_role("button", name="Zoeken").click()
    sanne.page.get_by_label(re.compile("dr. Pieter Jansen")).check()
    sanne.page.get_by_label(re.compile("Verzuim en uitkeringen")).check()
    sanne.click(sanne.page.locator("form").get_by_role("button", name="Toestemming geven"), "#/consents")
    doctor.go("#/patients/pat-sanne")
    seen = doctor.page.locator("section.poortwachter").inner_text()
    assert re.search(r"Week \d+ van 104", seen) and "gedaan" in seen, seen
    doctor.shot("13-physician-poortwachter")
    assert not sanne.problems and not doctor.problems, sanne.problems + doctor.problems
