"""HTTP of the authorization server and discovery: adapts requests to `AuthServer`, nothing more.

OAuth endpoints answer in OAuth's own format (RFC 6749 5.2 JSON errors, no-store caching),
because that is what OAuth clients parse; everything else keeps the API's OperationOutcome.
With an external issuer configured, the built-in endpoints answer 404 and discovery points at
that issuer.
"""

from __future__ import annotations

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
from . import auth_pages
from .deps import get_runtime

router = APIRouter(tags=["auth"])
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
ECHO_HEADERS = ("medmij-request-id", "x-correlation-id")
"""MedMij token requests carry these; echoing them lets both sides correlate their logs."""
FORM_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}}


async def built_in(rt: Annotated[Runtime, Depends(get_runtime)]) -> AuthServer:
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
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    if any("\x00" in k or "\x00" in v for k, v in fields.items()):  # PostgreSQL cannot hold it
        raise OAuthError("invalid_request", "A parameter contains the NUL character (%00)")
    return fields


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
def _login_form(server: AuthServer, req: AuthorizeRequest, lang: str,
                error: str | None = None) -> HTMLResponse:
    return auth_pages.login_page(server.authorization_endpoint, req, server.settings, lang, error)


@router.get("/auth/authorize", summary="Authorization endpoint: the login page",
            response_class=HTMLResponse)
async def authorize(request: Request, server: ServerDep) -> Response:
    params = dict(request.query_params)
    lang = auth_pages.language(params)
    try:
        req = await server.check_authorize(params)
    except AuthorizeProblem as exc:
        return auth_pages.problem_page(str(exc), lang)
    except AuthorizeRedirect as exc:
        return RedirectResponse(exc.location, status_code=303, headers=NO_STORE)
    return _login_form(server, req, lang)


@router.post("/auth/authorize", summary="Authorization endpoint: sign in and allow",
             response_class=HTMLResponse, openapi_extra=FORM_BODY)
async def authorize_post(request: Request, server: ServerDep) -> Response:
    lang = "nl"
    try:
        form = await _form(request)
        lang = auth_pages.language(form)
        req = await server.check_authorize(form)
    except OAuthError as exc:
        return auth_pages.problem_page(exc.description, lang)
    except AuthorizeProblem as exc:
        return auth_pages.problem_page(str(exc), lang)
    except AuthorizeRedirect as exc:
        return RedirectResponse(exc.location, status_code=303, headers=NO_STORE)
    if "username" not in form:
        return _login_form(server, req, lang)  # authorization request sent by POST: show the page
    try:
        location = await server.login(req, form.get("username", ""), form.get("password", ""))
    except LoginFailed as exc:
        refused = "patient_app_only" if str(exc) == PATIENT_APP_ONLY else "wrong"
        return _login_form(server, req, lang, error=refused)
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
