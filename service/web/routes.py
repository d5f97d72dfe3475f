"""Serve the web app's static files under `/app` with a strict Content-Security-Policy.

The app is plain ES modules and one stylesheet: no build step, nothing fetched from elsewhere,
no inline script or style, so the policy can say `'self'` for everything. Every page of the app
(`/app/`, the sign-in callback, deep links) is the same `index.html`; the app routes by the URL
fragment. Only the files that are in the package are served, by exact name.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from starlette.responses import FileResponse, Response

from ..fhir.outcome import FhirError

STATIC = Path(__file__).parent / "static"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'; object-src 'none'")
"""No inline code at all; the app only talks to its own origin (the FHIR API and /auth)."""
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
           "Cache-Control": "no-cache"}
SHELL_PATHS = ("", "callback")
"""Paths that are the app itself: the start page and the authorization code redirect."""

router = APIRouter(tags=["web app"], include_in_schema=False)


def _files() -> dict[str, Path]:
    return {p.name: p for p in STATIC.iterdir() if p.is_file() and p.suffix in TYPES}


FILES = _files()


def _serve(path: Path) -> Response:
    return FileResponse(path, media_type=TYPES[path.suffix], headers=HEADERS)


@router.get("/app")
async def app_root() -> Response:
    return _serve(FILES["index.html"])


@router.get("/app/{name}")
async def app_file(name: str) -> Response:
    """A static file by its exact name, or the app shell for the start page and the callback."""
    if name in SHELL_PATHS:
        return _serve(FILES["index.html"])
    path = FILES.get(name)
    if path is None:
        raise FhirError(404, "not-found", f"/app/{name} is not part of the web app")
    return _serve(path)


@router.get("/app/")
async def app_index() -> Response:
    return _serve(FILES["index.html"])
