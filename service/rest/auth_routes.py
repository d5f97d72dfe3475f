"""HTTP of the authorization server and discovery: adapts requests to `AuthServer`, nothing more.

OAuth endpoints answer in OAuth's own format (RFC 6749 5.2 JSON errors, no-store caching),
because that is what OAuth clients parse; everything else keeps the API's OperationOutcome.
With an external issuer configured, the built-in endpoints answer 404 and discovery points at
that issuer.
"""

from __future__ import annotations

import html
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from ..access import discovery
from ..access.authserver import (
    PATIENT_APP_ONLY,
    AuthorizeProblem,
    AuthorizeRedirect,
    AuthorizeRequest,
    AuthServer,
    LoginFailed,
)
from ..access.oauth_error import OAuthError
from ..access.oidc import IssuerUnavailable
from ..fhir.outcome import FhirError
from ..runtime import Runtime
from .deps import get_runtime

router = APIRouter(tags=["auth"])
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
ECHO_HEADERS = ("medmij-request-id", "x-correlation-id")
"""MedMij token requests carry these; echoing them lets both sides correlate their logs."""
PAGE_HEADERS = {**NO_STORE, "X-Frame-Options": "DENY",
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                           "form-action 'self'; frame-ancestors 'none'"}
FORM_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}}


def built_in(rt: Annotated[Runtime, Depends(get_runtime)]) -> AuthServer:
    """The built-in server; 404 when tokens come from an external issuer instead."""
    if rt.settings.oidc_issuer:
        raise FhirError(404, "not-found", "The built-in authorization server is off: tokens come "
                                          f"from {rt.settings.oidc_issuer}")
    return AuthServer(rt.settings, rt.engine)


ServerDep = Annotated[AuthServer, Depends(built_in)]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def _form(request: Request) -> dict[str, str]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "Send application/x-www-form-urlencoded parameters")
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _oauth_json(request: Request, body: dict[str, Any], status: int = 200) -> JSONResponse:
    headers = dict(NO_STORE)
    for name in ECHO_HEADERS:
        if name in request.headers:
            headers[name] = request.headers[name]
    return JSONResponse(body, status_code=status, headers=headers)


def _oauth_error(request: Request, exc: OAuthError) -> JSONResponse:
    return _oauth_json(request, exc.body(), exc.status)


# -- discovery ---------------------------------------------------------------------------------
async def _smart(rt: Runtime) -> JSONResponse:
    try:
        doc = await discovery.smart_configuration(rt.settings)
    except IssuerUnavailable as exc:
        raise FhirError(503, "transient", f"The token issuer cannot be reached: {exc}") from exc
    return JSONResponse(doc, headers={"Cache-Control": "max-age=300"})


@router.get("/.well-known/smart-configuration", summary="SMART App Launch configuration")
async def smart_configuration(rt: RuntimeDep) -> Response:
    return await _smart(rt)


@router.get("/fhir/.well-known/smart-configuration",
            summary="SMART App Launch configuration (at the FHIR base, where SMART clients look)")
async def smart_configuration_at_base(rt: RuntimeDep) -> Response:
    return await _smart(rt)


@router.get("/.well-known/openid-configuration", summary="OpenID Connect discovery (built-in issuer)")
async def openid_configuration(rt: RuntimeDep, server: ServerDep) -> Response:
    return JSONResponse(discovery.openid_configuration(rt.settings),
                        headers={"Cache-Control": "max-age=300"})


@router.get("/auth/jwks", summary="The built-in issuer's public signing keys (JWKS)")
async def jwks(server: ServerDep) -> Response:
    return JSONResponse(await server.jwks(), headers={"Cache-Control": "max-age=300"})


# -- authorization endpoint (login page) -------------------------------------------------------
def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    doc = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
           "</title><style>body{font-family:sans-serif;max-width:28em;margin:3em auto}"
           "label,input,button{display:block;margin:.4em 0}</style></head>"
           f"<body><h1>{html.escape(title)}</h1>{body}</body></html>")
    return HTMLResponse(doc, status_code=status, headers=PAGE_HEADERS)


def _login_form(server: AuthServer, req: AuthorizeRequest, error: str | None = None) -> HTMLResponse:
    hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                     for k, v in req.form_fields().items())
    scopes = "".join(f"<li>{html.escape(s)}</li>" for s in req.scope.split())
    message = f'<p role="alert"><strong>{html.escape(error)}</strong></p>' if error else ""
    who = (f"<p>{html.escape(PATIENT_APP_ONLY)}</p>"
           if any(s.startswith("patient/") for s in req.scope.split()) else "")
    body = (f"<p><strong>{html.escape(req.client_name)}</strong> asks for access to:</p>"
            f"<ul>{scopes}</ul>{who}{message}"
            f'<form method="post" action="{html.escape(server.authorization_endpoint)}">{hidden}'
            '<label>Username <input name="username" autocomplete="username" required></label>'
            '<label>Password <input name="password" type="password" '
            'autocomplete="current-password" required></label>'
            "<button type=\"submit\">Sign in and allow</button></form>")
    return _page("Sign in to pgo-work", body)


@router.get("/auth/authorize", summary="Authorization endpoint: the login page",
            response_class=HTMLResponse)
async def authorize(request: Request, server: ServerDep) -> Response:
    try:
        req = await server.check_authorize(dict(request.query_params))
    except AuthorizeProblem as exc:
        return _page("Cannot sign in", f"<p>{html.escape(str(exc))}</p>", 400)
    except AuthorizeRedirect as exc:
        return RedirectResponse(exc.location, status_code=303, headers=NO_STORE)
    return _login_form(server, req)


@router.post("/auth/authorize", summary="Authorization endpoint: sign in and allow",
             response_class=HTMLResponse, openapi_extra=FORM_BODY)
async def authorize_post(request: Request, server: ServerDep) -> Response:
    try:
        form = await _form(request)
        req = await server.check_authorize(form)
    except OAuthError as exc:
        return _page("Cannot sign in", f"<p>{html.escape(exc.description)}</p>", 400)
    except AuthorizeProblem as exc:
        return _page("Cannot sign in", f"<p>{html.escape(str(exc))}</p>", 400)
    except AuthorizeRedirect as exc:
        return RedirectResponse(exc.location, status_code=303, headers=NO_STORE)
    if "username" not in form:
        return _login_form(server, req)  # authorization request sent by POST: show the page
    try:
        location = await server.login(req, form.get("username", ""), form.get("password", ""))
    except LoginFailed as exc:
        return _login_form(server, req, str(exc) or "Unknown username or wrong password.")
    # 303: the browser must GET the redirect URI, never re-POST the credentials (RFC 9700 4.12).
    return RedirectResponse(location, status_code=303, headers=NO_STORE)


# -- token, revocation, introspection ------------------------------------------------------------
@router.post("/auth/token", summary="Token endpoint (authorization_code, refresh_token, "
             "client_credentials)", openapi_extra=FORM_BODY)
async def token(request: Request, server: ServerDep) -> Response:
    try:
        return _oauth_json(request, await server.token(await _form(request)))
    except OAuthError as exc:
        return _oauth_error(request, exc)


@router.post("/auth/revoke", summary="Token revocation (RFC 7009)", openapi_extra=FORM_BODY)
async def revoke(request: Request, server: ServerDep) -> Response:
    try:
        await server.revoke(await _form(request))
    except OAuthError as exc:
        return _oauth_error(request, exc)
    return Response(status_code=200, headers=NO_STORE)


@router.post("/auth/introspect", summary="Token introspection (RFC 7662)", openapi_extra=FORM_BODY)
async def introspect(request: Request, server: ServerDep) -> Response:
    try:
        return _oauth_json(request, await server.introspect(await _form(request)))
    except OAuthError as exc:
        return _oauth_error(request, exc)
