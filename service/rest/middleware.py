"""ASGI middleware for conventions every request shares: trailing slashes and correlation ids.

Pure ASGI (no BaseHTTPMiddleware): they only rewrite the scope and add response headers, so
they neither buffer bodies nor cost a task per request.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADERS = ("medmij-request-id", "x-request-id", "x-correlation-id")
"""Correlation ids clients send (MedMij, IHE BALP / common practice); each is echoed back."""
_SAFE_ID = re.compile(r"^[\x21-\x7e]{1,200}$")


class StripTrailingSlash:
    """`POST /fhir/`, `GET /fhir/Patient/`: the same endpoint as without the slash.

    Clients build `[base]/` for `POST [base]` (httpx joins it so) and some add a slash to every
    path. A redirect would turn a POST into a GET on many clients and costs a round trip, so
    the path is rewritten in place and no FHIR path ever answers 307.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if len(path) > 1 and path.endswith("/"):
                scope = dict(scope)
                scope["path"] = path.rstrip("/") or "/"
                raw = scope.get("raw_path")
                if isinstance(raw, bytes | bytearray):
                    scope["raw_path"] = bytes(raw).rstrip(b"/") or b"/"
        await self.app(scope, receive, send)


def request_ids(scope: Scope) -> dict[str, str]:
    """The correlation ids of the request (lower-case header name -> value), printable ASCII
    only so a value can be echoed and stored safely."""
    out: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        key = name.decode("latin-1").lower()
        if key in REQUEST_ID_HEADERS and key not in out:
            text = value.decode("latin-1").strip()
            if _SAFE_ID.match(text):
                out[key] = text
    return out


class CorrelationIds:
    """Echo `MedMij-Request-ID`, `X-Request-Id` and `X-Correlation-ID` on the response, and
    keep the id in the request state (`request_id`) so the request's AuditEvent names it. A
    request without one gets none invented: the id exists to join the client's log to ours."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ids = request_ids(scope)
        if not ids:
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = next(iter(ids.values()))
        echo = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in ids.items()]

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message = dict(message)
                message["headers"] = [*message.get("headers", []),
                                      *[(k, v) for k, v in echo if k not in present]]
            await send(message)

        await self.app(scope, receive, send_with_ids)
