"""Checks on the raw request, before any route: the URL's length and the NUL character.

They are ASGI middleware, not dependencies, because they hold for every endpoint (FHIR, `/auth`,
operations, unknown paths alike) and must answer before anything parses or stores the URL:

- a request target (path and query) over `max_url_bytes` is 414 with an OperationOutcome. The
  HTTP servers give up much later and worse (httptools refuses a URL over 64 KB with a bare 400
  and drops the connection, h11 anything over 16 KB of head), so `service.http_server` sets them
  up to hand such URLs through, shortened, and this answers them;
- U+0000 anywhere in the decoded path or query is 400: PostgreSQL text cannot hold it (every
  query naming it failed with a 500), and SQLite would compare a truncated value. Searches inside
  Bundles and headers (If-None-Exist) are checked where they are parsed (`SearchParser`), JSON
  bodies where they are read (`negotiation.read_body`).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from ..fhir.outcome import FhirError
from ..store.search.parser import reject_nul
from .negotiation import fhir_response


class RequestGuard:
    """414 for a too long request target, 400 for NUL in it; everything else passes through."""

    def __init__(self, app: ASGIApp, max_url_bytes: int) -> None:
        self.app = app
        self.max_url_bytes = max_url_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        error = self.check(scope)
        if error is None:
            await self.app(scope, receive, send)
            return
        await fhir_response(None, error.status, error.outcome, headers=error.headers)(
            scope, receive, send)

    def check(self, scope: Scope) -> FhirError | None:
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        query: bytes = scope.get("query_string", b"")
        length = len(raw_path) + (len(query) + 1 if query else 0)
        if length > self.max_url_bytes:
            return FhirError(414, "too-long", f"The request URL exceeds {self.max_url_bytes} "
                             "bytes; send a long search as POST [type]/_search with the "
                             "parameters in the body", headers={"Connection": "close"})
        if "\x00" in scope["path"]:
            return FhirError(400, "value", "The URL path contains the NUL character (%00), which "
                             "no FHIR value may hold")
        if b"%00" in query or b"\x00" in query:
            try:
                reject_nul(parse_qsl(query.decode("utf-8", "replace"), keep_blank_values=True))
            except FhirError as exc:
                return exc
        return None

