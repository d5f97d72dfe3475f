"""The built-in authorization server's sign-in page, in the web app's design.

Dutch by default, English on request (OpenID Connect's `ui_locales`, carried through the form);
it says in plain words which app asks for what, for how long, and how to withdraw it, instead
of listing raw scope strings. The page has no script and links the app's own stylesheet, so its
Content-Security-Policy allows nothing inline at all.
"""

from __future__ import annotations

import html
import re
from urllib.parse import urlencode

from starlette.responses import HTMLResponse

from ..access.authserver import AuthorizeRequest
from ..config import Settings

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
PAGE_HEADERS = {**NO_STORE, "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
                "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
                                           "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"}
LANGS = ("nl", "en")
SCOPE_RE = re.compile(r"^(patient|user|system)/([A-Za-z*]+)\.([a-z*]+)")
TEXT: dict[str, dict[str, str]] = {
    "title": {"nl": "Inloggen bij pgo-work", "en": "Sign in to pgo-work"},
    "cannot": {"nl": "Inloggen kan niet", "en": "Cannot sign in"},
    "asks": {"nl": "De app {app} vraagt toegang tot uw gegevens in pgo-work. Als u inlogt, "
                   "mag deze app:",
             "en": "The app {app} asks for access to your information in pgo-work. When you "
                   "sign in, this app may:"},
    "patient": {"nl": "als u patiënt bent: uw eigen gegevens {what}, alleen in uw eigen dossier",
                "en": "if you are a patient: {what} your own information, in your own record only"},
    "user": {"nl": "als u professional bent: {what} wat patiënten met u delen; wat precies, "
                   "bepaalt elke patiënt zelf met een toestemming",
             "en": "if you are a professional: {what} what patients share with you; exactly what, "
                   "each patient decides with a consent"},
    "launch/patient": {"nl": "weten wiens dossier het is", "en": "know whose record it is"},
    "fhirUser": {"nl": "uw naam en rol weten", "en": "know your name and role"},
    "offline_access": {"nl": "u ingelogd houden tot u uitlogt, hoogstens {days} dagen",
                       "en": "keep you signed in until you sign out, for at most {days} days"},
    "how_long": {"nl": "Elke toegangssleutel is {minutes} minuten geldig; daarna vraagt de app "
                       "zelf een nieuwe zolang u ingelogd bent.",
                 "en": "Each access key is valid for {minutes} minutes; after that the app asks "
                       "for a new one while you stay signed in."},
    "withdraw": {"nl": "Intrekken: log uit in de app, dan vervalt deze toegang meteen. Wie uw "
                       "gegevens mag zien, regelt u daarnaast zelf onder 'Mijn toestemmingen'.",
                 "en": "To withdraw: sign out in the app and this access ends at once. Who may "
                       "see your information you decide separately, under 'My consents'."},
    "username": {"nl": "Gebruikersnaam", "en": "Username"},
    "password": {"nl": "Wachtwoord", "en": "Password"},
    "submit": {"nl": "Inloggen en toestaan", "en": "Sign in and allow"},
    "wrong": {"nl": "Onbekende gebruikersnaam of verkeerd wachtwoord.",
              "en": "Unknown username or wrong password."},
    "switch": {"nl": "English", "en": "Nederlands"},
    "patient_app_only": {
        "nl": "Deze app werkt voor één patiënt en is alleen te gebruiken met het eigen account van "
              "een patiënt (of van diens vertegenwoordiger). Professionals loggen in bij een app "
              "voor professionals.",
        "en": "This app acts for one patient and can only be used with a patient's own account (or "
              "a representative's). Professionals sign in to an app for professionals."},
}
ACTIONS = {"c": ("toevoegen", "add"), "r": ("lezen", "read"), "u": ("wijzigen", "change"),
           "d": ("verwijderen", "delete"), "s": ("zoeken", "search")}


def language(params: dict[str, str]) -> str:
    """The first of `ui_locales` we speak (nl-NL counts as nl); Dutch otherwise."""
    for tag in (params.get("ui_locales") or "").split():
        base = tag.split("-")[0].lower()
        if base in LANGS:
            return base
    return "nl"


def t(key: str, lang: str, **values: object) -> str:
    return TEXT[key][lang].format(**values)


def _actions(letters: str, lang: str) -> str:
    letters = {"read": "rs", "write": "cud", "*": "cruds"}.get(letters, letters)
    words = [ACTIONS[c][0 if lang == "nl" else 1] for c in "rscud" if c in letters]
    joiner = " en " if lang == "nl" else " and "
    return joiner.join([", ".join(words[:-1]), words[-1]]) if len(words) > 1 else "".join(words)


def scope_lines(scope: str, lang: str, settings: Settings) -> list[str]:
    """The requested scopes in plain words, one line per thing the app may do."""
    lines: list[str] = []
    for item in scope.split():
        match = SCOPE_RE.match(item)
        if match:
            context, rtype, letters = match.groups()
            what = _actions(letters, lang)
            if rtype != "*":
                what += f" ({rtype})"
            if context in ("patient", "user"):
                lines.append(t(context, lang, what=what))
        elif item in ("launch/patient", "fhirUser", "offline_access"):
            lines.append(t(item, lang, days=settings.refresh_token_days))
    return list(dict.fromkeys(lines))


def page(title: str, body: str, lang: str, status: int = 200, switch: str | None = None) -> HTMLResponse:
    toggle = (f'<a class="button lang" lang="{"en" if lang == "nl" else "nl"}" href="{html.escape(switch)}">'
              f"{t('switch', lang)}</a>") if switch else ""
    doc = (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
           '<meta name="viewport" content="width=device-width, initial-scale=1">'
           f"<title>{html.escape(title)}</title>"
           '<link rel="icon" href="/app/favicon.svg" type="image/svg+xml">'
           '<link rel="stylesheet" href="/app/app.css"></head><body class="auth">'
           '<header class="site-header"><div class="bar"><span class="brand">pgo-work</span>'
           f'<div class="tools">{toggle}</div></div></header>'
           f'<main id="main" class="auth-main"><h1>{html.escape(title)}</h1>{body}</main></body></html>')
    return HTMLResponse(doc, status_code=status, headers=PAGE_HEADERS)


def problem_page(message: str, lang: str) -> HTMLResponse:
    return page(t("cannot", lang), f'<p class="notice notice-error">{html.escape(message)}</p>', lang, 400)


def login_page(endpoint: str, req: AuthorizeRequest, settings: Settings, lang: str,
               error: str | None = None) -> HTMLResponse:
    """`error`: a key of the texts above (`wrong`, `patient_app_only`), shown as an alert."""
    fields = {**req.form_fields(), "ui_locales": lang}
    hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                     for k, v in fields.items())
    other = "en" if lang == "nl" else "nl"
    switch = f"{endpoint}?{urlencode({**req.form_fields(), 'ui_locales': other})}"
    items = "".join(f"<li>{html.escape(line)}</li>" for line in scope_lines(req.scope, lang, settings))
    message = (f'<p class="notice notice-error" role="alert">{html.escape(t(error, lang))}</p>'
               if error else "")
    if any(s.startswith("patient/") for s in req.scope.split()):
        items += f"<li>{html.escape(t('patient_app_only', lang))}</li>"
    body = (f'<section class="step"><p>{html.escape(t("asks", lang, app=req.client_name))}</p>'
            f'<ul class="consequences">{items}</ul>'
            f'<p>{html.escape(t("how_long", lang, minutes=settings.access_token_minutes))}</p>'
            f'<p>{html.escape(t("withdraw", lang))}</p></section>{message}'
            f'<form class="stack step" method="post" action="{html.escape(endpoint)}">{hidden}'
            f'<div class="field"><label for="username">{t("username", lang)}</label>'
            '<input id="username" name="username" type="text" autocomplete="username" required '
            'autocapitalize="none" spellcheck="false"></div>'
            f'<div class="field"><label for="password">{t("password", lang)}</label>'
            '<input id="password" name="password" type="password" '
            'autocomplete="current-password" required></div>'
            f'<div class="actions"><button type="submit" class="primary">{t("submit", lang)}</button></div>'
            "</form>")
    return page(t("title", lang), body, lang, switch=switch)
